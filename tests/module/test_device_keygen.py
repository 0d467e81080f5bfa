"""The key generation with the devices' own library (Debian 12's python3-cryptography 38, run by
Debian's /usr/bin/python3): a new key is not checked again once OpenSSL made it, as cryptography
does from 39 on, while a key read back from a file still is when asked (staged pairs of an
interrupted run). The check costs an RSA-4096 key on OpenSSL 3 a sixth of its CPU."""

from __future__ import annotations

import json
import subprocess
import textwrap

import pytest

from tests.fixtures.collection import REPO
from tests.fixtures.compat import DEVICE_PYTHON

# Counts the backend's RSA_check_key calls around keys.py's generation and validating load.
COUNT_CHECKS = textwrap.dedent(
    """
    import json, sys
    sys.path.insert(0, sys.argv[1])
    from tests.fixtures.collection import import_source
    import_source()  # FLEET_MTLS_SOURCE (a mutant) or the repository, under the collection's name
    import cryptography
    from cryptography.hazmat.backends import default_backend
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import padding

    class Counting:
        def __init__(self, lib):
            self.lib, self.checks = lib, 0
        def __getattr__(self, name):
            if name == "RSA_check_key":
                self.checks += 1
            return getattr(self.lib, name)

    backend = default_backend()
    switch = getattr(backend, "_rsa_skip_check_key", None)
    backend._lib = counting = Counting(backend._lib)
    from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import keys
    key = keys.generate_key(2048)
    made = counting.checks
    pem = keys.private_key_pem(key)
    keys.load_private_key(pem, validate=True)
    loaded = counting.checks - made
    signature = key.sign(b"hello", padding.PKCS1v15(), hashes.SHA256())
    key.public_key().verify(signature, b"hello", padding.PKCS1v15(), hashes.SHA256())
    print(json.dumps({"version": cryptography.__version__, "switch": switch, "made": made, "loaded": loaded,
                      "switch_after": getattr(backend, "_rsa_skip_check_key", None),
                      "summary": [keys.summarize_private_key(pem).is_rsa, keys.summarize_private_key(pem).key_size]}))
    """
)


def test_a_new_key_is_not_checked_again_but_a_key_read_back_is():
    proc = subprocess.run([DEVICE_PYTHON, "-c", COUNT_CHECKS, str(REPO)],
                          capture_output=True, text=True, timeout=120, check=False)
    assert proc.returncode == 0, proc.stderr[-2000:]
    got = json.loads(proc.stdout)
    if got["switch"] is None:
        pytest.skip("the device's cryptography %s has no check to skip (< 37 or >= 39)" % got["version"])
    assert got["made"] == 0, got  # the generated key was not checked again
    assert got["loaded"] == 1, got  # a validating load still checks
    assert got["switch_after"] is False, got  # the library's own setting is restored
    assert got["summary"] == [True, 2048], got  # a sound key: our DER consistency checks pass
