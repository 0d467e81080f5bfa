#!/usr/bin/python3
"""One connection from the device the way the stock agent makes it, independent of the role's
modules (mtls_check, mtls_identity's own check).

Runs inside the test containers (ansible.builtin.script, Python 3.9 .. 3.13, standard library
only). Builds the context as the agent's src/tools/ssl.py does:
``ssl.create_default_context(Purpose.SERVER_AUTH)`` (OpenSSL's default store, which only
``SSL_CERT_FILE``/``SSL_CERT_DIR`` in the environment change), TLS 1.2 at least, hostname
checking, ``CERT_REQUIRED``, ``load_cert_chain(~/.mtls/client.crt, ~/.mtls/client.key)`` of
``$HOME``; then asks the gate for the WebSocket upgrade of ``/ws``, where the cloud checks the
client certificate. Prints JSON:

    {"result": "ok" | "refused" | "untrusted_server" | "setup" | "connection" | "error",
     "status": ..., "accept_ok": ..., "error": ..., "tls_version": ..., "cert": ...,
     "ssl_cert_file": ...}

"ok" is 101 with the Sec-WebSocket-Accept the key calls for; "refused" is the gate refusing
the certificate (HTTP 401/403 on the upgrade, nginx's 400, a TLS alert or a connection closed
after the handshake); "setup" means the files could not be loaded, so a broken test cannot pass
for a refusal. Never prints key material. Always exits 0 (the verifier asserts on the JSON).

    HOME=/home/agent tls_probe.py --url https://127.0.0.1:PORT --env-file ~/.mtls/agent.env
    tls_probe.py --url https://127.0.0.1:PORT --cert CRT --key KEY --ca CA
"""

import argparse
import base64
import hashlib
import json
import os
import socket
import ssl
import sys
from urllib.parse import urlsplit

WS_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"  # RFC 6455, section 1.3
TRUST_VARIABLES = ("SSL_CERT_FILE", "SSL_CERT_DIR")


def apply_env_file(path):
    """The agent's environment as docker --env-file / systemd EnvironmentFile= give it: the
    caller's trust variables dropped, the file's KEY=VALUE lines set."""
    for name in TRUST_VARIABLES:
        os.environ.pop(name, None)
    with open(path, encoding="utf-8") as handle:
        for line in handle:
            line = line.strip()
            if line and not line.startswith("#") and "=" in line:
                name, value = line.split("=", 1)
                os.environ[name.strip()] = value.strip()


def agent_context(cert, key):
    context = ssl.create_default_context(ssl.Purpose.SERVER_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(cert, key)
    context.check_hostname = True
    context.verify_mode = ssl.CERT_REQUIRED
    return context


def read_head(sock):
    data = b""
    while b"\r\n\r\n" not in data:
        chunk = sock.recv(4096)
        if not chunk:
            raise ConnectionResetError("the server closed the connection without an answer")
        data += chunk
    lines = data.split(b"\r\n\r\n", 1)[0].decode("latin-1").split("\r\n")
    headers = {}
    for line in lines[1:]:
        name, _, value = line.partition(":")
        headers[name.strip().lower()] = value.strip()
    return int(lines[0].split()[1]), headers


def upgrade(context, url, path, timeout):
    """(status, accept_ok, tls_version) of the WebSocket upgrade of ``url + path``."""
    parts = urlsplit(url)
    key = base64.b64encode(os.urandom(16)).decode("ascii")
    raw = socket.create_connection((parts.hostname, parts.port or 443), timeout=timeout)
    with context.wrap_socket(raw, server_hostname=parts.hostname) as sock:
        request = ("GET %s HTTP/1.1\r\nHost: %s\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                   "Sec-WebSocket-Key: %s\r\nSec-WebSocket-Version: 13\r\n\r\n" % (path, parts.netloc, key))
        sock.sendall(request.encode("ascii"))
        status, headers = read_head(sock)
        digest = hashlib.sha1((key + WS_GUID).encode("ascii")).digest()  # noqa: S324 - RFC 6455 says SHA-1
        accept_ok = headers.get("sec-websocket-accept") == base64.b64encode(digest).decode("ascii")
        if status == 101:
            sock.sendall(b"\x88\x80" + os.urandom(4))  # a masked close frame without payload
        return status, accept_ok, sock.version()


def probe(args):
    out = {"result": "error", "status": None, "accept_ok": None, "error": None, "tls_version": None,
           "cert": None, "ssl_cert_file": None}
    try:
        if args.env_file:
            apply_env_file(os.path.expanduser(args.env_file))
        if args.cert:
            for name in TRUST_VARIABLES:
                os.environ.pop(name, None)
            os.environ["SSL_CERT_FILE"] = args.ca
            cert, key = args.cert, args.key
        else:
            cert, key = os.path.expanduser("~/.mtls/client.crt"), os.path.expanduser("~/.mtls/client.key")
        out["cert"], out["ssl_cert_file"] = cert, os.environ.get("SSL_CERT_FILE")
        context = agent_context(cert, key)
    except (OSError, ValueError, ssl.SSLError) as exc:
        out.update(result="setup", error="%s: %s" % (type(exc).__name__, exc))
        return out
    try:
        status, accept_ok, out["tls_version"] = upgrade(context, args.url, args.path, args.timeout)
        out.update(status=status, accept_ok=accept_ok)
        if status == 101 and accept_ok:
            out["result"] = "ok"
        elif status in (400, 401, 403):
            out["result"] = "refused"
    except ssl.SSLCertVerificationError as exc:
        out.update(result="untrusted_server", error=str(exc))
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError) as exc:
        out.update(result="refused", error="%s: %s" % (type(exc).__name__, exc))
    except OSError as exc:
        out.update(result="connection", error="%s: %s" % (type(exc).__name__, exc))
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="where the agent connects, https://HOST:PORT")
    parser.add_argument("--path", default="/ws", help="the upgrade's path (default /ws)")
    parser.add_argument("--env-file", help="the agent's environment file (agent.env)")
    parser.add_argument("--cert", help="present this certificate instead of ~/.mtls/client.crt")
    parser.add_argument("--key")
    parser.add_argument("--ca", help="with --cert: the SSL_CERT_FILE to trust")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    if args.cert and not (args.key and args.ca):
        parser.error("--cert needs --key and --ca")
    json.dump(probe(args), sys.stdout, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
