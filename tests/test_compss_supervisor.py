"""The COMPSs task's supervisor, run through the REAL PyCOMPSs binding, master and worker.

This pytest process is the master of the session's shared runtime (the fake Java side); its
executors run every task through the real piper worker and ``process_task`` of
../shared/third_party/compss-3.3/python, which arms the real ``time_out`` alarm.  Each task hands the
chunk to the node's inference server (a worker process of it runs the chunk), so a chunk that
computes in C++ past its limit, or that segfaults, comes back as a failure and the executors live
on.  Idle executors take tasks in turn; the server is the node's, whichever executor asks.
"""
import os
import time

import numpy as np
import pytest

from compss_support import clean_compss_env  # noqa: F401 - fixture

import tinymodels as tm
from compss_infer.core.specs import ModelSpec, PreprocessSpec, SessionSpec
from compss_infer.core.contracts import ChunkResult, WorkerSpec
from compss_infer.engines import make_engine
from compss_infer.core.errors import ConfigError
from compss_infer.engines.timelimit import TimeLimitPolicy
from compss_infer.worker import classify_chunk, warm_up

HANG_ITERATIONS = 50_000_000  # a v1 while_loop of this many steps runs for minutes inside TensorFlow's C++


def slow_in_kernels_graph():
    """The quadrant classifier, plus a while_loop that runs in C++ only for an all-white image."""
    tf = tm.import_tf()
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 1], name="images")
        logits = tm._quadrant_logits(tf, x, 8, 8)
        n = tf.cast(tf.reduce_min(x) > 254.0, tf.int32) * HANG_ITERATIONS
        _, acc = tf.compat.v1.while_loop(lambda i, a: i < n, lambda i, a: (i + 1, a * 1.0000001),
                                         [tf.constant(0), tf.constant(1.0)])
        tf.nn.softmax(logits + 0.0 * acc, name="probs")
    return g.as_graph_def()


def spec_for(model):
    return WorkerSpec(model=ModelSpec(path=model), preprocess=PreprocessSpec(mode="L"), session=SessionSpec())


def classify(engine, key, spec, paths, timeout=120):
    engine.submit(key, classify_chunk, spec, paths)
    (outcome,) = engine.poll(timeout)
    return outcome


def assert_right(outcome, paths):
    assert outcome.failure is None and isinstance(outcome.value, ChunkResult), outcome.failure
    expected = [int(np.argmax(tm.expected_scores(p))) for p in paths]
    assert outcome.value.class_ids.tolist() == expected and not outcome.value.errors


@pytest.fixture
def images(tmp_path):
    folder = tmp_path / "imgs"
    tm.make_images(str(folder), 6)
    paths = sorted(str(folder / f) for f in os.listdir(folder))
    white = str(tmp_path / "white.png")
    tm.Image.fromarray(np.full((8, 8), 255, np.uint8)).save(white)
    return paths, white


def test_a_chunk_computing_past_its_limit_in_cpp_is_a_timeout_and_the_executor_lives_on(compss_master, tmp_path,
                                                                                        images):
    paths, white = images
    spec = spec_for(tm.write_graph(slow_in_kernels_graph(), str(tmp_path / "slow.pb")))
    executors = compss_master.executor_pids()
    engine = make_engine("compss", workers=2, task_timeout=TimeLimitPolicy(auto=False, fixed=3, floor=10))
    engine.start(warm_up, spec)
    engine.preflight()
    assert_right(classify(engine, 0, spec, paths[:3]), paths[:3])  # warm: the node server's worker has the model
    t0 = time.monotonic()
    hung = classify(engine, 1, spec, [white])
    took = time.monotonic() - t0
    assert hung.failure.startswith("Timeout: the chunk ran past its time limit of 3s"), hung.failure
    assert took < 3 + 6, took  # the limit, plus a few seconds (not the minutes the kernel would take)
    assert_right(classify(engine, 2, spec, paths[3:]), paths[3:])
    assert len({job.slot.pid for job in compss_master.jobs()}) == 2  # both executors took chunks
    assert compss_master.executor_pids() == executors  # the same executor processes, never killed
    engine.close()
    print(f"time-out return latency: {took:.1f}s for a 3s limit")


def test_a_child_segfault_is_a_failure_and_the_executor_classifies_the_next_chunk(compss_master, tmp_path, images):
    """tests/faults/sitecustomize.py (on the shared runtime's worker PYTHONPATH, with
    COMPSS_INFER_TEST_FAULTS=1 there) makes decoding a b"POISON" file segfault for real (in the node
    server's worker)."""
    paths, _ = images
    poison = str(tmp_path / "poison.png")
    with open(poison, "wb") as fh:
        fh.write(b"POISON" + bytes(64))
    spec = spec_for(tm.write_graph(tm.quadrant_graph(), str(tmp_path / "q.pb")))
    executors = compss_master.executor_pids()
    engine = make_engine("compss", workers=2)
    engine.start(warm_up, spec)
    engine.preflight()
    crashed = classify(engine, 0, spec, [paths[0], poison])
    assert crashed.failure.startswith("WorkerCrashed: worker process") and "SIGSEGV" in crashed.failure
    crashed_on = compss_master.jobs()[-1].slot.pid
    for key in (1, 2):  # the next chunks go to each executor in turn; the server replaced its crashed worker
        assert_right(classify(engine, key, spec, paths), paths)
    assert crashed_on in {job.slot.pid for job in compss_master.jobs()[1:]}
    assert compss_master.executor_pids() == executors
    engine.close()


def test_the_engine_refuses_a_missing_or_disagreeing_compss_infer_cu(monkeypatch, tmp_path):
    spec = spec_for(tm.write_graph(tm.quadrant_graph(), str(tmp_path / "q.pb")))
    monkeypatch.delenv("COMPSS_INFER_CU", raising=False)
    with pytest.raises(ConfigError, match=r"COMPSS_INFER_CU is not set.*launch_runcompss\.sh"):
        make_engine("compss").start(warm_up, spec)
    monkeypatch.setenv("COMPSS_INFER_CU", "2")
    two = WorkerSpec(spec.model, spec.preprocess, SessionSpec(intra_op_threads=1))
    with pytest.raises(ConfigError, match=r"COMPSS_INFER_CU=2 .*intra_op_threads=1.*launch_runcompss\.sh"):
        make_engine("compss").start(warm_up, two)
