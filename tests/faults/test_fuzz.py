"""Property tests (Hypothesis) for the API-answer parser and the identity decision logic.

Random JSON shapes, random bytes as PEM, random statuses and headers from a real TLS server,
random file states in a real directory. Whatever comes in: no exception other than the
module's own (which main() turns into a clean failure), no write outside the identity
directory, no key or token in any message, no unsafe ID ever accepted, check mode writes
nothing and calls nobody, and a failed run leaves client.key/client.crt as they were.

The profile is deterministic (derandomize, no example database) so CI runs the same examples.
"""
from __future__ import annotations

import datetime
import http.server
import json
import os
import pathlib
import re
import shutil
import ssl
import tempfile
import threading

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.x509.oid import NameOID
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import api, identity, reasons
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import ApiError, IdentityError
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.fsutil import IdentityDir
from tests.fixtures import module_runner as h
from tests.fixtures.product import api_client
from tests.fixtures.product import settings as make_settings

PROFILE = {
    "derandomize": True,
    "database": None,
    "deadline": None,
    "suppress_health_check": [HealthCheck.too_slow, HealthCheck.function_scoped_fixture,
                              HealthCheck.data_too_large],
}
TOKEN = "s3cr3t-token-value-0123456789"
SAFE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,127}")
ID0, ID1 = "0A1B2C3D", "DEADBEEF"


# ============================================================================ material pool

class Pool:
    """Real keys and certificates, made once (RSA keygen is too slow for every example)."""

    def __init__(self, id0: str = ID0, id1: str = ID1) -> None:
        self.id_map = {ID0: id0, ID1: id1}
        self.keys = [h.new_key(2048), h.new_key(2048)]
        self.key_pems = [h.key_pem(k) for k in self.keys]
        k0 = self.keys[0]
        self.encrypted_key = k0.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
            serialization.BestAvailableEncryption(b"passphrase"))
        self.traditional_key = k0.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL,
            serialization.NoEncryption())
        self.certs = {
            "valid": h.self_signed(k0, id0),
            "valid-other-key": h.self_signed(self.keys[1], id0),
            "other-id": h.self_signed(k0, id1),
            "expired": h.self_signed(k0, id0, days=1, not_before_days=-10),
            "due": h.self_signed(k0, id0, days=5),
            "not-yet-valid": h.self_signed(k0, id0, not_before_days=3),
            "no-client-auth": h.self_signed(k0, id0, client_auth=False),
            "cn-traversal": h.self_signed(k0, "../../etc/passwd"),
            "cn-dn": h.self_signed(k0, "A/CN=evil"),
            "cn-newline": h.self_signed(k0, "0A1B2C3D\n"),
            "cn-long": h.self_signed(k0, "A" * 64),
            "no-cn": _no_cn_cert(k0),
        }
        self.all_secrets = [*self.key_pems, self.traditional_key]


def _no_cn_cert(key) -> bytes:
    name = x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, "AutonomyLogic")])
    now = datetime.datetime.now(datetime.UTC)
    cert = (x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
            .serial_number(x509.random_serial_number()).not_valid_before(now)
            .not_valid_after(now + datetime.timedelta(days=30)).sign(key, hashes.SHA256()))
    return cert.public_bytes(serialization.Encoding.PEM)


@pytest.fixture(scope="module")
def pool() -> Pool:
    return Pool()


def assert_clean_message(text: str, pool: Pool | None = None) -> None:
    keys = pool.all_secrets if pool else []
    h.assert_no_secrets(text, keys=keys, tokens=[TOKEN])


# ============================================================================ answer parser

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=True) | st.text(max_size=40),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=8), inner, max_size=4),
    max_leaves=12,
)
hostile_ids = st.sampled_from([
    "../../etc/passwd", "A/CN=evil", "0A1B2C3D\n", "", "A" * 10240, "0A1B2C3\u00c9", "..", "a..b",
    "-x", ".hidden", "x" * 129, "0A1B 2C3D", "0A1B2C3D\x00", "C:\\x", "id;rm -rf /", ID0,
])
id_values = hostile_ids | st.text(max_size=80) | json_values
answers = st.one_of(
    json_values,
    st.fixed_dictionaries({"statusCode": st.integers(-1, 700) | json_values,
                           "data": st.fixed_dictionaries({"id": id_values}) | json_values}),
    st.fixed_dictionaries({"data": st.dictionaries(st.sampled_from(["id", "message", "certificate", "x"]),
                                                   id_values, max_size=3)}),
    st.fixed_dictionaries({"message": st.text(max_size=300) | st.just(TOKEN)}),
)


def _encode(answer, how: int) -> bytes:
    text = json.dumps(answer, allow_nan=True)
    if how == 1:
        return text.encode("utf-16")
    if how == 2:
        return text[: len(text) // 2].encode()
    return text.encode()


def _client(**kw) -> api.ProvisioningClient:
    kw.setdefault("retries", 0)
    return api_client("https://127.0.0.1:9", headers={"Authorization": "Bearer " + TOKEN},
                                  sleep=lambda _s: None, **kw)


def _check_parsed_id(client, body):
    """What request_id does with a 200 answer, without the transport."""
    data = client._envelope("GET", client.id_endpoint, 200, body)
    if "id" not in data:
        raise ApiError("no id")
    return api.check_agent_id(data["id"], client.id_pattern, source="the ID")


@settings(max_examples=200, **PROFILE)
@given(answer=answers, how=st.integers(0, 2), pattern=st.sampled_from(
    [api.DEFAULT_ID_PATTERN, r".*", r"[\s\S]*", r"^[0-9A-F]{8}$", r"(", r".{0,20000}"]))
def test_answer_parser_never_crashes_and_accepts_only_safe_ids(answer, how, pattern):
    client = _client(id_pattern=pattern)
    body = _encode(answer, how)
    try:
        value = _check_parsed_id(client, body)
    except IdentityError as exc:
        msg = exc.msg
        assert "\n" not in msg and len(msg) < 1000, msg
        assert_clean_message(msg)
        return
    assert isinstance(value, str) and SAFE.fullmatch(value) and ".." not in value, repr(value)
    assert "/" not in value and "\n" not in value and len(value) <= 128


@settings(max_examples=150, **PROFILE)
@given(body=st.binary(max_size=3000) | answers.map(lambda a: json.dumps(a).encode()),
       secret=st.sampled_from(["", TOKEN, "key"]))
def test_server_reason_is_sanitized(pool, body, secret):
    if secret == TOKEN:
        body = body + b" " + TOKEN.encode()
    elif secret == "key":
        body = json.dumps({"message": "oops " + pool.key_pems[0].decode()}).encode()
    reason = _client()._reason_of(body)
    assert isinstance(reason, str) and len(reason) <= reasons.REASON_MAX + 3
    assert all(32 <= ord(c) < 127 for c in reason), repr(reason)
    assert_clean_message(reason, pool)


# ---------------------------------------------------------------------------- through real TLS

class _Answer(http.server.BaseHTTPRequestHandler):
    plan: dict = {}

    def do_GET(self):  # noqa: N802 - http.server's naming
        p = self.plan
        self.send_response(p["status"])
        for key, value in p["headers"]:
            self.send_header(key, value)
        if p["length"] == "right":
            self.send_header("Content-Length", str(len(p["body"])))
        elif p["length"] == "wrong":
            self.send_header("Content-Length", str(len(p["body"]) + 10))
        elif p["length"] == "huge":
            self.send_header("Content-Length", str(50 * 1024 * 1024))
        self.end_headers()
        try:
            self.wfile.write(p["body"])
        except OSError:
            pass
        self.close_connection = True

    do_POST = do_GET  # noqa: N815

    def log_message(self, *args):
        pass


@pytest.fixture(scope="module")
def tls_answerer(shared_service):
    """A one-thread TLS server on loopback answering whatever the example says (its
    certificate is the reference service's, so verification stays on)."""
    state = shared_service.state_dir
    cert = next(iter(sorted(state.glob("server-valid*.crt"))), None) or next(iter(sorted(state.glob("server*.crt"))))
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    ctx.load_cert_chain(str(cert), str(state / "server.key"))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Answer)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield f"https://127.0.0.1:{server.server_address[1]}", str(shared_service.ca_path)
    server.shutdown()
    server.server_close()


@settings(max_examples=60, **PROFILE)
@given(status=st.sampled_from([200, 201, 204, 301, 302, 400, 404, 410, 429, 500, 503, 599]),
       headers=st.lists(st.tuples(st.sampled_from(["Retry-After", "Content-Type", "X-Junk"]),
                                  st.sampled_from(["0", "1", "-5", "soon", "Wed, 21 Oct 2015 07:28:00 GMT",
                                                   "application/json", "x" * 200])), max_size=3),
       length=st.sampled_from(["right", "none", "wrong", "huge"]),
       answer=answers, how=st.integers(0, 2))
def test_id_request_over_tls_never_crashes(tls_answerer, status, headers, length, answer, how):
    url, ca = tls_answerer
    _Answer.plan = {"status": status, "headers": headers, "length": length, "body": _encode(answer, how)}
    client = api_client(url, ca_path=ca, retries=1, timeout=2, sleep=lambda _s: None,
                                    headers={"Authorization": "Bearer " + TOKEN})
    try:
        value = client.request_id()
    except IdentityError as exc:
        assert "\n" not in exc.msg and len(exc.msg) < 1000
        assert_clean_message(exc.msg)
        return
    finally:
        client.close()
    assert 200 <= status < 300 and length != "huge"
    assert SAFE.fullmatch(value) and re.fullmatch(api.DEFAULT_ID_PATTERN, value)


# ============================================================================ decision logic

def _bytes_of(pool: Pool, kind: str, raw: bytes) -> bytes | None:
    table = {
        "absent": None, "raw": raw, "empty": b"",
        "key0": pool.key_pems[0], "key1": pool.key_pems[1], "key0-traditional": pool.traditional_key,
        "key-encrypted": pool.encrypted_key,
        "pem-garbage": b"-----BEGIN PRIVATE KEY-----\n" + raw.hex().encode() + b"\n-----END PRIVATE KEY-----\n",
        "cert-garbage": (b"-----BEGIN CERTIFICATE-----\nAAAA" + raw.hex().encode()[:60]
                         + b"\n-----END CERTIFICATE-----\n"),
        "two-certs": pool.certs["valid"] + pool.certs["other-id"],
        "cert-with-key": pool.certs["valid"] + pool.key_pems[0],
    }
    if kind in table:
        return table[kind]
    return pool.certs[kind]


CERT_KINDS = ["absent", "raw", "empty", "cert-garbage", "two-certs", "cert-with-key", "valid",
              "valid-other-key", "other-id", "expired", "due", "not-yet-valid", "no-client-auth",
              "cn-traversal", "cn-dn", "cn-newline", "cn-long", "no-cn"]
KEY_KINDS = ["absent", "raw", "empty", "key0", "key1", "key0-traditional", "key-encrypted", "pem-garbage"]
MODES = [0o600, 0o644, 0o400, 0o000, 0o666, 0o700]

file_states = st.fixed_dictionaries({
    "cert": st.sampled_from(CERT_KINDS), "key": st.sampled_from(KEY_KINDS),
    "staged_cert": st.sampled_from(["absent", "absent", "valid", "valid-other-key", "raw", "other-id"]),
    "staged_key": st.sampled_from(["absent", "absent", "key0", "key1", "raw"]),
    "journal": st.sampled_from([None, {"id": ID0}, {"id": ID1}, {"id": "../x"}, {"id": 12}, "garbage"]),
    "key_mode": st.sampled_from(MODES), "cert_mode": st.sampled_from(MODES),
    "dir_mode": st.sampled_from([0o700, 0o755, 0o750]),
    "link": st.sampled_from([None, None, None, "client.key", "client.crt", ".client.crt.new"]),
    "raw": st.binary(max_size=600),
})
setting_values = st.fixed_dictionaries({
    "agent_id": st.sampled_from([None, ID0, ID1, "../x", "A/CN=evil"]),
    "rotate": st.sampled_from(["auto", "always", "never"]),
    "key_size": st.sampled_from([2048, 3072]),
    "enrollment": st.sampled_from(["self_signed", "self_signed", "csr"]),
})


def materialize(pool: Pool, root: pathlib.Path, state: dict) -> pathlib.Path:
    """Write the state under root/home/.mtls; root/outside holds what links point to."""
    d = root / "home" / ".mtls"
    outside = root / "outside"
    outside.mkdir(parents=True)
    d.mkdir(parents=True)
    for name, kind, mode in (("client.crt", state["cert"], state["cert_mode"]),
                             ("client.key", state["key"], state["key_mode"]),
                             (".client.crt.new", state["staged_cert"], 0o644),
                             (".client.key.new", state["staged_key"], 0o600)):
        data = _bytes_of(pool, kind, state["raw"])
        if data is None:
            continue
        if state["link"] == name:
            (outside / name).write_bytes(data)
            os.symlink(outside / name, d / name)
            continue
        (d / name).write_bytes(data)
        os.chmod(d / name, mode)
    if state["journal"] is not None:
        j = state["journal"]
        if isinstance(j, dict) and isinstance(j.get("id"), str):
            j = {"id": pool.id_map.get(j["id"], j["id"])}
        (d / ".mtls-pending.json").write_bytes(b"\x00garbage" if j == "garbage" else json.dumps(j).encode())
    os.chmod(d, state["dir_mode"])
    return d


def _settings(d: pathlib.Path, values: dict):
    return make_settings(d, **values)


@settings(max_examples=150, **PROFILE)
@given(state=file_states, values=setting_values)
def test_decide_is_total_and_never_mints_a_device_that_has_a_cert(pool, state, values):
    """decide() on any file state and settings returns a sane plan or refuses with the
    module's own error; it never plans a new ID for a device whose certificate names one."""
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        d = materialize(pool, root, state)
        try:
            s = _settings(d, values)
        except IdentityError as exc:
            assert_clean_message(exc.msg, pool)
            return
        try:
            idir = IdentityDir.open(s.path, s.uid, s.gid, create=False)
            with idir:
                a = identity.assess(idir)
                plan = identity.decide(a, s)
        except IdentityError as exc:
            assert_clean_message(exc.msg, pool)
            assert "\n" not in exc.msg
            return
        assert plan.action in ("created", "rotated", "repaired", "unchanged"), plan
        assert_clean_message(plan.reason, pool)
        if plan.agent_id is not None:
            assert SAFE.fullmatch(plan.agent_id) and ".." not in plan.agent_id, plan
        if plan.action == "created":
            assert state["cert"] == "absent", plan  # only a device without certificate is new
        elif plan.action == "rotated":
            assert plan.agent_id is not None and plan.new_key
        if plan.agent_id is None:
            assert plan.action == "created"
        readable_id = {"valid": ID0, "valid-other-key": ID0, "expired": ID0, "due": ID0,
                       "not-yet-valid": ID0, "no-client-auth": ID0, "other-id": ID1,
                       "two-certs": ID0}.get(state["cert"])
        if readable_id and plan.action == "rotated" and values["rotate"] != "always":
            assert plan.agent_id == readable_id, (plan, state["cert"])  # rotation keeps the ID


class _Tripwire:
    """client_factory for check mode: any network use is a failure."""

    def __call__(self):
        raise AssertionError("check mode opened an API client")


@settings(max_examples=60, **PROFILE)
@given(state=file_states, values=setting_values)
def test_check_mode_never_writes_nor_calls(pool, state, values):
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        materialize(pool, root, state)
        d = root / "home" / ".mtls"
        before = h.snapshot(root)
        try:
            s = _settings(d, values)
            result, warnings = identity.ensure_identity(s, _Tripwire(), check_mode=True)
        except IdentityError as exc:
            assert_clean_message(exc.msg, pool)
        else:
            assert result["action"] in ("created", "rotated", "repaired", "unchanged")
            assert_clean_message(json.dumps(result) + json.dumps(warnings), pool)
        assert h.snapshot(root) == before


@settings(max_examples=60, **PROFILE)
@given(state=file_states, values=setting_values)
def test_failed_run_keeps_identity_and_writes_only_in_its_directory(pool, state, values):
    """A real run whose API is unreachable (closed port: a real connection refused): only
    IdentityError, nothing changes outside the directory, client.key and client.crt keep their
    bytes, and no staged file is left unless the run refused the directory outright."""
    port = h.closed_port()
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        d = materialize(pool, root, state)
        outside_before = h.snapshot(root, ignore=("home/.mtls", "home/.mtls/*"))
        before = h.snapshot(d)

        def factory():
            return api_client(f"https://127.0.0.1:{port}", retries=0, timeout=2,
                                          sleep=lambda _s: None)

        try:
            s = _settings(d, values)
            result, warnings = identity.ensure_identity(s, factory)
        except IdentityError as exc:
            assert_clean_message(exc.msg, pool)
        else:
            assert result["action"] in ("repaired", "unchanged"), result
            assert_clean_message(json.dumps(result) + json.dumps(warnings), pool)
        assert h.snapshot(root, ignore=("home/.mtls", "home/.mtls/*")) == outside_before
        after = h.snapshot(d)
        for name in ("client.key", "client.crt"):
            assert (before.get(name) and before[name].digest) == (after.get(name) and after[name].digest), name
        # either the run refused before touching anything, or it resolved the staged files
        if after != before:
            assert not ({".client.key.new", ".client.crt.new", ".mtls-pending.json.new"} & set(after)), after
        shutil.rmtree(root, ignore_errors=True)


# ---------------------------------------------------------------------------- real runs, live service

@pytest.fixture(scope="module")
def live_pool(shared_service):
    """The same material for two IDs really reserved on the service (the first registered)."""
    live = Pool(shared_service.reserve_id(), shared_service.reserve_id())
    assert shared_service.upload(live.id_map[ID0], live.certs["valid"]).status_code == 200
    return live


READABLE = {"valid": ID0, "valid-other-key": ID0, "expired": ID0, "due": ID0, "not-yet-valid": ID0,
            "no-client-auth": ID0, "other-id": ID1, "two-certs": ID0}


@settings(max_examples=25, **PROFILE)
@given(state=file_states, values=setting_values.filter(lambda v: v["enrollment"] == "self_signed"))
def test_real_run_on_random_state_converges_or_refuses(live_pool, shared_service, state, values):
    """A real run against the live service on a random device state either refuses with the
    module's error (client.key/client.crt untouched, nothing written outside the directory) or
    leaves a pair the registry holds and the gate accepts, under the certificate's own ID
    whenever the certificate named one and no other ID was asked for."""
    svc, pool = shared_service, live_pool
    values = dict(values, key_size=2048)
    if values["agent_id"] in pool.id_map:
        values["agent_id"] = pool.id_map[values["agent_id"]]
    with tempfile.TemporaryDirectory() as tmp:
        root = pathlib.Path(tmp)
        d = materialize(pool, root, state)
        outside_before = h.snapshot(root, ignore=("home/.mtls", "home/.mtls/*"))
        before = h.snapshot(d)

        def factory():
            return api_client(svc.api_url, ca_path=str(svc.ca_path), retries=0, timeout=10,
                                          sleep=lambda _s: None)

        try:
            s = _settings(d, values)
            result, warnings = identity.ensure_identity(s, factory)
        except IdentityError as exc:
            assert_clean_message(exc.msg, pool)
            after = h.snapshot(d)
            for name in ("client.key", "client.crt"):
                assert (before.get(name) and before[name].digest) == (after.get(name) and after[name].digest)
            result = None
        assert h.snapshot(root, ignore=("home/.mtls", "home/.mtls/*")) == outside_before
        if result is None:
            return
        assert_clean_message(json.dumps(result) + json.dumps(warnings), pool)
        action = result["action"]
        assert action in ("created", "rotated", "repaired", "unchanged"), result
        if state["cert"] != "absent":
            assert action != "created", (state, result)  # never a new device over a certificate
        if action in ("created", "rotated"):
            cert = d / "client.crt"
            agent = h.cert_cn(cert)
            assert agent == result["agent_id"]
            assert svc.registrations()[agent] == h.cert_fingerprint(cert)
            assert svc.whoami(cert, d / "client.key") == (200, {"id": agent})
            named = READABLE.get(state["cert"])
            if named and not values["agent_id"]:
                assert agent == pool.id_map[named], (state, result)  # the device kept its ID
        else:
            after = h.snapshot(d)
            for name in ("client.key", "client.crt"):
                assert before[name].digest == after[name].digest, (name, result)
