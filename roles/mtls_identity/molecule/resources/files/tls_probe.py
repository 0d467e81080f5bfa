#!/usr/bin/python3
"""One mutual-TLS request from the device, independent of the role's mtls_check module.

Runs inside the test containers (ansible.builtin.script, Python 3.9 .. 3.13, standard library
only). Either reads the agent TLS configuration the role templated (--config) or takes the
files directly (--cert/--key/--ca), performs the handshake and one GET, and prints JSON:

    {"result": "ok" | "refused" | "untrusted_server" | "setup" | "connection" | "error",
     "status": ..., "body": ..., "error": ..., "tls_version": ..., "config": {...}}

"refused" means the server would not accept the client certificate (TLS alert or connection
closed after the handshake, or HTTP 401/403); "setup" means the files could not be loaded, so a
broken test cannot pass for a refusal. Never prints key material. Always exits 0 (the
verifier asserts on the JSON).

    tls_probe.py --config INI --path /whoami
    tls_probe.py --cert CRT --key KEY --ca CA --url https://127.0.0.1:PORT/whoami
"""

import argparse
import configparser
import http.client
import json
import ssl
import sys
from urllib.parse import urlsplit

MIN_VERSIONS = {"TLSv1.2": ssl.TLSVersion.TLSv1_2, "TLSv1.3": ssl.TLSVersion.TLSv1_3}


def read_config(path):
    parser = configparser.ConfigParser(inline_comment_prefixes=(";", "#"))
    with open(path, encoding="utf-8") as handle:
        parser.read_file(handle)
    return {section: dict(parser.items(section)) for section in parser.sections()}


def probe(args):
    out = {"result": "error", "status": None, "body": None, "error": None, "tls_version": None, "config": None}
    try:
        if args.config:
            config = read_config(args.config)
            out["config"] = config
            server, tls, client = config["server"], config["tls"], config["client"]
            host, port = server["host"], int(server["port"])
            path = args.path
            ca = server["ca_bundle"]
            cert, key = client["cert"], client["key"]
            min_version = tls["min_version"]
            if tls["verify_mode"] != "CERT_REQUIRED" or tls["check_hostname"] != "true":
                raise ValueError("the configuration weakens verification: %s" % tls)
        else:
            url = urlsplit(args.url)
            host, port, path = url.hostname, url.port or 443, url.path or "/"
            ca, cert, key, min_version = args.ca, args.cert, args.key, "TLSv1.2"
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.minimum_version = MIN_VERSIONS[min_version]
        ctx.verify_mode = ssl.CERT_REQUIRED
        ctx.check_hostname = True
        if ca == "system":
            ctx.load_default_certs()
        else:
            ctx.load_verify_locations(cafile=ca)
        ctx.load_cert_chain(cert, key)
    except (OSError, ValueError, KeyError, configparser.Error) as exc:
        out.update(result="setup", error="%s: %s" % (type(exc).__name__, exc))
        return out

    conn = http.client.HTTPSConnection(host, port, context=ctx, timeout=args.timeout)
    try:
        conn.connect()
        out["tls_version"] = conn.sock.version()
        conn.request("GET", path, headers={"Accept": "application/json"})
        response = conn.getresponse()
        body = response.read(4096).decode("utf-8", "replace")
        out["status"] = response.status
        try:
            out["body"] = json.loads(body)
        except ValueError:
            out["body"] = body[:500]
        out["result"] = "ok" if response.status == 200 else ("refused" if response.status in (401, 403) else "error")
    except ssl.SSLCertVerificationError as exc:
        out.update(result="untrusted_server", error=str(exc))
    except (ssl.SSLError, ConnectionResetError, BrokenPipeError, http.client.RemoteDisconnected) as exc:
        out.update(result="refused", error="%s: %s" % (type(exc).__name__, exc))
    except OSError as exc:
        out.update(result="connection", error="%s: %s" % (type(exc).__name__, exc))
    finally:
        conn.close()
    return out


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", help="agent TLS configuration (INI) templated by the role")
    parser.add_argument("--path", default="/whoami", help="request path with --config")
    parser.add_argument("--url", help="URL to request with --cert/--key/--ca")
    parser.add_argument("--cert")
    parser.add_argument("--key")
    parser.add_argument("--ca")
    parser.add_argument("--timeout", type=float, default=10.0)
    args = parser.parse_args()
    if not args.config and not (args.url and args.cert and args.key and args.ca):
        parser.error("give --config, or --url with --cert, --key and --ca")
    json.dump(probe(args), sys.stdout, sort_keys=True)
    sys.stdout.write("\n")


if __name__ == "__main__":
    main()
