"""Issue 22: cards, graphs, folders and output paths that someone else made.

One test (or more) per reproduced problem, the hostile input built on the fly: a card that switches
the audit off, a path graph that reads a fixed file, planted side-file links, one output under two
names, YAML bombs, a FIFO and /dev/zero as labels, unreadable / unlistable / linked folders, and
file names no CSV or JSON reader survives unless the writer quotes or escapes them.
"""
import base64
import csv
import io
import json
import os
import random
import shutil
import subprocess
import sys
import tempfile

import pytest

import tinymodels as tm
from compss_infer.cli import main
from compss_infer.model.session import import_tf

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
ENV = {**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)}


def run(model, images, out, *extra, raw=True):
    """A run on the sequential engine (in this process); ``raw``: 0..255 pixels, chosen explicitly
    (a graph that takes paths has no preprocessing to choose)."""
    return main(["run", "--no-progress", "--engine", "sequential", "--model", model, "--images", images,
                 "--output", out, *(["--set", "preprocess.std=1"] if raw else []), *extra])


def err_lines(capsys):
    return capsys.readouterr().err.strip().splitlines()


@pytest.fixture
def small(tmp_path):
    """(model, images folder) of the quadrant classifier, its card saying mode L."""
    model = tm.write_graph(tm.quadrant_graph(), str(tmp_path / "q.pb"))
    (tmp_path / "q.yaml").write_text("model:\n  output: probs:0\npreprocess:\n  mode: L\n  std: 1\n")
    images = str(tmp_path / "imgs")
    tm.make_images(images, 4)
    return model, images


# --------------------------------------------------------------------------- 1. cards and configs are data

def write_file_graph(target):
    tf = import_tf()
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 1], name="images")
        logits = tm._quadrant_logits(tf, x, 8, 8)
        w = tf.io.write_file(target, "pwned")
        with tf.control_dependencies([w]):
            logits = tf.identity(logits)
        tf.nn.softmax(logits, name="probs")
    return g.as_graph_def()


@pytest.mark.parametrize("where", ["card", "config"])
def test_a_file_cannot_switch_the_op_audit_off(tmp_path, capsys, where):
    target = str(tmp_path / "pwned.txt")
    model = tm.write_graph(write_file_graph(target), str(tmp_path / "m.pb"))
    images = str(tmp_path / "imgs")
    tm.make_images(images, 4)
    section = "model:\n  allow_unsafe_ops: true\npreprocess:\n  mode: L\n  std: 1\n"
    extra = []
    if where == "card":
        (tmp_path / "m.yaml").write_text(section)  # beside the model: applied automatically
    else:
        (tmp_path / "c.yaml").write_text(section)
        extra = [str(tmp_path / "c.yaml")]
    assert main(["run", *extra, "--no-progress", "--engine", "sequential", "--model", model, "--images", images,
                 "--output", str(tmp_path / "out.csv")]) == 2
    err = err_lines(capsys)
    assert len(err) == 2, err
    assert "sets model.allow_unsafe_ops: ignored" in err[0] and "--allow-unsafe-ops" in err[0]
    assert "WriteFile" in err[1] and "unsafe op" in err[1]
    assert not os.path.exists(target) and not os.path.exists(tmp_path / "out.csv")
    # the command line still decides: the same run with the flag writes the file (the audit was right)
    assert main(["run", *extra, "--no-progress", "--engine", "sequential", "--model", model, "--images", images,
                 "--output", str(tmp_path / "out.csv"), "--set", "model.allow_unsafe_ops=true"]) == 0
    assert open(target).read() == "pwned"


def test_a_card_may_lower_max_pixels_but_not_raise_it(tmp_path, caplog):
    from compss_infer.core.specs import PILLOW_MAX_PIXELS
    from compss_infer.run.config import build_config
    model = tm.write_graph(tm.quadrant_graph(), str(tmp_path / "q.pb"))
    card = tmp_path / "q.yaml"
    card.write_text("preprocess:\n  max_pixels: 1000000000000\n")
    assert build_config(None, {"model": {"path": model}}).preprocess.max_pixels == PILLOW_MAX_PIXELS
    assert "sets preprocess.max_pixels: ignored" in caplog.text
    card.write_text("preprocess:\n  max_pixels: 100\n")
    assert build_config(None, {"model": {"path": model}}).preprocess.max_pixels == 100
    cfg = build_config(None, {"model": {"path": model}}, ["preprocess.max_pixels=1000000000000"])
    assert cfg.preprocess.max_pixels == 10 ** 12  # --set is the command line


def alias_bomb() -> str:
    lines = ['a: &a ["lol","lol","lol","lol","lol","lol","lol","lol","lol"]']
    for i, name in enumerate("bcdefghi"):
        prev = "abcdefghi"[i]
        lines.append(f"{name}: &{name} [" + ",".join([f"*{prev}"] * 9) + "]")
    return "\n".join(lines) + "\n"


@pytest.mark.parametrize("case, needle", [
    ("alias bomb in the config", "aliases"),
    ("alias bomb in the card", "aliases"),
    ("deep list", "nested deeper than"),
    ("huge file", "bytes, more than"),
    ("deep value", "expected an integer"),
    ("long value", "expected an integer"),
])
def test_yaml_is_read_with_limits_and_refusals_stay_short(tmp_path, capsys, small, case, needle):
    model, images = small
    config = tmp_path / "c.yaml"
    bomb = alias_bomb()
    assert len(bomb.encode()) < 500  # the 490-byte bomb: ~4*10^8 strings once expanded
    text = {
        "alias bomb in the config": bomb + "model:\n  feeds: {x: *i}\n",
        "deep list": "run:\n  workers: " + "[" * 20000 + "]" * 20000 + "\n",
        "huge file": "# " + "x" * (2 << 20) + "\nrun:\n  workers: 2\n",
        "deep value": "run:\n  workers: " + "[" * 60 + "1" + "]" * 60 + "\n",
        "long value": "run:\n  workers: " + "y" * 500_000 + "\n",
    }.get(case)
    extra = []
    if case == "alias bomb in the card":  # beside the model: applied automatically
        (tmp_path / "q.yaml").write_text(bomb + "preprocess:\n  mode: L\nmodel:\n  feeds: {x: *i}\n")
    else:
        config.write_text(text)
        extra = [str(config)]
    assert main(["run", *extra, "--no-progress", "--model", model, "--images", images,
                 "--output", str(tmp_path / "o.csv")]) == 2
    err = err_lines(capsys)
    assert len(err) == 1 and needle in err[0] and len(err[0]) < 400, err


def test_yaml_on_the_command_line_has_the_same_limits(tmp_path, capsys, small):
    model, images = small
    value = alias_bomb().replace("\n", ", ").rstrip(", ")
    assert run(model, images, str(tmp_path / "o.csv"), "--set", "model.feeds={" + value + ", x: *i}") == 2
    err = err_lines(capsys)
    assert len(err) == 1 and "value refused" in err[0] and "aliases" in err[0] and len(err[0]) < 400, err


@pytest.mark.parametrize("what", ["config", "labels"])
@pytest.mark.parametrize("kind", ["fifo", "/dev/zero"])
def test_a_fifo_or_device_never_hangs_nor_fills_memory(tmp_path, small, what, kind):
    """In a child with a time limit: a FIFO hung the run forever before issue 22."""
    model, images = small
    path = "/dev/zero"
    if kind == "fifo":
        path = str(tmp_path / "pipe")
        os.mkfifo(path)
    args = ["--no-progress", "--engine", "sequential", "--model", model, "--images", images,
            "--output", str(tmp_path / "o.csv")]
    args = ["run"] + ([path] + args if what == "config" else args + ["--labels", path])
    res = subprocess.run([sys.executable, "-m", "compss_infer", *args], capture_output=True, text=True,
                         timeout=120, env=ENV)
    err = res.stderr.strip().splitlines()
    assert res.returncode == 2 and len(err) == 1, res.stderr
    assert ("FIFO" if kind == "fifo" else "character device") in err[0] and "not a regular file" in err[0]


# --------------------------------------------------------------------------- 2. ReadFile only for the path

def path_graph_reading(name_of):
    """A scalar-path quadrant graph that also reads the file ``name_of(path)`` into its scores (x 0)."""
    tf = import_tf()
    g = tf.Graph()
    with g.as_default():
        p = tf.compat.v1.placeholder(tf.string, [], name="image_path")
        img = tf.io.decode_image(tf.io.read_file(p), channels=1, expand_animations=False)
        x = tf.expand_dims(tf.image.resize(tf.cast(img, tf.float32), [8, 8]), 0)
        extra = tf.cast(tf.strings.length(tf.io.read_file(name_of(tf, p))), tf.float32) * 0.0
        tf.squeeze(tf.nn.softmax(tm._quadrant_logits(tf, x, 8, 8) + extra), 0, name="probs")
    return g.as_graph_def()


def test_read_file_is_allowed_only_on_the_path_the_run_feeds(tmp_path, capsys):
    secret = tmp_path / "secret.txt"
    secret.write_text("top secret")
    images = str(tmp_path / "imgs")
    tm.make_images(images, 3)
    cases = {
        "fixed file": (lambda tf, p: str(secret), False),
        "regex rewrite of the path": (lambda tf, p: tf.strings.regex_replace(p, ".*", str(secret)), False),
        "an empty slice of the path + a fixed name": (
            lambda tf, p: tf.strings.join([tf.strings.substr(p, 0, 0), str(secret)]), False),
        "the path, stripped": (lambda tf, p: tf.strings.strip(tf.identity(p)), True),
    }
    for name, (name_of, safe) in cases.items():
        model = tm.write_graph(path_graph_reading(name_of), str(tmp_path / "r.pb"))
        capsys.readouterr()
        assert main(["inspect", model, "--json"]) == 0
        info = json.loads(capsys.readouterr().out)
        assert info["safe"] is safe, (name, info["unsafe_ops"])
        code = run(model, images, str(tmp_path / "o.csv"), "--overwrite", raw=False)
        assert code == (0 if safe else 2), name  # run decides as inspect said
        if not safe:
            assert "reads a file that is not the image path" in capsys.readouterr().err


def test_read_file_inside_a_library_function_is_unsafe(tmp_path, capsys):
    model = tm.write_graph(tm.path_graph(batched=True), str(tmp_path / "b.pb"))  # map_fn: ReadFile in a function
    images = str(tmp_path / "imgs")
    tm.make_images(images, 2)
    assert run(model, images, str(tmp_path / "o.csv"), raw=False) == 2
    err = err_lines(capsys)
    assert len(err) == 1 and "ReadFile" in err[0] and "library function" in err[0]


# --------------------------------------------------------------------------- 3. outputs

@pytest.mark.parametrize("suffix", [".tasks.csv", ".summary.json", ".report.html", ".journal"])
def test_a_planted_side_file_link_is_refused_and_its_target_untouched(tmp_path, capsys, small, suffix):
    model, images = small
    victim = tmp_path / "victim.txt"
    victim.write_text("someone else's file\n")
    out = str(tmp_path / "shared" / "out.csv")
    os.makedirs(os.path.dirname(out))
    os.symlink(victim if suffix != ".journal" else tmp_path, out + suffix)
    extra = ["--report"] if suffix == ".report.html" else []
    assert run(model, images, out, *extra) == 2
    err = err_lines(capsys)
    assert len(err) == 1 and "is a symbolic link" in err[0], err
    assert victim.read_text() == "someone else's file\n" and not os.path.exists(out)


def test_side_files_are_written_over_the_name_never_through_a_link(tmp_path):
    """The write itself (a link planted after the checks): the link is replaced, its target kept."""
    from compss_infer.core.atomic import write_atomically
    from compss_infer.run.results import write_json
    victim = tmp_path / "victim.txt"
    victim.write_text("keep me\n")
    for i, write in enumerate((lambda p: write_json(p, {"a": 1}),
                               lambda p: write_atomically(p, lambda fh: fh.write("x\n"), follow=False))):
        side = str(tmp_path / f"out{i}.side")
        os.symlink(victim, side)
        write(side)
        assert not os.path.islink(side) and victim.read_text() == "keep me\n"


def test_one_output_under_two_names_shares_one_lock(tmp_path, capsys, small):
    from compss_infer.run.journal import Journal
    model, images = small
    real = str(tmp_path / "real.csv")
    link = str(tmp_path / "link.csv")
    os.symlink(real, link)
    first = Journal(link)  # a run writing link.csv holds its journal now
    first.create()
    try:
        assert run(model, images, real) == 2
        err = err_lines(capsys)
        assert len(err) == 1 and "another compss-infer run is writing" in err[0], err
        assert run(model, images, real, "--overwrite") == 2  # even with --overwrite
    finally:
        first.remove()
    assert run(model, images, link) == 0 and os.path.isfile(real)
    capsys.readouterr()
    assert run(model, images, real) == 2  # exists (the same file, by the other name)
    assert "output exists" in capsys.readouterr().err


def test_publishing_never_replaces_a_file_that_appeared_meanwhile(tmp_path):
    from compss_infer.core.atomic import atomic_open
    path = tmp_path / "out.csv"
    with pytest.raises(FileExistsError):
        with atomic_open(str(path), "w", replace=False) as fh:
            fh.write("mine\n")
            path.write_text("theirs\n")  # another program, while this run worked
    assert path.read_text() == "theirs\n" and os.listdir(tmp_path) == ["out.csv"]  # no temp file left
    path.unlink()
    with atomic_open(str(path), "w", replace=False) as fh:
        fh.write("mine\n")
    assert path.read_text() == "mine\n"


def test_sharded_output_can_be_overwritten(tmp_path, capsys, small):
    model, images = small
    out = str(tmp_path / "parts") + "/"
    args = ["--format", "csv", "--set", "run.shard_rows=3"]
    assert run(model, images, out, *args) == 0
    first = sorted(os.listdir(out))
    capsys.readouterr()
    assert run(model, images, out, *args) == 2 and "use --overwrite" in capsys.readouterr().err
    assert run(model, images, out, *args[:-1], "run.shard_rows=1", "--overwrite") == 0
    assert sorted(os.listdir(out)) == sorted(first + ["part-00002.csv", "part-00003.csv"])
    assert json.load(open(out + "manifest.json"))["images"] == 4
    capsys.readouterr()
    assert run(model, images, out, *args, "--resume") == 2  # the run finished: nothing to resume
    assert "output exists" in capsys.readouterr().err


# --------------------------------------------------------------------------- 4. the walk loses nothing silently

def deep_folder(root, levels=18, name="d" * 250):
    """A chain of folders whose full path is longer than PATH_MAX (made with dir_fd), one image at the end."""
    fd = os.open(root, os.O_RDONLY)
    try:
        for _ in range(levels):
            os.mkdir(name, dir_fd=fd)
            nfd = os.open(name, os.O_RDONLY, dir_fd=fd)
            os.close(fd)
            fd = nfd
        img = os.open("lost.png", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
        with os.fdopen(img, "wb") as fh:
            tm.quadrant_image(1).save(fh, format="PNG")
    finally:
        os.close(fd)


def test_a_folder_the_walk_cannot_list_is_named_and_the_run_goes_on(tmp_path, capsys):
    model = tm.write_graph(tm.quadrant_graph(), str(tmp_path / "q.pb"))
    images = str(tmp_path / "imgs")
    items = tm.make_images(images, 5, nested=True)
    deep_folder(images)
    out = str(tmp_path / "o.csv")
    capsys.readouterr()
    assert run(model, images, out, "--set", "preprocess.mode=L") == 1  # not 3: nothing aborted
    cap = capsys.readouterr()
    rows = list(csv.DictReader(open(out, newline="", encoding="utf-8")))
    assert [r["path"] for r in rows] == [rel for rel, _ in items] and all(r["error"] == "" for r in rows)
    warning = [line for line in cap.err.splitlines() if "could not be listed" in line]
    assert len(warning) == 1 and "file name too long" in warning[0] and "once there is space" not in cap.err
    assert "1 folder(s) could not be listed" in cap.out
    summary = json.load(open(out + ".summary.json"))
    assert summary["unlisted_folders"]["count"] == 1 and summary["exit_code"] == 1
    assert summary["unlisted_folders"]["folders"][0]["reason"] == "file name too long"


def test_an_unreadable_folder_is_named_when_run_as_a_user(tmp_path):
    """Root reads every folder, so the run happens in a child that drops to uid 65534 (nobody).

    The model is the bundled .tflite (LiteRT, no TensorFlow import: a quick child).  The child
    first runs once as root on a readable folder, so that every module the run imports lazily is
    loaded before it drops to nobody (the interpreter's own files are not readable by nobody here).
    """
    if os.geteuid() != 0:
        pytest.skip("needs root to switch to uid 65534 (as a plain user, chmod 000 is already enough)")
    base = tempfile.mkdtemp(prefix="ci-unreadable-")
    try:
        os.chmod(base, 0o777)
        images = os.path.join(base, "imgs")
        digits = os.path.join(ROOT, "images", "digits")
        for i, cls in enumerate(("0", "1", "private", "../warm/0")):
            os.makedirs(os.path.join(images, cls))
            src = os.path.join(digits, str(i), sorted(os.listdir(os.path.join(digits, str(i))))[0])
            shutil.copy(src, os.path.join(images, cls, "a.png"))
        os.chmod(os.path.join(images, "private"), 0o000)
        out = os.path.join(base, "o.csv")
        code = ("import os, sys\n"
                "from compss_infer.cli import main\n"
                "model, warm, images, out = sys.argv[1:5]\n"
                "common = ['run', '--no-progress', '--engine', 'sequential', '--model', model]\n"
                "assert main(common + ['--images', warm, '--output', out + '.warm.csv']) == 0\n"
                "os.setgid(65534); os.setuid(65534)\n"
                "sys.exit(main(common + ['--images', images, '--output', out]))\n")
        res = subprocess.run([sys.executable, "-c", code, os.path.join(ROOT, "models", "digits_cnn_int8.tflite"),
                              os.path.join(base, "warm"), images, out], capture_output=True, text=True,
                             timeout=120, env=ENV)
        assert res.returncode == 1, res.stderr
        warning = [line for line in res.stderr.splitlines() if "could not be listed" in line]
        assert len(warning) == 1 and "private/ (permission denied)" in warning[0], res.stderr
        rows = list(csv.DictReader(open(out, newline="", encoding="utf-8")))
        assert [r["path"] for r in rows] == ["0/a.png", "1/a.png"] and all(r["error"] == "" for r in rows)
        assert os.stat(out).st_uid == 65534  # really written by nobody
    finally:
        os.chmod(os.path.join(base, "imgs", "private"), 0o755)
        shutil.rmtree(base)


def test_linked_folders_are_followed_once_and_loops_are_named(tmp_path):
    from compss_infer.images.listing import WalkNotes, discover
    root, outside = tmp_path / "root", tmp_path / "elsewhere"
    for folder in (root / "a", outside / "cats"):
        folder.mkdir(parents=True)
    for f in (root / "a" / "x.png", root / "z.png", outside / "cats" / "c.png"):
        tm.quadrant_image(0).save(f)
    os.symlink(outside / "cats", root / "cats")  # a class folder kept elsewhere: followed
    os.symlink(root / "a", root / "b")  # a second name for a/: listed once
    os.symlink("..", root / "a" / "loop")  # a loop back to the root
    notes = WalkNotes()
    assert list(discover(str(root), notes)) == ["a/x.png", "cats/c.png", "z.png"]
    assert notes.repeated == [("a/loop/", ""), ("b/", "a/")] and notes.unlisted == []
    warning = notes.warnings()
    assert len(warning) == 1 and "a/loop/ (the folder .)" in warning[0] and "b/ (the folder a/)" in warning[0]


def test_a_very_deep_tree_does_not_hit_the_recursion_limit(tmp_path):
    """250 nested folders with room for only 100 more frames: a recursive walk would raise (the
    limit is lowered rather than the tree deepened: removing the tree must stay within the default)."""
    from compss_infer.images.listing import discover
    path = str(tmp_path)
    fd = os.open(path, os.O_RDONLY)
    for _ in range(250):
        os.mkdir("a", dir_fd=fd)
        nfd = os.open("a", os.O_RDONLY, dir_fd=fd)
        os.close(fd)
        fd = nfd
    img = os.open("deep.png", os.O_WRONLY | os.O_CREAT, 0o644, dir_fd=fd)
    with os.fdopen(img, "wb") as fh:
        tm.quadrant_image(0).save(fh, format="PNG")
    os.close(fd)
    tm.quadrant_image(0).save(tmp_path / "top.png")
    depth, frame = 0, sys._getframe()
    while frame is not None:
        depth, frame = depth + 1, frame.f_back
    old = sys.getrecursionlimit()
    sys.setrecursionlimit(depth + 100)
    try:
        listed = list(discover(path))
    finally:
        sys.setrecursionlimit(old)
    assert listed == ["a/" * 250 + "deep.png", "top.png"]


# --------------------------------------------------------------------------- 5. every output parses back

HOSTILE = [b"plain.png", b"cr\rname.png", b"lf\nname.png", b'quote"name.png', b"comma,name.png",
           "ls\u2028name.png".encode(), "nel\x85name.png".encode(), b"bad\xffname.png",
           b'"starts with a quote.png', b"crlf\r\n,\"all\".png"]


@pytest.mark.parametrize("fmt", ["csv", "jsonl"])
def test_hostile_names_round_trip(tmp_path, fmt):
    model = tm.write_graph(tm.quadrant_graph(), str(tmp_path / "q.pb"))
    folder = os.path.join(os.fsencode(str(tmp_path)), b"imgs")
    os.mkdir(folder)
    for i, name in enumerate(HOSTILE):
        with open(os.path.join(folder, name), "wb") as fh:
            tm.quadrant_image(i % 4, seed=i).save(fh, format="PNG")
    out = str(tmp_path / f"o.{fmt}")
    assert run(model, os.fsdecode(folder), out, "--set", "preprocess.mode=L") == 0
    data = open(out, "rb").read()
    if fmt == "csv":
        with open(out, newline="", encoding="utf-8", errors="surrogateescape") as fh:
            rows = list(csv.DictReader(fh))
        names = [os.fsencode(r["path"]) for r in rows]
    else:
        text = data.decode("utf-8")  # strict: the whole file is valid UTF-8
        lines = text.splitlines()  # even a reader that splits at every Unicode line break
        rows = [json.loads(line) for line in lines]
        names = [base64.b64decode(r["path_bytes"]) if "path_bytes" in r else r["path"].encode() for r in rows]
        assert [r for r in rows if "path_bytes" in r] == [r for r in rows if "\ufffd" in r["path"]]
        assert len([r for r in rows if "path_bytes" in r]) == 1
    assert len(rows) == len(HOSTILE) and sorted(names) == sorted(HOSTILE)
    assert all(r["error"] in ("", None) for r in rows)


def test_csv_fields_are_those_of_the_csv_module_for_ordinary_names():
    """Byte-identical output for ordinary names: the writer's quoting vs Python's csv module."""
    from compss_infer.run.results import csv_cell
    rng = random.Random(22)
    alphabet = 'ab ,"\n\'#é雪\t-_/.;'
    for _ in range(2000):
        cells = ["".join(rng.choice(alphabet) for _ in range(rng.randrange(0, 8))) for _ in range(5)]
        buf = io.StringIO()
        csv.writer(buf, lineterminator="\n").writerow(cells)
        assert ",".join(map(csv_cell, cells)) + "\n" == buf.getvalue(), cells
