"""The identity engine's checks that need no server: a corrupt certificate is refused before any
request, an issued certificate is checked before the swap (tests/module/test_identity_transaction.py runs the
transaction against the reference service)."""

from __future__ import annotations

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import certs
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import ensure_identity
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.keys import private_key_pem
from tests.fixtures.identities import NoNetwork, build_cert, write_identity


def test_corrupt_certificate_without_agent_id_fails_without_network(ident_dir, keys, settings_for):
    write_identity(ident_dir, keys.get(0), cert_bytes=b"not a certificate\n")
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import StateError

    with pytest.raises(StateError, match="Set agent_id"):
        ensure_identity(settings_for(), NoNetwork())


@pytest.mark.parametrize("variant", ["other-cn", "other-key", "server-auth-only", "garbage", "with-private-key"])
def test_issued_certificate_is_checked_before_the_swap(keys, variant):
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import CertificateError
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.identity import check_issued_certificate

    key = keys.get(0)
    ca_kw = {"signer": keys.get(2)}
    good = certs.certificate_pem(build_cert(key, "0A1B2C3D", **ca_kw)).decode()
    assert certs.common_name(check_issued_certificate(good, "0A1B2C3D", key)) == "0A1B2C3D"
    bad = {
        "other-cn": lambda: certs.certificate_pem(build_cert(key, "FFFF0001", **ca_kw)).decode(),
        "other-key": lambda: certs.certificate_pem(build_cert(keys.get(1), "0A1B2C3D", **ca_kw)).decode(),
        "server-auth-only": lambda: certs.certificate_pem(
            build_cert(key, "0A1B2C3D", client_auth=False, **ca_kw)).decode(),
        "garbage": lambda: "-----BEGIN CERTIFICATE-----\nAAAA\n-----END CERTIFICATE-----\n",
        "with-private-key": lambda: good + private_key_pem(key).decode(),
    }[variant]()
    with pytest.raises(CertificateError, match="enrollment endpoint returned") as info:
        check_issued_certificate(bad, "0A1B2C3D", key)
    assert "PRIVATE KEY-----" not in str(info.value)
