"""Run one contender as a whole process and measure it from the outside.

Wall time from spawn to exit; time to first result (the contender reports it, or a file it writes
grows past a threshold); peak memory of the whole process tree, as the sum of PSS (proportional set
size, so pages shared between forked workers are not counted twice) and the master's own RSS.
"""
from __future__ import annotations

import json
import os
import platform
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Callable

import psutil


@dataclass
class Measured:
    wall_s: float
    first_result_s: float | None
    peak_tree_pss_mb: float
    peak_master_rss_mb: float
    master_cpu_s: float
    returncode: int
    report: dict = field(default_factory=dict)  # the contender's own JSON line, if it printed one
    stderr_tail: str = ""


def _tree(proc: psutil.Process) -> list[psutil.Process]:
    try:
        return [proc] + proc.children(recursive=True)
    except psutil.Error:
        return [proc]


def run(cmd: list[str], first_result: Callable[[], bool] | None = None, env: dict | None = None,
        timeout: float = 3600, sample_every: float = 0.05) -> Measured:
    """Run ``cmd``; ``first_result()`` is polled to time the first result when given."""
    t0 = time.monotonic()
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, **(env or {})})
    ps = psutil.Process(proc.pid)
    state = {"pss": 0.0, "rss": 0.0, "cpu": 0.0, "first": None}
    out: dict[str, str] = {}

    def drain(name: str, stream) -> None:
        out[name] = stream.read()
    readers = [threading.Thread(target=drain, args=(n, s), daemon=True)
               for n, s in (("stdout", proc.stdout), ("stderr", proc.stderr))]
    for r in readers:
        r.start()
    next_pss = 0.0
    while proc.poll() is None:
        now = time.monotonic()
        if first_result is not None and state["first"] is None and first_result():
            state["first"] = now - t0
        try:
            state["rss"] = max(state["rss"], ps.memory_info().rss / 2**20)
            c = ps.cpu_times()
            state["cpu"] = c.user + c.system
        except psutil.Error:
            pass
        if now >= next_pss:  # PSS reads smaps: sample it less often
            total = 0.0
            for p in _tree(ps):
                try:
                    total += p.memory_full_info().pss / 2**20
                except psutil.Error:
                    pass
            state["pss"] = max(state["pss"], total)
            next_pss = now + 0.2
        if now - t0 > timeout:
            proc.kill()
        time.sleep(sample_every)
    wall = time.monotonic() - t0
    for r in readers:
        r.join(5)
    report = {}
    for line in reversed(out.get("stdout", "").splitlines()):
        if line.startswith("{"):
            try:
                report = json.loads(line)
                break
            except ValueError:
                pass
    first = state["first"]
    if first is None and "first_result_at" in report and "started_at" in report:
        first = None  # contender-reported times are relative to its own start; used below
    return Measured(wall_s=wall, first_result_s=first, peak_tree_pss_mb=round(state["pss"], 1),
                    peak_master_rss_mb=round(state["rss"], 1), master_cpu_s=round(state["cpu"], 3),
                    returncode=proc.returncode, report=report,
                    stderr_tail="\n".join(out.get("stderr", "").splitlines()[-5:]))


def file_has_lines(path: str, n: int = 1) -> Callable[[], bool]:
    """A first-result probe: ``path`` exists and holds at least ``n`` complete lines."""
    def probe() -> bool:
        try:
            with open(path, "rb") as fh:
                return fh.read(1 << 16).count(b"\n") >= n
        except OSError:
            return False
    return probe


def file_nonempty(path: str) -> Callable[[], bool]:
    """A first-result probe for a binary file (the run's journal): it exists and is not empty."""
    def probe() -> bool:
        try:
            return os.path.getsize(path) > 0
        except OSError:
            return False
    return probe


def replace_block(doc: str, begin: str, end: str, md: str, heading: str) -> None:
    """Put ``md`` between the ``begin`` and ``end`` marks of ``doc`` (added under ``heading`` if missing)."""
    text = open(doc).read()
    if begin not in text:
        text += f"\n## {heading}\n\n{begin}\n{end}\n"
    head, rest = text.split(begin, 1)
    with open(doc, "w") as fh:
        fh.write(f"{head}{begin}\n{md}\n{end}{rest.split(end, 1)[1]}")


def python() -> str:
    return sys.executable


def machine() -> dict:
    from compss_infer.model.session import available_cpus
    model = ""
    try:
        for line in open("/proc/cpuinfo"):
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    mem = 0
    try:
        for line in open("/proc/meminfo"):
            if line.startswith("MemTotal:"):
                mem = int(line.split()[1]) // 1024
    except OSError:
        pass
    from importlib import metadata
    tf = None
    for dist in ("tensorflow-cpu", "tensorflow"):
        try:
            tf = metadata.version(dist)
            break
        except metadata.PackageNotFoundError:
            pass
    return {"cpu": model, "cores": available_cpus(), "memory_mb": mem, "python": platform.python_version(),
            "tensorflow": tf, "os": platform.platform()}
