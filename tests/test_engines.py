"""The local engine with real processes and real signals; the sequential engine."""
import os
import signal
import time

import pytest

import enginetasks as T
from compss_infer.engines import make_engine
from compss_infer.core.errors import ConfigError, RunAborted


def drain(engine, n, timeout=60):
    out = {}
    deadline = time.monotonic() + timeout
    while len(out) < n and time.monotonic() < deadline:
        for o in engine.poll(0.5):
            out[o.key] = o
    assert len(out) == n, f"only {len(out)} of {n} outcomes"
    return out


@pytest.fixture
def local():
    engines = []

    def make(workers=2, init=T.init_ok, **kw):
        e = make_engine("local", workers=workers, **kw)
        e.start(init, "hello")
        engines.append(e)
        return e
    yield make
    for e in engines:
        e.close(abort=True)


def test_tasks_run_on_all_workers_and_close_stops_them(local):
    e = local(workers=2)
    assert e.preflight()["value"] == "hello"
    for i in range(6):
        e.submit(i, T.echo, i * i)
    out = drain(e, 6)
    assert {k: o.value for k, o in out.items()} == {i: i * i for i in range(6)}
    procs = [w.proc for w in e._pool]
    e.close()
    assert all(not p.is_alive() for p in procs)


def test_a_raising_task_is_a_failure_and_the_worker_survives(local):
    e = local(workers=1)
    e.preflight()
    e.submit("a", T.whoami)
    pid = drain(e, 1)["a"].value
    e.submit("b", T.boom, "bad input")
    assert drain(e, 1)["b"].failure == "ValueError: bad input"
    e.submit("c", T.whoami)
    assert drain(e, 1)["c"].value == pid


@pytest.mark.parametrize("task, signame", [(T.segfault, "SIGSEGV"), (T.kill_self, "SIGKILL")])
def test_a_dying_worker_fails_its_task_and_is_replaced(local, task, signame):
    e = local(workers=1)
    e.preflight()
    e.submit("crash", task)
    failure = drain(e, 1)["crash"].failure
    assert failure.startswith("WorkerCrashed:") and signame in failure
    e.submit("after", T.echo, 42)
    assert drain(e, 1)["after"].value == 42
    assert e.replaced == 1


def test_external_sigkill_mid_task(local):
    e = local(workers=2)
    e.preflight()
    e.submit("slow", T.sleep, 30)
    time.sleep(0.3)
    victim = next(w for w in e._pool if w.task is not None)
    os.kill(victim.proc.pid, signal.SIGKILL)
    assert "SIGKILL" in drain(e, 1, timeout=10)["slow"].failure


def test_task_timeout_kills_and_replaces(local):
    e = local(workers=1, task_timeout=0.5)
    e.preflight()
    t0 = time.monotonic()
    e.submit("hang", T.sleep, 60)
    failure = drain(e, 1, timeout=15)["hang"].failure
    assert failure.startswith("Timeout:") and "run.task_timeout=0.5s" in failure
    assert time.monotonic() - t0 < 10
    e.submit("ok", T.sleep, 0.01)
    assert drain(e, 1)["ok"].value == 0.01


def test_deterministic_init_error_is_raised_by_preflight(local):
    e = local(workers=2, init=T.init_config_error)
    with pytest.raises(ConfigError, match="no GPU"):
        e.preflight()


def test_workers_that_die_at_start_abort_after_a_few_tries(local):
    e = local(workers=1, init=T.init_crash, max_startup_failures=2)
    with pytest.raises(RunAborted, match="keep failing to start"):
        e.preflight()


def test_sequential_engine_runs_in_process():
    e = make_engine("sequential")
    e.start(T.init_ok, 1)
    assert e.preflight()["pid"] == os.getpid()
    e.submit(1, T.whoami)
    e.submit(2, T.boom, "x")
    assert e.poll(0)[0].value == os.getpid()
    assert e.poll(0)[0].failure == "ValueError: x"


def test_each_local_worker_owns_one_gpu_even_after_a_replacement(local):
    e = local(workers=2, gpus=["3", "5"], init=T.cuda_visible)
    assert e.preflight() in ("3", "5")

    def gpus_in_use():
        while not (len(e._pool) == 2 and all(w.state == "ready" for w in e._pool)):
            e.poll(0.05)
        for key in ("x", "y"):  # two slow tasks at once: one per worker
            e.submit(key, T.cuda_visible_slow)
        return sorted(o.value for o in drain(e, 2).values())

    assert gpus_in_use() == ["3", "5"]
    e.submit("crash", T.kill_self)
    assert drain(e, 1)["crash"].failure.startswith("WorkerCrashed")
    assert gpus_in_use() == ["3", "5"]  # the replacement took the dead worker's GPU
    assert e.replaced == 1


def test_gpu_discovery_without_tensorflow():
    from compss_infer.run.sizing import visible_gpus
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "2, 7"}) == ["2", "7"]
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": ""}) == []
    assert visible_gpus({"CUDA_VISIBLE_DEVICES": "-1"}) == []
