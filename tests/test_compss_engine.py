"""The compss engine against the PyCOMPSs stand-in (never the real COMPSs runtime).

In-process tests make this pytest process the COMPSs master; end-to-end tests run
scripts/launch_runcompss.sh with the stand-in's runcompss.  Executors are real processes that
import TensorFlow, so these tests use one or two of them and tiny models.
"""
import csv
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from compss_support import FAULTS, ROOT, RUNCOMPSS, SRC, STANDIN, clean_compss_env, master, subprocess_env  # noqa: F401 - fixtures

import tinymodels as tm
from compss_infer.cli import main
from compss_infer.core.specs import ModelSpec, PreprocessSpec, SessionSpec
from compss_infer.run.config import build_config
from compss_infer.core.contracts import WorkerSpec
from compss_infer.engines import make_engine
from compss_infer.core.errors import ConfigError, RunAborted
from compss_infer.engines.compss_env import computing_units, task_time_out
from compss_infer.run.runner import run
from compss_infer.worker import classify_chunk, warm_up
from pycompss import _standin_runtime as rt

LAUNCH = os.path.join(ROOT, "scripts", "launch_runcompss.sh")
TASKS = "compss_infer.engines.compss_tasks"


def flags(model, images, output, **run_opts):
    return {"model": {"path": model}, "preprocess": {"mode": "L", "std": 1.0},
            "run": {"images": images, "output": output, "progress": False, "engine": "compss", **run_opts}}


def rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def launch_env(home, *extra_path, cpus="2", **variables):
    return subprocess_env(home, *extra_path, RUNCOMPSS=RUNCOMPSS, COMPSS_INFER_CPUS=cpus,
                          COMPSS_INFER_PYTHON=sys.executable, **variables)


# ----------------------------------------------------------------------------- end to end

def test_demo_through_launch_runcompss_matches_the_local_engine(tmp_path):
    out = tmp_path / "compss.csv"
    # --log_level=debug: executors without python -O (see the poison test); the stand-in's own tests cover -O
    proc = subprocess.run([LAUNCH, os.path.join(ROOT, "configs", "cluster.yaml"), "--log_level=debug",
                           "--", "--output", str(out)],
                          env=launch_env(str(tmp_path)), capture_output=True, text=True, timeout=240)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "compss-infer: exit status 0 (every image classified)" in proc.stdout
    assert "2 CPU / 0 GPU" in proc.stdout  # local multi-worker: two executors
    summary = json.loads((tmp_path / "compss.csv.summary.json").read_text())
    assert summary["engine"] == "compss" and summary["classified"] == 450 and summary["tasks"]["failed_attempts"] == 0
    local = tmp_path / "local.csv"
    assert main(["run", os.path.join(ROOT, "configs", "cluster.yaml"), "--engine", "local", "--workers", "1",
                 "--output", str(local), "--no-progress"]) == 0
    assert out.read_bytes() == local.read_bytes()


def test_poison_image_costs_only_its_own_row(tmp_path, quadrant_model, quadrant_images):
    """A real poison image.  No decoder bug that crashes a process is at hand, so tests/faults/
    sitecustomize.py (on the PYTHONPATH of this test's processes only, with COMPSS_INFER_TEST_FAULTS=1)
    makes decoding a file that starts with b"POISON" segfault for real (a NULL read).  The chunk
    holding it comes back None (IGNORE), is split down to the single image, and only that row fails.
    Through launch_runcompss.sh: the shim's runcompss exits 0, the script exits with the app's 1."""
    model = quadrant_model()
    folder, items = quadrant_images(200)
    poison = items[57][0]
    with open(os.path.join(folder, poison), "wb") as fh:
        fh.write(b"POISON" + bytes(64))
    out = tmp_path / "out.csv"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(flags(model, folder, str(out), chunk_size=20, max_retries=0)))
    # --log_level=debug: executors without python -O (TensorFlow has no -O bytecode cached here: 2x slower import)
    proc = subprocess.run([LAUNCH, str(config), "--log_level=debug"], env=launch_env(str(tmp_path), FAULTS, cpus="1",
                                                                 COMPSS_INFER_TEST_FAULTS="1"),
                          capture_output=True, text=True, timeout=240)
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "runcompss reports 0 all the same" in proc.stdout and "exit status 1 (finished, some images failed)" in proc.stdout
    # The task's child really crashed; the executor did not (the stand-in never replaces a dead one)
    assert "SIGSEGV" in proc.stdout + proc.stderr
    logs = list(Path(tmp_path).rglob("standin.log"))
    assert logs and all("died; it is not replaced" not in p.read_text() for p in logs)
    got = {r["path"]: r for r in rows(out)}
    assert list(got) == [rel for rel, _ in items]
    assert got[poison]["error"].startswith("TaskFailed: worker process") and "SIGSEGV" in got[poison]["error"]
    assert got[poison]["class_id"] == ""
    for rel, q in items:
        if rel != poison:
            assert got[rel]["error"] == "" and int(got[rel]["class_id"]) == q


def test_a_task_child_sigkilled_mid_run_loses_no_image(master, tmp_path, quadrant_images):
    """This process is the master; the worker process of the node server its one executor's task
    started is SIGKILLed as soon as it exists, loading or classifying (a crash mid-chunk is in
    test_compss_supervisor.py; the real runtime would never replace the executor itself, so the task
    keeps the work out of it).  The model is staged (run.stage_model: FILE_IN) as a .pbtxt, so the
    task must also cope with the renamed copy COMPSs hands it."""
    import nodeprocs
    model = tm.write_graph(tm.quadrant_graph(), str(tmp_path / "quad.pbtxt"))
    folder, items = quadrant_images(12)
    runtime = master(cpus=1, optimize=False)  # no python -O: see the poison test
    executors = runtime.executor_pids()
    killed = []

    def kill_first_worker():
        worker = nodeprocs.wait_for(str(tmp_path), "worker")
        worker.kill()
        killed.append(worker.pid)
    threading.Thread(target=kill_first_worker, daemon=True).start()
    out = str(tmp_path / "compss.csv")
    summary = run(build_config(None, flags(model, folder, out, chunk_size=3, stage_model=True)))
    assert killed and summary.exit_code == 0 and summary.classified == 12  # killed loading or classifying:
    assert runtime.executor_pids() == executors and runtime.started_executors == 1
    assert os.listdir(os.path.join(runtime.config.working_dir, "transfers"))  # the model travelled as a file
    reference = str(tmp_path / "sequential.csv")
    run(build_config(None, flags(model, folder, reference, chunk_size=3, engine="sequential")))
    assert Path(out).read_bytes() == Path(reference).read_bytes()


# ----------------------------------------------------------------------------- engine details

def test_device_gpu_uses_the_gpu_task_variant(master, tmp_path, quadrant_model, quadrant_images):
    folder, _ = quadrant_images(2)
    paths = [os.path.join(folder, f) for f in sorted(os.listdir(folder))]
    spec = WorkerSpec(model=ModelSpec(path=quadrant_model()), preprocess=PreprocessSpec(mode="L"),
                      session=SessionSpec(device="gpu"))
    master(cpus=2, gpus=0)
    engine = make_engine("compss", workers=1, device="gpu")
    engine.start(warm_up, spec)
    assert engine._task.__name__ == "_classify_task_gpu"
    with pytest.raises(rt.StandinError, match="needs 1 CPU and 1 GPU .* Blocked forever"):
        engine.submit(0, classify_chunk, spec, paths)
    engine.close(abort=True)
    rt.current().stop(wait=False)

    runtime = master(cpus=2, gpus=1)
    engine = make_engine("compss", workers=1, device="gpu")
    engine.start(warm_up, spec)
    # The model vanished before the task ran: the worker cannot load it (no TensorFlow needed to see
    # that), and a model-loading failure in a task stops the run instead of splitting chunks forever.
    # that stops the run once it is consistent (here: the same node, again after the pause), instead of
    # splitting chunks forever; the first time it is a chunk to retry after the pause.
    gone = WorkerSpec(ModelSpec(path=str(tmp_path / "gone.pb")), spec.preprocess, spec.session)
    engine.setup_pause = 0.5
    engine.submit(0, classify_chunk, gone, paths)
    (first,) = engine.poll(60)
    assert first.failure.startswith("ModelError: cannot read model") and first.retry_after == 0.5
    time.sleep(0.6)
    engine.submit(1, classify_chunk, gone, paths)
    with pytest.raises(RunAborted, match=r"could not load the model: ModelError: cannot read model.*again"):
        engine.poll(60)
    engine.close(abort=True)
    assert runtime.registered[f"{TASKS}._classify_task_gpu"].gpus == 1
    for label, _, env in runtime.history:
        assert label == f"{TASKS}._classify_task_gpu" and env["CUDA_VISIBLE_DEVICES"] == "0"
        assert env["COMPSS_NUM_THREADS"] == "1"  # the GPU task reserves one CPU computing unit


def test_computing_units_and_time_out_come_from_the_config_or_the_environment(master, monkeypatch, tmp_path,
                                                                               quadrant_model, quadrant_images):
    assert computing_units(SessionSpec(), {}) == 1
    assert computing_units(SessionSpec(), {"COMPSS_INFER_CU": "4"}) == 4
    assert computing_units(SessionSpec(intra_op_threads=2), {"COMPSS_INFER_CU": "2"}) == 2
    with pytest.raises(ConfigError, match="COMPSS_INFER_CU=4 in the environment but session.intra_op_threads=2"):
        computing_units(SessionSpec(intra_op_threads=2), {"COMPSS_INFER_CU": "4"})
    # the executor's alarm is a backstop: a fixed limit + the loading allowance (5 x floor) + 5 s;
    # auto/none: none (each task carries its own limit)
    assert task_time_out("auto", {}) == 0 and task_time_out(None, {}) == 0 and task_time_out(2.5, {}) == 308
    assert task_time_out(30, {"COMPSS_INFER_TIME_OUT": "45"}, floor=2) == 45
    with pytest.raises(ConfigError, match="run.task_timeout=30"):
        task_time_out(30, {"COMPSS_INFER_TIME_OUT": "60"})

    folder, _ = quadrant_images(2)
    paths = [os.path.join(folder, f) for f in sorted(os.listdir(folder))]
    spec = WorkerSpec(model=ModelSpec(path=quadrant_model()), preprocess=PreprocessSpec(mode="L"),
                      session=SessionSpec())
    monkeypatch.setenv("COMPSS_INFER_CU", "2")
    with pytest.raises(ConfigError, match="COMPSS_INFER_CU=2"):
        make_engine("compss").start(warm_up, WorkerSpec(spec.model, spec.preprocess, SessionSpec(intra_op_threads=1)))
    runtime = master(cpus=2)
    engine = make_engine("compss")
    engine.start(warm_up, spec)
    engine.submit(0, classify_chunk, spec, paths)  # registers the task type: "$COMPSS_INFER_CU" expanded now
    assert runtime.registered[f"{TASKS}._classify_task"].cpus == 2
    engine.close(abort=True)


def test_task_decorators_take_time_out_from_the_environment_at_import(tmp_path):
    code = (f"import {TASKS} as t\n"
            "for f in (t._classify_task, t._classify_task_gpu, t._classify_task_staged, t._classify_task_gpu_staged):\n"
            "    d = f.__standin_task__\n"
            "    print(d.time_out, d.on_failure, d.returns, sorted(d.params.items()), d.constraints)\n")
    out = subprocess.run([sys.executable, "-c", code], env=subprocess_env(str(tmp_path), COMPSS_INFER_TIME_OUT="7"),
                         capture_output=True, text=True, check=True).stdout.splitlines()
    assert out[0] == "7 IGNORE 1 [] {'computing_units': '$COMPSS_INFER_CU'}"
    assert out[1].startswith("7 IGNORE 1 [] {'processors': [{'processorType': 'CPU'")
    assert out[2] == "7 IGNORE 1 [('model', 'FILE_IN')] {'computing_units': '$COMPSS_INFER_CU'}"
    assert "'processorType': 'GPU'" in out[3] and "('model', 'FILE_IN')" in out[3]


def test_the_master_path_does_not_import_tensorflow(tmp_path, quadrant_model):
    code = ("import sys\n"
            "from compss_infer import compss_app\nfrom compss_infer.run import runner\n"
            "from compss_infer.core.specs import ModelSpec, PreprocessSpec, SessionSpec\n"
            "from compss_infer.core.contracts import WorkerSpec\n"
            "from compss_infer.engines import make_engine\n"
            "from compss_infer.worker import warm_up\n"
            f"spec = WorkerSpec(ModelSpec(path={quadrant_model()!r}), PreprocessSpec(mode='L'), SessionSpec())\n"
            "e = make_engine('compss'); e.start(warm_up, spec); e.close(abort=True)\n"
            "assert 'pycompss' in sys.modules and 'compss_infer.engines.compss_tasks' in sys.modules\n"
            "print('tensorflow' in sys.modules)\n")
    out = subprocess.run([sys.executable, "-c", code], env=subprocess_env(str(tmp_path), COMPSS_INFER_CU="1"),
                         capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"


def test_without_pycompss_the_compss_engine_is_refused(tmp_path, quadrant_model, quadrant_images):
    folder, _ = quadrant_images(2)
    env = subprocess_env(str(tmp_path))
    env["PYTHONPATH"] = SRC  # no stand-in: `import pycompss` fails, as on a machine without COMPSs
    proc = subprocess.run([sys.executable, "-m", "compss_infer", "run", "--engine", "compss", "--model",
                           quadrant_model(), "--images", folder, "--output", str(tmp_path / "o.csv"),
                           "--set", "preprocess.mode=L",
                           "--set", "preprocess.std=1"], env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "run.engine=compss needs PyCOMPSs" in proc.stderr
    assert STANDIN not in env["PYTHONPATH"]


def test_the_model_check_error_is_raised_by_preflight_before_any_task(master, quadrant_model):
    """The model check runs ``init`` in a spawned process; its error comes back as the same exception."""
    import enginetasks
    runtime = master(cpus=1)
    spec = WorkerSpec(ModelSpec(path=quadrant_model()), PreprocessSpec(mode="L"), SessionSpec())
    engine = make_engine("compss")
    engine.start(enginetasks.init_config_error, spec)
    with pytest.raises(ConfigError, match="no GPU"):
        engine.preflight()
    engine.close(abort=True)
    assert not runtime.history  # no task was ever sent (the executors were started up front, idle)


def test_without_a_runtime_pycompss_runs_the_tasks_in_the_master(quadrant_model, quadrant_images, monkeypatch):
    """Plain python with pycompss importable but no runcompss: tasks run in the caller (as documented
    for PyCOMPSs 2.5-3.3) and compss_wait_on passes the value through; the engine still works."""
    folder, items = quadrant_images(4)
    paths = [os.path.join(folder, rel) for rel, _ in items]
    spec = WorkerSpec(ModelSpec(path=quadrant_model()), PreprocessSpec(mode="L"), SessionSpec())
    assert rt.current() is None
    monkeypatch.setenv("COMPSS_INFER_CU", "1")
    engine = make_engine("compss")
    engine.start(warm_up, spec)
    engine.submit(7, classify_chunk, spec, paths)
    (outcome,) = engine.poll(0)
    engine.close(abort=True)
    assert outcome.key == 7 and outcome.failure is None
    assert outcome.value.class_ids.tolist() == [q for _, q in items]


def test_tar_shards_through_compss_a_task_per_shard_slice_staged_as_one_file(master, tmp_path, monkeypatch):
    """Issue 19: shards on the compss engine.  Each task gets a shard slice; with run.stage_shards (no
    shared file system) the shard travels as one FILE_IN per task, never one per image.  Indexing runs
    as COMPSs tasks too.  The results equal the sequential engine's, byte for byte."""
    from test_shards import sample, write_tar
    monkeypatch.chdir(tmp_path)
    os.makedirs("data")
    for s in range(2):
        write_tar(f"data/{s}.tar", [m for i in range(s * 6, s * 6 + 6) for m in sample(i)])
    model = tm.write_graph(tm.quadrant_graph(), str(tmp_path / "quad.pb"))
    runtime = master(cpus=1, optimize=False)
    out = str(tmp_path / "compss.csv")
    summary = run(build_config(None, flags(model, None, out, shards="data/{0..1}.tar", chunk_size=4,
                                           stage_model=True, stage_shards=True, truth_from="cls")))
    assert summary.exit_code == 0 and summary.classified == 12 and summary.accuracy == 1.0
    transfers = os.listdir(os.path.join(runtime.config.working_dir, "transfers"))
    assert len(transfers) == 3  # the model and the two shards travelled as files: one per shard, none per image
    reference = str(tmp_path / "sequential.csv")
    run(build_config(None, flags(model, None, reference, shards="data/{0..1}.tar", chunk_size=4, engine="sequential")))
    assert Path(out).read_bytes() == Path(reference).read_bytes()
