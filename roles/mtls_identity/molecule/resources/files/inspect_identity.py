#!/usr/bin/python3
"""Describe an mTLS identity directory on the device, as JSON, for the molecule verifiers.

Runs inside the test containers (ansible.builtin.script, Python 3.9 .. 3.13, cryptography
3.3.2 .. 43). Independent of the role's modules on purpose. Never prints key material: the key
file is only hashed (to compare it byte for byte before and after a run) and never parsed.

    inspect_identity.py DIR [--ca CA_PEM] [--cert EXTRA_CERT]... [--file PATH]... [--restart-log PATH]

The agent's files of the directory are described too: agent.env (and the variables it sets),
server-ca.crt, api-ca.crt, the record agent-tls.ini, and ``loaded_sha256``: the SHA-256 of
client.crt followed by server-ca.crt, what a restarted agent loads (the molecule restart
command logs the same digest, so a verifier sees which files the restart found).
"""

import argparse
import configparser
import grp
import hashlib
import json
import os
import pwd
import stat
import sys

from cryptography import x509
from cryptography.hazmat.backends import default_backend
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

EKU_NAMES = {
    ExtendedKeyUsageOID.CLIENT_AUTH.dotted_string: "clientAuth",
    ExtendedKeyUsageOID.SERVER_AUTH.dotted_string: "serverAuth",
    ExtendedKeyUsageOID.CODE_SIGNING.dotted_string: "codeSigning",
    ExtendedKeyUsageOID.EMAIL_PROTECTION.dotted_string: "emailProtection",
}
AGENT_FILES = {"env": "agent.env", "server_ca": "server-ca.crt", "api_ca": "api-ca.crt"}


def staged_names(directory):
    """Files a run stages beside the live ones (``.<name>.new``): none after a finished run."""
    return sorted(name for name in os.listdir(directory) if name.startswith(".") and name.endswith(".new"))


def env_vars(path):
    with open(path, encoding="utf-8") as handle:
        lines = [line.strip() for line in handle]
    return dict(line.split("=", 1) for line in lines if line and not line.startswith("#") and "=" in line)


def loaded_sha256(directory):
    digest = hashlib.sha256()
    for name in ("client.crt", "server-ca.crt"):
        path = os.path.join(directory, name)
        if os.path.exists(path):
            with open(path, "rb") as handle:
                digest.update(handle.read())
    return digest.hexdigest()


def file_facts(path):
    try:
        st = os.lstat(path)
    except FileNotFoundError:
        return None
    facts = {
        "path": path,
        "type": "link" if stat.S_ISLNK(st.st_mode) else ("dir" if stat.S_ISDIR(st.st_mode) else "file"),
        "mode": "%04o" % stat.S_IMODE(st.st_mode),
        "uid": st.st_uid,
        "gid": st.st_gid,
        "owner": _name(pwd.getpwuid, st.st_uid),
        "group": _name(grp.getgrgid, st.st_gid),
    }
    if stat.S_ISREG(st.st_mode):
        with open(path, "rb") as handle:
            facts["sha256"] = hashlib.sha256(handle.read()).hexdigest()
    return facts


def _name(lookup, number):
    try:
        return lookup(number)[0]
    except KeyError:
        return str(number)


def load_cert(path):
    with open(path, "rb") as handle:
        return x509.load_pem_x509_certificate(handle.read(), default_backend())


def signed_by(cert, issuer):
    """True when issuer's public key verifies cert's signature."""
    public_key = issuer.public_key()
    try:
        if isinstance(public_key, rsa.RSAPublicKey):
            public_key.verify(
                cert.signature, cert.tbs_certificate_bytes, padding.PKCS1v15(), cert.signature_hash_algorithm
            )
        elif isinstance(public_key, ec.EllipticCurvePublicKey):
            public_key.verify(cert.signature, cert.tbs_certificate_bytes, ec.ECDSA(cert.signature_hash_algorithm))
        else:
            return None
    except Exception:  # noqa: BLE001 - InvalidSignature and friends: not signed by issuer
        return False
    return True


def cn_of(name):
    values = [attr.value for attr in name.get_attributes_for_oid(NameOID.COMMON_NAME)]
    return values[0] if len(values) == 1 else None


def _not_after(cert):
    # not_valid_after_utc exists from cryptography 42 on; not_valid_after warns there.
    value = getattr(cert, "not_valid_after_utc", None)
    return value if value is not None else cert.not_valid_after


def cert_facts(path, ca=None):
    cert = load_cert(path)
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
        ekus = [EKU_NAMES.get(oid.dotted_string, oid.dotted_string) for oid in eku]
    except x509.ExtensionNotFound:
        ekus = []
    try:
        basic = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
        is_ca = basic.ca
    except x509.ExtensionNotFound:
        is_ca = None
    public_key = cert.public_key()
    facts = {
        "cn": cn_of(cert.subject),
        "subject": {attr.oid._name: attr.value for attr in cert.subject},  # noqa: SLF001
        "issuer_cn": cn_of(cert.issuer),
        "issuer_is_subject": cert.issuer == cert.subject,
        "self_signed": cert.issuer == cert.subject and bool(signed_by(cert, cert)),
        "eku": ekus,
        "is_ca": is_ca,
        "key_type": type(public_key).__name__,
        "key_size": getattr(public_key, "key_size", None),
        "fingerprint_sha256": cert.fingerprint(hashes.SHA256()).hex(),
        "serial": format(cert.serial_number, "x"),
        "not_after": _not_after(cert).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "pem_sha256": hashlib.sha256(cert.public_bytes(serialization.Encoding.PEM)).hexdigest(),
    }
    if ca is not None:
        facts["issued_by_ca"] = cert.issuer == ca.subject and bool(signed_by(cert, ca))
    return facts


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("dir")
    parser.add_argument("--ca", help="CA certificate (PEM) the client certificate should be issued by")
    parser.add_argument("--cert", action="append", default=[], help="another certificate to describe")
    parser.add_argument("--file", action="append", default=[], help="another file to describe (mode, owner, SHA-256)")
    parser.add_argument("--restart-log", help="the restart command's evidence: one line per restart")
    args = parser.parse_args()

    ca = load_cert(args.ca) if args.ca else None
    result = {
        "dir": file_facts(args.dir),
        "key": file_facts(os.path.join(args.dir, "client.key")),
        "cert": file_facts(os.path.join(args.dir, "client.crt")),
        "config": file_facts(os.path.join(args.dir, "agent-tls.ini")),
        "staged": staged_names(args.dir) if os.path.isdir(args.dir) else [],
        "listing": sorted(os.listdir(args.dir)) if os.path.isdir(args.dir) else None,
        "env_vars": None,
        "loaded_sha256": loaded_sha256(args.dir) if os.path.isdir(args.dir) else None,
        "restarts": [],
        "certificate": None,
        "config_header": None,
        "config_sections": None,
        "extra": {},
        "files": {path: file_facts(path) for path in args.file},
        "lines": None,
    }
    for name, filename in AGENT_FILES.items():
        result[name] = file_facts(os.path.join(args.dir, filename))
    if result["env"] is not None and result["env"]["type"] == "file":
        result["env_vars"] = env_vars(result["env"]["path"])
    if args.restart_log and os.path.exists(args.restart_log):
        with open(args.restart_log, encoding="utf-8") as handle:
            result["restarts"] = handle.read().splitlines()
        result["lines"] = len(result["restarts"])
    if result["config"] is not None and result["config"]["type"] == "file":
        with open(result["config"]["path"], encoding="utf-8") as handle:
            text = handle.read()
        result["config_header"] = text.splitlines()[0] if text else ""
        parser = configparser.ConfigParser(inline_comment_prefixes=(";", "#"))
        parser.read_string(text)
        result["config_sections"] = {section: dict(parser.items(section)) for section in parser.sections()}
    if result["cert"] is not None:
        result["certificate"] = cert_facts(result["cert"]["path"], ca)
    for path in args.cert:
        result["extra"][path] = dict(cert_facts(path, ca), file=file_facts(path))
    json.dump(result, sys.stdout, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
