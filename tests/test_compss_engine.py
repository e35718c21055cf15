"""The compss engine through the real PyCOMPSs 3.3 binding, master and worker, on the fake Java runtime.

End-to-end tests run scripts/launch_runcompss.sh with the fake runcompss (tests/compss_fake), which
starts compss_app.py as the real runcompss does; in-process tests make this pytest process the
master of the session's shared runtime (``compss_master``).  Never the real Java runtime.
"""
import csv
import json
import os
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import yaml

from compss_support import (FAULTS, REAL_PYCOMPSS, ROOT, RUNCOMPSS, SRC, assert_no_strays,  # noqa: F401
                            clean_compss_env, run_log_dir, subprocess_env, trace)

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


def launch(tmp_path, config, *args, env):
    # --log_level=debug: executors without python -O (TensorFlow has no -O bytecode here: a 2x slower import)
    proc = subprocess.run([LAUNCH, str(config), "--log_level=debug", *args], env=env, capture_output=True, text=True,
                          timeout=240)
    assert_no_strays(str(tmp_path))
    return proc


# ----------------------------------------------------------------------------- end to end (runcompss)

def test_demo_through_launch_runcompss_matches_the_local_engine(tmp_path):
    out = tmp_path / "compss.csv"
    proc = launch(tmp_path, os.path.join(ROOT, "configs", "cluster.yaml"), "--", "--output", str(out),
                  env=launch_env(str(tmp_path)))
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "compss-infer: exit status 0 (every image classified)" in proc.stdout
    assert "2 CPU / 0 GPU" in proc.stderr  # local multi-worker: two executors
    summary = json.loads((tmp_path / "compss.csv.summary.json").read_text())
    assert summary["engine"] == "compss" and summary["classified"] == 450 and summary["tasks"]["failed_attempts"] == 0
    events = trace(run_log_dir(str(tmp_path)))
    assert len({e["pid"] for e in events if e["event"] == "job"}) == 2  # both executors took chunks
    local = tmp_path / "local.csv"
    assert main(["run", os.path.join(ROOT, "configs", "cluster.yaml"), "--engine", "local", "--workers", "1",
                 "--output", str(local), "--no-progress"]) == 0
    assert out.read_bytes() == local.read_bytes()


def test_poison_image_costs_only_its_row_and_a_staged_model_needs_no_shared_folder(tmp_path, quadrant_images):
    """A real poison image.  No decoder bug that crashes a process is at hand, so tests/faults/
    sitecustomize.py (on the PYTHONPATH of this test's processes only, with COMPSS_INFER_TEST_FAULTS=1)
    makes decoding a file that starts with b"POISON" segfault for real (a NULL read).  The chunk
    holding it fails, is split down to the single image, and only that row fails.  runcompss
    passes the app's exit code 1 on, and so does launch_runcompss.sh.

    The model is staged (run.stage_model: a FILE_IN parameter, copied by COMPSs into the worker's
    working dir) to a worker that runs in its own mount namespace with the model's folder hidden (an
    empty tmpfs over it: ``COMPSS_FAKE_WORKER_HIDE``), as on a node with no shared disk; the images
    stay shared.  A .pbtxt: the task must also cope with the renamed copy behind its sandbox link."""
    models = tmp_path / "models"
    models.mkdir()
    model = tm.write_graph(tm.quadrant_graph(), str(models / "quad.pbtxt"))
    folder, items = quadrant_images(200)
    poison = items[57][0]
    with open(os.path.join(folder, poison), "wb") as fh:
        fh.write(b"POISON" + bytes(64))
    out = tmp_path / "out.csv"
    config = tmp_path / "run.yaml"
    config.write_text(yaml.safe_dump(flags(model, folder, str(out), chunk_size=20, max_retries=0, stage_model=True)))
    proc = launch(tmp_path, config, env=launch_env(str(tmp_path), FAULTS, cpus="1", COMPSS_INFER_TEST_FAULTS="1",
                                                   COMPSS_FAKE_WORKER_HIDE=str(models)))
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert "exit status 1 (finished, some images failed)" in proc.stdout and "Error running application" in proc.stdout
    # The task's child really crashed; the executor did not (a dead one would never be replaced)
    assert "SIGSEGV" in proc.stdout + proc.stderr
    events = trace(run_log_dir(str(tmp_path)))
    assert not [e for e in events if e["event"] == "executor died"]
    assert {e["signature"] for e in events if e["event"] == "job"} == {f"{TASKS}._classify_task_staged"}
    got = {r["path"]: r for r in rows(out)}
    assert list(got) == [rel for rel, _ in items]
    assert got[poison]["error"].startswith("TaskFailed: worker process") and "SIGSEGV" in got[poison]["error"]
    assert got[poison]["class_id"] == ""
    for rel, q in items:
        if rel != poison:
            assert got[rel]["error"] == "" and int(got[rel]["class_id"]) == q


# ----------------------------------------------------------------------------- in process (shared runtime)

def test_a_task_child_sigkilled_mid_run_loses_no_image(compss_master, tmp_path, quadrant_images):
    """This process is the master; the worker process of the node server the tasks started is
    SIGKILLed as soon as it exists, loading or classifying (a crash mid-chunk is in
    test_compss_supervisor.py); the executors are never replaced.  The model is staged (FILE_IN) as
    a .pbtxt: the task gets a link in its job sandbox, named as the file, to the renamed copy behind
    it, and the node server is the one of that copy."""
    import nodeprocs
    model = tm.write_graph(tm.quadrant_graph(), str(tmp_path / "quad.pbtxt"))
    folder, items = quadrant_images(12)
    executors = compss_master.executor_pids()
    killed = []

    def kill_first_worker():  # the server's model: the renamed copy the fake JVM staged (a .pbtxt link beside it)
        deadline = time.monotonic() + 60
        while compss_master.runtime.data.get(model) is None and time.monotonic() < deadline:
            time.sleep(0.02)
        copy = compss_master.runtime.data.get(model).last.renamed
        worker_dir = compss_master.runtime.node.working_dir
        worker = nodeprocs.wait_for(compss_master.tmp, "worker", model=os.path.join(worker_dir, copy + ".pbtxt"))
        worker.kill()
        killed.append(worker.pid)
    threading.Thread(target=kill_first_worker, daemon=True).start()
    out = str(tmp_path / "compss.csv")
    summary = run(build_config(None, flags(model, folder, out, chunk_size=3, stage_model=True, task_timeout=30,
                                           task_timeout_floor=2)))
    assert killed and summary.exit_code == 0 and summary.classified == 12
    assert compss_master.executor_pids() == executors
    # What the real decorators and binding passed for the staged task (time_out: 30 + 5 x 2 + 5).
    tasks = compss_master.tasks()
    assert {t.ce.signature for t in tasks} == {f"{TASKS}._classify_task_staged"}
    assert {(t.time_out, t.on_failure, t.ce.constraints) for t in tasks} == {
        (task_time_out(30, {}, floor=2), "IGNORE", "computing_units:$COMPSS_INFER_CU;")}
    (staged,) = [p for p in tasks[0].params if p.name == "model"]
    assert (staged.value, staged.content_type, staged.keep_rename) == (model, "FILE", False)
    assert staged.worker_value.endswith("/quad.pbtxt") and "sandBox/job_" in staged.worker_value
    reference = str(tmp_path / "sequential.csv")
    run(build_config(None, flags(model, folder, reference, chunk_size=3, engine="sequential")))
    assert Path(out).read_bytes() == Path(reference).read_bytes()


def test_device_gpu_uses_the_gpu_task_variant_and_a_gpu_slot(compss_master, tmp_path, quadrant_model,
                                                             quadrant_images):
    folder, _ = quadrant_images(2)
    paths = [os.path.join(folder, f) for f in sorted(os.listdir(folder))]
    spec = WorkerSpec(model=ModelSpec(path=quadrant_model()), preprocess=PreprocessSpec(mode="L"),
                      session=SessionSpec(device="gpu"))
    engine = make_engine("compss", workers=1, device="gpu")
    engine.start(warm_up, spec)
    assert engine._task.__name__ == "_classify_task_gpu"
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
    tasks = compss_master.tasks()
    assert {t.ce.signature for t in tasks} == {f"{TASKS}._classify_task_gpu"} and len(tasks) == 2
    assert "processorType: GPU" in tasks[0].ce.constraints
    assert (tasks[0].ce.requirements.cpus, tasks[0].ce.requirements.gpus) == (1, 1)  # a GPU task holds a CPU unit
    for job in compss_master.jobs():  # the "- 0 -" token: the real process_task sets CUDA_VISIBLE_DEVICES=0
        assert job.gpus == [0] and compss_master.runtime.node.execute_task_line(job).endswith(" - 0 -")


def test_computing_units_come_from_the_environment_the_runtime_started_with(compss_master, monkeypatch, tmp_path,
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
    # Exported after the runtime started: the engine agrees, the JVM never sees it.
    monkeypatch.setenv("COMPSS_INFER_CU", "2")
    engine = make_engine("compss")
    engine.start(warm_up, spec)
    engine.preflight()
    engine.submit(0, classify_chunk, spec, paths)
    (outcome,) = engine.poll(120)
    engine.close()
    assert outcome.failure is None
    (task,) = compss_master.tasks()
    assert task.ce.requirements.cpus == 1 and compss_master.jobs()[0].cpus in ([0], [1])


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
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True,
                         env=subprocess_env(str(tmp_path), REAL_PYCOMPSS, COMPSS_INFER_CU="1")).stdout
    assert out.strip() == "False"


def test_without_pycompss_the_compss_engine_is_refused(tmp_path, quadrant_model, quadrant_images):
    folder, _ = quadrant_images(2)
    env = subprocess_env(str(tmp_path))
    env["PYTHONPATH"] = SRC  # no binding: `import pycompss` fails, as on a machine without COMPSs
    proc = subprocess.run([sys.executable, "-m", "compss_infer", "run", "--engine", "compss", "--model",
                           quadrant_model(), "--images", folder, "--output", str(tmp_path / "o.csv"),
                           "--set", "preprocess.mode=L",
                           "--set", "preprocess.std=1"], env=env, capture_output=True, text=True)
    assert proc.returncode == 2 and "run.engine=compss needs PyCOMPSs" in proc.stderr


def test_the_model_check_error_is_raised_by_preflight_before_any_task(compss_master, quadrant_model):
    """The model check runs ``init`` in a spawned process; its error comes back as the same exception."""
    import enginetasks
    spec = WorkerSpec(ModelSpec(path=quadrant_model()), PreprocessSpec(mode="L"), SessionSpec())
    engine = make_engine("compss")
    engine.start(enginetasks.init_config_error, spec)
    with pytest.raises(ConfigError, match="no GPU"):
        engine.preflight()
    engine.close(abort=True)
    assert not compss_master.tasks()  # nothing reached COMPSs


def test_a_staged_model_is_kept_by_the_path_of_its_renamed_copy(tmp_path):
    """COMPSs hands a FILE_IN over as <job sandbox>/<name>, a link that goes with the sandbox; the
    task keeps the renamed copy behind it, the same for every job of the run (the cache key)."""
    from compss_infer.engines.compss_tasks import staged_spec
    copy = tmp_path / "worker" / "d3v1_1700000000000.IT"
    copy.parent.mkdir()
    copy.write_text("node {}")
    spec = WorkerSpec(ModelSpec(path="/master/models/m.pbtxt"), PreprocessSpec(mode="L"), SessionSpec())
    paths = []
    for job in (1, 2):
        sandbox = tmp_path / "worker" / "sandBox" / f"job_{job}"
        sandbox.mkdir(parents=True)
        (sandbox / "m.pbtxt").symlink_to(copy)
        paths.append(staged_spec(spec, str(sandbox / "m.pbtxt")).model.path)
    assert paths[0] == paths[1] and paths[0].endswith(".pbtxt") and os.path.realpath(paths[0]) == str(copy)
    binary = WorkerSpec(ModelSpec(path="/master/models/m.pb"), spec.preprocess, spec.session)
    assert staged_spec(binary, str(tmp_path / "worker" / "sandBox" / "job_1" / "m.pbtxt")).model.path == str(copy)


def test_tar_shards_through_compss_a_task_per_shard_slice_staged_as_one_file(compss_master, tmp_path, monkeypatch):
    """Issue 19: shards on the compss engine.  Each task gets a shard slice; with run.stage_shards (no
    shared file system) the shard travels as one FILE_IN per task, never one per image, copied to the
    worker once.  Indexing runs as COMPSs tasks too.  The results equal the sequential engine's."""
    from test_shards import sample, write_tar
    monkeypatch.chdir(tmp_path)
    os.makedirs("data")
    for s in range(2):
        write_tar(f"data/{s}.tar", [m for i in range(s * 6, s * 6 + 6) for m in sample(i)])
    model = tm.write_graph(tm.quadrant_graph(), str(tmp_path / "quad.pb"))
    out = str(tmp_path / "compss.csv")
    summary = run(build_config(None, flags(model, None, out, shards="data/{0..1}.tar", chunk_size=4,
                                           stage_model=True, stage_shards=True, truth_from="cls")))
    assert summary.exit_code == 0 and summary.classified == 12 and summary.accuracy == 1.0
    staged = {p.value for t in compss_master.tasks() for p in t.params if p.type == 10 and not p.keep_rename}
    assert len(staged) == 3  # the model and the two shards travelled as files: one per shard, none per image
    assert {os.path.basename(f) for f in staged} == {"quad.pb", "0.tar", "1.tar"}
    reference = str(tmp_path / "sequential.csv")
    run(build_config(None, flags(model, None, reference, shards="data/{0..1}.tar", chunk_size=4, engine="sequential")))
    assert Path(out).read_bytes() == Path(reference).read_bytes()
