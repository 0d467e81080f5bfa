#!/usr/bin/python
# Copyright: fleet-mtls contributors
# GNU General Public License v3.0+ (see https://www.gnu.org/licenses/gpl-3.0.txt)

from __future__ import annotations

DOCUMENTATION = r"""
---
module: mtls_check
short_description: Prove a device's mTLS identity works, exactly as its agent would use it
version_added: "1.0.0"
description:
  - Reads the agent TLS configuration written by the C(mtls_identity) role (C(agent-tls.ini)),
    builds the client C(SSLContext) the same way the agent does (C(PROTOCOL_TLS_CLIENT),
    C(CERT_REQUIRED), hostname checking, minimum TLS version from the file, the client
    certificate and key from the file, the CA bundle C(system) or a path), performs a real TLS
    handshake with the server and sends one HTTPS C(GET) to O(url).
  - Returns the agent ID (the CN of the client certificate), the HTTP status, the server's
    answer, the negotiated TLS version and cipher.
  - A failure is classified and reported with a message saying what to fix. The class is
    returned in RV(failure) - C(config), C(client_credentials), C(client_cert_expired),
    C(connection), C(timeout), C(tls_protocol), C(untrusted_server), C(hostname_mismatch),
    C(server_cert_expired), C(refused) (the server did not accept the client certificate, by a
    TLS alert, by closing the connection after the handshake, or with HTTP 401/403) or
    C(http_status) (any other unexpected status).
  - Read-only. Uses only the Python standard library (C(ssl), C(http.client)) and the bundle's
    standard-library DER reader (C(fleet_mtls.der)), so it runs where C(cryptography) is missing;
    runs on Python 3.9 or later. Never returns or logs key material.
  - The configuration must not weaken verification (C(verify_mode) other than
    C(CERT_REQUIRED), C(check_hostname) false, or C(min_version) below C(TLSv1.2)); such a file is
    refused as a C(config) failure, since the agent reading it would be exposed.
author:
  - fleet-mtls contributors
options:
  config:
    description:
      - Path on the device of the agent TLS configuration (INI) with sections C([server]),
        C([tls]) and C([client]).
    type: path
    required: true
  url:
    description:
      - HTTPS URL to request through mutual TLS, for example an endpoint that answers with the
        identity the server sees.
      - Defaults to C(https://<host>:<port>/) from the C([server]) section of O(config).
    type: str
  timeout:
    description:
      - Seconds allowed for the connection, the handshake and the answer.
    type: int
    default: 10
  status_code:
    description:
      - HTTP statuses that count as success.
    type: list
    elements: int
    default: [200]
attributes:
  check_mode:
    support: full
    description: The module never changes anything; it runs the same in check mode.
  diff_mode:
    support: none
notes:
  - The handshake and the request go to the host and port of O(url); the server certificate
    must be valid for the host name in O(url).
  - With TLS 1.3 a server that refuses the client certificate does so after the client has
    finished its side of the handshake; the refusal is then seen when reading the answer and is
    still reported as C(refused).
seealso:
  - module: mtls_identity
  - module: mtls_identity_info
"""

EXAMPLES = r"""
- name: Check the agent's mTLS identity against the gate
  mtls_check:
    config: /home/agent/.mtls/agent-tls.ini
    url: https://api.example.com/whoami
  register: mtls_check_result

- name: Show who the server says this device is
  ansible.builtin.debug:
    msg: "{{ mtls_check_result.agent_id }} via {{ mtls_check_result.tls_version }}: {{ mtls_check_result.response }}"

- name: Accept 204 as well as 200
  mtls_check:
    config: /home/agent/.mtls/agent-tls.ini
    url: https://api.example.com/heartbeat
    status_code: [200, 204]
    timeout: 5
"""

RETURN = r"""
agent_id:
  description: The agent ID, the CN of the client certificate named in the configuration.
  returned: when the configuration and the certificate could be read
  type: str
  sample: "07048933"
url:
  description: The URL requested.
  returned: always
  type: str
  sample: https://api.example.com/whoami
status:
  description: The HTTP status of the answer.
  returned: when the server answered
  type: int
  sample: 200
response:
  description:
    - The server's answer - the parsed JSON when the body is JSON of at most 4 KiB, otherwise
      the text, truncated to 1024 characters.
  returned: when the server answered
  type: raw
  sample: {"id": "07048933"}
tls_version:
  description: The negotiated TLS protocol version.
  returned: when the handshake completed
  type: str
  sample: TLSv1.3
cipher:
  description: The negotiated cipher suite.
  returned: when the handshake completed
  type: str
  sample: TLS_AES_256_GCM_SHA384
server_subject:
  description: The CN of the server certificate (empty when it has none).
  returned: when the handshake completed
  type: str
  sample: api.example.com
client_fingerprint_sha256:
  description: SHA-256 fingerprint (lower-case hex of the DER) of the client certificate presented.
  returned: when the certificate could be read
  type: str
  sample: 3f6c1a0e9d2b4c8f7a6e5d4c3b2a1908f7e6d5c4b3a29180f7e6d5c4b3a29180
client_not_after:
  description: Expiry of the client certificate (ISO 8601, UTC).
  returned: when the certificate could be read
  type: str
  sample: "2027-11-27T17:00:00+00:00"
client_days_left:
  description: Whole days until the client certificate expires.
  returned: when the certificate could be read
  type: int
  sample: 364
failure:
  description: Class of the failure.
  returned: failed
  type: str
  sample: refused
changed:
  description: Always false; the module only reads.
  returned: always
  type: bool
  sample: false
"""

import configparser
import datetime
import hashlib
import http.client
import json
import os
import re
import socket
import ssl
from urllib.parse import urlsplit

from ansible.module_utils.basic import AnsibleModule

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.der import (
    OBJECT_IDENTIFIER,
    SEQUENCE,
    SET,
    read_children,
    read_tlv,
)

RESPONSE_READ_LIMIT = 64 * 1024
RESPONSE_JSON_LIMIT = 4 * 1024
RESPONSE_TEXT_LIMIT = 1024
USER_AGENT = "fleet-mtls-check/1.0"

_TLS_VERSIONS = {
    "TLSv1.2": ssl.TLSVersion.TLSv1_2,
    "TLSv1.3": ssl.TLSVersion.TLSv1_3,
}

# OpenSSL verify codes (X509_V_ERR_*) seen when checking the server's certificate.
_VERIFY_EXPIRED = (10,)  # CERT_HAS_EXPIRED
_VERIFY_NOT_YET_VALID = (9,)  # CERT_NOT_YET_VALID
_VERIFY_HOSTNAME = (62, 64)  # HOSTNAME_MISMATCH, IP_ADDRESS_MISMATCH

# TLS alerts a server sends when it does not accept the client certificate.
_REFUSAL_ALERTS = (
    "BAD_CERTIFICATE",
    "UNKNOWN_CA",
    "CERTIFICATE_REQUIRED",
    "CERTIFICATE_UNKNOWN",
    "CERTIFICATE_REVOKED",
    "UNSUPPORTED_CERTIFICATE",
    "ACCESS_DENIED",
    "DECRYPT_ERROR",
)
_PROTOCOL_REASONS = (
    "PROTOCOL_VERSION",
    "UNSUPPORTED_PROTOCOL",
    "NO_PROTOCOLS_AVAILABLE",
    "WRONG_VERSION_NUMBER",
    "HTTP_REQUEST",
    "UNKNOWN_PROTOCOL",
    "NO_SHARED_CIPHER",
    "HANDSHAKE_FAILURE",
)

_OID_COMMON_NAME = b"\x55\x04\x03"
_PEM_CERT_RE = re.compile(
    r"-----BEGIN CERTIFICATE-----\s*([A-Za-z0-9+/=\s]+?)\s*-----END CERTIFICATE-----"
)


class CheckError(Exception):
    """A classified failure; ``kind`` is returned as ``failure``."""

    def __init__(self, kind, message, **details):
        super().__init__(message)
        self.kind = kind
        self.message = message
        self.details = details


# --------------------------------------------------------------------------- certificate


def _der_string(tag, raw):
    if tag == 0x1E:  # BMPString
        return raw.decode("utf-16-be")
    if tag == 0x1C:  # UniversalString
        return raw.decode("utf-32-be")
    if tag == 0x14:  # T61String, treated as latin-1 like OpenSSL does
        return raw.decode("latin-1")
    return raw.decode("utf-8")


def _der_time(tag, raw):
    text = raw.decode("ascii")
    if tag == 0x17:  # UTCTime YYMMDDHHMMSSZ
        year = int(text[0:2])
        year += 1900 if year >= 50 else 2000
        rest = text[2:]
    elif tag == 0x18:  # GeneralizedTime YYYYMMDDHHMMSSZ
        year = int(text[0:4])
        rest = text[4:]
    else:
        raise ValueError("unexpected time type")
    if not rest.endswith("Z") or len(rest) != 11:
        raise ValueError("unsupported time format")
    return datetime.datetime(
        year, int(rest[0:2]), int(rest[2:4]), int(rest[4:6]), int(rest[6:8]), int(rest[8:10]),
        tzinfo=datetime.timezone.utc,
    )


def _common_name(data, start, end):
    """Return the last CN of an X.501 Name (as OpenSSL's subject string shows it), or ''."""
    found = ""
    for set_tag, set_start, set_end in read_children(data, start, end):
        if set_tag != SET:
            raise ValueError("bad RDN")
        for atv_tag, atv_start, atv_end in read_children(data, set_start, set_end):
            if atv_tag != SEQUENCE:
                raise ValueError("bad attribute")
            parts = read_children(data, atv_start, atv_end)
            if len(parts) != 2 or parts[0][0] != OBJECT_IDENTIFIER:
                raise ValueError("bad attribute")
            oid = data[parts[0][1]:parts[0][2]]
            if oid == _OID_COMMON_NAME:
                found = _der_string(parts[1][0], data[parts[1][1]:parts[1][2]])
    return found


def parse_certificate(pem_text):
    """Parse the first certificate of a PEM text with the standard library only.

    Returns a dict: ``cn``, ``not_before``, ``not_after`` (aware datetimes) and
    ``fingerprint_sha256`` (lower-case hex of the DER). Raises ValueError.
    """
    match = _PEM_CERT_RE.search(pem_text)
    if not match:
        raise ValueError("no PEM certificate found")
    body = "".join(match.group(1).split())
    der = ssl.PEM_cert_to_DER_cert(
        "-----BEGIN CERTIFICATE-----\n" + body + "\n-----END CERTIFICATE-----\n"
    )
    tag, start, end = read_tlv(der, 0)
    if tag != SEQUENCE:
        raise ValueError("not a certificate")
    cert_parts = read_children(der, start, end)
    if len(cert_parts) != 3 or cert_parts[0][0] != SEQUENCE:
        raise ValueError("not a certificate")
    tbs = read_children(der, cert_parts[0][1], cert_parts[0][2])
    if tbs and tbs[0][0] == 0xA0:  # explicit version
        tbs = tbs[1:]
    # serialNumber, signature, issuer, validity, subject, ...
    if len(tbs) < 5 or tbs[3][0] != SEQUENCE or tbs[4][0] != SEQUENCE:
        raise ValueError("not a certificate")
    validity = read_children(der, tbs[3][1], tbs[3][2])
    if len(validity) != 2:
        raise ValueError("bad validity")
    return {
        "cn": _common_name(der, tbs[4][1], tbs[4][2]),
        "not_before": _der_time(validity[0][0], der[validity[0][1]:validity[0][2]]),
        "not_after": _der_time(validity[1][0], der[validity[1][1]:validity[1][2]]),
        "fingerprint_sha256": hashlib.sha256(der).hexdigest(),
    }


# --------------------------------------------------------------------------- configuration


def _truthy(value):
    return str(value).strip().lower() in ("1", "true", "yes", "on")


def read_config(path):
    """Read and validate the agent TLS configuration; return a plain dict."""
    parser = configparser.ConfigParser(inline_comment_prefixes=(";", "#"), interpolation=None)
    try:
        with open(path) as handle:
            parser.read_file(handle)
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckError(
            "config",
            "cannot read the agent TLS configuration {}: {}".format(path, getattr(exc, "strerror", None) or exc),
        )
    except configparser.Error as exc:
        raise CheckError("config", f"the agent TLS configuration {path} is not valid INI: {exc}")

    def get(section, option, default=None):
        if parser.has_option(section, option):
            value = parser.get(section, option).strip()
            if value:
                return value
        if default is None:
            raise CheckError(
                "config", f"the agent TLS configuration {path} has no [{section}] {option}"
            )
        return default

    conf = {
        "host": get("server", "host"),
        "port": get("server", "port", "443"),
        "ca_bundle": get("server", "ca_bundle", "system"),
        "min_version": get("tls", "min_version", "TLSv1.2"),
        "verify_mode": get("tls", "verify_mode", "CERT_REQUIRED"),
        "check_hostname": get("tls", "check_hostname", "true"),
        "cert": get("client", "cert"),
        "key": get("client", "key"),
        "agent_id": get("client", "agent_id", ""),
    }
    try:
        conf["port"] = int(conf["port"])
        if not 0 < conf["port"] < 65536:
            raise ValueError
    except ValueError:
        raise CheckError("config", "the agent TLS configuration {} has an invalid port {!r}".format(path, conf["port"]))
    if conf["min_version"] not in _TLS_VERSIONS:
        raise CheckError(
            "config",
            "the agent TLS configuration {} sets min_version = {}; only TLSv1.2 or TLSv1.3 are "
            "accepted".format(path, conf["min_version"]),
        )
    if conf["verify_mode"] != "CERT_REQUIRED" or not _truthy(conf["check_hostname"]):
        raise CheckError(
            "config",
            "the agent TLS configuration {} weakens server verification (verify_mode = {}, "
            "check_hostname = {}); it must be CERT_REQUIRED and true - re-run the provisioning "
            "to restore the managed file".format(path, conf["verify_mode"], conf["check_hostname"]),
        )
    for option in ("cert", "key"):
        if not os.path.isabs(conf[option]):
            raise CheckError("config", f"[client] {option} in {path} must be an absolute path")
    if conf["ca_bundle"] != "system" and not os.path.isabs(conf["ca_bundle"]):
        raise CheckError(
            "config", f"[server] ca_bundle in {path} must be 'system' or an absolute path"
        )
    return conf


def build_context(conf):
    """Build the client SSLContext the way the agent does."""
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    context.verify_mode = ssl.CERT_REQUIRED
    context.check_hostname = True
    context.minimum_version = _TLS_VERSIONS[conf["min_version"]]
    try:
        if conf["ca_bundle"] == "system":
            context.load_default_certs(ssl.Purpose.SERVER_AUTH)
        else:
            context.load_verify_locations(cafile=conf["ca_bundle"])
    except (OSError, ssl.SSLError) as exc:
        raise CheckError(
            "config",
            "cannot load the CA bundle {}: {}".format(conf["ca_bundle"], getattr(exc, "strerror", None) or exc),
        )
    try:
        context.load_cert_chain(certfile=conf["cert"], keyfile=conf["key"])
    except ssl.SSLError as exc:
        reason = getattr(exc, "reason", None) or ""
        if "KEY_VALUES_MISMATCH" in reason or "key values mismatch" in str(exc).lower():
            detail = "the private key does not belong to the certificate"
        else:
            detail = "the certificate or the private key is not valid PEM (%s)" % (reason or "unreadable")
        raise CheckError(
            "client_credentials",
            "cannot load the client credentials {} / {}: {} - re-run the provisioning to repair "
            "the identity".format(conf["cert"], conf["key"], detail),
        )
    except OSError as exc:
        raise CheckError(
            "client_credentials",
            "cannot read the client credentials {} / {}: {} (run the check as the agent's "
            "user)".format(conf["cert"], conf["key"], exc.strerror or exc),
        )
    return context


# --------------------------------------------------------------------------- network


def _target(url, conf):
    if not url:
        port = conf["port"]
        host = conf["host"]
        if ":" in host and not host.startswith("["):
            host = f"[{host}]"
        url = "https://{}{}/".format(host, "" if port == 443 else f":{port}")
    parts = urlsplit(url)
    if parts.scheme != "https" or not parts.hostname:
        raise CheckError("config", f"url must be an https:// URL, got {url!r}")
    try:
        port = parts.port or 443
    except ValueError:
        raise CheckError("config", f"url has an invalid port: {url!r}")
    path = parts.path or "/"
    if parts.query:
        path += "?" + parts.query
    return url, parts.hostname, port, path


def _summarise_response(raw, content_type):
    text = raw[:RESPONSE_READ_LIMIT].decode("utf-8", "replace")
    if len(raw) <= RESPONSE_JSON_LIMIT and ("json" in (content_type or "") or text[:1] in "{["):
        try:
            return json.loads(text)
        except ValueError:
            pass
    if len(text) > RESPONSE_TEXT_LIMIT:
        return text[:RESPONSE_TEXT_LIMIT] + "...[truncated]"
    return text


def _ssl_reason(exc):
    reason = getattr(exc, "reason", None)
    if reason:
        return str(reason)
    return str(exc)


def _classify_handshake(exc, conf, host, port, agent_id):
    where = f"{host}:{port}"
    if isinstance(exc, ssl.SSLCertVerificationError):
        code = getattr(exc, "verify_code", None)
        detail = getattr(exc, "verify_message", None) or _ssl_reason(exc)
        if code in _VERIFY_HOSTNAME:
            return CheckError(
                "hostname_mismatch",
                f"hostname mismatch: the certificate of the server at {where} is not valid for {host!r} ({detail}) - "
                "use the host name the server certificate was issued for",
            )
        if code in _VERIFY_EXPIRED:
            return CheckError(
                "server_cert_expired",
                f"server certificate expired: the server at {where} presented an expired certificate ({detail}) "
                "- the server's certificate must be renewed; the device is not at fault",
            )
        if code in _VERIFY_NOT_YET_VALID:
            return CheckError(
                "server_cert_expired",
                f"server certificate not yet valid: the server at {where} presented a certificate that is "
                f"not valid yet ({detail}) - check the device clock",
            )
        return CheckError(
            "untrusted_server",
            "untrusted server: the certificate of the server at {} is not trusted with ca_bundle = {} "
            "({}) - configure the CA that signed the server certificate".format(where, conf["ca_bundle"], detail),
        )
    reason = _ssl_reason(exc).upper()
    if "ALERT" in reason and "CERTIFICATE_EXPIRED" in reason:
        return CheckError(
            "client_cert_expired",
            f"refused by server: the server at {where} says the client certificate of agent {agent_id} has expired "
            f"({_ssl_reason(exc)}) - rotate the identity (re-run the provisioning)",
        )
    if "ALERT" in reason and any(alert in reason for alert in _REFUSAL_ALERTS):
        return _refused(where, agent_id, f"TLS alert {_ssl_reason(exc)}")
    if any(marker in reason for marker in _PROTOCOL_REASONS):
        return CheckError(
            "tls_protocol",
            "TLS negotiation with {} failed ({}): the server must speak HTTPS with TLS >= {}".format(
                where, _ssl_reason(exc), conf["min_version"]
            ),
        )
    return None


def _refused(where, agent_id, detail):
    return CheckError(
        "refused",
        f"refused by server: {where} did not accept the client certificate of agent {agent_id} ({detail}) - the "
        "certificate is not registered (or was replaced or revoked); re-run the provisioning, with "
        "rotate=always if the local identity looks valid",
    )


def _connection_error(exc, host, port, timeout):
    where = f"{host}:{port}"
    if isinstance(exc, socket.timeout):
        return CheckError("timeout", f"connection error: no answer from {where} within {timeout} s")
    if isinstance(exc, socket.gaierror):
        return CheckError(
            "connection", f"connection error: cannot resolve {host!r} ({exc.strerror or exc})"
        )
    if isinstance(exc, ConnectionRefusedError):
        return CheckError(
            "connection", f"connection error: {where} refused the connection (nothing listening?)"
        )
    return CheckError(
        "connection",
        "connection error: {}: {}".format(where, getattr(exc, "strerror", None) or exc),
    )


def run_check(config, url=None, timeout=10, status_code=(200,), now=None):
    """Run the whole check; return the result dict or raise CheckError."""
    conf = read_config(config)
    try:
        with open(conf["cert"]) as handle:
            cert = parse_certificate(handle.read())
    except (OSError, UnicodeDecodeError) as exc:
        raise CheckError(
            "client_credentials",
            "cannot read the client certificate {}: {}".format(conf["cert"], getattr(exc, "strerror", None) or exc),
        )
    except ValueError as exc:
        raise CheckError(
            "client_credentials",
            "the client certificate {} is not a valid certificate ({}) - re-run the provisioning to "
            "repair the identity".format(conf["cert"], exc),
        )
    agent_id = cert["cn"]
    now = now or datetime.datetime.now(datetime.timezone.utc)
    result = {
        "agent_id": agent_id,
        "client_fingerprint_sha256": cert["fingerprint_sha256"],
        "client_not_after": cert["not_after"].isoformat(),
        "client_days_left": int((cert["not_after"] - now).total_seconds() // 86400),
    }
    url, host, port, path = _target(url, conf)
    result["url"] = url
    if conf["agent_id"] and conf["agent_id"] != agent_id:
        raise CheckError(
            "config",
            "the agent TLS configuration {} names agent {} but the certificate {} is for {} - re-run "
            "the provisioning to rewrite the configuration".format(config, conf["agent_id"], conf["cert"], agent_id),
            **result
        )
    if cert["not_after"] <= now:
        raise CheckError(
            "client_cert_expired",
            "client certificate expired: {} (agent {}) expired on {} - rotate the identity (re-run "
            "the provisioning)".format(conf["cert"], agent_id, result["client_not_after"]),
            **result
        )
    if cert["not_before"] > now:
        raise CheckError(
            "client_cert_expired",
            "client certificate not yet valid: {} (agent {}) is valid from {} - check the device "
            "clock".format(conf["cert"], agent_id, cert["not_before"].isoformat()),
            **result
        )
    context = build_context(conf)
    where = f"{host}:{port}"
    connection = http.client.HTTPSConnection(host, port, timeout=timeout, context=context)
    try:
        # Phase 1: TCP connection and TLS handshake.
        try:
            connection.connect()
        except ssl.SSLError as exc:
            error = _classify_handshake(exc, conf, host, port, agent_id)
            if error is None:
                error = CheckError("tls_protocol", f"TLS handshake with {where} failed: {_ssl_reason(exc)}")
            error.details.update(result)
            raise error
        except (OSError, http.client.HTTPException) as exc:
            error = _connection_error(exc, host, port, timeout)
            error.details.update(result)
            raise error
        tls = connection.sock
        peer = tls.getpeercert() or {}
        result["tls_version"] = tls.version()
        result["cipher"] = (tls.cipher() or ("",))[0]
        server_cn = ""
        for rdn in peer.get("subject", ()):
            for key, value in rdn:
                if key == "commonName":
                    server_cn = value
        result["server_subject"] = server_cn
        # Phase 2: one request. With TLS 1.3 a refused client certificate shows up here.
        try:
            connection.request(
                "GET", path, headers={"Accept": "application/json", "User-Agent": USER_AGENT}
            )
            response = connection.getresponse()
            raw = response.read(RESPONSE_READ_LIMIT + 1)
        except ssl.SSLError as exc:
            error = _classify_handshake(exc, conf, host, port, agent_id)
            if error is None:
                error = _refused(where, agent_id, f"TLS error after the handshake: {_ssl_reason(exc)}")
            error.details.update(result)
            raise error
        except socket.timeout as exc:  # noqa: UP041 - not TimeoutError before Python 3.10
            error = _connection_error(exc, host, port, timeout)
            error.details.update(result)
            raise error
        except (OSError, http.client.HTTPException) as exc:
            error = _refused(
                where, agent_id, f"the server closed the connection after the handshake: {exc.__class__.__name__}"
            )
            error.details.update(result)
            raise error
    finally:
        connection.close()
    result["status"] = response.status
    result["response"] = _summarise_response(raw, response.getheader("Content-Type", ""))
    if response.status in (401, 403):
        raise CheckError(
            "refused",
            f"refused by server: {url} answered HTTP {response.status} to agent {agent_id} - "
            "certificate not registered (or replaced, or revoked); re-run the provisioning, with "
            "rotate=always if the local identity looks valid",
            **result
        )
    if response.status not in status_code:
        raise CheckError(
            "http_status",
            "unexpected HTTP status {} ({}) from {}; expected {}".format(
                response.status, response.reason, url, ", ".join(str(code) for code in status_code)
            ),
            **result
        )
    return result


def main():
    module = AnsibleModule(
        argument_spec={
            "config": {"type": "path", "required": True},
            "url": {"type": "str"},
            "timeout": {"type": "int", "default": 10},
            "status_code": {"type": "list", "elements": "int", "default": [200]},
        },
        supports_check_mode=True,
    )
    if module.params["timeout"] <= 0:
        module.fail_json(msg="timeout must be a positive number of seconds", failure="config", changed=False)
    try:
        result = run_check(
            module.params["config"],
            url=module.params["url"],
            timeout=module.params["timeout"],
            status_code=tuple(module.params["status_code"]),
        )
    except CheckError as exc:
        details = dict(exc.details)
        details.setdefault("url", module.params["url"] or "")
        module.fail_json(msg=exc.message, failure=exc.kind, changed=False, **details)
    module.exit_json(changed=False, **result)


if __name__ == "__main__":
    main()
