"""The decision table: every on-disk state -> action and reason (real keys and certificates)."""

from __future__ import annotations

import datetime
import json
import os

import pytest
from cryptography import x509
from cryptography.x509.oid import NameOID

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import StateError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.fsutil import IdentityDir
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import assess, decide
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.keys import load_private_key
from tests.fixtures.identities import AGENT_ID, UTC, build_cert, ec_key, write_identity

OTHER_ID = "FFFF0001"
NOW = datetime.datetime.now(UTC)
BAD_KEY = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
CA_NAME = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "Enrollment CA")])


def valid(d, keys, **kw):
    key = keys.get(0)
    write_identity(d, key, build_cert(key, **kw))


def journal(d, agent_id):
    (d / ".mtls-pending.json").write_text(json.dumps({"id": agent_id, "registry": "uncertain"}))


# Each row: id, setup(d, keys), settings kwargs, expected action, reason fragment, new_key
ROWS = [
    ("fresh", lambda d, k: None, {}, "created", "requesting a new ID", True),
    ("fresh-empty-dir", lambda d, k: d.mkdir(mode=0o700), {}, "created", "no identity", True),
    ("fresh-preassigned", lambda d, k: None, {"agent_id": OTHER_ID}, "created", "pre-assigned", True),
    ("valid", valid, {}, "unchanged", "valid for 36", False),
    ("valid-matching-agent-id", valid, {"agent_id": AGENT_ID}, "unchanged", "valid for", False),
    ("due", lambda d, k: valid(d, k, days=10), {}, "rotated", "expires in 9 days (renew_before_days=30)", True),
    ("not-due-with-smaller-window", lambda d, k: valid(d, k, days=10), {"renew_before_days": 5},
     "unchanged", "valid for 9", False),
    ("expired", lambda d, k: valid(d, k, days=-1, not_before=NOW - datetime.timedelta(days=30)), {},
     "rotated", "expired on", True),
    ("not-yet-valid", lambda d, k: valid(d, k, not_before=NOW + datetime.timedelta(days=2)), {},
     "rotated", "not valid before", True),
    ("forced", valid, {"rotate": "always"}, "rotated", "rotate=always", True),
    ("never-due", lambda d, k: valid(d, k, days=10), {"rotate": "never"}, "unchanged",
     "rotation would be due (certificate expires in 9 days", False),
    ("never-wrong-size", valid, {"rotate": "never", "key_size": 3072}, "unchanged",
     "key size 2048 differs from key_size 3072", False),
    ("mismatch", lambda d, k: write_identity(d, k.get(1), build_cert(k.get(0))), {}, "rotated",
     "private key does not match the certificate", True),
    ("missing-key", lambda d, k: write_identity(d, None, build_cert(k.get(0))), {}, "rotated",
     "private key missing", True),
    ("corrupt-key", lambda d, k: write_identity(d, key_bytes=BAD_KEY, cert=build_cert(k.get(0))), {},
     "rotated", "private key unusable", True),
    ("ec-key", lambda d, k: write_identity(d, ec_key(), build_cert(k.get(0))), {}, "rotated",
     "not RSA", True),
    ("wrong-size", valid, {"key_size": 3072}, "rotated", "key size 2048 differs from key_size 3072", True),
    ("corrupt-cert-with-agent-id", lambda d, k: write_identity(d, k.get(0), cert_bytes=b"garbage\n"),
     {"agent_id": AGENT_ID}, "rotated", "cannot be read", True),
    ("no-client-auth", lambda d, k: valid(d, k, client_auth=False), {}, "rotated",
     "unusable for TLS client auth (extendedKeyUsage lacks clientAuth)", True),
    ("wrong-key-mode", lambda d, k: (valid(d, k), os.chmod(d / "client.key", 0o644)), {},
     "repaired", "client.key mode 0644 (want 0600)", False),
    ("wrong-cert-mode", lambda d, k: (valid(d, k), os.chmod(d / "client.crt", 0o600)), {},
     "repaired", "client.crt mode 0600 (want 0644)", False),
    ("wrong-dir-mode", lambda d, k: (valid(d, k), os.chmod(d, 0o755)), {},
     "repaired", "directory mode 0755 (want 0700)", False),
    ("cn-differs-forced", valid, {"agent_id": OTHER_ID, "rotate": "always"}, "rotated",
     "re-keying as FFFF0001 (the certificate was for 0A1B2C3D)", True),
    ("subject-differs", lambda d, k: valid(d, k, subject={"O": "OtherCorp"}), {}, "rotated",
     "subject differs: O=OtherCorp (want AutonomyLogic)", True),
    ("subject-option-differs", valid, {"subject": {"OU": "Production"}}, "rotated",
     "OU=Development (want Production)", True),
    ("csr-wanted-self-signed-found", valid, {"enrollment": "csr"}, "rotated",
     "self-signed but enrollment=csr", True),
    ("self-signed-wanted-ca-issued-found",
     lambda d, k: write_identity(d, k.get(0), build_cert(k.get(0), signer=k.get(2), issuer_name=CA_NAME)),
     {}, "rotated", "CA-issued but enrollment=self_signed", True),
    ("csr-ca-issued-other-subject",
     lambda d, k: write_identity(d, k.get(0), build_cert(k.get(0), signer=k.get(2), issuer_name=CA_NAME,
                                                       subject={"O": "TheCA"})),
     {"enrollment": "csr"}, "unchanged", "valid for", False),
    ("csr-ca-issued-shorter-than-renew-window",
     lambda d, k: write_identity(d, k.get(0), build_cert(k.get(0), signer=k.get(2), issuer_name=CA_NAME, days=20)),
     {"enrollment": "csr"}, "unchanged", "valid for 19", False),
    ("csr-ca-issued-short-lifetime-two-thirds-gone",
     lambda d, k: write_identity(d, k.get(0), build_cert(k.get(0), signer=k.get(2), issuer_name=CA_NAME, days=5,
                                                       not_before=NOW - datetime.timedelta(days=15))),
     {"enrollment": "csr"}, "rotated", "less than a third of its issued lifetime", True),
    ("key-without-cert-preassigned", lambda d, k: write_identity(d, k.get(0)), {"agent_id": AGENT_ID},
     "rotated", "certificate missing", True),
    ("hard-linked-key", lambda d, k: (valid(d, k), os.link(d / "client.key", d.parent / "elsewhere.key")), {},
     "rotated", "private key has 2 hard links", True),
    ("hard-linked-cert-wrong-mode",
     lambda d, k: (valid(d, k), os.chmod(d / "client.crt", 0o600), os.link(d / "client.crt", d.parent / "c.crt")),
     {}, "repaired", "client.crt mode 0600 (want 0644)", False),
    ("journal-valid-cert", lambda d, k: (valid(d, k), journal(d, AGENT_ID)), {}, "repaired",
     "could not confirm that the registry holds this certificate", False),
    ("journal-no-cert", lambda d, k: (d.mkdir(mode=0o700), journal(d, OTHER_ID)), {}, "created",
     "reusing ID FFFF0001 reserved by an interrupted run", True),
    ("journal-foreign-id", lambda d, k: (valid(d, k), journal(d, OTHER_ID)), {}, "unchanged",
     "valid for", False),
    ("journal-hostile-id", lambda d, k: (d.mkdir(mode=0o700), journal(d, "../x")), {}, "created",
     "requesting a new ID", True),
]


@pytest.mark.parametrize(("setup", "kwargs", "action", "fragment", "new_key"),
                         [r[1:] for r in ROWS], ids=[r[0] for r in ROWS])
def test_decision_table(ident_dir, keys, settings_for, setup, kwargs, action, fragment, new_key):
    setup(ident_dir, keys)
    settings = settings_for(**kwargs)
    idir = IdentityDir.open(str(ident_dir), settings.uid, settings.gid, create=False)
    try:
        a = assess(idir)
    finally:
        if idir is not None:
            idir.close()
    plan = decide(a, settings)
    assert plan.action == action, plan
    assert fragment in plan.reason, plan.reason
    assert plan.new_key is new_key
    if action in ("rotated", "unchanged", "repaired") and not kwargs.get("agent_id"):
        assert plan.agent_id == AGENT_ID  # the ID is kept from the certificate CN
    if kwargs.get("agent_id"):
        assert plan.agent_id == kwargs["agent_id"]


FAILS = [
    ("corrupt-cert-no-agent-id", lambda d, k: write_identity(d, k.get(0), cert_bytes=b"garbage\n"), {},
     "cannot be read .*agent ID is unknown. Set agent_id"),
    ("hostile-cn-no-agent-id", lambda d, k: write_identity(d, k.get(0), build_cert(k.get(0), "../x")), {},
     "CN of .* is not a valid agent ID"),
    ("key-without-cert", lambda d, k: write_identity(d, k.get(0)), {},
     "client.crt is missing, so this device's agent ID cannot be recovered"),
    ("cn-differs", valid, {"agent_id": OTHER_ID},
     "belongs to agent 0A1B2C3D but agent_id is FFFF0001.*rotate=always"),
    ("never-mismatch", lambda d, k: write_identity(d, k.get(1), build_cert(k.get(0))), {"rotate": "never"},
     "broken \\(private key does not match the certificate\\) and rotate=never"),
    ("never-missing-key", lambda d, k: write_identity(d, None, build_cert(k.get(0))), {"rotate": "never"},
     "broken \\(private key missing\\)"),
    ("never-corrupt-cert", lambda d, k: write_identity(d, k.get(0), cert_bytes=b"x"),
     {"rotate": "never", "agent_id": AGENT_ID}, "rotate=never forbids"),
]


@pytest.mark.parametrize(("setup", "kwargs", "message"), [r[1:] for r in FAILS], ids=[r[0] for r in FAILS])
def test_states_the_engine_refuses_to_guess(ident_dir, keys, settings_for, setup, kwargs, message):
    setup(ident_dir, keys)
    settings = settings_for(**kwargs)
    with IdentityDir.open(str(ident_dir), settings.uid, settings.gid) as idir:
        a = assess(idir)
    with pytest.raises(StateError, match=message) as info:
        decide(a, settings)
    assert "PRIVATE" not in str(info.value)


def test_assess_is_cheap_and_does_not_load_the_key_through_openssl(ident_dir, keys, settings_for, monkeypatch):
    """The re-run path reads the RSA key's structure itself: no OpenSSL load, no validation
    cost whatever the cryptography version."""
    valid(ident_dir, keys)
    seen = []
    real = load_private_key

    def spy(data, validate=False):
        seen.append(validate)
        return real(data, validate=validate)

    monkeypatch.setattr("ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.keys.load_private_key", spy)
    with IdentityDir.open(str(ident_dir), os.geteuid(), os.getegid()) as idir:
        a = assess(idir)
    assert seen == []
    assert a.key_matches is True and a.key_size == 2048
    write_identity(ident_dir, ec_key())  # another algorithm: the library describes it, unvalidated
    with IdentityDir.open(str(ident_dir), os.geteuid(), os.getegid()) as idir:
        a = assess(idir)
    assert seen == [False]
    assert a.key_is_rsa is False and a.key_matches is False


def test_renew_before_days_must_be_below_valid_days(settings_for):
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError

    with pytest.raises(ConfigError, match="renew_before_days"):
        settings_for(valid_days=30, renew_before_days=30)


@pytest.mark.parametrize("agent_id", [12345678, float("inf"), "../x", "A/CN=evil", "ID\n"])
def test_settings_refuse_bad_agent_ids(settings_for, agent_id):
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError

    with pytest.raises(ConfigError):
        settings_for(agent_id=agent_id)


@pytest.mark.parametrize(("option", "value", "words"), [
    ("key_mode", "0640", "0640 is refused for the private key"),
    ("key_mode", "0644", "0644 is refused for the private key"),
    ("key_mode", "0200", "at least 0400"),
    ("dir_mode", "0750", "0750 is refused for the directory"),
    ("dir_mode", "0500", "the owner writes it"),
    ("cert_mode", "0664", "0664 is refused for the certificate"),
    ("cert_mode", "0755", "0755 is refused"),
    ("key_mode", "600", None),
    ("key_mode", 600, None),
    ("key_mode", "rw-------", "octal mode"),
    ("key_mode", "01600", "octal mode"),
])
def test_modes_are_never_looser_than_a_private_key_needs(settings_for, option, value, words):
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ConfigError

    if words is None:
        assert settings_for(**{option: value}).modes.key == 0o600
        return
    with pytest.raises(ConfigError, match=words):
        settings_for(**{option: value})


def test_stricter_modes_are_what_the_run_enforces(ident_dir, keys, settings_for):
    valid(ident_dir, keys)
    settings = settings_for(key_mode="0400", cert_mode="0640")
    with IdentityDir.open(str(ident_dir), os.geteuid(), os.getegid()) as idir:
        plan = decide(assess(idir), settings)
    assert plan.action == "repaired"
    assert plan.reason == "fixed client.key mode 0600 (want 0400); client.crt mode 0644 (want 0640)", plan.reason
