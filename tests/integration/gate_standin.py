"""A stand-in for the cloud's gate, following its rules, for the agent check's acceptance tests.

Real nginx terminates TLS with ``ssl_verify_client optional_no_ca`` (any client certificate, or
none, passes TLS; an expired / not-yet-valid / wrong-purpose one gets nginx's ``400 The SSL
certificate error``) and forwards the presented PEM in ``X-SSL-Client-Cert`` to a Python app
(aiohttp + python-socketio, on a unix socket) that answers as api-service does:

- ``/ws``: HTTP ``403`` before accepting unless the presented PEM equals the registered PEM of
  its CN (and the ID is not deleted), ``101`` otherwise; no certificate -> accepted;
- ``/socket.io/``: the Socket.IO ``connect`` handler applies the same rule (``40`` / ``44``);
- every other path: ``403 {"detail": "Forbidden"}`` without ``Authorization: Bearer <key>``.

The registry is a JSON file the tests write (``GateStandIn.upload`` / ``delete``) and the app
reads on every request. The interface (``gate_url``, ``ca_path``, ``upload``, ``delete``)
mirrors ``tests.servicectl.ProvisioningService`` so the tests can be pointed at the reference
service's gate (``svc``) by swapping the fixture.

Run as a script, it is the app: ``gate_standin.py SOCKET REGISTRY API_KEY``.
"""

from __future__ import annotations

import json
import os
import pathlib
import socket
import subprocess
import sys
import time
from urllib.parse import unquote

NGINX = "/usr/sbin/nginx"
NGINX_CONF = """
daemon off;
worker_processes 1;
{user}
pid {state}/nginx.pid;
error_log {state}/error.log info;
events {{ worker_connections 64; }}
http {{
    access_log {state}/access.log;
    client_body_temp_path {state}/body;
    proxy_temp_path {state}/proxy;
    fastcgi_temp_path {state}/fastcgi;
    uwsgi_temp_path {state}/uwsgi;
    scgi_temp_path {state}/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
    server {{
        listen 127.0.0.1:{port} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_verify_client optional_no_ca;
        location / {{
            proxy_pass http://unix:{socket}:;
            proxy_http_version 1.1;
            proxy_set_header Host $host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
            proxy_set_header X-SSL-Client-Verify $ssl_client_verify;
        }}
    }}
}}
"""


class GateStandIn:
    """nginx + the gate app, on a free port of 127.0.0.1 (``gate_url``)."""

    def __init__(self, state: pathlib.Path, server_cert_key: tuple[str, str], ca_path: str, api_key: str = "k3y"):
        self.state = state
        self.ca_path = ca_path
        self.api_key = api_key
        self.registry = state / "registry.json"
        self.socket = state / "app.sock"
        self._write({"certs": {}, "deleted": []})
        for sub in ("body", "proxy", "fastcgi", "uwsgi", "scgi"):
            (state / sub).mkdir(exist_ok=True)
        self.port = _free_port()
        self.gate_url = f"https://127.0.0.1:{self.port}"
        conf = state / "nginx.conf"
        conf.write_text(NGINX_CONF.format(
            user="user root root;" if os.geteuid() == 0 else "", state=state, port=self.port,
            cert=server_cert_key[0], key=server_cert_key[1], socket=self.socket))
        self.app = subprocess.Popen([sys.executable, __file__, str(self.socket), str(self.registry), api_key],
                                    stdout=subprocess.DEVNULL, stderr=open(state / "app.log", "wb"))  # noqa: SIM115
        self.nginx = subprocess.Popen([NGINX, "-p", str(state), "-c", str(conf)],
                                      stdout=subprocess.DEVNULL, stderr=open(state / "nginx.log", "wb"))  # noqa: SIM115
        self._wait_ready()

    def _wait_ready(self, seconds=20):
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if self.socket.exists() and _listening(self.port):
                return
            if self.app.poll() is not None or self.nginx.poll() is not None:
                break
            time.sleep(0.05)
        self.stop()
        raise RuntimeError("gate stand-in did not start: %s %s" % (
            (self.state / "app.log").read_text()[-2000:], (self.state / "nginx.log").read_text()[-2000:]))

    def _read(self):
        return json.loads(self.registry.read_text())

    def _write(self, data):
        tmp = self.registry.with_suffix(".tmp")
        tmp.write_text(json.dumps(data))
        os.replace(tmp, self.registry)

    def upload(self, agent_id: str, certificate: bytes | str):
        """Register ``certificate`` (PEM) for ``agent_id``: the last upload wins."""
        data = self._read()
        data["certs"][agent_id] = certificate.decode() if isinstance(certificate, bytes) else certificate
        self._write(data)

    def delete(self, agent_id: str):
        data = self._read()
        data["deleted"].append(agent_id)
        self._write(data)

    def stop(self):
        for proc in (self.nginx, self.app):
            if proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


def _free_port():
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def _listening(port):
    try:
        socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
        return True
    except OSError:
        return False


# --------------------------------------------------------------------------- the app


def accepted(escaped_pem: str | None, registry: dict) -> bool:
    """The cloud's rule: no certificate -> accepted (development mode); otherwise the PEM must
    equal the registered PEM of its CN, and the ID must not be deleted."""
    from cryptography import x509
    from cryptography.x509.oid import NameOID

    if not escaped_pem:
        return True
    presented = unquote(escaped_pem).strip()
    try:
        cert = x509.load_pem_x509_certificate(presented.encode())
        cn = cert.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value
    except (ValueError, IndexError):
        return False
    stored = registry["certs"].get(cn)
    return cn not in registry["deleted"] and stored is not None and stored.strip() == presented


def serve(socket_path: str, registry_path: str, api_key: str):
    import socketio
    from aiohttp import web

    def registry():
        return json.loads(pathlib.Path(registry_path).read_text())

    sio = socketio.AsyncServer(async_mode="aiohttp")

    @sio.event
    async def connect(sid, environ, auth=None):
        return accepted(environ.get("HTTP_X_SSL_CLIENT_CERT"), registry())

    async def websocket(request):
        if not accepted(request.headers.get("X-SSL-Client-Cert"), registry()):
            return web.Response(status=403)
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        async for _message in ws:
            pass
        return ws

    async def plain(request):
        if request.headers.get("Authorization") != "Bearer " + api_key:
            return web.json_response({"detail": "Forbidden"}, status=403)
        return web.json_response({"ok": True})

    app = web.Application()
    sio.attach(app)
    app.router.add_get("/ws", websocket)
    app.router.add_route("*", "/{tail:.*}", plain)
    web.run_app(app, path=socket_path, print=None, handle_signals=True)


if __name__ == "__main__":
    serve(*sys.argv[1:4])
