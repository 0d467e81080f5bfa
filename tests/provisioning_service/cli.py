"""Command line: start both listeners (the gate's through nginx), print READY, stop cleanly on
SIGTERM/SIGINT."""

from __future__ import annotations

import argparse
import errno
import logging
import os
import pathlib
import secrets
import shutil
import signal
import sys
import tempfile
import threading

from tests.provisioning_service import SERVER_CERT_KINDS
from tests.provisioning_service.faults import FaultBook, FaultSpecError, parse_cli

TOKEN_ENV = "PROVISIONING_SERVICE_TOKEN"

DESCRIPTION = """\
Reference provisioning service for fleet-mtls: a real HTTPS registry (SQLite, WAL) and a gate
that checks client certificates as the real cloud does (nginx in front of WebSocket and
Socket.IO endpoints), standing in for the cloud side of the upstream installer. Run it from the
repository root; it needs nginx (Debian: apt-get install nginx-light). When both listeners accept
connections it prints exactly one line to stdout:

  READY api=https://127.0.0.1:PORT gate=https://127.0.0.1:GATEPORT ca=DIR/ca.crt

Logs (one line per request and per gate decision, never a request body) go to stderr.
SIGTERM or SIGINT stops it cleanly, nginx included (exit status 0); nginx also stops when the
service is killed. If nginx dies, the service stops with exit status 1.
"""

EPILOG = """\
state directory (created 0700 on first start, reused afterwards):
  ca.crt / ca.key              server-trust CA: clients verify both listeners with ca.crt
  server.key, server-*.crt     listener certificates (SAN DNS:localhost, IP:127.0.0.1;
                               wrong-host: DNS:wrong.example only; expired: expired)
  enroll-ca.crt / .key         enrollment CA signing CSRs (the issued certificate becomes the
                               ID's current one)
  registry.sqlite3             IDs (never reissued), current certificates, history,
                               enrollments, deletions
  token                        bearer token used when neither --token nor
                               $PROVISIONING_SERVICE_TOKEN is given (created 0600)
  gate.sock                    the gate app's unix socket (only nginx connects to it)
  nginx/                       nginx.conf (rewritten at every start), error.log, access.log,
                               nginx.pid, tmp/
  Private keys are EC P-256 and 0600.

API listener (server-authenticated TLS):
  GET    /generate-orchestrator-id        200 {"statusCode":200,"data":{"id":"<8 hex>",
                                           "expiresAt":"<ISO-8601 UTC>","expiresIn":<s>}}
  POST   /upload-orchestrator-certificate multipart: file (or field) "certificate", field "id"
                                          200 {"statusCode":200,"data":{"message":..,"id":..}}
  POST   /agent/certificate               JSON {"agent_id":..,"certificate":..}, Bearer token:
                                          the real cloud's shape: 200 {"message": "Certificate
                                          uploaded successfully", "agent_id": ".."}, errors
                                          {"detail": ..} (403 {"detail": "Forbidden"} without
                                          the token)
  POST   /orchestrators/enroll            multipart "csr" (+ optional "id"): the CSR's CN must
                                          be a usable ID; 200 with data.certificate (clientAuth,
                                          --enrolled-days, default 365) signed by the enrollment
                                          CA, which becomes the ID's current certificate
  DELETE /orchestrators/<id>              Bearer token: decommission (gate refuses it after)
  GET    /healthz
  GET    /_faults                         loopback only: pending faults, fired-fault counters
                                          {endpoint: {kind: n}}, requests {endpoint: n},
                                          handshake_failures {api|gate: n}, certificate_errors
                                          {gate: n}
  POST   /_faults                         loopback + Bearer: add a fault (JSON object or list)
  DELETE /_faults[?keep_counters=1]       loopback + Bearer: clear faults (and counters)

  Certificate checks (upload and /agent/certificate): the ID is reserved and unexpired, or
  already registered (rotation: last upload wins, the previous certificate goes to history);
  exactly one PEM certificate and nothing else; no private key anywhere in the body; CN == id;
  RSA >= 2048 bits; extendedKeyUsage absent or containing clientAuth; currently valid.
  Errors of the legacy endpoints are {"statusCode":<code>,"message":"<reason>"}: malformed ID
  or any certificate/body problem 400, bad token 403, unknown ID 404, expired reservation or
  decommissioned ID 410, body larger than 1 MiB 413. Like real registries, the stored PEM text
  is what was uploaded and the gate compares it textually: upload the canonical PEM
  (64-column base64, LF).

Gate listener (the real cloud's front end: nginx, ssl_verify_client optional_no_ca, TLS 1.2+):
  Any client certificate, or none, passes TLS, except an expired, not yet valid or
  wrong-purpose one: nginx answers 400 "The SSL certificate error". nginx forwards the
  presented certificate (X-SSL-Client-Cert, URL-escaped PEM) to the gate app, which accepts it
  only when it is exactly the ID's current registered certificate (CN = ID, not
  decommissioned), and accepts a client without a certificate ("development mode"):
  GET /ws          WebSocket upgrade (RFC 6455): 101 when accepted, HTTP 403 when refused;
                   404 {"detail": "Not Found"} without an upgrade
  /socket.io/      python-socketio (Engine.IO v4, polling and websocket): CONNECT answered
                   40{"sid": ..} when accepted, 44{"message":"Connection rejected by server"}
  GET /whoami      reference-only diagnostic: 200 {"id":"<CN>"} when accepted, else 403
                   (also without a certificate)
  anything else    403 {"detail": "Forbidden"} without "Authorization: Bearer <token>" (with
                   it: GET /healthz 200, otherwise 404/405 {"detail": ..})
  nginx is found as $PROVISIONING_SERVICE_NGINX, else nginx on PATH or /usr/sbin/nginx.

fault syntax (--fault, repeatable):  ENDPOINT=KIND[:ARG][:xN][:key=value]...
  or a JSON object: '{"endpoint": "...", "kind": "...", "count": N, ...}' (same as POST /_faults)
  ENDPOINT  /generate-orchestrator-id, /upload-orchestrator-certificate, /agent/certificate,
            /orchestrators/enroll, /orchestrators/<id>, /healthz, /whoami, /ws, /socket.io/,
            or * (all but /healthz and /_faults); /ws and /socket.io/ take only status, hang
            and malformed (the other kinds of a * fault skip them)
  xN        affect the next N requests (default 1); x* = until cleared
  rate=P    each request fails with probability P until cleared (or for xN fires)
  KIND[:ARG] and key=value parameters:
    status[:CODE]      answer CODE (default 500) with a JSON error; retry_after=S adds
                       Retry-After; message=TEXT sets the error message
    hang[:S]           sleep S seconds (default 30), then handle the request for real
    stall[:S]          handle for real; send headers + partial=B bytes (default half) of the
                       body, sleep S seconds (default 30), then the rest
    drop               handle for real; send headers + partial=B bytes, then close the TCP
                       connection
    malformed          200 with a body that is not JSON (body=TEXT: that body instead)
    hostile_id[:P|:V]  200 with data.id = preset P (traversal '../../etc/passwd', dn 'A/CN=evil',
                       long 10 kB, newline 'ID\\n', empty '', non_ascii) or the value V
    no_id              200 JSON without data.id
    oversized[:BYTES]  200 with a BYTES (default 2 MiB) body; length=false: no Content-Length
    accept_then_garble handle for real (the upload is stored), answer an unparseable body
    fixed_id:VALUE     /generate-orchestrator-id reserves VALUE (8 upper-case hex) for real;
                       409 if VALUE was ever reserved before
  examples:
    --fault /generate-orchestrator-id=status:503:x2:retry_after=1
    --fault /upload-orchestrator-certificate=drop
    --fault '*=hang:5'        --fault /generate-orchestrator-id=status:503:rate=0.2
    --fault /generate-orchestrator-id=hostile_id:traversal
"""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m tests.provisioning_service",
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument(
        "--state-dir",
        required=True,
        type=pathlib.Path,
        metavar="DIR",
        help="directory holding the PKI and the registry (created if missing)",
    )
    parser.add_argument("--host", default="127.0.0.1", help="address both listeners bind to (default: 127.0.0.1)")
    parser.add_argument("--port", type=int, default=0, help="API listener port; 0 picks a free port (default: 0)")
    parser.add_argument(
        "--gate-port",
        type=int,
        default=0,
        help="gate (nginx) port; 0 picks a free port (default: 0)",
    )
    parser.add_argument(
        "--token",
        default=None,
        help="bearer token for /agent/certificate, DELETE /orchestrators/<id> and "
        f"/_faults (default: ${TOKEN_ENV}, else DIR/token, created at random)",
    )
    parser.add_argument(
        "--reservation-ttl",
        type=float,
        default=600.0,
        metavar="SECONDS",
        help="lifetime of an ID reservation without a registered certificate (default: 600)",
    )
    parser.add_argument(
        "--enrolled-days",
        type=float,
        default=365.0,
        metavar="DAYS",
        help="lifetime of the certificates the enrollment CA issues (default: 365)",
    )
    parser.add_argument(
        "--fault",
        action="append",
        default=[],
        metavar="SPEC",
        help="inject a fault from the start (repeatable); syntax below",
    )
    parser.add_argument(
        "--server-cert",
        choices=SERVER_CERT_KINDS,
        default="valid",
        help="certificate both listeners serve: valid (default), expired, or "
        "wrong-host (issued for wrong.example only), all signed by ca.crt",
    )
    parser.add_argument("--quiet", action="store_true", help="log only warnings and errors")
    return parser


def _token(args: argparse.Namespace, state_dir: pathlib.Path) -> str:
    from tests.provisioning_service.pki import write_private

    if args.token:
        return args.token
    if os.environ.get(TOKEN_ENV):
        return os.environ[TOKEN_ENV]
    path = state_dir / "token"
    if not path.exists():
        write_private(path, (secrets.token_urlsafe(24) + "\n").encode("ascii"))
    return path.read_text(encoding="ascii").strip()


def _display_host(host: str) -> str:
    if host in ("0.0.0.0", ""):
        return "127.0.0.1"
    if host == "::":
        return "[::1]"
    return f"[{host}]" if ":" in host else host


def _upstream_path(state_dir: pathlib.Path) -> tuple[str, str | None]:
    """The gate app's unix socket and, when the state dir's path is too long for one (107
    bytes), the private temp dir holding it instead."""
    path = state_dir / "gate.sock"
    if len(str(path)) < 100:
        return str(path), None
    scratch = tempfile.mkdtemp(prefix="fleet-gate-")
    return os.path.join(scratch, "gate.sock"), scratch


def _spawn_gate_proxy(args: argparse.Namespace, nginx: str, cert_path: pathlib.Path, state_dir: pathlib.Path):
    """Start the gate's nginx on ``--host``:``--gate-port`` in front of the gate app's unix socket
    (bound later: nginx starts meanwhile). Returns (proxy, socket path, scratch dir or None)."""
    from tests.provisioning_service.nginx import GateProxy, bind_listener

    try:
        listener = bind_listener(args.host, args.gate_port)
    except OSError as exc:
        in_use = " (in use by another program)" if exc.errno == errno.EADDRINUSE else ""
        raise StartError(f"gate port {args.gate_port} on {args.host}: {exc.strerror}{in_use}") from None
    path, scratch = _upstream_path(state_dir)
    proxy = GateProxy(nginx, state_dir, cert_path, state_dir / "server.key", path)
    proxy.start(listener)  # before any thread exists: nginx is forked with a preexec_fn
    return proxy, path, scratch


class StartError(RuntimeError):
    """The service cannot start; the message says why."""


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.reservation_ttl <= 0:
        parser.error("--reservation-ttl must be positive")
    if args.enrolled_days <= 0:
        parser.error("--enrolled-days must be positive")
    faults = FaultBook()
    for spec in args.fault:
        try:
            faults.add(parse_cli(spec))
        except FaultSpecError as exc:
            parser.error(f"--fault {spec!r}: {exc}")
    from tests.provisioning_service.nginx import GateProxyError, find_nginx

    try:
        nginx = find_nginx()
        return _serve(args, faults, nginx)
    except (StartError, GateProxyError) as exc:
        print(f"provisioning_service: {exc}", file=sys.stderr)
        return 1


def _serve(args: argparse.Namespace, faults: FaultBook, nginx: str) -> int:
    # heavy imports only once the arguments are known to be good (fast --help and errors)
    from tests.provisioning_service.app import ApiApp
    from tests.provisioning_service.gate import GateApp
    from tests.provisioning_service.pki import ServicePKI
    from tests.provisioning_service.registry import Registry
    from tests.provisioning_service.server import TLSWSGIServer, UnixWSGIServer, server_context

    logging.basicConfig(
        stream=sys.stderr,
        level=logging.WARNING if args.quiet else logging.INFO,
        format="%(asctime)s %(name)s: %(message)s",
    )
    logging.getLogger("werkzeug").setLevel(logging.WARNING if args.quiet else logging.INFO)
    log = logging.getLogger("provisioning_service")

    state_dir = args.state_dir.resolve()
    state_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    token = _token(args, state_dir)
    pki = ServicePKI(state_dir, enrolled_days=args.enrolled_days)
    cert_path = pki.server_cert_path(args.server_cert)
    proxy, gate_socket, scratch = _spawn_gate_proxy(args, nginx, cert_path, state_dir)
    registry = Registry(state_dir / "registry.sqlite3", args.reservation_ttl)
    stopping = threading.Event()

    api_ctx = server_context(cert_path, pki.server_key_path)
    common = {"registry": registry, "pki": pki, "faults": faults, "token": token, "stopping": stopping}
    api = TLSWSGIServer(args.host, args.port, ApiApp(**common), "api", lambda: api_ctx, faults)
    gate = UnixWSGIServer(gate_socket, GateApp(**common), "gate")
    faults.watch_gate_log(proxy.new_log_events)
    proxy.wait_running()

    def request_stop(signum: int, frame: object) -> None:
        stopping.set()

    signal.signal(signal.SIGTERM, request_stop)
    signal.signal(signal.SIGINT, request_stop)

    threads = [
        threading.Thread(
            target=srv.serve_forever,
            kwargs={"poll_interval": 0.1},
            name=f"{srv.listener_name}-listener",
            daemon=True,
        )
        for srv in (api, gate)
    ]
    for thread in threads:
        thread.start()
    host = _display_host(args.host)
    print(
        f"READY api=https://{host}:{api.port} gate=https://{host}:{proxy.port} ca={pki.ca_path}",
        flush=True,
    )

    status = 0
    while not stopping.wait(0.5):
        if proxy.exit_status() is not None:  # the gate is gone: say so rather than half-serve
            log.error("nginx exited (status %s): the gate is down, stopping", proxy.exit_status())
            status = 1
            break
    log.info("stopping")
    stopping.set()
    proxy.stop()
    for srv in (api, gate):
        srv.shutdown()
    for thread in threads:
        thread.join(timeout=5)
    registry.close()
    pathlib.Path(gate_socket).unlink(missing_ok=True)
    if scratch:
        shutil.rmtree(scratch, ignore_errors=True)
    return status
