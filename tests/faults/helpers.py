"""Shared tools of the fault matrix: run the module for real, look at a device's files,
scan everything printed for key material.

Nothing here is a mock: the module runs in its own Python process (directly, as Ansible
would run it on a device, or through ``ansible`` itself), against the real reference
service, on real files.
"""
from __future__ import annotations

import dataclasses
import fnmatch
import functools
import hashlib
import json
import os
import pathlib
import socket
import stat
import subprocess
import time
from collections.abc import Iterable

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

REPO = pathlib.Path(__file__).resolve().parents[2]
PYTHON = REPO / ".venv" / "bin" / "python"
ANSIBLE = REPO / ".venv" / "bin" / "ansible"
INJECT = pathlib.Path(__file__).resolve().parent / "_inject"
RUN_MODULE = INJECT / "run_module.py"

KEY_NAME = "client.key"
CERT_NAME = "client.crt"
# Names the module may keep in the identity directory between runs (no secret in them).
# The lock file stays; the journal only after an unresolved ambiguous upload.
STAGED_GLOBS = (".client.key.new", ".client.crt.new", "*.new", "*.tmp", ".*.tmp*", "tmp*")
JOURNAL_GLOBS = (".mtls-pending.json", "*pending*", "*journal*")


# --------------------------------------------------------------------------- running

@dataclasses.dataclass
class ModuleResult:
    rc: int
    result: dict
    stdout: str
    stderr: str
    elapsed: float
    via: str
    rusage: dict | None = None

    @property
    def failed(self) -> bool:
        return bool(self.result.get("failed")) or self.rc != 0

    @property
    def msg(self) -> str:
        return str(self.result.get("msg", ""))

    @property
    def output(self) -> str:
        """Everything the run printed (to scan for secrets)."""
        return self.stdout + "\n" + self.stderr

    def __repr__(self) -> str:  # short, for assertion messages
        keep = {k: v for k, v in self.result.items() if k not in ("invocation", "diff")}
        return f"ModuleResult(rc={self.rc}, via={self.via}, elapsed={self.elapsed:.2f}, result={keep!r})"


def module_env(extra: dict | None = None, *, hooks: dict | None = None) -> dict:
    """Environment for a module process: fault hooks on PYTHONPATH, quiet and isolated."""
    env = dict(os.environ)
    env.pop("PYTHONPATH", None)
    env["PYTHONPATH"] = str(INJECT)
    env["PYTHONDONTWRITEBYTECODE"] = "1"
    env.setdefault("ANSIBLE_DEPRECATION_WARNINGS", "False")
    env.setdefault("ANSIBLE_NOCOLOR", "1")
    for key in ("FLEET_FAULTS_KILL", "FLEET_FAULTS_SLOWIO", "FLEET_FAULTS_UMASK", "FLEET_FAULTS_RUSAGE"):
        env.pop(key, None)
    for key, value in (hooks or {}).items():
        env[key] = str(value)
    env.update(extra or {})
    return env


def _args_file(args: dict, check: bool, workdir: pathlib.Path) -> pathlib.Path:
    workdir.mkdir(parents=True, exist_ok=True)
    payload = dict(args)
    payload["_ansible_check_mode"] = bool(check)
    payload["_ansible_diff"] = True
    payload.setdefault("_ansible_remote_tmp", str(workdir / "remote_tmp"))
    fd_path = workdir / f"args-{time.monotonic_ns()}.json"
    fd_path.write_text(json.dumps({"ANSIBLE_MODULE_ARGS": payload}))
    return fd_path


def start_module(args: dict, *, workdir: pathlib.Path, check: bool = False, hooks: dict | None = None,
                 env: dict | None = None) -> subprocess.Popen:
    """Start the module (direct) in its own process; the caller waits or kills it."""
    argfile = _args_file(args, check, workdir)
    return subprocess.Popen(
        [str(PYTHON), str(RUN_MODULE), str(argfile)],
        cwd=str(REPO), env=module_env(env, hooks=hooks),
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )


def wait_for(predicate, timeout: float = 30.0, what: str = "condition") -> None:
    """Poll ``predicate`` (a service counter, a file, a lock) until it holds."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out waiting for {what}")


def finish(proc: subprocess.Popen, started: float, timeout: float = 180) -> ModuleResult:
    out, err = proc.communicate(timeout=timeout)
    return ModuleResult(proc.returncode, _parse_direct(out), out, err, time.monotonic() - started, "direct")


def _parse_direct(out: str) -> dict:
    text = out.strip()
    if not text:
        return {}
    start = text.find("{")
    try:
        obj, _ = json.JSONDecoder().raw_decode(text[start:])
        return obj
    except ValueError:
        return {"_unparsed": text}


def run_module(args: dict, *, workdir: pathlib.Path, check: bool = False, via: str | None = None,
               hooks: dict | None = None, env: dict | None = None, verbosity: int = 0,
               timeout: float = 180) -> ModuleResult:
    """Run mtls_identity once and return its result.

    via="direct": the module's main() in its own Python process (as on a device).
    via="ansible": ``ansible localhost -m mtls_identity`` with the repo's ansible.cfg.
    FLEET_FAULTS_VIA=ansible in the environment runs every matrix case through Ansible.
    """
    via = via or os.environ.get("FLEET_FAULTS_VIA", "direct")
    started = time.monotonic()
    if via == "direct":
        proc = start_module(args, workdir=workdir, check=check, hooks=hooks, env=env)
        try:
            return finish(proc, started, timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.communicate()
            raise
    return run_ansible_module(args, workdir=workdir, check=check, hooks=hooks, env=env,
                              verbosity=verbosity, timeout=timeout)


def ansible_env(workdir: pathlib.Path, extra: dict | None = None, hooks: dict | None = None) -> dict:
    home = workdir / "ansible-home"
    env = module_env(extra, hooks=hooks)
    env.setdefault("ANSIBLE_HOME", str(home))
    env.setdefault("ANSIBLE_LOCAL_TEMP", str(home / "tmp"))
    env.setdefault("ANSIBLE_REMOTE_TEMP", str(home / "remote_tmp"))
    env.setdefault("ANSIBLE_CONFIG", str(REPO / "ansible.cfg"))
    return env


def run_ansible_module(args: dict, *, workdir: pathlib.Path, check: bool = False, hooks: dict | None = None,
                       env: dict | None = None, verbosity: int = 0, timeout: float = 180,
                       module: str = "mtls_identity") -> ModuleResult:
    cmd = [str(ANSIBLE), "localhost", "-i", "localhost,", "-c", "local",
           "-e", f"ansible_python_interpreter={PYTHON}", "-m", module, "-a", json.dumps(args)]
    if check:
        cmd.append("--check")
    cmd.append("--diff")
    if verbosity:
        cmd.append("-" + "v" * verbosity)
    started = time.monotonic()
    proc = subprocess.run(cmd, cwd=str(REPO), env=ansible_env(workdir, env, hooks), capture_output=True,
                          text=True, timeout=timeout)
    return ModuleResult(proc.returncode, parse_adhoc(proc.stdout), proc.stdout, proc.stderr,
                        time.monotonic() - started, "ansible")


def parse_adhoc(out: str) -> dict:
    """Pick the host's result out of ``ansible`` ad-hoc output (``host | STATUS => {...}``)."""
    for line_start in _find_all(out, "localhost | "):
        arrow = out.find("=> ", line_start)
        if arrow < 0:
            continue
        try:
            obj, _ = json.JSONDecoder().raw_decode(out[arrow + 3:])
        except ValueError:
            continue
        if isinstance(obj, dict):
            if "| FAILED" in out[line_start:arrow] or "| UNREACHABLE" in out[line_start:arrow]:
                obj.setdefault("failed", True)
            return obj
    return {"_unparsed": out[-2000:]}


def _find_all(text: str, needle: str) -> Iterable[int]:
    pos = text.find(needle)
    while pos >= 0:
        yield pos
        pos = text.find(needle, pos + 1)


# --------------------------------------------------------------------------- device files

@dataclasses.dataclass(frozen=True)
class FileState:
    kind: str  # file, dir, link, other
    mode: int
    uid: int
    gid: int
    digest: str  # sha256 of content (file), target (link)


def file_state(path: pathlib.Path) -> FileState:
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        return FileState("link", 0, st.st_uid, st.st_gid, os.readlink(path))
    if stat.S_ISDIR(st.st_mode):
        return FileState("dir", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, "")
    if stat.S_ISREG(st.st_mode):
        return FileState("file", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid,
                         hashlib.sha256(path.read_bytes()).hexdigest())
    return FileState("other", stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid, "")


def snapshot(root: pathlib.Path, *, ignore: Iterable[str] = ()) -> dict[str, FileState]:
    """Every path under root (not following links) with type, mode, owner and content hash."""
    ignore = tuple(ignore)
    out: dict[str, FileState] = {}
    if not os.path.lexists(root):
        return out
    out["."] = file_state(root)
    if os.path.islink(root):
        return out
    for dirpath, dirnames, filenames in os.walk(root):
        for name in dirnames + filenames:
            full = pathlib.Path(dirpath, name)
            rel = str(full.relative_to(root))
            if any(fnmatch.fnmatch(rel, pat) or rel.startswith(pat.rstrip("*")) for pat in ignore):
                continue
            out[rel] = file_state(full)
    return out


def diff_snapshots(before: dict[str, FileState], after: dict[str, FileState]) -> dict[str, tuple]:
    changed = {}
    for name in sorted(set(before) | set(after)):
        if before.get(name) != after.get(name):
            changed[name] = (before.get(name), after.get(name))
    return changed


def leftovers(directory: pathlib.Path, *, allow_journal: bool = False) -> list[str]:
    """Staged/temporary files the module left behind (and the journal unless allowed)."""
    if not directory.is_dir():
        return []
    found = []
    for name in os.listdir(directory):
        if name in (KEY_NAME, CERT_NAME):
            continue
        if any(fnmatch.fnmatch(name, g) for g in STAGED_GLOBS):
            found.append(name)
        elif not allow_journal and any(fnmatch.fnmatch(name, g) for g in JOURNAL_GLOBS):
            found.append(name)
    return sorted(found)


def journal_files(directory: pathlib.Path) -> list[str]:
    if not directory.is_dir():
        return []
    return sorted(n for n in os.listdir(directory) if any(fnmatch.fnmatch(n, g) for g in JOURNAL_GLOBS))


# --------------------------------------------------------------------------- crypto

def load_cert(path: pathlib.Path) -> x509.Certificate:
    return x509.load_pem_x509_certificate(pathlib.Path(path).read_bytes())


def cert_cn(path: pathlib.Path) -> str:
    return load_cert(path).subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value


def cert_fingerprint(path: pathlib.Path) -> str:
    return load_cert(path).fingerprint(hashes.SHA256()).hex()


def new_key(bits: int = 2048) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def key_pem(key: rsa.RSAPrivateKey) -> bytes:
    return key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                             serialization.NoEncryption())


def self_signed(key: rsa.RSAPrivateKey, cn: str, *, days: int = 365, not_before_days: int = 0,
                client_auth: bool = True) -> bytes:
    """A device certificate in the module's profile and default subject (so the module sees
    nothing to change), to set device states up quickly."""
    import datetime

    now = datetime.datetime.now(datetime.UTC)
    start = now + datetime.timedelta(days=not_before_days) - datetime.timedelta(minutes=5)
    name = x509.Name([
        x509.NameAttribute(NameOID.COUNTRY_NAME, "BR"),
        x509.NameAttribute(NameOID.STATE_OR_PROVINCE_NAME, "SP"),
        x509.NameAttribute(NameOID.LOCALITY_NAME, "SaoPaulo"),
        x509.NameAttribute(NameOID.ORGANIZATION_NAME, "AutonomyLogic"),
        x509.NameAttribute(NameOID.ORGANIZATIONAL_UNIT_NAME, "Development"),
        x509.NameAttribute(NameOID.COMMON_NAME, cn),
    ])
    builder = (
        x509.CertificateBuilder().subject_name(name).issuer_name(name).public_key(key.public_key())
        .serial_number(x509.random_serial_number()).not_valid_before(start)
        .not_valid_after(start + datetime.timedelta(days=days))
        .add_extension(x509.BasicConstraints(ca=False, path_length=None), critical=True)
        .add_extension(x509.KeyUsage(True, False, True, False, False, False, False, False, False), critical=True)
    )
    if client_auth:
        builder = builder.add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.CLIENT_AUTH]), critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.PEM)


def write_identity(directory: pathlib.Path, key_bytes: bytes, cert_bytes: bytes) -> None:
    directory.mkdir(mode=0o700, parents=True, exist_ok=True)
    os.chmod(directory, 0o700)
    fd = os.open(directory / KEY_NAME, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as handle:
        handle.write(key_bytes)
    (directory / CERT_NAME).write_bytes(cert_bytes)
    os.chmod(directory / CERT_NAME, 0o644)


# --------------------------------------------------------------------------- secrets

SECRET_MARKERS = ("PRIVATE KEY",)


@functools.lru_cache(maxsize=256)
def key_fragments(key_bytes: bytes) -> tuple[str, ...]:
    """Recognisable pieces of a private key in every form it could leak in: each base64
    line of its PEM (PKCS#8 and traditional), and the private numbers in hex and decimal."""
    key = serialization.load_pem_private_key(key_bytes, password=None)
    frags: set[str] = set()
    for fmt in (serialization.PrivateFormat.PKCS8, serialization.PrivateFormat.TraditionalOpenSSL):
        pem = key.private_bytes(serialization.Encoding.PEM, fmt, serialization.NoEncryption()).decode()
        for line in pem.splitlines():
            if line and not line.startswith("-----") and len(line) >= 40:
                frags.add(line)
    for line in key_bytes.decode(errors="replace").splitlines():
        if line and not line.startswith("-----") and len(line) >= 40:
            frags.add(line)
    numbers = key.private_numbers()
    for value in (numbers.d, numbers.p, numbers.q):
        frags.add(format(value, "x")[:48])
        frags.add(format(value, "X")[:48])
        frags.add(str(value)[:48])
    der = key.private_bytes(serialization.Encoding.DER, serialization.PrivateFormat.PKCS8,
                            serialization.NoEncryption())
    frags.add(der.hex()[256:320])
    return tuple(sorted(frags))


def find_secrets(text: str | bytes, *, keys: Iterable[bytes] = (), tokens: Iterable[str] = ()) -> list[str]:
    """What secret material text contains, described without repeating it."""
    if isinstance(text, bytes):
        text = text.decode("utf-8", errors="replace")
    problems = [f"marker {m!r}" for m in SECRET_MARKERS if m in text]
    for index, key_bytes in enumerate(keys):
        frags = key_fragments(key_bytes)
        hits = [f for f in frags if f in text]
        # JSON output escapes "/" in base64 lines only when asked; check that form as well
        hits += [f for f in frags if "/" in f and f.replace("/", "\\/") in text]
        if hits:
            problems.append(f"{len(hits)} fragment(s) of device key #{index}")
    for token in tokens:
        if token and token in text:
            problems.append("the API token")
    return problems


def assert_no_secrets(text: str | bytes, *, keys: Iterable[bytes] = (), tokens: Iterable[str] = (),
                      where: str = "output") -> None:
    problems = find_secrets(text, keys=keys, tokens=tokens)
    assert not problems, f"secret material in {where}: {', '.join(problems)}"


def device_keys(*dirs: pathlib.Path) -> list[bytes]:
    """Every readable private key currently in the given identity directories."""
    keys = []
    for directory in dirs:
        for name in (KEY_NAME, ".client.key.new"):
            path = pathlib.Path(directory) / name
            if path.is_file() and not path.is_symlink():
                data = path.read_bytes()
                if b"PRIVATE KEY" in data:
                    try:
                        key_fragments(data)
                    except ValueError:
                        continue
                    keys.append(data)
    return keys


# --------------------------------------------------------------------------- network

def closed_port() -> int:
    """A loopback port nobody listens on (bound, then released)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class BlackholeListener:
    """A loopback listener whose accept queue is full and never drained: a new connection
    attempt gets no SYN-ACK, so the client's connect times out (the connect-timeout case)."""

    def __init__(self) -> None:
        self.server = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        self.server.bind(("127.0.0.1", 0))
        self.server.listen(0)
        self.port = self.server.getsockname()[1]
        self.fillers: list[socket.socket] = []
        # Fill the accept queue (backlog 0 holds one or two) until a connect stalls.
        for _ in range(8):
            sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
            sock.settimeout(0.3)
            try:
                sock.connect(("127.0.0.1", self.port))
            except (TimeoutError, OSError):
                sock.close()
                break
            self.fillers.append(sock)

    def close(self) -> None:
        for sock in self.fillers:
            sock.close()
        self.server.close()


class TrickleServer:
    """A loopback HTTPS server (the reference service's own certificate, so verification
    stays on) that answers 200 with ``body`` one byte every ``interval`` seconds: each read
    completes within any per-read timeout, the whole answer takes len(body) * interval."""

    def __init__(self, state_dir: pathlib.Path, body: bytes, interval: float) -> None:
        import http.server
        import ssl
        import threading

        outer = self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):  # noqa: N802 - http.server naming
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                for i in range(len(body)):
                    if outer.stopping.wait(interval):
                        return
                    try:
                        self.wfile.write(body[i:i + 1])
                        self.wfile.flush()
                    except OSError:
                        return

            do_POST = do_GET  # noqa: N815

            def log_message(self, *args):
                pass

        self.stopping = threading.Event()
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(str(state_dir / "server-valid.crt"), str(state_dir / "server.key"))
        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.server.daemon_threads = True
        self.server.socket = ctx.wrap_socket(self.server.socket, server_side=True)
        self.url = f"https://127.0.0.1:{self.server.server_address[1]}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def close(self) -> None:
        self.stopping.set()
        self.server.shutdown()
        self.server.server_close()
