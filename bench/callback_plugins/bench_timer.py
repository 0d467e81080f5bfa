# Benchmark-only aggregate callback: where the time of a playbook run goes, per task and host.
from __future__ import annotations

DOCUMENTATION = """
name: bench_timer
type: aggregate
short_description: Record per-task and per-host timings of a run as JSON (benchmark use only)
description:
  - Writes the file named by the environment variable C(BENCH_TIMER_OUT) at the end of the run.
  - Records for every task its wall span (first host start to last host result), the sum and
    maximum of its per-host durations, and per-host ok/changed/failed/skipped counts.
  - Records the CPU time (controller process and its reaped children, that is the workers and
    the module processes they ran) between one task start and the next as the task's cpu_s; under the
    linear strategy a task runs on all hosts before the next starts, so this is the task's
    cost on a local fleet (at each task start the callback waits up to 0.5 s for the previous
    task's workers to exit, so their CPU is charged to their own task).
  - With C(BENCH_DEVICE_UIDS), a comma list of uids (the SSH fleet's device users), the CPU of
    those users' processes (their ssh sessions, shells and modules, with what they reaped) is
    added to each task's cpu_s, because over SSH the modules do not run under the controller.
  - Records only names, times and counts; never results, arguments or variables.
requirements:
  - enabled in callbacks_enabled and found on callback_plugins
"""

import json
import multiprocessing
import os
import time

from ansible.plugins.callback import CallbackBase

_CLK_TCK = os.sysconf("SC_CLK_TCK")


class CallbackModule(CallbackBase):
    CALLBACK_VERSION = 2.0
    CALLBACK_TYPE = "aggregate"
    CALLBACK_NAME = "bench_timer"
    CALLBACK_NEEDS_ENABLED = True

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self._t0 = time.perf_counter()
        self._t0_epoch = time.time()  # the host spans' origin, to set them beside the devices' own times
        self._device_uids = frozenset(int(u) for u in os.environ.get("BENCH_DEVICE_UIDS", "").split(",") if u)
        self._tasks = []  # ordered list of task records
        self._by_uuid = {}
        self._starts = {}  # (task uuid, host) -> start time
        self._cpu_task = None  # the task the CPU since _cpu_mark is charged to
        self._cpu_mark = self._cpu()

    def _cpu(self):
        t = os.times()
        return t.user + t.system + t.children_user + t.children_system + self._device_cpu()

    def _device_cpu(self):
        """user+sys of the device users' processes, with their reaped children's."""
        total = 0
        for entry in os.listdir("/proc") if self._device_uids else ():
            if not entry.isdigit():
                continue
            try:
                if os.stat("/proc/" + entry).st_uid not in self._device_uids:
                    continue
                with open("/proc/%s/stat" % entry) as fh:
                    fields = fh.read().rsplit(")", 1)[1].split()
            except (OSError, IndexError):
                continue  # the process ended meanwhile
            total += sum(int(x) for x in fields[11:15])
        return total / _CLK_TCK

    def _charge_cpu(self, next_rec):
        # Wait for the previous task's workers to exit (they send their result just before) so
        # their CPU, and their modules', counts for their own task; bounded, it never blocks long.
        for proc in multiprocessing.active_children():
            proc.join(0.5)
        now = self._cpu()
        if self._cpu_task is not None:
            # A device session that ended takes its CPU out of the sum: never a negative charge.
            self._cpu_task["cpu_s"] += max(0.0, now - self._cpu_mark)
        self._cpu_task, self._cpu_mark = next_rec, now

    def _now(self):
        return time.perf_counter() - self._t0

    def _task(self, task):
        rec = self._by_uuid.get(task._uuid)
        if rec is None:
            rec = {
                "name": task.get_name(),
                "action": task.action,
                "start": self._now(),
                "end": None,
                "hosts": 0,
                "sum_host_s": 0.0,
                "max_host_s": 0.0,
                "changed": 0,
                "failed": 0,
                "skipped": 0,
                "cpu_s": 0.0,
            }
            self._by_uuid[task._uuid] = rec
            self._tasks.append(rec)
        return rec

    def v2_playbook_on_task_start(self, task, is_conditional):
        self._charge_cpu(self._task(task))

    def v2_playbook_on_handler_task_start(self, task):
        self._charge_cpu(self._task(task))

    def v2_runner_on_start(self, host, task):
        self._starts[(task._uuid, host.get_name())] = self._now()

    def _done(self, result, kind):
        rec = self._task(result._task)
        now = self._now()
        start = self._starts.pop((result._task._uuid, result._host.get_name()), rec["start"])
        took = now - start
        rec["end"] = now
        # Rounded as the task's own start and end are: the spans then lie within them.
        rec.setdefault("host_spans", {})[result._host.get_name()] = [round(start, 4), round(now, 4)]
        rec["hosts"] += 1
        rec["sum_host_s"] += took
        rec["max_host_s"] = max(rec["max_host_s"], took)
        if kind == "failed":
            rec["failed"] += 1
        elif kind == "skipped":
            rec["skipped"] += 1
        elif result._result.get("changed"):
            rec["changed"] += 1

    def v2_runner_on_ok(self, result, **kwargs):
        self._done(result, "ok")

    def v2_runner_on_failed(self, result, ignore_errors=False, **kwargs):
        self._done(result, "ok" if ignore_errors else "failed")

    def v2_runner_on_unreachable(self, result, **kwargs):
        self._done(result, "failed")

    def v2_runner_on_skipped(self, result, **kwargs):
        self._done(result, "skipped")

    def v2_playbook_on_stats(self, stats):
        out = os.environ.get("BENCH_TIMER_OUT")
        if not out:
            return
        self._charge_cpu(None)
        hosts = {h: stats.summarize(h) for h in sorted(stats.processed)}
        for rec in self._tasks:
            rec["span_s"] = round((rec["end"] or rec["start"]) - rec["start"], 4)
            rec["sum_host_s"] = round(rec["sum_host_s"], 4)
            rec["cpu_s"] = round(rec["cpu_s"], 4)
            rec["max_host_s"] = round(rec["max_host_s"], 4)
            rec["start"] = round(rec["start"], 4)
            rec["end"] = round(rec["end"], 4) if rec["end"] is not None else None
        with open(out, "w", encoding="utf-8") as fh:
            json.dump({"wall_s": round(self._now(), 4), "cpu_s": round(self._cpu(), 4), "tasks": self._tasks,
                       "hosts": hosts, "started_epoch": round(self._t0_epoch, 3)}, fh, indent=1)
