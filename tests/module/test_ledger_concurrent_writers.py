"""The controller's identity ledger written by several processes at once (locked rewrites,
appended records and folds): nothing lost, nothing applied twice, the file always whole JSON
(tests/unit/test_ledger.py tests records, queries and merge)."""

from __future__ import annotations

import multiprocessing
import os

from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils import ledger as ledger_mod
from ansible_collections.autonomy_edge.fleet_mtls.plugins.module_utils.ledger import Ledger, LedgerError

WRITERS, HOSTS_EACH, SHARED = 6, 15, 4


def _row(agent_id, fingerprint, action):
    return {"agent_id": agent_id, "fingerprint_sha256": fingerprint, "action": action}


def _writer(path, number, start):
    """Half the writers record as the report does (a locked rewrite), half as each host's
    action in the role does (a line appended to the pending file), and write the pending lines
    in now and then, as the role's last task does."""
    led = Ledger(path)
    write = led.record if number % 2 else led.append_status
    start.wait()
    for i in range(HOSTS_EACH):
        if write == led.append_status and i % 4 == 3:
            led.fold()
        write("w%d-h%02d" % (number, i), _row("W%d%02d" % (number, i), "%064x" % (number * 1000 + i), "created"))
        shared = "shared-%d" % (i % SHARED)
        write(shared, _row("S%d" % (i % SHARED), "%064x" % (10 ** 6 + number * 1000 + i), "rotated"))


def _folder(path, start, stop, result):
    """Writes the pending records into the ledger over and over, as each batch's ledger read
    does; every view it reads between folds has at least the events of the one before. Puts
    how many of its folds wrote records in, or what was lost."""
    led = Ledger(path)
    start.wait()
    seen, folds = {}, 0
    while not stop.is_set():
        folds += led.fold() > 0
        view = {host: len(entry["history"]) for host, entry in led.hosts().items()}
        lost = [host for host, count in seen.items() if view.get(host, 0) < count]
        if lost:
            result.put("events lost from a view: %s" % lost)
            return
        seen = view
    result.put(folds)


def _reader(path, start, stop, result):
    start.wait()
    reads = 0
    while not stop.is_set():
        try:
            with open(path) as handle:
                text = handle.read()
        except FileNotFoundError:
            continue
        try:
            ledger_mod.parse(text, path)
        except LedgerError as exc:
            result.put("broken read after %d good ones: %s" % (reads, exc))
            return
        reads += 1
    result.put(reads)


def test_concurrent_writers_lose_nothing_and_readers_always_see_a_whole_file(tmp_path):
    path = str(tmp_path / "reports" / "identity-ledger.json")
    os.makedirs(os.path.dirname(path))
    ctx = multiprocessing.get_context("fork")
    start, stop, result = ctx.Event(), ctx.Event(), ctx.Queue()
    reader = ctx.Process(target=_reader, args=(path, start, stop, result))
    folded = ctx.Queue()
    folder = ctx.Process(target=_folder, args=(path, start, stop, folded))
    writers = [ctx.Process(target=_writer, args=(path, n, start)) for n in range(WRITERS)]
    for proc in [reader, folder, *writers]:
        proc.start()
    start.set()
    for proc in writers:
        proc.join(120)
        assert proc.exitcode == 0
    stop.set()
    reader.join(30)
    folder.join(30)
    reads = result.get(timeout=10)
    assert isinstance(reads, int) and reads > 0, reads
    folds = folded.get(timeout=10)
    assert isinstance(folds, int), folds

    hosts = Ledger(path).hosts()
    own = {"w%d-h%02d" % (n, i) for n in range(WRITERS) for i in range(HOSTS_EACH)}
    assert own <= set(hosts)
    for host in own:
        assert len(hosts[host]["history"]) == 1
    # Every record of a shared host was a new certificate: each one is an event, none lost.
    total = sum(len(hosts["shared-%d" % s]["history"]) for s in range(SHARED))
    assert total == WRITERS * HOSTS_EACH
