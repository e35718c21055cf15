"""Helpers for tests that run COMPSs: the real PyCOMPSs 3.3 binding on a fake ``compss`` extension.

``tests/compss_fake/`` plays the Java runtime only (see its modules); the binding, master and
worker, is the untouched 3.3 code from ``../shared/third_party/compss-3.3/python``.  Two ways in:

* ``tests/compss_fake/runcompss`` (``RUNCOMPSS``) runs an app as the real runcompss does, in a
  subprocess (``subprocess_env`` builds its environment);
* the ``compss_master`` fixture (conftest.py) makes this pytest process the master of one runtime
  shared by the whole session (two CPU units, one GPU slot, pinning off as the launch scripts set it, executors
  without ``-O`` as with ``--log_level=debug``): starting one costs a piper worker and, per executor,
  a task child that imports TensorFlow.  Tests that kill executors or end the run use runcompss.
"""
from __future__ import annotations

import os
import sys
import time

import pytest

from pycompss_real import REAL_PYCOMPSS, requires_real  # noqa: F401 - re-exported

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
SRC = os.path.join(ROOT, "src")
FAKE = os.path.join(TESTS, "compss_fake")
RUNCOMPSS = os.path.join(FAKE, "runcompss")
FAULTS = os.path.join(TESTS, "faults")

for _path in (REAL_PYCOMPSS, FAKE):  # `import pycompss` is the real binding; `import compss` the fake JVM
    if _path not in sys.path:
        sys.path.insert(0, _path)


def subprocess_env(home: str, *extra_path: str, **variables: str) -> dict[str, str]:
    """Environment for a child that runs runcompss: our interpreter first on PATH, our sources first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPSS_") and k != "JVM_OPTIONS_FILE"}
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([*extra_path, SRC, TESTS])
    env["HOME"] = home  # COMPSs logs go to $HOME/.COMPSs
    env["TMPDIR"] = home  # launch scripts' work folders, the worker's default working dir
    env.update(variables)
    return env


def trace(log_dir: str) -> list[dict]:
    """The fake JVM's event log (``fake_compss.jsonl``) of one run."""
    import json
    with open(os.path.join(log_dir, "fake_compss.jsonl"), encoding="utf-8") as fh:
        return [json.loads(line) for line in fh]


def run_log_dir(home: str, app: str = "compss_app.py") -> str:
    """The runcompss log folder of the (only) run of ``app`` with HOME=home."""
    return os.path.join(home, ".COMPSs", f"{app}_01")


def strays(marker: str) -> list[str]:
    """Processes (other than this one) whose command line or environment mentions ``marker``."""
    import psutil
    found = []
    for proc in psutil.process_iter(["pid", "cmdline"]):
        if proc.pid == os.getpid():
            continue
        try:
            text = " ".join(proc.info["cmdline"] or []) + " " + " ".join(proc.environ().values())
        except psutil.Error:
            continue
        if marker in text:
            found.append(f"{proc.pid} {' '.join(proc.info['cmdline'] or [])[:150]}")
    return found


def assert_no_strays(marker: str, grace: float = 5.0) -> None:
    deadline = time.monotonic() + grace
    while strays(marker) and time.monotonic() < deadline:
        time.sleep(0.2)
    assert not strays(marker), strays(marker)


TASK_ENV = ("COMPSS_INFER_CU", "COMPSS_INFER_TIME_OUT")


@pytest.fixture(autouse=True)
def clean_compss_env(monkeypatch):
    """The compss engine exports COMPSS_INFER_* into the master's (this process's) environment: undo it."""
    for name in TASK_ENV:
        monkeypatch.delenv(name, raising=False)
    yield
    for name in TASK_ENV:
        os.environ.pop(name, None)


class SharedMaster:
    """The session's runtime, as one test sees it: jobs are counted from the test's start."""

    def __init__(self, runtime):
        self.runtime = runtime
        self.tmp = runtime.environ["TMPDIR"]  # the workers' temp folder (nodeprocs tells our processes by it)
        self.first_job = len(runtime.jobs)
        self.first_task = len(runtime.tasks)

    def jobs(self):
        return self.runtime.jobs[self.first_job:]

    def tasks(self):
        return self.runtime.tasks[self.first_task:]

    def executor_pids(self):
        return self.runtime.executor_pids()


def shared_runtime(tmp_path_factory):
    """The session's runtime (conftest.py's ``_session_runtime`` fixture; imported only when used)."""
    if not os.path.isdir(REAL_PYCOMPSS):
        pytest.skip(f"the real PyCOMPSs 3.3 code is not at {REAL_PYCOMPSS} (../shared is absent)")
    import inprocess
    root = tmp_path_factory.mktemp("compss-session")
    env = {"COMPSS_INFER_CU": "1", "COMPSS_INFER_TEST_FAULTS": "1", "TMPDIR": str(root),
           "PYTHONPATH": os.pathsep.join([FAULTS, SRC, TESTS, os.environ.get("PYTHONPATH", "")])}
    runtime = inprocess.start(real_python=REAL_PYCOMPSS, log_dir=str(root / "logs"), working_dir=str(root / "worker"),
                              cpus=2, gpus=1, log_level="debug", pythonpath=os.pathsep.join([SRC, TESTS]), env=env)
    yield runtime
    runtime.cancel_all()  # a task a failed test left behind (or one that stays Blocked) must not hold the stop
    inprocess.stop()
    assert not runtime.node.left_behind, runtime.node.left_behind  # nothing outlived the worker's stop
    assert_no_strays(str(root))


def shared_master(runtime, monkeypatch):
    """This process as the COMPSs master of the shared runtime, with the task environment the launch
    scripts export (COMPSS_INFER_CU=1, which the runtime read when it started).  The task module
    reads COMPSS_INFER_TIME_OUT when it is imported, so each test imports it afresh."""
    monkeypatch.delenv("COMPSS_INFER_TIME_OUT", raising=False)
    monkeypatch.setenv("COMPSS_INFER_CU", "1")
    sys.modules.pop("compss_infer.engines.compss_tasks", None)
    yield SharedMaster(runtime)
    sys.modules.pop("compss_infer.engines.compss_tasks", None)
    for name in TASK_ENV:  # the engine exports them itself, past monkeypatch
        os.environ.pop(name, None)
