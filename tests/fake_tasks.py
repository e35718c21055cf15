"""Task functions for the fake COMPSs runtime's own tests (executors import this module by name)."""
from __future__ import annotations

import atexit
import os
import signal
import time

from pycompss.api.constraint import constraint
from pycompss.api.parameter import FILE_IN
from pycompss.api.task import task

PER_TASK = ("COMPSS_NUM_THREADS", "COMPSS_BINDED_CPUS", "CUDA_VISIBLE_DEVICES")


def _facts(**extra):
    return {"pid": os.getpid(), "cwd": os.getcwd(), "affinity": sorted(os.sched_getaffinity(0)),
            **{k: os.environ.get(k) for k in PER_TASK}, **extra}


@task(returns=1, on_failure="IGNORE")
def where(*paths):
    """Facts about the executor and the task, and which of ``paths`` exist now."""
    return _facts(exist=[os.path.exists(p) for p in paths])


@constraint(computing_units="$FAKE_TEST_CU")
@task(returns=1, on_failure="IGNORE")
def where_cu():
    return _facts()


@constraint(processors=[{"processorType": "CPU", "computingUnits": "1"},
                        {"processorType": "GPU", "computingUnits": "1"}])
@task(returns=1, on_failure="IGNORE")
def where_gpu():
    return _facts()


@task(returns=1, model=FILE_IN, on_failure="IGNORE")
def read_staged(model):
    with open(model) as fh:
        return model, os.path.realpath(model), fh.read()


@task(returns=1, on_failure="IGNORE")
def plus(a, b):
    return a + b


@task(returns=1, on_failure="IGNORE")
def take(value):
    return type(value).__name__


@task(returns=1, on_failure="IGNORE")
def leave_atexit(path):
    atexit.register(lambda: open(path, "w").close())
    return os.getpid()


@task(returns=1, on_failure="IGNORE")
def die():
    os.kill(os.getpid(), signal.SIGKILL)


@task(returns=1, on_failure="IGNORE")
def sleep(seconds):
    time.sleep(seconds)
    return os.getpid()


@task(returns=1)  # on_failure defaults to RETRY
def fail_counting(path):
    with open(path, "a") as fh:
        fh.write("x")
    raise RuntimeError("always fails")
