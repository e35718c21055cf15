"""Issue 11: failures outside the images end with one line and an exit code a script can trust.

Real file systems (a tmpfs mounted read-only or tiny, where the tests run as root), real processes
and signals (Ctrl-C to the process group during start-up, a stdout whose reader is gone).
"""
import json
import os
import signal
import subprocess
import sys
import time

import pytest

import tinymodels as tm
from compss_infer.cli import main

ROOT = os.geteuid() == 0
needs_root = pytest.mark.skipif(not ROOT, reason="mounting a tmpfs needs root (CI and the build machine are root)")
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def run_cli(*args):
    return main(["run", "--no-progress", *args])


def one_line_error(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "Traceback" not in err[0], err
    return err[0]


@pytest.fixture
def small(tmp_path, quadrant_model, quadrant_images):
    folder, items = quadrant_images(6)
    return quadrant_model(), folder, items


@pytest.fixture
def tmpfs(tmp_path):
    """mount(size, ro) -> a fresh tmpfs folder, unmounted afterwards."""
    mounted = []

    def mount(size="1m", ro=False):
        where = tmp_path / f"mnt{len(mounted)}"
        where.mkdir()
        opts = f"size={size}" + (",ro" if ro else "")
        res = subprocess.run(["mount", "-t", "tmpfs", "-o", opts, "tmpfs", str(where)], capture_output=True, text=True)
        if res.returncode != 0:
            pytest.skip(f"cannot mount a tmpfs here: {res.stderr.strip()}")
        mounted.append(str(where))
        return str(where)
    yield mount
    for where in mounted:
        subprocess.run(["umount", "-l", where], capture_output=True)


def fill(folder):
    """Write a file until the file system is full; returns its path."""
    path = os.path.join(folder, "filler")
    with open(path, "wb", buffering=0) as fh:
        try:
            while True:
                fh.write(b"\0" * 65536)
        except OSError:
            pass
        try:
            while True:
                fh.write(b"\0" * 512)
        except OSError:
            pass
    return path


# ----------------------------------------------------------------------------- output location

@needs_root
def test_read_only_and_full_file_systems_are_refused_before_any_work(small, tmpfs, capsys):
    model, folder, _ = small
    ro = tmpfs(ro=True)
    assert run_cli("--model", model, "--images", folder, "--output", os.path.join(ro, "sub", "r.csv")) == 2
    line = one_line_error(capsys)
    assert f"cannot write in {ro}: read-only file system" in line and "--output" in line
    tiny = tmpfs(size="64k")
    out = os.path.join(tiny, "r.csv")
    assert run_cli("--model", model, "--images", folder, "--output", out) == 2
    assert f"cannot write in {tiny}: no space left" in one_line_error(capsys)
    assert os.listdir(tiny) == []  # the probe left nothing behind


@needs_root
def test_permission_denied_names_the_folder():
    import shutil
    import tempfile
    top = tempfile.mkdtemp(prefix="compss-infer-perm.")  # outside pytest's 0700 folder: reachable by nobody
    try:
        os.chmod(top, 0o755)
        locked = os.path.join(top, "locked")
        os.mkdir(locked, 0o755)
        code = ("import os\nfrom compss_infer.run.checks import check_writable_folder\n"
                "os.setgid(65534); os.setuid(65534)\n"
                f"check_writable_folder({os.path.join(locked, 'new')!r}, '--output x.csv')\n")
        res = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, env=ENV, timeout=60)
    finally:
        shutil.rmtree(top)
    assert res.returncode == 1
    assert f"InputError: --output x.csv: cannot write in {locked}: permission denied" in res.stderr


def test_output_that_is_a_directory_or_under_a_file(small, tmp_path, capsys):
    model, folder, _ = small
    (tmp_path / "d.csv").mkdir()
    assert run_cli("--model", model, "--images", folder, "--output", str(tmp_path / "d.csv"), "--overwrite") == 2
    assert one_line_error(capsys).endswith("d.csv: is a directory")
    (tmp_path / "plain").write_text("x")
    assert run_cli("--model", model, "--images", folder, "--output", str(tmp_path / "plain" / "r.csv")) == 2
    assert "plain is not a directory" in one_line_error(capsys)


@needs_root
def test_disk_full_mid_run_exits_3_keeps_the_journal_and_resume_finishes(tmp_path, tmpfs):
    """The disk fills while a chunk hangs; the run ends with exit 3 and one line; once there is
    space, --resume finishes it."""
    model = tm.write_graph(tm.quadrant_graph(), str(tmp_path / "m.pb"))
    images = tmp_path / "imgs"
    items = tm.make_images(str(images), 6)
    (images / "zz_hang.png").write_bytes(b"HANG" + b"\0" * 64)  # the fault hook sleeps on it
    disk = tmpfs(size="2m")
    out = os.path.join(disk, "r.csv")
    env = {**ENV, "COMPSS_INFER_TEST_FAULTS": "1",
           "PYTHONPATH": os.pathsep.join([os.path.join(os.path.dirname(__file__), "faults"), *sys.path])}
    cmd = [sys.executable, "-m", "compss_infer", "run", "--no-progress", "--model", model, "--images", str(images),
           "--output", out, "--set", "preprocess.mode=L",
           "--set", "preprocess.std=1", "--chunk-size", "1", "--workers", "1",
           "--max-retries", "0", "--task-timeout", "4"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, start_new_session=True)
    chunks = out + ".journal/chunks.bin"
    deadline = time.monotonic() + 90
    while not (os.path.exists(chunks) and open(chunks, "rb").read().count(b"CIJ2") >= len(items)):
        assert proc.poll() is None, proc.communicate()
        assert time.monotonic() < deadline, "the run made no progress"
        time.sleep(0.02)
    filler = fill(disk)  # now the hanging chunk times out and its row, then the results, need space
    _, err = proc.communicate(timeout=90)
    lines = err.decode().strip().splitlines()
    assert proc.returncode == 3, lines
    assert "Traceback" not in err.decode() and lines[-1].startswith("compss-infer: error: RunAborted: "), lines
    assert f"{disk}: no space left" in lines[-1] and "--resume" in lines[-1], lines  # before it: the time-out warnings
    assert os.path.isdir(out + ".journal") and not os.path.exists(out)
    os.unlink(filler)
    res = subprocess.run(cmd + ["--resume"], capture_output=True, text=True, env=env, timeout=120)
    assert res.returncode == 1, res.stderr  # finished; the hanging image is the one failed row
    rows = open(out).read().splitlines()
    assert len(rows) == len(items) + 2 and rows[-1].startswith("zz_hang.png,,,,TaskFailed: ")
    assert not os.path.exists(out + ".journal")


# ----------------------------------------------------------------------------- no tracebacks

def test_binary_or_non_utf8_config_and_models_given_as_config(small, tmp_path, capsys):
    model, folder, _ = small
    binary = tmp_path / "cfg.yaml"
    binary.write_bytes(bytes(range(256)) * 4)
    assert main(["run", str(binary)]) == 2
    assert "is not text (not UTF-8)" in one_line_error(capsys)
    latin = tmp_path / "latin.yaml"
    latin.write_bytes("run:\n  output: caf\xe9.csv\n".encode("latin-1"))
    assert main(["run", str(latin)]) == 2
    assert "not UTF-8" in one_line_error(capsys)
    assert main(["run", model, "--images", folder]) == 2
    assert f"did you mean --model {model}?" in one_line_error(capsys)
    labels = tmp_path / "labels.txt"
    labels.write_bytes(b"\xff\xfe\x00binary")
    assert run_cli("--model", model, "--images", folder, "--output", str(tmp_path / "o.csv"), "--labels", str(labels)) == 2
    assert "model.labels: " in one_line_error(capsys)
    disguised = tmp_path / "model.yaml"  # GraphDef bytes under a YAML name
    disguised.write_bytes(open(model, "rb").read())
    assert main(["run", str(disguised)]) == 2
    assert "is a GraphDef model" in one_line_error(capsys)


def test_model_folders_keras_files_and_checkpoints(small, tmp_path, capsys):
    from compss_infer.model.files import check_model_path, looks_like_checkpoint
    model, folder, _ = small
    out = str(tmp_path / "r.csv")
    assert run_cli("--model", str(tmp_path), "--images", folder, "--output", out) == 2
    assert "is a folder, not a model file" in one_line_error(capsys)
    saved = tmp_path / "saved"
    saved.mkdir()
    (saved / "saved_model.pb").write_bytes(b"\n\x00")
    keras = tmp_path / "net.keras"
    keras.write_bytes(b"PK\x03\x04rest")
    h5 = tmp_path / "net.h5"
    h5.write_bytes(b"\x89HDF\r\n\x1a\n")
    for path, kind in ((saved, "SavedModel"), (keras, "Keras model"), (h5, "Keras model")):
        assert run_cli("--model", str(path), "--images", folder, "--output", out) == 2
        line = one_line_error(capsys)
        assert kind in line and f"compss-infer freeze {path} --output MODEL.pb" in line, line
    ckpt = tmp_path / "ckpt"
    ckpt.mkdir()
    (ckpt / "checkpoint").write_text('model_checkpoint_path: "model.ckpt"\n')
    (ckpt / "model.ckpt.index").write_bytes(b"")
    assert looks_like_checkpoint(str(ckpt)) and looks_like_checkpoint(str(ckpt / "model.ckpt"))
    check_model_path(str(ckpt))  # not refused as "a folder": checkpoints are another issue's to load
    check_model_path(str(ckpt / "model.ckpt"))
    assert not looks_like_checkpoint(str(tmp_path / "imgs"))


def test_feeds_list_value_gives_one_line(small, tmp_path, capsys):
    model, folder, _ = small
    out = str(tmp_path / "r.csv")
    assert run_cli("--model", model, "--images", folder, "--output", out, "--engine", "sequential",
                   "--set", 'model.feeds={"extra:0": [1.0, 2.0]}', "--set", "preprocess.mode=L",
                   "--set", "preprocess.std=1") == 2
    line = one_line_error(capsys)
    assert "model.feeds: no tensor 'extra:0'" in line and "unhashable" not in line
    assert run_cli("--model", model, "--images", folder, "--output", out, "--set", "model.feeds=[1, 2]") == 2
    assert "model.feeds: expected a mapping" in one_line_error(capsys)


def test_closed_stdout_exits_quietly(small):
    model, _, _ = small
    for args in (["inspect", model, "--json"], ["run", "--help"]):
        r, w = os.pipe()
        os.close(r)  # the reader is gone before we write, like `... | head` after its lines
        res = subprocess.run([sys.executable, "-m", "compss_infer", *args], stdout=w, stderr=subprocess.PIPE,
                             env=ENV, timeout=120)
        os.close(w)
        assert res.stderr.decode() == "" and res.returncode in (0, 141), (args, res.stderr.decode()[-800:])


def test_closed_stderr_does_not_end_the_run(small, tmp_path):
    model, folder, items = small
    out = str(tmp_path / "r.csv")
    res = subprocess.run([sys.executable, "-m", "compss_infer", "run", "--model", model, "--images", folder,
                          "--output", out, "--set", "preprocess.mode=L", "--set", "preprocess.std=1", "--workers", "1"],
                         stdout=subprocess.PIPE, env=ENV, timeout=120, preexec_fn=lambda: os.close(2))
    assert res.returncode == 0 and res.stdout.decode().startswith(f"compss-infer: {len(items)} images")
    assert len(open(out).read().splitlines()) == len(items) + 1


@pytest.mark.parametrize("delay", [0.3, 0.6, 1.2])  # 0.3 s: past the interpreter start-up, inside the forkserver start
def test_ctrl_c_during_start_up_prints_one_line(small, tmp_path, delay):
    model, folder, _ = small
    out = str(tmp_path / "r.csv")
    proc = subprocess.Popen([sys.executable, "-m", "compss_infer", "run", "--no-progress", "--model", model,
                             "--images", folder, "--output", out, "--set", "preprocess.mode=L",
                             "--set", "preprocess.std=1", "--workers", "1"],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=ENV, start_new_session=True)
    time.sleep(delay)
    os.killpg(proc.pid, signal.SIGINT)  # the whole group, as a terminal's Ctrl-C does
    _, err = proc.communicate(timeout=60)  # EOF once the forkserver is gone too: its log lines would be here
    lines = err.decode().strip().splitlines()
    if proc.returncode == 0 and delay >= 1:  # TensorFlow alone takes ~2 s to import: a lost Ctrl-C below that
        pytest.skip(f"the run finished within {delay}s on this machine")
    assert proc.returncode == 130 and len(lines) == 1 and lines[0].startswith("compss-infer: interrupted"), lines
    if "before any result" in lines[0] or lines[0] == "compss-infer: interrupted":
        assert not os.path.exists(out + ".journal")  # nothing to resume: no journal left to trip over


def test_a_ctrl_c_while_children_start_is_never_dropped():
    """The kernel may hand a process's SIGINT to any thread that does not block it (the planner, a BLAS
    pool): while children start, SIGINT is blocked in this thread only, never ignored process-wide,
    so such a Ctrl-C still reaches the master's handler; a child starts with it blocked."""
    import threading
    from compss_infer.engines.local import _ChildrenStartWithSigintBlocked
    got = []
    old = signal.signal(signal.SIGINT, lambda signum, frame: got.append(signum))
    stop = threading.Event()
    other = threading.Thread(target=stop.wait)  # a thread that does not block SIGINT
    other.start()
    try:
        with _ChildrenStartWithSigintBlocked():
            child = subprocess.run([sys.executable, "-c", "import signal; print(signal.SIGINT in "
                                    "signal.pthread_sigmask(signal.SIG_BLOCK, []))"], capture_output=True, text=True)
            os.kill(os.getpid(), signal.SIGINT)
            time.sleep(0.2)
        time.sleep(0.2)  # Python runs signal handlers in the main thread, between bytecodes
    finally:
        stop.set()
        other.join()
        signal.signal(signal.SIGINT, old)
    assert child.stdout.strip() == "True"
    assert got == [signal.SIGINT]


def test_a_handled_ctrl_c_exits_130_not_by_the_signal(tmp_path):
    """CPython marks a KeyboardInterrupt that left an ``exec`` of a string (dataclasses build methods so,
    during any import) and, under ``python -m``, ends the process by SIGINT even though it was caught;
    ``python -m compss_infer`` clears the mark before it exits."""
    (tmp_path / "interrupted_import.py").write_text(
        "import os, signal, sys\n"
        "try:\n"
        "    exec('import os, signal\\nos.kill(os.getpid(), signal.SIGINT)\\nfor i in range(1000): pass')\n"
        "except KeyboardInterrupt:\n"
        "    pass\n"
        "if sys.argv[1:] == ['clear']:\n"
        "    from compss_infer.__main__ import _clear_caught_interrupt\n"
        "    _clear_caught_interrupt()\n"
        "sys.exit(130)\n")
    run = [sys.executable, "-m", "interrupted_import"]
    env = {**ENV, "PYTHONPATH": os.pathsep.join([str(tmp_path), ENV["PYTHONPATH"]])}
    assert subprocess.run(run, env=env, cwd=tmp_path).returncode == -signal.SIGINT  # CPython's own behaviour
    assert subprocess.run(run + ["clear"], env=env, cwd=tmp_path).returncode == 130


# ----------------------------------------------------------------------------- special files

def test_special_outputs_are_never_replaced(small, tmp_path, capsys):
    model, folder, _ = small
    fifo = tmp_path / "f.csv"
    os.mkfifo(fifo)
    for target in (str(fifo), "/dev/null"):
        assert run_cli("--model", model, "--images", folder, "--output", target, "--overwrite", "--format", "csv") == 2
        assert "not a regular file" in one_line_error(capsys)
    assert os.path.exists("/dev/null") and not os.path.isfile("/dev/null")
    link = tmp_path / "null.csv"
    os.symlink("/dev/null", link)
    assert run_cli("--model", model, "--images", folder, "--output", str(link), "--overwrite") == 2
    assert "character device" in one_line_error(capsys) and os.path.islink(link)


def test_symlinked_output_writes_the_target_and_keeps_the_link(small, tmp_path):
    model, folder, items = small
    (tmp_path / "real").mkdir()
    (tmp_path / "links").mkdir()
    target = tmp_path / "real" / "r.csv"
    target.write_text("old\n")
    link = tmp_path / "links" / "r.csv"
    os.symlink(os.path.join("..", "real", "r.csv"), link)
    assert run_cli("--model", model, "--images", folder, "--output", str(link), "--overwrite",
                   "--set", "preprocess.mode=L", "--set", "preprocess.std=1") == 0
    assert os.path.islink(link) and os.readlink(link) == os.path.join("..", "real", "r.csv")
    assert target.read_text().startswith("path,") and len(target.read_text().splitlines()) == len(items) + 1
    assert not [f for f in os.listdir(tmp_path / "real") + os.listdir(tmp_path / "links") if f.endswith(".tmp")]


def test_output_dash_is_refused_and_creates_nothing(small, tmp_path, capsys, monkeypatch):
    model, folder, _ = small
    monkeypatch.chdir(tmp_path)
    assert run_cli("--model", model, "--images", folder, "--output", "-") == 2
    assert "--output -: results cannot go to stdout" in one_line_error(capsys)
    assert not [f for f in os.listdir(tmp_path) if f.startswith("-")]


# ----------------------------------------------------------------------------- warm-up, wording, help

def test_warm_up_uses_the_runs_image_count_not_the_batch_size(small, tmp_path, capsys):
    """A batch of 10^8 8x8 images would need 25 GB: a 6-image run must not try to allocate it."""
    model, folder, items = small
    out = str(tmp_path / "r.csv")
    assert run_cli("--model", model, "--images", folder, "--output", out, "--batch-size", str(10**8),
                   "--engine", "sequential", "--set", "preprocess.mode=L", "--set", "preprocess.std=1") == 0
    assert len(open(out).read().splitlines()) == len(items) + 1


def test_a_batch_that_cannot_be_allocated_names_the_batch_size(small):
    from compss_infer.run.config import build_config
    from compss_infer.core.contracts import WorkerSpec
    from compss_infer.core.errors import ModelError
    from compss_infer.model.predictor import Predictor
    model, folder, _ = small
    cfg = build_config(None, {"model": {"path": model}, "preprocess": {"mode": "L", "std": 1.0}})
    spec = WorkerSpec(model=cfg.model, preprocess=cfg.preprocess, session=cfg.session, batch_size=10**12)
    with pytest.raises(ModelError, match=r"a batch of 1000000000000 images (does not fit in memory|cannot be "
                                         r"allocated).*smaller --batch-size"):
        Predictor(spec, open(model, "rb").read())


def test_rates_are_labelled_the_same_and_never_zero(small, tmp_path, capsys):
    import io

    from compss_infer.run.progress import AFTER_FIRST, WHOLE, Progress, format_rate
    assert format_rate(0.3) == "0.3" and format_rate(12.34) == "12.3" and format_rate(5383.2) == "5,383"
    model, folder, items = small
    out = str(tmp_path / "r.csv")
    assert main(["run", "--model", model, "--images", folder, "--output", out, "--set", "preprocess.mode=L",
                 "--set", "preprocess.std=1",
                 "--chunk-size", "2", "--workers", "1"]) == 0
    captured = capsys.readouterr()
    summary_line = captured.out.strip().splitlines()[-1]
    progress_line = captured.err.strip().splitlines()[-1]
    assert "(0 img/s" not in summary_line and f" {WHOLE}" in summary_line
    assert f" {WHOLE}" in progress_line and "ETA" not in progress_line
    data = json.load(open(out + ".summary.json"))
    assert data["images_per_s"] > 0
    if data["after_first_images_per_s"] is not None:
        assert f" {AFTER_FIRST}" in summary_line and f" {AFTER_FIRST}" in progress_line
    stream = io.StringIO()
    p = Progress(total=4, stream=stream, every=0.0, started=time.monotonic() - 100)
    p.update(1)
    assert "0.01 img/s whole process" in stream.getvalue() and AFTER_FIRST not in stream.getvalue()


def test_help_has_no_restructuredtext_markup():
    from compss_infer.cli import build_parser
    parser = build_parser()
    sub = next(a for a in parser._actions if a.choices and "run" in a.choices)
    for name, p in sub.choices.items():
        text = p.format_help()
        assert "``" not in text and ":class:" not in text, name
