"""Faults a COMPSs node produces, driven through the REAL PyCOMPSs 3.3 worker code (issue 18).

Each test starts its own executor processes (``real_executor``), hands tasks to the real
``process_task`` as the Java worker would, and breaks something: the executor, the forkserver or a
worker is SIGKILLed mid-chunk, a forkserver's start-up stalls, a worker crashes and its replacement
loads slowly, the model file is missing for a second, GPU tokens change from task to task.  After
each, no process of ours is left running (psutil: every process whose TMPDIR is the test's folder)
and no folder of ours is left in the temporary folder.

Executors run without ``python -O`` (as under ``--log_level=debug``) only because TensorFlow has no
``-O`` bytecode cached here and imports twice as slowly with it.
"""
from __future__ import annotations

import os
import signal
import threading
import time
from dataclasses import replace

import numpy as np
import pytest

import nodeprocs
import tinymodels as tm
from compss_support import FAULTS, REAL_PYCOMPSS, clean_compss_env  # noqa: F401 - fixture
from compss_infer.core.specs import ModelSpec, PreprocessSpec, SessionSpec
from compss_infer.core.contracts import ChunkResult, TaskError, WorkerSpec
from compss_infer.engines.nodeclient import GRACE_S
from real_executor import Executor

LIMIT, LOAD = 20.0, 30.0  # the chunk's limit and the loading allowance, as the master would send them


@pytest.fixture
def node(tmp_path, monkeypatch):
    """Factory of executors of one node; each test's processes are told apart by TMPDIR = its folder."""
    if not os.path.isdir(REAL_PYCOMPSS):
        pytest.skip(f"the real PyCOMPSs worker code is not at {REAL_PYCOMPSS} (../shared is absent)")
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    monkeypatch.setenv("COMPSS_INFER_TEST_FAULTS", "1")
    monkeypatch.setenv("PYTHONPATH", os.pathsep.join([FAULTS, os.environ.get("PYTHONPATH", "")]))
    made: list[Executor] = []

    def make(n: int = 1) -> list[Executor]:
        made.extend(Executor(str(tmp_path / f"executor{len(made) + i}"), optimize=False) for i in range(n))
        return made[-n:]
    yield make
    for ex in made:
        ex.close()


@pytest.fixture
def chunk(tmp_path):
    """(spec of the 8x8 quadrant model, six images, a hanging image, a crashing image)."""
    model = tm.write_graph(tm.quadrant_graph(), str(tmp_path / "q.pb"))
    tm.make_images(str(tmp_path / "imgs"), 6)
    paths = sorted(str(tmp_path / "imgs" / f) for f in os.listdir(tmp_path / "imgs"))
    hang, poison = str(tmp_path / "hang.png"), str(tmp_path / "poison.png")
    for path, head in ((hang, b"HANG"), (poison, b"POISON")):
        with open(path, "wb") as fh:
            fh.write(head + bytes(64))
    spec = WorkerSpec(ModelSpec(path=model), PreprocessSpec(mode="L"), SessionSpec())
    return spec, paths, hang, poison


def right(value, paths) -> ChunkResult:
    assert isinstance(value, ChunkResult), value
    assert value.class_ids.tolist() == [int(np.argmax(tm.expected_scores(p))) for p in paths] and not value.errors
    return value


def busy_worker(tmp: str, timeout: float = 60) -> "nodeprocs.psutil.Process":
    """The worker running the hanging chunk (it sleeps in the decoder: wait until it does)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for w in nodeprocs.of_kind(tmp, "worker"):
            try:
                if any("hang" in f.path for f in w.open_files()) or w.status() == "sleeping" and w.num_threads() > 1:
                    return w
            except nodeprocs.psutil.Error:
                pass
        time.sleep(0.05)
    raise AssertionError("no worker became busy")


def the_processes(tmp: str) -> dict[str, list[int]]:
    found: dict[str, list[int]] = {}
    for p in nodeprocs.ours(tmp):
        found.setdefault(nodeprocs.kind(p), []).append(p.pid)
    return found


def test_an_executor_sigkilled_mid_chunk_leaves_no_process_and_no_folder(node, chunk, tmp_path):
    spec, paths, hang, _ = chunk
    (ex,) = node()
    right(ex.run("_classify_task", spec, paths, LIMIT, LOAD), paths)
    ex.submit("_classify_task", spec, [hang], LIMIT, LOAD)
    time.sleep(1.0)  # the chunk is in the worker's decoder
    tree = the_processes(str(tmp_path))
    assert {k: len(v) for k, v in tree.items()} == {"other": 1, "server": 1, "forkserver": 1, "worker": 1,
                                                     "tracker": 1}, tree  # "other": the executor
    t0 = time.monotonic()
    os.kill(ex.pid, signal.SIGKILL)
    assert nodeprocs.strays(str(tmp_path), within=5.0) == []
    gone_after = time.monotonic() - t0
    assert nodeprocs.folders_left(str(tmp_path), tree["server"]) == []
    print(f"everything gone {gone_after:.2f}s after the executor's SIGKILL")


def test_a_forkserver_sigkilled_mid_chunk_fails_the_chunk_and_the_next_one_runs(node, chunk, tmp_path):
    spec, paths, hang, _ = chunk
    (ex,) = node()
    right(ex.run("_classify_task", spec, paths, LIMIT, LOAD), paths)
    ex.submit("_classify_task", spec, [hang], LIMIT, LOAD)
    busy = busy_worker(str(tmp_path))
    (forkserver,) = nodeprocs.of_kind(str(tmp_path), "forkserver")
    forkserver.kill()
    failed = ex.result(30)
    assert isinstance(failed, TaskError) and failed.text == (
        f"WorkerCrashed: worker process {busy.pid} ended with its forkserver (process {forkserver.pid}), which died")
    assert not failed.setup
    assert right(ex.run("_classify_task", spec, paths, LIMIT, LOAD), paths).timing.pid != busy.pid
    (again,) = nodeprocs.of_kind(str(tmp_path), "forkserver")
    assert again.pid != forkserver.pid
    ex.close()
    assert nodeprocs.strays(str(tmp_path)) == []


def test_a_worker_sigkilled_mid_chunk_fails_the_chunk_and_the_server_lives_on_until_its_model_changes(node, chunk, tmp_path):
    spec, paths, hang, _ = chunk
    (ex,) = node()
    right(ex.run("_classify_task", spec, paths, LIMIT, LOAD), paths)
    (server,) = nodeprocs.of_kind(str(tmp_path), "server")
    ex.submit("_classify_task", spec, [hang], LIMIT, LOAD)
    busy = busy_worker(str(tmp_path))
    busy.kill()
    failed = ex.result(30)
    assert isinstance(failed, TaskError) and failed.text == f"WorkerCrashed: worker process {busy.pid} was killed by SIGKILL"
    right(ex.run("_classify_task", spec, paths, LIMIT, LOAD), paths)
    assert [p.pid for p in nodeprocs.of_kind(str(tmp_path), "server")] == [server.pid]
    # the executor's next task is for another model: it lets go of the old server, which ends
    right(ex.run("_classify_task", replace(spec, top_k=2), paths, LIMIT, LOAD), paths)
    server.wait(5)
    ex.close()
    assert nodeprocs.strays(str(tmp_path)) == []


def test_a_stalled_start_up_is_a_timeout_within_the_limit_and_the_retry_runs(node, chunk, tmp_path, monkeypatch):
    """The forkserver's imports hang (a TensorFlow import stuck on a dead file system) while a file exists."""
    spec, paths, _, _ = chunk
    stall = tmp_path / "stall"
    stall.write_text("")
    monkeypatch.setenv("COMPSS_INFER_TEST_STALL", str(stall))
    (ex,) = node()
    limit, load = 2.0, 2.0
    t0 = time.monotonic()
    failed = ex.run("_classify_task", spec, paths, limit, load, timeout=60)
    took = time.monotonic() - t0
    assert isinstance(failed, TaskError) and failed.text.startswith(
        "Timeout: the chunk ran past its time limit of 4s (while loading the model;"), failed
    assert not failed.setup  # a Timeout: the master retries it (elsewhere), it never aborts the run
    assert took < limit + load + GRACE_S, took  # the task's own backstop; the server answered at its 4 s
    stall.unlink()  # the stall is over: the retry runs
    right(ex.run("_classify_task", spec, paths, LIMIT, LOAD), paths)
    ex.close()
    assert nodeprocs.strays(str(tmp_path)) == []
    print(f"stalled start-up: Timeout after {took:.1f}s for limit {limit:g}s + loading allowance {load:g}s")


def test_after_a_crash_the_replacement_worker_gets_the_loading_allowance(node, chunk, tmp_path, monkeypatch):
    """The replacement worker loads for 3 s, longer than the chunk's 1 s limit: the chunk must not time out."""
    spec, paths, _, poison = chunk
    slow = tmp_path / "slow"
    monkeypatch.setenv("COMPSS_INFER_TEST_SLOW_LOAD", str(slow))
    (ex,) = node()
    right(ex.run("_classify_task", spec, paths, LIMIT, LOAD), paths)
    crashed = ex.run("_classify_task", spec, [paths[0], poison], LIMIT, LOAD)
    assert isinstance(crashed, TaskError) and crashed.text.startswith("WorkerCrashed: worker process")
    assert "SIGSEGV" in crashed.text
    slow.write_text("3")
    t0 = time.monotonic()
    right(ex.run("_classify_task", spec, paths, 1.0, 6.0), paths)
    assert time.monotonic() - t0 > 3  # the load really was slow
    ex.close()
    assert nodeprocs.strays(str(tmp_path)) == []


def test_gpu_tokens_changing_from_task_to_task_keep_one_worker_per_gpu(node, chunk, tmp_path):
    """Two executors, two GPUs; each executor gets the other GPU on every task (COMPSs pairs an idle
    executor with a free GPU, no fixed pairing).  A model per executor would be rebuilt on every task
    here; per GPU, each GPU's worker loads once and serves whichever executor holds that GPU."""
    spec, paths, _, _ = chunk
    executors = node(2)
    served: dict[str, set[int]] = {"0": set(), "1": set()}
    for turn in range(4):
        for i, ex in enumerate(executors):
            ex.submit("_classify_task_gpu", spec, paths, LIMIT, LOAD, gpu=str((turn + i) % 2))
        for i, ex in enumerate(executors):
            served[str((turn + i) % 2)].add(right(ex.result(), paths).timing.pid)
    assert all(len(pids) == 1 for pids in served.values()) and served["0"] != served["1"], served
    tree = the_processes(str(tmp_path))
    assert len(tree["server"]) == 2 and len(tree["worker"]) == 2, tree
    for gpu, (pid,) in served.items():  # each worker is the grandchild of the server of its GPU
        server = nodeprocs.psutil.Process(pid).parent().parent()
        assert f'"gpu": "{gpu}"' in " ".join(server.cmdline())
    for ex in executors:
        ex.close()
    assert nodeprocs.strays(str(tmp_path)) == []


def test_a_model_file_missing_for_a_second_costs_a_retry_not_the_run(compss_master, chunk, tmp_path, monkeypatch):
    """Through the real PyCOMPSs binding, master and workers (this process is the master of the
    session's shared runtime, tests/compss_support.py): the model vanishes right after the master
    checked it, and comes back a second after a task found it missing (so the gap covers a task's
    load whatever the machine's speed).  A model error on one node, once: the chunk is retried after
    the pause, and the run ends with every image.  (What the shared runtime's processes leave is
    checked when the session stops it.)"""
    from compss_infer.run.config import build_config
    from compss_infer.engines import compss
    from compss_infer.run.runner import run
    spec, _, _, _ = chunk
    model = spec.model.path
    folder = tmp_path / "many"
    tm.make_images(str(folder), 12)
    monkeypatch.setattr(compss, "SETUP_PAUSE_S", 2.0)
    checked = compss.CompssEngine.preflight

    def then_hide(self):
        info = checked(self)
        os.rename(model, model + ".away")
        return info
    failed = compss.CompssEngine._setup_failed
    timers = []

    def then_restore(self, key, error):
        if not timers:
            timers.append(threading.Timer(1.0, os.rename, (model + ".away", model)))
            timers[0].start()
        return failed(self, key, error)
    monkeypatch.setattr(compss.CompssEngine, "preflight", then_hide)
    monkeypatch.setattr(compss.CompssEngine, "_setup_failed", then_restore)
    out = str(tmp_path / "out.csv")
    cfg = build_config(None, {"model": {"path": model}, "preprocess": {"mode": "L", "std": 1.0},
                              "run": {"images": str(folder), "output": out, "progress": False, "engine": "compss",
                                      "chunk_size": 6}})
    summary = run(cfg)
    assert summary.exit_code == 0 and summary.classified == 12
    causes = summary.data["tasks"]["retries_by_cause"]
    assert list(causes) == ["ModelError"] and causes["ModelError"] >= 1, causes


def test_a_model_error_aborts_only_when_another_node_or_the_same_node_after_the_pause_repeats_it():
    """The master's rule, fed the TaskErrors tasks return (no processes needed)."""
    from compss_infer.core.contracts import TaskTiming
    from compss_infer.engines.compss import CompssEngine
    from compss_infer.core.errors import RunAborted
    engine = CompssEngine()
    engine._task_error, engine.setup_pause = TaskError, 0.2
    bad = {h: TaskError("ModelError: cannot read model m.pb", setup=True, host=h) for h in ("a", "b")}
    first = engine._outcome(0, bad["a"])
    assert first.failure == bad["a"].text and first.retry_after == 0.2  # once, on one node: retried
    assert engine._outcome(1, bad["a"]).retry_after == 0.2  # the same node within the pause: the same blip
    with pytest.raises(RunAborted, match="on b: ModelError: cannot read model m.pb; nor on a"):
        engine._outcome(2, bad["b"])  # a second node: consistent
    ok = ChunkResult(np.zeros(1, np.int64), None, timing=TaskTiming("a", 1, 0.0, 1.0))
    engine = CompssEngine()
    engine._task_error, engine.setup_pause = TaskError, 0.2
    engine._outcome(0, bad["a"])
    engine._outcome(1, ok)  # node a loads the model now: its failure is forgotten
    assert engine._outcome(2, bad["b"]).retry_after == 0.2
    time.sleep(0.25)
    with pytest.raises(RunAborted, match=r"on b, again 0s after the first time"):
        engine._outcome(3, bad["b"])  # the same node, after the pause: consistent
