"""The script of a module run without AnsiballZ (plugin_utils/lean_run.py): what it ships of the bundle, the options
it checks on the controller, and its per-run cache (a worker per host per task: without the
cache every host paid the AST walk and the compression, about 120 ms of controller CPU)."""
from __future__ import annotations

import ast
import base64
import json
import pathlib
import re
import threading
import time
import zlib

import pytest

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.options import argument_spec
from ansible_collections.autonomy_edge.fleet_mtls.plugins.plugin_utils import lean_run

PACKAGE = lean_run.PACKAGE
PREKEY = lean_run.ENTRIES["mtls_prekey"]
RUNNER = lean_run.ENTRIES["mtls_identity"]


def shipped(script: bytes) -> tuple[dict, dict]:
    """(index, sources) the script carries."""
    text = script.decode()
    index = ast.literal_eval(re.search(r"^INDEX = (.*)$", text, re.MULTILINE).group(1))
    blob = re.search(r"^SOURCES = '([A-Za-z0-9+/=]+)'$", text, re.MULTILINE).group(1)
    return index, json.loads(zlib.decompress(base64.b64decode(blob)))


@pytest.fixture
def run_tmp(tmp_path, monkeypatch):
    """A fresh run: its local temporary directory, nothing cached in this process."""
    monkeypatch.setattr(lean_run.C, "DEFAULT_LOCAL_TMP", str(tmp_path), raising=False)
    monkeypatch.setattr(lean_run, "_SOURCES_CACHE", {})
    return tmp_path


def test_the_closure_holds_every_bundle_module_the_pass_may_import():
    found = lean_run.closure(PREKEY)
    names = set(found)
    # imported at the top, inside functions, and the packages above them
    assert {PACKAGE + ".identity.prekey", PACKAGE + ".identity.engine", PACKAGE + ".preflight",
            PACKAGE + ".headers", PACKAGE + ".identity", PACKAGE} <= names
    assert all(name.startswith(PACKAGE) for name in names)
    source, is_package, _ = found[PACKAGE + ".identity.prekey"]
    root = pathlib.Path(lean_run.module_utils.__file__).parent
    assert source == (root / "identity" / "prekey.py").read_text() and not is_package
    assert found[PACKAGE + ".identity"][1]


def test_the_script_carries_the_sources_and_the_checked_options(run_tmp):
    params, errors = lean_run.checked_options(
        argument_spec(), {"api_url": "https://api.example.com", "headers_file": "~/h.json", "key_size": 2048})
    assert errors == []
    assert argument_spec()["headers_file"]["type"] == "path"
    assert params["headers_file"] == "~/h.json"  # left for the device to expand
    assert params["keygen_timeout"] == argument_spec()["keygen_timeout"]["default"]
    script = lean_run.script("mtls_prekey", params, check_mode=True)
    index, sources = shipped(script)
    # Both runs' modules, so the device keeps one compiled copy for both (module_utils/lean_cache.py).
    bundle = {**lean_run.closure(PREKEY), **lean_run.closure(RUNNER)}
    assert sources == {name: value[0] for name, value in bundle.items()}
    assert index == {name: [value[1], value[2]] for name, value in bundle.items()}
    assert ("__import__(%r, fromlist=[\"run_lean\"]).run_lean(" % PREKEY).encode() in script
    assert lean_run.script("mtls_identity", params, check_mode=True).split(b"\nclass Bundle")[0] \
        == script.split(b"\nclass Bundle")[0]  # the same bundle, the same key
    compile(script, "lean", "exec")  # a whole Python program


def answer_of(script):
    """The ANSWER the bootstrap gives before the run, or None (the run answers itself)."""
    line = next(line for line in script.decode().splitlines() if line.startswith("ANSWER = "))
    return ast.literal_eval(line[len("ANSWER = "):])


def test_only_the_first_pass_outside_check_mode_answers_before_it_runs(run_tmp):
    params, _ = lean_run.checked_options(argument_spec(), {"api_url": "https://api.example.com"})
    answer = answer_of(lean_run.script("mtls_prekey", params, check_mode=False))
    assert json.loads(answer) == lean_run.HANDED_OVER["mtls_prekey"]
    assert b'"detached": true' in lean_run.script("mtls_prekey", params, check_mode=False)
    # check mode: the run answers itself
    assert answer_of(lean_run.script("mtls_prekey", params, check_mode=True)) is None
    assert answer_of(lean_run.script("mtls_identity", params, check_mode=False)) is None


def test_an_option_the_module_would_refuse_is_refused_on_the_controller():
    _, errors = lean_run.checked_options(argument_spec(), {"api_url": "https://x", "no_such_option": 1})
    assert errors and "no_such_option" in " ".join(errors)


def test_the_sources_are_built_once_per_run(run_tmp, monkeypatch):
    first = lean_run.bundle()
    assert [p.name for p in run_tmp.iterdir() if p.name.startswith("fleet_mtls_lean_run-")]
    monkeypatch.setattr(lean_run, "_SOURCES_CACHE", {})  # another worker of the same run

    def no_second_build(entry):
        raise AssertionError("built again")

    monkeypatch.setattr(lean_run, "closure", no_second_build)
    assert lean_run.bundle() == first


def test_a_batch_of_workers_builds_the_sources_once(run_tmp, monkeypatch):
    """A whole batch of forks asks at once: one builds, the others wait for its build (each
    worker opens the lock itself, as separate processes do)."""
    builds = []
    gate = threading.Barrier(8)

    def slow_closure(entry):
        builds.append(entry)
        time.sleep(0.2)  # long enough for every other worker to ask meanwhile
        return {PREKEY: ("x = 1\n", False, "prekey.py")}

    monkeypatch.setattr(lean_run, "closure", slow_closure)
    path = str(run_tmp / "fleet_mtls_lean_run-test")
    blobs = []

    def worker():
        gate.wait()
        blobs.append(lean_run._cached(path, [PREKEY]))

    threads = [threading.Thread(target=worker) for _ in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert builds == [PREKEY]
    assert len(blobs) == 8 and len(set(blobs)) == 1
    built = json.loads(blobs[0])
    assert built["index"] == {PREKEY: [False, "prekey.py"]}
    assert built["cache_source"] == pathlib.Path(lean_run.module_file(lean_run.CACHE_MODULE)[0]).read_text()
    assert json.loads(zlib.decompress(base64.b64decode(built["sources"]))) == {PREKEY: "x = 1\n"}


def test_a_no_log_value_never_goes_into_a_script():
    """The API headers as an argument (the actions keep them off, in a file): refused before the
    device is touched (the action object is not used)."""
    spec = argument_spec()
    assert spec["headers"]["no_log"] and lean_run.carries_secret(spec, {"headers": {"Authorization": "x"}})
    assert not lean_run.carries_secret(spec, {"headers": {}, "headers_file": "/tmp/h.json"})
    with pytest.raises(ValueError, match="not run lean"):
        lean_run.run(object(), "autonomy_edge.fleet_mtls.mtls_identity", spec,
                     {"headers": {"Authorization": "Bearer s3cr3t"}}, {})
