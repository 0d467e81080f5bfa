"""The gate's TLS front end: a real nginx, configured as the real cloud's.

``ssl_verify_client optional_no_ca`` lets any client certificate (or none) through the
handshake, except an expired, not yet valid or wrong-purpose one (nginx answers ``400 The SSL
certificate error``), and hands the presented certificate to the gate app as
``X-SSL-Client-Cert: $ssl_client_escaped_cert``. The app listens on a unix socket of the state
directory that only nginx talks to.

Process handling:
- The listening socket is bound here (port 0: the kernel picks a free port, no race) and
  inherited by nginx through its ``NGINX`` variable. nginx's single-process mode crashes on
  inherited sockets (1.22), so it runs its master with one worker.
- The master gets ``PR_SET_PDEATHSIG`` = SIGTERM: if the service dies, even by SIGKILL, nginx
  shuts its worker down and exits. A normal stop sends SIGTERM and waits.
- nginx workers do not watch their master: one killed by SIGKILL leaves its worker running.
  nginx runs in a process group of its own, which ``stop`` ends once the master is gone.
- Everything nginx writes lives in ``DIR/nginx/``: nginx.conf (rewritten at every start),
  error.log (level info: failed handshakes and client-certificate errors are counted from
  it), access.log, nginx.pid, temp directories.
"""

from __future__ import annotations

import ctypes
import os
import pathlib
import re
import shutil
import signal
import socket
import subprocess
import threading
import time

NGINX_ENV = "PROVISIONING_SERVICE_NGINX"
PACKAGE = "nginx-light"
START_TIMEOUT = 10.0
STOP_TIMEOUT = 5.0
_PR_SET_PDEATHSIG = 1
_HANDSHAKE_FAILED = re.compile(rb"\[info\].* while SSL handshaking")
_CERT_ERROR = re.compile(rb"\[info\].* client SSL certificate verify error")

CONFIG = """\
# Written by the reference provisioning service at every start; do not edit.
daemon off;
master_process on;
worker_processes 1;
{user}pid {dir}/nginx.pid;
error_log {dir}/error.log info;
events {{ worker_connections 1024; }}
http {{
    access_log {dir}/access.log;
    client_body_temp_path {dir}/tmp/body;
    proxy_temp_path {dir}/tmp/proxy;
    fastcgi_temp_path {dir}/tmp/fastcgi;
    uwsgi_temp_path {dir}/tmp/uwsgi;
    scgi_temp_path {dir}/tmp/scgi;
    map $http_upgrade $connection_upgrade {{ default upgrade; "" close; }}
    server {{
        listen {listen} ssl;
        ssl_certificate {cert};
        ssl_certificate_key {key};
        ssl_protocols TLSv1.2 TLSv1.3;
        ssl_verify_client optional_no_ca;
        location / {{
            proxy_pass http://unix:{upstream}:;
            proxy_http_version 1.1;
            proxy_set_header Host $http_host;
            proxy_set_header Upgrade $http_upgrade;
            proxy_set_header Connection $connection_upgrade;
            proxy_set_header X-SSL-Client-Cert $ssl_client_escaped_cert;
            proxy_set_header X-SSL-Client-Verify $ssl_client_verify;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_buffering off;
            proxy_read_timeout 1h;
            proxy_send_timeout 1h;
        }}
    }}
}}
"""


class GateProxyError(RuntimeError):
    """nginx is missing, or did not start."""


def find_nginx() -> str:
    """The nginx binary: $PROVISIONING_SERVICE_NGINX, else nginx on PATH or in /usr/sbin."""
    wanted = os.environ.get(NGINX_ENV)
    search = os.pathsep.join([os.environ.get("PATH", ""), "/usr/sbin"])
    found = wanted or shutil.which("nginx", path=search)
    if not found or not os.access(found, os.X_OK):
        where = f"{NGINX_ENV}={wanted}" if wanted else "PATH and /usr/sbin"
        raise GateProxyError(
            f"nginx is needed for the gate listener and was not found ({where}): install the "
            f"{PACKAGE} package (apt-get install {PACKAGE}), or set {NGINX_ENV} to an nginx binary"
        )
    return found


def _dies_with(parent: int):
    """A preexec_fn (run in the child between fork and exec): SIGTERM when ``parent`` dies."""

    def arrange() -> None:
        ctypes.CDLL(None, use_errno=True).prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)
        if os.getppid() != parent:  # the service died before prctl took effect
            os._exit(1)

    return arrange


def bind_listener(host: str, port: int) -> socket.socket:
    """A listening TCP socket on host:port (port 0: a free one); OSError when it cannot bind."""
    family, kind, proto, _, address = socket.getaddrinfo(
        host, port, type=socket.SOCK_STREAM, flags=socket.AI_PASSIVE
    )[0]
    sock = socket.socket(family, kind, proto)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind(address)
        sock.listen(128)
    except BaseException:
        sock.close()
        raise
    return sock


def _listen_address(sock: socket.socket) -> str:
    host, port = sock.getsockname()[:2]
    return f"[{host}]:{port}" if sock.family == socket.AF_INET6 else f"{host}:{port}"


class GateProxy:
    """nginx in front of the gate app's unix socket ``upstream``."""

    def __init__(
        self, binary: str, state_dir: pathlib.Path, cert: pathlib.Path, key: pathlib.Path, upstream: str
    ) -> None:
        self.binary = binary
        self.dir = state_dir / "nginx"
        self.cert, self.key, self.upstream = cert, key, upstream
        self.error_log = self.dir / "error.log"
        self.pid_file = self.dir / "nginx.pid"
        self.process: subprocess.Popen[bytes] | None = None
        self.port = 0
        self._log_offset = 0
        self._log_lock = threading.Lock()

    def start(self, listener: socket.socket) -> None:
        """Start nginx on ``listener`` (closed here once nginx holds it); ``wait_running`` next."""
        self.port = listener.getsockname()[1]
        (self.dir / "tmp").mkdir(mode=0o700, parents=True, exist_ok=True)
        user = "user root;\n" if os.geteuid() == 0 else ""  # workers would drop to nobody
        conf = CONFIG.format(
            user=user, dir=self.dir, listen=_listen_address(listener),
            cert=self.cert, key=self.key, upstream=self.upstream,
        )  # fmt: skip
        (self.dir / "nginx.conf").write_text(conf, encoding="utf-8")
        self.pid_file.unlink(missing_ok=True)
        self._log_offset = self.error_log.stat().st_size if self.error_log.exists() else 0
        fd = listener.fileno()
        try:
            self.process = subprocess.Popen(
                [self.binary, "-p", str(self.dir), "-c", str(self.dir / "nginx.conf"), "-e", str(self.error_log)],
                env={"NGINX": f"{fd};", "PATH": os.environ.get("PATH", "/usr/bin:/bin")},
                stdin=subprocess.DEVNULL, pass_fds=[fd], process_group=0,
                preexec_fn=_dies_with(os.getpid()),
            )  # fmt: skip
        finally:
            listener.close()

    def wait_running(self) -> None:
        """Return once nginx serves (its pid file is written); GateProxyError if it does not."""
        assert self.process is not None
        deadline = time.monotonic() + START_TIMEOUT
        while not self._pid_written():  # nginx writes it once its configuration is in force
            if self.process.poll() is not None or time.monotonic() > deadline:
                self.stop()
                raise GateProxyError(f"nginx did not start ({self.error_log}):\n{self._log_tail()}")
            time.sleep(0.003)

    def _pid_written(self) -> bool:
        try:
            return self.pid_file.read_text(encoding="ascii") == f"{self.process.pid}\n"
        except FileNotFoundError:
            return False

    def _log_tail(self, lines: int = 10) -> str:
        try:
            text = self.error_log.read_text(encoding="utf-8", errors="replace")
        except FileNotFoundError:
            return "(no error log)"
        return "\n".join(text.splitlines()[-lines:])

    def exit_status(self) -> int | None:
        """None while nginx runs, else its exit status."""
        return None if self.process is None else self.process.poll()

    def stop(self) -> None:
        proc = self.process
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)  # fast shutdown: open WebSocket connections are cut
            try:
                proc.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=STOP_TIMEOUT)
        try:  # a worker that outlived its master still holds the group (and the port)
            os.killpg(proc.pid, signal.SIGKILL)
        except ProcessLookupError:
            pass

    def new_log_events(self) -> dict[str, int]:
        """Failed TLS handshakes and client-certificate errors logged since the last call."""
        with self._log_lock:
            try:
                with open(self.error_log, "rb") as handle:
                    handle.seek(self._log_offset)
                    data = handle.read()
            except FileNotFoundError:
                return {"handshake_failures": 0, "certificate_errors": 0}
            complete = data[: data.rfind(b"\n") + 1]  # a line being written counts next time
            self._log_offset += len(complete)
        lines = complete.splitlines()
        return {
            "handshake_failures": sum(1 for line in lines if _HANDSHAKE_FAILED.search(line)),
            "certificate_errors": sum(1 for line in lines if _CERT_ERROR.search(line)),
        }
