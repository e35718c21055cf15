"""Helpers for tests that run the PyCOMPSs stand-in (tests/pycompss_standin), in-process or via its runcompss."""
from __future__ import annotations

import os
import sys

import pytest

from pycompss_real import REAL_PYCOMPSS, requires_real  # noqa: F401 - re-exported

TESTS = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(TESTS)
SRC = os.path.join(ROOT, "src")
STANDIN = os.path.join(TESTS, "pycompss_standin")
RUNCOMPSS = os.path.join(STANDIN, "runcompss")
FAULTS = os.path.join(TESTS, "faults")

if STANDIN not in sys.path:
    sys.path.insert(0, STANDIN)  # `import pycompss` gives the stand-in in this process


def subprocess_env(home: str, *extra_path: str, **variables: str) -> dict[str, str]:
    """Environment for a child that runs the stand-in: our interpreter first on PATH, our sources first."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("COMPSS_")}
    env["PATH"] = os.pathsep.join([os.path.dirname(sys.executable), env.get("PATH", "")])
    env["PYTHONPATH"] = os.pathsep.join([*extra_path, SRC, TESTS, STANDIN])
    env["HOME"] = home  # COMPSs logs go to $HOME/.COMPSs
    env["TMPDIR"] = home  # launch scripts' work folders, the stand-in's default worker dir
    env.update(variables)
    return env


@pytest.fixture(autouse=True)
def clean_compss_env(monkeypatch):
    """The compss engine exports COMPSS_INFER_* into the master's (this process's) environment: undo it."""
    for name in ("COMPSS_INFER_CU", "COMPSS_INFER_TIME_OUT"):
        monkeypatch.delenv(name, raising=False)


@pytest.fixture
def master(tmp_path, monkeypatch):
    """Factory: make this test process a stand-in COMPSs master (stopped, busy executors killed, at teardown)."""
    from pycompss import _standin_runtime as rt
    if not os.path.isdir(REAL_PYCOMPSS):
        pytest.skip(f"the real PyCOMPSs worker code is not at {REAL_PYCOMPSS} (../shared is absent)")
    monkeypatch.setenv("TMPDIR", str(tmp_path))  # what executors leave in their temp folder stays here
    runtimes = []

    def make(cpus: int = 2, gpus: int = 0, cu: str = "1", **kw):
        if "COMPSS_INFER_CU" not in os.environ:  # what the launch scripts export before runcompss
            monkeypatch.setenv("COMPSS_INFER_CU", cu)
        aborts: list[str] = []
        runtime = rt.enter_master(cpus=cpus, gpus=gpus, working_dir=str(tmp_path / "compss-worker"),
                                  log_dir=str(tmp_path / "compss-logs"), on_abort=aborts.append, **kw)
        runtime.aborts = aborts
        runtimes.append(runtime)
        return runtime
    yield make
    for runtime in runtimes:
        runtime.stop(wait=False)
