"""Issue 4, items 3-5 and 8: real processes, real signals.

A worker is SIGKILLed mid-run; in other runs the master is SIGKILLed or interrupted (SIGINT to
its process group, like Ctrl-C) at random points (fixed seed, bounded loop) and resumed.  Every
time the final results file must be byte-identical to a clean run's.
"""
import json
import os
import random
import signal
import subprocess
import sys
import time

import psutil
import pytest

import tinymodels as tm

N_IMAGES = 400


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    root = tmp_path_factory.mktemp("faults")
    model = tm.write_graph(tm.quadrant_graph(), str(root / "m.pb"))
    images = str(root / "imgs")
    tm.make_images(images, N_IMAGES, nested=True)
    ref = str(root / "ref.csv")
    assert start(model, images, ref).wait(120) == 0
    return model, images, open(ref, "rb").read()


def start(model, images, out, *extra, workers=1):
    cmd = [sys.executable, "-m", "compss_infer", "run", "--no-progress", "--model", model, "--images", images,
           "--output", out, "--set", "preprocess.mode=L",
           "--set", "preprocess.std=1", "--chunk-size", "4", "--workers", str(workers), *extra]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def journal_lines(out):
    """Records in the journal (the count of record magics; a torn last one counts too)."""
    try:
        with open(out + ".journal/chunks.bin", "rb") as fh:
            return fh.read().count(b"CIJ2")
    except FileNotFoundError:
        return 0


def wait_for_lines(proc, out, n, timeout=60):
    deadline = time.monotonic() + timeout
    while journal_lines(out) < n:
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "run made no progress"
        time.sleep(0.005)


def workers_of(proc):
    """Worker processes: children of the forkserver, itself a child of the master."""
    master = psutil.Process(proc.pid)
    return [g for c in master.children() for g in c.children()]


def test_master_sigkill_at_random_points_then_resume(workload, tmp_path):
    model, images, ref = workload
    rng = random.Random(1234)
    out = str(tmp_path / "out.csv")
    proc = start(model, images, out)
    kills = 0
    for _ in range(2):  # bounded: kill twice at random progress points, then let it finish
        wait_for_lines(proc, out, journal_lines(out) + rng.randint(1, 25))
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(30)
        kills += 1
        assert not os.path.exists(out)  # never a half-written results file
        time.sleep(rng.random() * 0.2)
        proc = start(model, images, out, "--resume")
    stdout, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert open(out, "rb").read() == ref
    summary = json.load(open(out + ".summary.json"))
    assert summary["resumed_with_done"] > 0 and kills == 2
    assert not os.path.exists(out + ".journal")
    time.sleep(0.5)
    assert not [p for p in psutil.process_iter(["cmdline"]) if out in " ".join(p.info["cmdline"] or [])]


@pytest.mark.parametrize("how", ["ctrl-c", "sigterm"])
def test_ctrl_c_exits_130_and_resume_finishes(workload, tmp_path, how):
    model, images, ref = workload
    out = str(tmp_path / "out.csv")
    proc = start(model, images, out, workers=2)
    wait_for_lines(proc, out, 5)
    if how == "ctrl-c":
        os.killpg(proc.pid, signal.SIGINT)  # the whole process group, as a terminal's Ctrl-C does
    else:
        os.kill(proc.pid, signal.SIGTERM)  # what SLURM sends the job at its time limit
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130, stderr
    assert b"--resume" in stderr and not os.path.exists(out)
    done = journal_lines(out)
    assert 0 < done < N_IMAGES // 4
    proc = start(model, images, out, "--resume", workers=2)
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert open(out, "rb").read() == ref


def test_sharded_output_is_resumed_after_ctrl_c(workload, tmp_path):
    """Issue 22: ``--output DIR/`` could not be resumed once the folder existed (--overwrite: test_trust_boundaries)."""
    model, images, ref = workload
    out = str(tmp_path / "parts") + "/"
    shards = ["--format", "csv", "--set", "run.shard_rows=150"]
    proc = start(model, images, out, *shards)
    wait_for_lines(proc, out, 5)  # DIR/.journal/chunks.bin
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and b"run again with --resume to continue" in stderr, stderr
    proc = start(model, images, out, *shards, "--resume")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    header, *body = ref.splitlines(keepends=True)
    parts = json.load(open(out + "manifest.json"))["parts"]
    assert [p["rows"] for p in parts] == [150, 150, 100]
    for i, part in enumerate(parts):  # the same rows as an uninterrupted single-file run
        assert open(out + part["name"], "rb").read() == header + b"".join(body[150 * i:150 * (i + 1)])


def test_resume_refuses_when_inputs_or_model_changed(workload, tmp_path, capsys):
    from compss_infer.cli import main
    model, images, ref = workload
    out = str(tmp_path / "out.csv")
    proc = start(model, images, out)
    wait_for_lines(proc, out, 3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    other = tm.write_graph(tm.quadrant_graph(keep_prob=True), str(tmp_path / "other.pb"))
    base = ["run", "--no-progress", "--images", images, "--output", out, "--set", "preprocess.mode=L",
            "--set", "preprocess.std=1"]
    refusals = [
        (["--model", other, "--resume", "--set", "model.feeds={keep_prob:0: 1.0}"],
         "--resume refused: model, config changed"),
        (["--model", model, "--resume", "--top-k", "2"], "--resume refused: config changed"),
        (["--model", model], "use --resume"),  # neither --resume nor --overwrite: keep the journal
    ]
    for extra, needle in refusals:
        assert main(base + extra) == 2
        assert needle in capsys.readouterr().err
    assert os.path.isdir(out + ".journal")
    os.rename(os.path.join(images, "q0"), os.path.join(images, "q0-moved"))
    try:
        assert main(base + ["--model", model, "--resume"]) == 2
        assert "input list changed" in capsys.readouterr().err
    finally:
        os.rename(os.path.join(images, "q0-moved"), os.path.join(images, "q0"))
    assert main(base + ["--model", model, "--resume"]) == 0
    assert open(out, "rb").read() == ref


def test_interrupted_overwrite_run_hints_a_command_that_resumes_it(workload, tmp_path):
    """The old results stay until the new ones are complete: the hint must be --resume --overwrite."""
    model, images, ref = workload
    out = str(tmp_path / "out.csv")
    with open(out, "wb") as fh:
        fh.write(b"old results\n")
    proc = start(model, images, out, "--overwrite")
    wait_for_lines(proc, out, 5)
    os.killpg(proc.pid, signal.SIGINT)
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 130 and b"--resume --overwrite" in stderr, stderr
    proc = start(model, images, out, "--resume")
    _, stderr = proc.communicate(timeout=60)
    assert proc.returncode == 2 and b"use --resume --overwrite" in stderr, stderr
    assert open(out, "rb").read() == b"old results\n"
    proc = start(model, images, out, "--resume", "--overwrite")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert open(out, "rb").read() == ref


def test_corrupt_record_in_the_middle_is_redone_on_resume(workload, tmp_path):
    model, images, ref = workload
    out = str(tmp_path / "out.csv")
    proc = start(model, images, out)
    wait_for_lines(proc, out, 12)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    path = out + ".journal/chunks.bin"
    data = bytearray(open(path, "rb").read())
    third = [i for i in range(len(data)) if data.startswith(b"CIJ2", i)][2]
    data[third + 40] ^= 0xFF  # one flipped byte inside the third record's payload
    open(path, "wb").write(bytes(data))
    proc = start(model, images, out, "--resume")
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert open(out, "rb").read() == ref
    summary = json.load(open(out + ".summary.json"))
    done = summary["resumed_with_done"]
    assert 0 < done < N_IMAGES and done % 4 == 0  # the corrupt chunk is not counted as done
    assert summary["images_per_s"] == pytest.approx((N_IMAGES - done) / summary["wall_s"], rel=0.01)


def test_worker_sigkill_mid_run_loses_nothing(workload, tmp_path):
    model, images, ref = workload
    out = str(tmp_path / "out.csv")
    proc = start(model, images, out, workers=2)
    wait_for_lines(proc, out, 10)
    victims = workers_of(proc)
    assert victims
    random.Random(7).choice(victims).kill()
    _, stderr = proc.communicate(timeout=120)
    assert proc.returncode == 0, stderr
    assert open(out, "rb").read() == ref
    summary = json.load(open(out + ".summary.json"))
    assert summary["tasks"]["worker_replacements"] >= 1


def run_with_faults(model, images, out, *extra):
    env = {**os.environ, "COMPSS_INFER_TEST_FAULTS": "1",
           "PYTHONPATH": os.pathsep.join([os.path.join(os.path.dirname(__file__), "faults"), *sys.path])}
    cmd = [sys.executable, "-m", "compss_infer", "run", "--no-progress", "--model", model, "--images", images,
           "--output", out, "--set", "preprocess.mode=L",
           "--set", "preprocess.std=1", "--chunk-size", "4", "--workers", "2", *extra]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=180)


def test_poison_image_that_segfaults_its_decoder_costs_only_its_row(tmp_path):
    images = tmp_path / "imgs"
    truth = dict(tm.make_images(str(images), 13))
    (images / "img_00006_poison.png").write_bytes(b"POISON" + b"\0" * 64)
    model = tm.write_graph(tm.quadrant_graph(), str(tmp_path / "m.pb"))
    out = str(tmp_path / "out.csv")
    res = run_with_faults(model, str(images), out)
    assert res.returncode == 1, res.stderr
    import csv
    rows = list(csv.DictReader(open(out)))
    assert len(rows) == 14 and len({r["path"] for r in rows}) == 14
    bad = [r for r in rows if r["error"]]
    assert [r["path"] for r in bad] == ["img_00006_poison.png"]
    assert bad[0]["error"].startswith("TaskFailed: ") and "SIGSEGV" in bad[0]["error"]
    assert all(int(r["class_id"]) == truth[r["path"]] for r in rows if not r["error"])


def test_hung_decode_is_killed_by_task_timeout(tmp_path):
    images = tmp_path / "imgs"
    truth = dict(tm.make_images(str(images), 7))
    (images / "img_00002_hang.png").write_bytes(b"HANG" + b"\0" * 64)
    model = tm.write_graph(tm.quadrant_graph(), str(tmp_path / "m.pb"))
    out = str(tmp_path / "out.csv")
    t0 = time.monotonic()
    res = run_with_faults(model, str(images), out, "--task-timeout", "1", "--max-retries", "0")
    assert res.returncode == 1, res.stderr
    import csv
    rows = {r["path"]: r for r in csv.DictReader(open(out))}
    assert len(rows) == 8
    assert rows["img_00002_hang.png"]["error"].startswith("TaskFailed: task ran past run.task_timeout=1s")
    assert all(int(r["class_id"]) == truth[p] for p, r in rows.items() if not r["error"])
    assert time.monotonic() - t0 < 60
