"""The lean runs' compiled code kept on the device (module_utils/lean_cache.py): used only when it
is whole and the user's own, written only outside check mode, and what the script does with it
(plugin_utils/lean_run.py's bootstrap, run here in this process on a bundle of its own)."""
from __future__ import annotations

import base64
import json
import os
import sys
import zlib

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import lean_cache
from ansible_collections.autonomy_edge.fleet_mtls.plugins.plugin_utils import lean_run

KEY = "0123456789abcdef0123456789abcdef"


@pytest.fixture
def home(tmp_path, monkeypatch):
    monkeypatch.setattr(lean_cache, "HOME", str(tmp_path))
    monkeypatch.setattr(sys, "dont_write_bytecode", False)
    return tmp_path


def kept_file(home, key=KEY):
    return home.joinpath(*lean_cache.DIRECTORY, lean_cache.file_name(key))


def code_of(source, name="probe.py"):
    return compile(source, name, "exec")


def run_code(code):
    namespace = {}
    exec(code, namespace)  # noqa: S102 - the code this test compiled
    return namespace


def test_code_kept_is_found_again_and_runs_the_same(home):
    assert lean_cache.load(KEY) == {}
    assert not (home / lean_cache.DIRECTORY[0]).exists()  # a miss makes nothing
    assert lean_cache.store(KEY, {}, {"a": code_of("X = 41 + 1")})
    # A later run that compiled another module adds it to what it found.
    assert lean_cache.store(KEY, lean_cache.load(KEY), {"b": code_of("Y = 'b'")})
    kept = lean_cache.load(KEY)
    assert sorted(kept) == ["a", "b"]
    assert run_code(lean_cache.code(kept, "a"))["X"] == 42
    assert run_code(lean_cache.code(kept, "b"))["Y"] == "b"
    assert lean_cache.code(kept, "missing") is None
    path = kept_file(home)
    assert path.stat().st_mode & 0o777 == 0o600
    assert path.parent.stat().st_mode & 0o777 == 0o700
    assert lean_cache.load("f" * 32) == {}  # another bundle's key


def test_what_is_not_the_users_own_is_never_read(home, tmp_path_factory):
    lean_cache.store(KEY, {}, {"a": code_of("X = 1")})
    path = kept_file(home)
    os.chmod(path, 0o644)  # another user may have written it
    assert lean_cache.load(KEY) == {}
    os.chmod(path, 0o600)
    os.link(path, home / "second-link")
    assert lean_cache.load(KEY) == {}
    os.unlink(home / "second-link")
    assert lean_cache.load(KEY)
    os.chown(path, 65534, 65534)
    assert lean_cache.load(KEY) == {}
    os.chown(path, os.geteuid(), os.getegid())
    os.chmod(path.parent, 0o750)  # a directory others may enter or write: nothing in it is trusted
    assert lean_cache.load(KEY) == {} and not lean_cache.store(KEY, {}, {"a": code_of("X = 2")})
    os.chmod(path.parent, 0o700)
    # A link at the file's name, or in place of the directory, is never followed.
    elsewhere = tmp_path_factory.mktemp("elsewhere")
    os.rename(path, elsewhere / path.name)
    os.symlink(elsewhere / path.name, path)
    assert lean_cache.load(KEY) == {}
    os.unlink(path)
    os.rename(elsewhere / path.name, path)
    os.rename(path.parent, elsewhere / "fleet-mtls")
    os.symlink(elsewhere / "fleet-mtls", path.parent)
    assert lean_cache.load(KEY) == {}
    assert not lean_cache.store(KEY, {}, {"a": code_of("X = 3")})


def test_a_torn_or_altered_file_is_not_used(home):
    lean_cache.store(KEY, {}, {"a": code_of("X = 'marker-AAAA'")})
    path = kept_file(home)
    whole = path.read_bytes()
    altered = whole.replace(b"marker-AAAA", b"marker-BBBB")  # still loads: only the CRC tells
    assert altered != whole
    for data in (altered, whole[: len(whole) // 2], whole[:-1] + bytes([whole[-1] ^ 1]), b"", b"not ours at all"):
        path.write_bytes(data)
        assert lean_cache.load(KEY) == {}, data[:40]
    path.write_bytes(lean_cache.MAGIC + b"%08x\n" % zlib.crc32(b"\x00") + b"\x00")  # a CRC-true non-dict
    assert lean_cache.load(KEY) == {}


def test_a_user_without_a_home_runs_without_kept_code(home, monkeypatch):
    monkeypatch.setattr(lean_cache, "HOME", str(home / "nonexistent"))
    assert lean_cache.load(KEY) == {}
    assert not lean_cache.store(KEY, {}, {"a": code_of("X = 1")})
    assert not lean_cache.forget()
    assert list(home.iterdir()) == []


def test_nothing_is_written_when_python_is_told_not_to(home, monkeypatch):
    monkeypatch.setattr(sys, "dont_write_bytecode", True)
    assert not lean_cache.store(KEY, {}, {"a": code_of("X = 1")})
    assert not (home / lean_cache.DIRECTORY[0]).exists()


def test_a_new_bundle_replaces_the_old_ones_for_the_same_interpreter(home):
    lean_cache.store("a" * 32, {}, {"a": code_of("X = 1")})
    directory = kept_file(home).parent
    other_python = directory / ("lean-%s-cpython-39-30912f0.code" % ("a" * 32))
    other_python.write_bytes(b"x")
    other_python.chmod(0o600)
    fresh = directory / (".%s.99999" % lean_cache.file_name("c" * 32))  # another run writing now
    stale = directory / (".%s.99998" % lean_cache.file_name("d" * 32))  # a run killed while writing
    for leftover in (fresh, stale):
        leftover.write_bytes(b"x")
    os.utime(stale, (1, 1))
    lean_cache.store("b" * 32, {}, {"a": code_of("X = 2")})
    assert sorted(p.name for p in directory.iterdir()) == sorted(
        [lean_cache.file_name("b" * 32), other_python.name, fresh.name])


# ---------------------------------------------------------------------------- the script's side
def probe_script(check_mode):
    """lean_run's script around a bundle of two modules of this test's own."""
    entry = "RUNS = []\n\ndef run_lean(request):\n    RUNS.append(request)\n"
    sources = {"probe_bundle": "", "probe_bundle.entry": entry}
    blob = base64.b64encode(zlib.compress(json.dumps(sources).encode())).decode()
    with open(lean_cache.__file__, encoding="utf-8") as handle:
        cache_source = handle.read()
    return lean_run.BOOTSTRAP % {
        "key": KEY, "index": {"probe_bundle": (True, "probe_bundle/__init__.py"),
                              "probe_bundle.entry": (False, "probe_bundle/entry.py")},
        "namespaces": (), "sources": blob, "cache_module": "probe_lean_cache",
        "cache_source": cache_source, "cache_file": "lean_cache.py", "entry": "probe_bundle.entry",
        "request": json.dumps({"check_mode": check_mode}), "check_mode": check_mode, "answer": None}


@pytest.fixture
def run_script(home, monkeypatch):
    """Run a script here as the device runs it: its finder and modules removed afterwards; the
    cache module it runs first uses this test's home."""
    monkeypatch.setattr(sys, "meta_path", list(sys.meta_path))

    def run(check_mode):
        namespace = {"__name__": "__main__"}
        script = probe_script(check_mode).replace(
            "bundle = Bundle(cache.load(KEY))", "cache.HOME = %r\nbundle = Bundle(cache.load(KEY))" % str(home))
        assert script != probe_script(check_mode)
        forget()
        exec(compile(script, "lean", "exec"), namespace)  # noqa: S102 - the script under test
        sys.meta_path.remove(namespace["bundle"])
        namespace["runs"] = sys.modules["probe_bundle.entry"].RUNS
        return namespace

    def forget():
        for name in ("probe_bundle", "probe_bundle.entry"):
            sys.modules.pop(name, None)

    yield run
    forget()


def test_the_script_keeps_its_code_outside_check_mode_and_then_reads_no_source(run_script, home):
    checked = run_script(check_mode=True)
    assert checked["bundle"].sources is not None  # compiled from the sources
    assert not (home / lean_cache.DIRECTORY[0]).exists()  # check mode writes nothing
    first = run_script(check_mode=False)
    assert first["bundle"].sources is not None
    assert sorted(first["bundle"].fresh) == ["probe_bundle", "probe_bundle.entry"]
    assert sorted(lean_cache.load(KEY)) == ["probe_bundle", "probe_bundle.entry"]
    again = run_script(check_mode=False)
    assert again["bundle"].sources is None and not again["bundle"].fresh  # every module from the kept code
    assert checked["runs"] == [{"check_mode": True}] and again["runs"] == [{"check_mode": False}]
