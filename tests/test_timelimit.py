"""run.task_timeout=auto: the rule itself, and real processes killed by it (SIGSTOPped worker, hung decode).

The rule's floor is a knob (run.task_timeout_floor) so these tests take seconds, not minutes."""
import csv
import os
import signal
import time

import numpy as np
import pytest

import enginetasks as T
import tinymodels as tm
from compss_infer.run.config import build_config
from compss_infer.core.contracts import ChunkResult, TaskTiming
from compss_infer.engines import make_engine
from compss_infer.core.errors import ConfigError
from compss_infer.engines.timelimit import ChunkClock, TimeLimitPolicy
from test_fault_injection import run_with_faults


def test_the_rule():
    clock = ChunkClock(TimeLimitPolicy(auto=True, floor=60))
    assert clock.limit(100) == 600 and clock.limit(100, loading=True) == 900  # nothing finished yet; + loading
    for seconds in (10, 12, 11, 500):  # one pathological chunk does not loosen the limit (median)
        clock.record(100, seconds)
    assert clock.median == pytest.approx(0.115)
    assert clock.limit(100) == pytest.approx(115) and clock.limit(10) == 60  # 10x median x size, floor 60
    timing = TaskTiming(host="h", pid=1, started=100.0, finished=103.0, load_s=2.0, decode_s=0, infer_s=0,
                        model_id="m")
    fresh = ChunkClock(TimeLimitPolicy(floor=1))
    fresh.record_result(ChunkResult(class_ids=np.zeros(10, np.int64), scores=None, timing=timing))
    assert fresh.median == pytest.approx(0.1)  # the load time is not the images' time
    assert ChunkClock(TimeLimitPolicy.from_setting(30)).limit(5) == 30
    assert ChunkClock(TimeLimitPolicy.from_setting("none")).limit(5) is None


def test_config_values(tmp_path):
    def value(v):
        return build_config(None, {"model": {"path": "/m.pb"}, "run": {"task_timeout": v}}, []).run.task_timeout
    assert build_config(None, {"model": {"path": "/m.pb"}}, []).run.task_timeout == "auto"
    assert value("auto") == "auto" and value("none") is None and value("12.5") == 12.5 and value(3) == 3.0
    for bad in (0, -1, "soon"):
        with pytest.raises(ConfigError, match="run.task_timeout: expected auto, none or a number"):
            value(bad)


def test_a_sigstopped_worker_is_killed_by_the_auto_limit_and_replaced():
    e = make_engine("local", workers=1, task_timeout=TimeLimitPolicy(auto=True, floor=0.3))
    try:
        e.start(T.init_ok, "x")
        e.preflight()
        e.submit("stopped", T.sleep, 60)
        time.sleep(0.5)
        (victim,) = [w.proc.pid for w in e._pool if w.task is not None]
        os.kill(victim, signal.SIGSTOP)
        t0 = time.monotonic()
        outcomes = []
        while not outcomes and time.monotonic() - t0 < 30:
            outcomes = e.poll(1)
        (out,) = outcomes
        assert out.failure.startswith("Timeout: task ran past its time limit of 3s (run.task_timeout=auto")
        assert e.running() == [] and e.replaced == 1
        e.submit("next", T.sleep, 0.01)
        outcomes = []
        while not outcomes:
            outcomes = e.poll(5)
        assert outcomes[0].value == 0.01
    finally:
        e.close(abort=True)


def test_a_hung_decode_under_the_default_auto_costs_only_its_row(tmp_path):
    images = tmp_path / "imgs"
    truth = dict(tm.make_images(str(images), 11))
    (images / "img_00004_hang.png").write_bytes(b"HANG" + b"\0" * 64)
    model = tm.write_graph(tm.quadrant_graph(), str(tmp_path / "m.pb"))
    out = str(tmp_path / "out.csv")
    t0 = time.monotonic()  # no --task-timeout: the default auto rule, with a small floor
    res = run_with_faults(model, str(images), out, "--max-retries", "0", "--set", "run.task_timeout_floor=0.4")
    assert res.returncode == 1, res.stderr
    rows = {r["path"]: r for r in csv.DictReader(open(out))}
    assert len(rows) == 12
    assert rows["img_00004_hang.png"]["error"].startswith("TaskFailed: task ran past its time limit")
    assert all(int(r["class_id"]) == truth[p] for p, r in rows.items() if not r["error"])
    assert time.monotonic() - t0 < 90


def test_a_stalled_run_says_what_it_waits_on_instead_of_an_eta():
    import io
    from compss_infer.run.progress import Progress
    stream = io.StringIO()
    p = Progress(total=10, stream=stream, every=0.05)
    p.update(4)
    time.sleep(0.12)
    p.tick(lambda: "chunk at image 4 (4 images) on worker process 123, running 70s, limit 60s")
    line = stream.getvalue().splitlines()[-1]
    assert "4/10 images, nothing finished for" in line and "ETA" not in line
    assert line.endswith("waiting on chunk at image 4 (4 images) on worker process 123, running 70s, limit 60s")
