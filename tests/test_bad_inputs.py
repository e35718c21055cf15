"""Issue 4, item 1: every kind of bad input becomes an error row; the run completes; good images
give exactly the results of a clean run."""
import csv
import os
import shutil
import subprocess
import sys

import pytest

import badimages
from compss_infer.cli import main


def run(model, out, *, images=None, image_list=None, engine="sequential", mode="L", extra=()):
    args = ["run", "--no-progress", "--model", model, "--output", out, "--engine", engine,
            "--set", f"preprocess.mode={mode}",
            "--set", "preprocess.std=1", "--set", "preprocess.max_pixels=10000", *extra]
    args += ["--images", images] if images else ["--image-list", image_list]
    return main(args)


def read(out):
    with open(out, newline="", encoding="utf-8") as fh:
        return {r["path"]: r for r in csv.DictReader(fh)}


@pytest.mark.parametrize("engine, mode, channels", [("sequential", "L", 1), ("local", "RGB", 3)])
def test_zoo_rows(tmp_path, quadrant_model, engine, mode, channels):
    zoo = str(tmp_path / "zoo")
    cases = badimages.make_zoo(zoo, model_mode=mode)
    model = quadrant_model(c=channels)
    out = str(tmp_path / "out.csv")
    assert run(model, out, images=zoo, engine=engine, mode=mode) == 1
    rows = read(out)
    assert sorted(rows) == [c.name for c in cases]  # every file, once, nothing else
    for c in cases:
        r = rows[c.name]
        if c.expect == "ok":
            assert r["error"] == "" and int(r["class_id"]) == c.quadrant, (c, r)
        else:
            assert r["error"].startswith(c.expect + ": "), (c, r)
            assert r["class_id"] == r["score"] == r["label"] == "", r
            assert "\n" not in r["error"] and len(r["error"]) < 300


def test_good_images_match_a_clean_run_exactly(tmp_path, quadrant_model):
    zoo = str(tmp_path / "zoo")
    cases = badimages.make_zoo(zoo)
    clean = tmp_path / "clean"
    clean.mkdir()
    for c in cases:
        if c.expect == "ok":
            shutil.copy(os.path.join(zoo, c.name), clean / c.name)
    model = quadrant_model()
    assert run(model, str(tmp_path / "mixed.csv"), images=zoo, engine="local",
               extra=["--chunk-size", "4"]) == 1
    assert run(model, str(tmp_path / "clean.csv"), images=str(clean), engine="local") == 0
    mixed, ref = read(str(tmp_path / "mixed.csv")), read(str(tmp_path / "clean.csv"))
    assert ref and all(mixed[name] == row for name, row in ref.items())


def test_list_only_cases_and_order(tmp_path, quadrant_model):
    folder = str(tmp_path / "zoo")
    cases = badimages.make_zoo(folder)
    extra = badimages.list_only_cases(folder)
    listed = [c.name for c in reversed(cases)] + [c.name for c in extra]
    lst = tmp_path / "zoo" / "list.txt"
    lst.write_text("\n".join(listed) + "\n", encoding="utf-8")
    out = str(tmp_path / "l.csv")
    assert run(quadrant_model(), out, image_list=str(lst)) == 1
    with open(out, newline="", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["path"] for r in rows] == listed  # list order kept, duplicates none
    by = {r["path"]: r for r in rows}
    for c in extra:
        assert by[c.name]["error"].startswith(c.expect + ": ")


def test_unreadable_file_is_permission_denied(tmp_path):
    """As root every file is readable, so the check runs in a child that drops to 'nobody'."""
    import tempfile
    base = tempfile.mkdtemp(prefix="ci-unreadable-")
    os.chmod(base, 0o755)
    secret = os.path.join(base, "secret.png")
    badimages.quadrant_image(0).save(secret)
    os.chmod(secret, 0o000)
    code = ("import os, sys\n"
            "from compss_infer.images.preprocess import decode, Geometry, ImageError\n"
            "from compss_infer.core.specs import PreprocessSpec\n"
            "if os.geteuid() == 0: os.setgid(65534); os.setuid(65534)\n"
            "try:\n    decode(sys.argv[1], PreprocessSpec(mode='L'), Geometry(8, 8, 1))\n"
            "except ImageError as e:\n    print(e.row_text())\n")
    try:
        res = subprocess.run([sys.executable, "-c", code, secret], capture_output=True, text=True,
                             env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})
        assert res.stdout.strip() == "PermissionDenied: cannot open the file for reading", res.stderr
    finally:
        shutil.rmtree(base)
