"""The command line end to end: results format, exit codes, refusals, summary."""
import csv
import json
import os

import pytest
import yaml

import tinymodels as tm
from compss_infer.cli import main


def run_cli(*args):
    return main(["run", "--no-progress", *args])


@pytest.fixture
def setup(tmp_path, quadrant_model, quadrant_images):
    model = quadrant_model()
    (tmp_path / "labels.txt").write_text("top-left\ntop-right\nbottom-left\nbottom-right\n")
    folder, items = quadrant_images(16, nested=True)
    return model, folder, items, str(tmp_path / "labels.txt")


def rows_of(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.reader(fh))


def test_csv_results_in_input_order_with_labels_and_summary(setup, tmp_path):
    model, folder, items, labels = setup
    out = str(tmp_path / "out" / "res.csv")  # missing folder is created
    code = run_cli("--model", model, "--images", folder, "--output", out, "--labels", labels,
                   "--set", "preprocess.mode=L", "--set", "preprocess.std=1", "--workers", "2", "--chunk-size", "3")
    assert code == 0
    rows = rows_of(out)
    assert rows[0] == ["path", "class_id", "score", "label", "error"]
    assert [r[0] for r in rows[1:]] == [rel for rel, _ in items]
    names = ["top-left", "top-right", "bottom-left", "bottom-right"]
    for (rel, q), r in zip(items, rows[1:]):
        want = tm.expected_scores(os.path.join(folder, rel))
        assert int(r[1]) == q == int(want.argmax()) and r[3] == names[q] and r[4] == ""
        assert abs(float(r[2]) - want.max()) < 1e-5
    summary = json.load(open(out + ".summary.json"))
    assert summary["images"] == 16 and summary["classified"] == 16 and summary["failed"] == 0
    assert summary["config"]["run"]["chunk_size"] == 3 and summary["chunk_size"] == 3
    assert summary["images_per_s"] > 0 and summary["versions"]["compss_infer"]
    assert not os.path.exists(out + ".journal")
    assert not [f for f in os.listdir(os.path.dirname(out)) if f.endswith(".tmp")]


def test_jsonl_and_top_k(setup, tmp_path):
    model, folder, items, labels = setup
    out = str(tmp_path / "res.jsonl")
    assert run_cli("--model", model, "--images", folder, "--output", out, "--top-k", "3",
                   "--set", "preprocess.mode=L", "--set", "preprocess.std=1", "--engine", "sequential") == 0
    recs = [json.loads(line) for line in open(out)]
    assert len(recs) == 16 and set(recs[0]) == {"path", "class_id", "score", "label", "error", "topk_ids", "topk_scores"}
    assert all(r["topk_ids"][0] == r["class_id"] and len(r["topk_scores"]) == 3 for r in recs)
    csv_out = str(tmp_path / "res.csv")
    assert run_cli("--model", model, "--images", folder, "--output", csv_out, "--top-k", "2",
                   "--set", "preprocess.mode=L", "--set", "preprocess.std=1", "--engine", "sequential") == 0
    rows = rows_of(csv_out)
    assert rows[0][-2:] == ["topk_ids", "topk_scores"] and len(rows[1][-2].split()) == 2


def test_local_and_sequential_engines_write_identical_files(setup, tmp_path):
    model, folder, _, labels = setup
    outs = []
    for engine in ("local", "sequential"):
        out = str(tmp_path / f"{engine}.csv")
        assert run_cli("--model", model, "--images", folder, "--output", out, "--engine", engine,
                       "--set", "preprocess.mode=L", "--set", "preprocess.std=1", "--chunk-size", "5") == 0
        outs.append(open(out, "rb").read())
    assert outs[0] == outs[1]


def test_bad_images_give_exit_1_and_error_rows(setup, tmp_path):
    model, folder, items, _ = setup
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 30)
    out = str(tmp_path / "r.csv")
    assert run_cli("--model", model, "--images", folder, "--output", out, "--set", "preprocess.mode=L",
                   "--set", "preprocess.std=1") == 1
    rows = {r[0]: r for r in rows_of(out)[1:]}
    assert len(rows) == 17
    bad = rows["broken.png"]
    assert bad[1:4] == ["", "", ""] and bad[4].startswith("DecodeError: ")
    summary = json.load(open(out + ".summary.json"))
    assert summary["failed"] == 1 and summary["failures_by_kind"] == {"DecodeError": 1} and summary["exit_code"] == 1


def test_image_list_with_missing_file(setup, tmp_path):
    model, folder, items, _ = setup
    lst = tmp_path / "list.txt"
    lst.write_text(f"{items[3][0]}\nmissing.png\n{items[0][0]}\n")
    os.rename(lst, os.path.join(folder, "list.txt"))
    out = str(tmp_path / "l.csv")
    assert run_cli("--model", model, "--image-list", os.path.join(folder, "list.txt"), "--output", out,
                   "--set", "preprocess.mode=L", "--set", "preprocess.std=1") == 1
    rows = rows_of(out)[1:]
    assert [r[0] for r in rows] == [items[3][0], "missing.png", items[0][0]]
    assert rows[1][4] == "NotFound: no such file"


def test_refusals_exit_2_before_any_work(setup, tmp_path, capsys):
    model, folder, _, _ = setup
    out = str(tmp_path / "x.csv")
    corrupt = tmp_path / "corrupt.pb"
    corrupt.write_bytes(open(model, "rb").read()[:-7])
    cases = [
        (["--model", model, "--images", folder, "--output", out, "--set", "run.nope=1"], "unknown key run.nope"),
        (["--model", str(tmp_path / "none.pb"), "--images", folder, "--output", out], "model file not found"),
        (["--model", str(corrupt), "--images", folder, "--output", out, "--set", "preprocess.mode=L",
          "--set", "preprocess.std=1"], "ModelError"),
        (["--model", model, "--images", str(tmp_path / "nodir"), "--output", out], "not a directory"),
        (["--model", model, "--images", folder, "--output", str(tmp_path / "x.txt")], "cannot tell the format"),
        (["--model", model, "--images", folder, "--output", out, "--set", "preprocess.mode=RGB"], "channels"),
        (["--model", model, "--images", folder, "--output", out, "--resume"], "nothing to resume"),
    ]
    for args, needle in cases:
        capsys.readouterr()
        assert run_cli(*args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], (args, err)
        assert not os.path.exists(out) and not os.path.exists(out + ".journal")


def test_existing_output_needs_overwrite(setup, tmp_path):
    model, folder, _, _ = setup
    out = tmp_path / "o.csv"
    out.write_text("precious\n")
    args = ["--model", model, "--images", folder, "--output", str(out), "--set", "preprocess.mode=L",
            "--set", "preprocess.std=1"]
    assert run_cli(*args) == 2 and out.read_text() == "precious\n"
    assert run_cli(*args, "--overwrite") == 0 and out.read_text().startswith("path,")


def test_config_file_and_set_override(setup, tmp_path):
    model, folder, _, _ = setup
    cfg = tmp_path / "c.yaml"
    cfg.write_text(yaml.safe_dump({"model": {"path": model}, "preprocess": {"mode": "L", "std": 1.0},
                                   "run": {"images": folder, "output": "from_file.csv", "engine": "sequential"}}))
    assert main(["run", str(cfg), "--no-progress", "--set", "run.top_k=2"]) == 0
    header = rows_of(str(tmp_path / "from_file.csv"))[0]
    assert header[-1] == "topk_scores"


def test_help_does_not_import_tensorflow():
    import subprocess
    import sys
    code = ("import sys; from compss_infer import cli\n"
            "try:\n    cli.main(['run', '--help'])\nexcept SystemExit: pass\n"
            "import compss_infer.run.runner, compss_infer.engines.local\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)


def test_non_utf8_file_names_are_written_back_byte_for_byte(setup, tmp_path):
    model, _, _, _ = setup
    folder = tmp_path / "raw"
    folder.mkdir()
    name = b"caf\xe9 \xff.png"  # latin-1 bytes: not valid UTF-8
    tm.quadrant_image(2).save(os.path.join(os.fsencode(str(folder)), name))
    out = str(tmp_path / "raw.csv")
    assert run_cli("--model", model, "--images", str(folder), "--output", out, "--set", "preprocess.mode=L",
                   "--set", "preprocess.std=1") == 0
    data = open(out, "rb").read().splitlines()
    assert data[1].startswith(name + b",2,")


def test_master_never_imports_tensorflow_in_a_local_run(setup, tmp_path):
    import subprocess
    import sys
    model, folder, _, _ = setup
    out = str(tmp_path / "m.csv")
    code = ("import sys\nfrom compss_infer.cli import main\n"
            "if __name__ == '__main__':\n"
            f"    rc = main(['run', '--no-progress', '--model', {model!r}, '--images', {folder!r}, '--output', {out!r},"
            " '--set', 'preprocess.mode=L', '--set', 'preprocess.std=1', '--workers', '2'])\n"
            "    assert rc == 0, rc\n"
            "    assert 'tensorflow' not in sys.modules, 'the master imported tensorflow'\n")
    script = tmp_path / "master.py"
    script.write_text(code)
    res = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120)
    assert res.returncode == 0, res.stderr[-2000:]
    assert len(rows_of(out)) == 17


def test_fixed_batch_1_graph_writes_the_same_file_as_a_dynamic_one(setup, tmp_path, quadrant_model):
    _, folder, _, _ = setup
    outs = []
    for name, batch in (("dyn.pb", None), ("one.pb", 1)):
        out = str(tmp_path / f"{name}.csv")
        assert run_cli("--model", quadrant_model(name, batch=batch), "--images", folder, "--output", out,
                       "--set", "preprocess.mode=L", "--set", "preprocess.std=1", "--batch-size", "8") == 0
        outs.append(open(out, "rb").read())
    assert outs[0] == outs[1]


def test_sharded_output_parts_and_manifest_concatenate_to_the_single_file(setup, tmp_path):
    from compss_infer.run.results import read_rows
    model, folder, items, labels = setup
    single = str(tmp_path / "one.csv")
    assert run_cli("--model", model, "--images", folder, "--output", single, "--labels", labels,
                   "--set", "preprocess.mode=L",
                   "--set", "preprocess.std=1", "--chunk-size", "3", "--workers", "1") == 0
    out = str(tmp_path / "parts") + "/"
    args = ["--model", model, "--images", folder, "--output", out, "--format", "csv", "--labels", labels,
            "--set", "preprocess.mode=L",
            "--set", "preprocess.std=1", "--set", "run.shard_rows=5", "--chunk-size", "3", "--workers", "1"]
    assert run_cli(*args) == 0
    manifest = json.load(open(out + "manifest.json"))
    assert [p["name"] for p in manifest["parts"]] == [f"part-0000{i}.csv" for i in range(4)]
    assert [p["rows"] for p in manifest["parts"]] == [5, 5, 5, 1] and manifest["images"] == 16
    lines = open(single, "rb").read().splitlines(keepends=True)
    header, body = lines[0], lines[1:]
    for i, part in enumerate(manifest["parts"]):
        assert open(out + part["name"], "rb").read() == header + b"".join(body[5 * i:5 * i + 5])
    assert list(read_rows(out)) == list(read_rows(single))
    assert json.load(open(out + ".summary.json"))["classified"] == 16
    assert run_cli(*args) == 2  # the manifest exists: --overwrite needed
    assert run_cli(*args[:-4], "--workers", "1") == 2  # a folder without run.shard_rows is refused
