"""Task functions for the stand-in's own tests (executors import this module by name)."""
from __future__ import annotations

import os
import signal
import time

from pycompss.api.constraint import constraint
from pycompss.api.on_failure import on_failure
from pycompss.api.parameter import FILE_IN
from pycompss.api.task import task

CALLS = 0  # per executor process: proves module globals persist across tasks


@task(returns=1, on_failure="IGNORE")
def where():
    """Facts about the executor and the task's environment."""
    global CALLS
    CALLS += 1
    return {"pid": os.getpid(), "cwd": os.getcwd(), "calls": CALLS, "debug": __debug__,
            "threads": os.environ.get("COMPSS_NUM_THREADS"), "omp": os.environ.get("OMP_NUM_THREADS"),
            "cuda": os.environ.get("CUDA_VISIBLE_DEVICES")}


@task(returns=1, on_failure="IGNORE")
def env_left():
    """What a task sees of the per-task variables a previous task had."""
    return os.environ.get("COMPSS_NUM_THREADS")


@constraint(computing_units="$STANDIN_TEST_CU")
@task(returns=1, on_failure="IGNORE")
def threads_from_env():
    return os.environ.get("COMPSS_NUM_THREADS")


@constraint(processors=[{"processorType": "CPU", "computingUnits": "1"},
                        {"processorType": "GPU", "computingUnits": "1"}])
@task(returns=1, on_failure="IGNORE")
def gpu_task():
    return os.environ.get("CUDA_VISIBLE_DEVICES")


@task(returns=1, on_failure="IGNORE")
def read_text(path):
    with open(path) as fh:
        return fh.read()


@task(returns=1, path=FILE_IN, on_failure="IGNORE")
def read_staged(path):
    with open(path) as fh:
        return os.path.basename(path), fh.read()


@task(returns=1, on_failure="IGNORE")
def add(a, b):
    return a + b


@task(returns=1, on_failure="IGNORE")
def boom(message):
    raise ValueError(message)


@on_failure(management="IGNORE", returns="fallback")
@task(returns=1)
def boom_with_default():
    raise ValueError("no")


@task(returns=1, on_failure="IGNORE", time_out=1)
def sleep_ignored(seconds):
    time.sleep(seconds)
    return seconds


@task(returns=1, on_failure="IGNORE")
def die():
    os.kill(os.getpid(), signal.SIGKILL)


@task(returns=1, on_failure="IGNORE")
def sleep(seconds):
    time.sleep(seconds)
    return os.getpid()


ATTEMPTS_FILE = "STANDIN_ATTEMPTS_FILE"


@task(returns=1)  # on_failure defaults to RETRY
def fail_counting():
    with open(os.environ[ATTEMPTS_FILE], "a") as fh:
        fh.write("x")
    raise RuntimeError("always fails")
