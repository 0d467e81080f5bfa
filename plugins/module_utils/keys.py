# -*- coding: utf-8 -*-
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)
"""The device's private key (python ``cryptography`` 3.3.2 .. 48): generating, writing,
loading, a cheap look at it for re-runs, and whether it belongs to a certificate.

Apart from ``certs`` (certificates and CSRs) so that the code that touches private key bytes
is in one short file. Nothing here returns or formats private key bytes except
``private_key_pem`` (used only to write the key file) and no exception message contains them.
Whether ``cryptography`` is importable is ``certinfo.HAS_CRYPTOGRAPHY`` (what the modules check);
each function imports it when it needs it, so a re-run's cheap look at the key never loads it.
"""
from __future__ import annotations

import contextlib
import re

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.der import (
    OCTET_STRING,
    SEQUENCE,
    read_expected,
    read_integer,
)
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.errors import CertificateError

PUBLIC_EXPONENT = 65537
MIN_KEY_SIZE = 2048
MAX_KEY_SIZE = 16384


def generate_key(key_size):
    """A new RSA key, made by OpenSSL on this device. Not checked again once made, as cryptography
    does from 39 on: 37 and 38 (Debian 12) run RSA_check_key on every key they generate: 0.26 s of
    CPU for RSA-4096 on OpenSSL 3 (one x86-64 core), a sixth of the key's whole cost."""
    if key_size < MIN_KEY_SIZE or key_size > MAX_KEY_SIZE:
        raise CertificateError(
            "key_size must be between %d and %d, got %d" % (MIN_KEY_SIZE, MAX_KEY_SIZE, key_size)
        )
    from cryptography.hazmat.backends import default_backend
    from cryptography.hazmat.primitives.asymmetric import rsa

    backend = default_backend()
    with _rsa_check_skipped(backend):
        return rsa.generate_private_key(public_exponent=PUBLIC_EXPONENT, key_size=key_size, backend=backend)


def private_key_pem(key):
    """PKCS#8 PEM, unencrypted: the bytes of client.key. Never log or return them."""
    from cryptography.hazmat.primitives import serialization

    return key.private_bytes(
        encoding=serialization.Encoding.PEM,
        format=serialization.PrivateFormat.PKCS8,
        encryption_algorithm=serialization.NoEncryption(),
    )


def load_private_key(data, validate=False):
    """Load a PEM private key.

    With ``validate=False`` the expensive RSA consistency check is skipped where the library
    allows it (cryptography >= 37; 37 and 38 through their backend's own switch): a re-run only
    needs the public numbers to compare with the certificate, and a key made in the background
    on the device (identity/prekey.py) was made by OpenSSL's generation itself. Keys the module
    creates are validated fully (``validate=True``).
    Raises CertificateError with a message that never includes key material.
    """
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.backends import default_backend
    from cryptography.hazmat.primitives import serialization

    try:
        if not validate:
            try:
                return serialization.load_pem_private_key(
                    data, password=None, backend=default_backend(),
                    unsafe_skip_rsa_key_validation=True,
                )
            except TypeError as exc:
                # cryptography < 39 has no such argument; a password-protected key also raises
                # TypeError: tell them apart by the message.
                if "unsafe_skip_rsa_key_validation" not in str(exc):
                    raise
            return _load_unchecked_before_39(data)
        return serialization.load_pem_private_key(data, password=None, backend=default_backend())
    except TypeError:
        raise CertificateError("the private key is encrypted with a passphrase") from None
    except (ValueError, UnsupportedAlgorithm):
        raise CertificateError("the private key cannot be parsed (not an unencrypted PEM key)") from None


def _load_unchecked_before_39(data):
    """Load without RSA_check_key on cryptography 37 and 38 (Debian 12: a quarter of a second of
    CPU for RSA-4096 on OpenSSL 3, more than a slow device should pay for a key it just made).
    Older versions (3.3 on Debian 11) have no switch and validate."""
    from cryptography.hazmat.backends import default_backend
    from cryptography.hazmat.primitives import serialization

    backend = default_backend()
    with _rsa_check_skipped(backend):
        return serialization.load_pem_private_key(data, password=None, backend=backend)


@contextlib.contextmanager
def _rsa_check_skipped(backend):
    """Inside, cryptography 37 and 38 skip RSA_check_key: their backend's ``_rsa_skip_check_key``,
    the switch their own tests use, restored on the way out. Versions without it are left alone
    (before 37 they validate; from 39 on, generated keys are not checked and loads take
    ``unsafe_skip_rsa_key_validation``)."""
    before = getattr(backend, "_rsa_skip_check_key", None)
    if before is None:
        yield
        return
    backend._rsa_skip_check_key = True
    try:
        yield
    finally:
        backend._rsa_skip_check_key = before


# ---- a cheap look at an RSA private key (re-runs) ---------------------------------------------
# Loading a key through OpenSSL validates it: ~0.3-3 s for RSA-4096 with cryptography < 39 on
# OpenSSL 3 (Debian 12), and the flag that skips it only exists from 39 on. A re-run only needs
# "is this an RSA key, of what size, belonging to this certificate": the DER structure answers
# that for microseconds, with the cheap consistency checks (n = p*q, e*d = 1 mod lcm(p-1, q-1),
# the CRT values); only the primality tests are left out, as with the flag.
_RSA_OID_DER = bytes.fromhex("06092a864886f70d010101")
_PEM_KEY_RE = re.compile(
    rb"-----BEGIN (RSA )?PRIVATE KEY-----\r?\n([A-Za-z0-9+/=\r\n]+)-----END (RSA )?PRIVATE KEY-----"
)


class KeySummary:
    """What a re-run needs to know about a private key; never holds private numbers."""

    def __init__(self, is_rsa, key_size, public):
        self.is_rsa = is_rsa
        self.key_size = key_size
        self.public = public  # (n, e) for RSA keys, else None


def _rsa_private_numbers(der):
    """(n, e) of a PKCS#1 RSAPrivateKey after the cheap consistency checks; ValueError if not."""
    start, end = read_expected(der, 0, SEQUENCE)
    if end != len(der):
        raise ValueError("trailing data")
    values = []
    pos = start
    for _field in range(9):
        value, pos = read_integer(der, pos)
        values.append(value)
    if pos != end:
        raise ValueError("multi-prime or malformed RSA key")
    version, n, e, d, p, q, dp, dq, qinv = values
    if version != 0 or min(n, e, d, p, q) <= 1 or p * q != n:
        raise ValueError("inconsistent RSA key")
    p1, q1 = p - 1, q - 1
    a, b = p1, q1
    while b:
        a, b = b, a % b
    lam = p1 // a * q1
    if (e * d) % lam != 1 or dp != d % p1 or dq != d % q1 or (qinv * q) % p != 1:
        raise ValueError("inconsistent RSA key")
    return n, e


def summarize_private_key(data):
    """KeySummary of a PEM private key, cheaply. Raises CertificateError when unusable."""
    match = _PEM_KEY_RE.search(data) if isinstance(data, bytes) else None
    if match:
        import base64
        import binascii

        try:
            der = base64.b64decode(b"".join(match.group(2).split()), validate=True)
            if match.group(1):  # PKCS#1
                n, e = _rsa_private_numbers(der)
            else:  # PKCS#8: SEQUENCE { INTEGER 0, SEQUENCE { OID rsaEncryption, NULL }, OCTET STRING }
                start, _end = read_expected(der, 0, SEQUENCE)
                version, pos = read_integer(der, start)
                alg_start, alg_end = read_expected(der, pos, SEQUENCE)
                if version != 0 or not der[alg_start:alg_end].startswith(_RSA_OID_DER):
                    raise LookupError("not an RSA key")
                key_start, key_end = read_expected(der, alg_end, OCTET_STRING)
                n, e = _rsa_private_numbers(der[key_start:key_end])
            return KeySummary(True, n.bit_length(), (n, e))
        except LookupError:
            pass  # another algorithm: let the library describe it
        except (ValueError, binascii.Error):
            raise CertificateError("the private key cannot be parsed (damaged RSA key)") from None
    key = load_private_key(data, validate=False)
    if is_rsa_key(key):
        numbers = key.public_key().public_numbers()
        return KeySummary(True, key.key_size, (numbers.n, numbers.e))
    return KeySummary(False, getattr(key, "key_size", None), None)


def certificate_public(cert):
    """(n, e) of an RSA certificate, else None."""
    from cryptography.hazmat.primitives.asymmetric import rsa

    pub = cert.public_key()
    if not isinstance(pub, rsa.RSAPublicKey):
        return None
    numbers = pub.public_numbers()
    return numbers.n, numbers.e


def public_numbers_of(obj):
    """Public numbers of a private key, public key or certificate (for match checks)."""
    if hasattr(obj, "public_key"):
        obj = obj.public_key()
    return obj.public_numbers()


def key_matches_certificate(key, cert):
    try:
        return public_numbers_of(key) == public_numbers_of(cert)
    except Exception:  # different key types, unsupported algorithms
        return False


def is_rsa_key(key):
    from cryptography.hazmat.primitives.asymmetric import rsa

    return isinstance(key, rsa.RSAPrivateKey)


class KeyProfile:
    """One kind of device key: its size bounds and the functions that make, write, load and
    summarize it. ``PROFILES`` is the registry; the registry contract is RSA (the cloud and the
    upstream installer use RSA-4096), so it holds RSA only."""

    def __init__(self, *, name, min_size, max_size, generate, private_pem, load, summarize, certificate_public):
        self.name = name
        self.min_size = min_size
        self.max_size = max_size
        self.generate = generate
        self.private_pem = private_pem
        self.load = load
        self.summarize = summarize
        self.certificate_public = certificate_public


PROFILES = {profile.name: profile for profile in (
    KeyProfile(name="rsa", min_size=MIN_KEY_SIZE, max_size=MAX_KEY_SIZE, generate=generate_key,
               private_pem=private_key_pem, load=load_private_key, summarize=summarize_private_key,
               certificate_public=certificate_public),
)}
