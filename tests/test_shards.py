"""Issue 19: WebDataset tar shards in, Parquet and per-shard parts out.

Shards are built on the fly with Python's ``tarfile`` (as WebDataset's TarWriter and img2dataset
do), from the same quadrant images written as files, so every shard run is checked against a run
of the same images as files: same classes, scores and labels, row for row.
"""
import csv
import io
import json
import os
import signal
import subprocess
import sys
import tarfile
import time

import pytest

import tinymodels as tm
from compss_infer.cli import main
from compss_infer.run.config import build_config
from compss_infer.run.runner import run


def png(quadrant, seed):
    buf = io.BytesIO()
    tm.quadrant_image(quadrant, seed=seed).save(buf, "PNG")
    return buf.getvalue()


def write_tar(path, members, end=True):
    """members: (name, bytes); ``end`` False leaves out the end-of-archive blocks."""
    buf = io.BytesIO()
    with tarfile.open(fileobj=buf, mode="w", format=tarfile.PAX_FORMAT) as tf:
        for name, data in members:
            ti = tarfile.TarInfo(name)
            ti.size, ti.mtime = len(data), 1_700_000_000
            tf.addfile(ti, io.BytesIO(data))
    data = buf.getvalue()
    if not end:
        data = data.rstrip(b"\x00")
        data += bytes(-len(data) % 512)
    with open(path, "wb") as fh:
        fh.write(data)
    return path


def sample(i, extra=True):
    """The members of sample i (an img2dataset sample: image, class, caption, metadata)."""
    key = f"{i:06d}"
    out = [(f"{key}.png", png(i % 4, i)), (f"{key}.cls", str(i % 4).encode())]
    if extra:
        out += [(f"{key}.txt", b"a caption"), (f"{key}.json", json.dumps({"key": key}).encode())]
    return out


@pytest.fixture
def dataset(tmp_path, monkeypatch):
    """3 shards x 5 samples under tmp_path/data, and the same 15 images as files in tmp_path/files."""
    monkeypatch.chdir(tmp_path)
    os.makedirs("data")
    os.makedirs("files")
    for s in range(3):
        members = []
        for i in range(s * 5, s * 5 + 5):
            members += sample(i, extra=i % 2 == 0)
            with open(f"files/{i:06d}.png", "wb") as fh:
                fh.write(png(i % 4, i))
        write_tar(f"data/{s:05d}.tar", members)
    model = tm.write_graph(tm.quadrant_graph(), str(tmp_path / "quad.pb"))
    return model


def flags(model, output, **run_opts):
    """In-process (sequential) unless a test asks for real worker processes (engine="local")."""
    return {"model": {"path": model}, "preprocess": {"mode": "L", "std": 1.0},
            "run": {"output": output, "progress": False, "workers": 1, "engine": "sequential", **run_opts}}


def go(model, output, labels=None, **run_opts):
    f = flags(model, output, **run_opts)
    if labels:
        f["model"]["labels"] = labels
    return run(build_config(None, f))


def read_csv(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def values(rows):
    return [(r["class_id"], r["score"], r["label"], r["error"]) for r in rows]


def test_shards_give_the_rows_of_the_same_images_as_files(dataset, tmp_path):
    """Brace pattern, folder and list file: one order (shard by shard, sample order), paths
    <shard as given>/<member>, the same answers as the files; extra members ignored; .cls truth."""
    files = go(dataset, "files.csv", images="files", chunk_size=4)
    shards = go(dataset, "shards.csv", shards="data/{00000..00002}.tar", chunk_size=2, truth_from="cls",
                engine="local")  # shard slices through real worker processes
    want = read_csv("files.csv")
    got = read_csv("shards.csv")
    assert [r["path"] for r in got] == [f"data/{i // 5:05d}.tar/{i:06d}.png" for i in range(15)]
    assert values(got) == values(want) and shards.exit_code == files.exit_code == 0
    assert shards.accuracy == 1.0 and shards.data["accuracy"]["labelled"] == 15
    assert shards.data["shards"] == {"count": 3, "damaged": []}
    # the same shards as a folder and as a list file: the same bytes
    with open("list.txt", "w") as fh:
        fh.write("# shards\n" + "".join(f"data/{s:05d}.tar\n" for s in range(3)))
    go(dataset, "folder.csv", shards="data")
    go(dataset, "list.csv", shards="list.txt")
    assert open("folder.csv", "rb").read() == open("list.csv", "rb").read() == open("shards.csv", "rb").read()
    os.makedirs("lists")  # a list elsewhere: its lines are found against its folder, and shown as written
    with open("lists/l.txt", "w") as fh:
        fh.write("../data/00001.tar\n")
    go(dataset, "elsewhere.csv", shards="lists/l.txt")
    assert [r["path"] for r in read_csv("elsewhere.csv")] == [f"../data/00001.tar/{i:06d}.png" for i in range(5, 10)]


def test_bad_shards_give_error_rows_and_summary_lines_never_a_crash(dataset, tmp_path):
    """A corrupt image member, a sample with no image member, a truncated shard, a shard with a corrupt
    header mid-way, and a shard with no end-of-archive marker."""
    good = [m for i in range(3) for m in sample(i)]
    write_tar("bad/corrupt.tar" if os.makedirs("bad") is None else "",
              sample(0) + [("000001.png", b"\x89PNG\r\n\x1a\n" + b"garbage" * 20), ("000001.cls", b"1")] + sample(2))
    write_tar("bad/noimage.tar", sample(0) + [("000001.txt", b"only a caption"), ("000001.cls", b"1")] + sample(2))
    full = open(write_tar("bad/x.tar", good), "rb").read()
    cut = full.index(b"000002.png") + 512 + 40  # 40 bytes into the third image's data
    with open("bad/truncated.tar", "wb") as fh:
        fh.write(full[:cut])
    broken = bytearray(full)
    h = full.index(b"000001.png")  # the name field starts the header
    broken[h + 148:h + 150] = b"77"  # its checksum
    with open("bad/header.tar", "wb") as fh:
        fh.write(broken)
    write_tar("bad/noend.tar", good, end=False)
    os.unlink("bad/x.tar")
    s = go(dataset, "bad.csv", shards="bad")
    rows = {r["path"]: r for r in read_csv("bad.csv")}
    assert s.exit_code == 1
    assert rows["bad/corrupt.tar/000001.png"]["error"].startswith("DecodeError:")
    assert rows["bad/corrupt.tar/000002.png"]["error"] == ""
    assert rows["bad/noimage.tar/000001"]["error"].startswith("NoImage: sample 000001 has no image member")
    assert rows["bad/truncated.tar/000002.png"]["error"].startswith("TruncatedShard:")
    assert [p for p in rows if p.startswith("bad/header.tar/")] == ["bad/header.tar/000000.png",
                                                                  "bad/header.tar/000001", "bad/header.tar/000002.png"]
    assert rows["bad/header.tar/000001"]["error"].startswith("NoImage:")  # its .cls and .txt survived
    assert [p for p in rows if p.startswith("bad/noend.tar/")] == [f"bad/noend.tar/{i:06d}.png" for i in range(3)]
    damaged = s.data["shards"]["damaged"]
    assert len(damaged) == 3 and all(line in s.data["warnings"] for line in damaged)
    assert any(d.startswith("bad/truncated.tar: the file ends inside member 000002.png") for d in damaged)
    assert any(d.startswith("bad/header.tar: a corrupt tar header (bad checksum)") for d in damaged)
    assert any(d.startswith("bad/noend.tar: no end-of-archive marker") for d in damaged)
    assert s.images == 15 and s.failed == 4


def test_missing_or_compressed_shards_are_refused_before_any_work(dataset, tmp_path, capsys):
    assert main(["run", "--model", dataset, "--shards", "data/{00000..00003}.tar", "--output", "o.csv",
                 "--set", "preprocess.mode=L", "--set", "preprocess.std=1", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert "shard not found: data/00003.tar" in err and not os.path.exists("o.csv.journal")
    with tarfile.open("data/00009.tar.gz", "w:gz"):
        pass
    assert main(["run", "--model", dataset, "--shards", "data", "--output", "o.csv", "--set", "preprocess.mode=L",
                 "--set", "preprocess.std=1"]) == 2
    assert "compressed shards are not read" in capsys.readouterr().err
    os.rename("data/00009.tar.gz", "data/00009.tar")  # gzip data behind a .tar name: found by its first bytes
    assert main(["run", "--model", dataset, "--shards", "data", "--output", "o.csv", "--set", "preprocess.mode=L",
                 "--set", "preprocess.std=1"]) == 2
    assert "compressed (gzip data)" in capsys.readouterr().err


def test_parquet_is_typed_and_matches_the_csv(dataset, tmp_path):
    import pyarrow.parquet as pq
    os.makedirs("bad")
    write_tar("bad/00000.tar", sample(0) + [("000001.png", b"not a png"), ("000001.cls", b"1")] + sample(2))
    with open("labels.txt", "w") as fh:
        fh.write("top-left\ntop-right\nbottom-left\nbottom-right\n")
    for out in ("r.csv", "r.parquet"):
        go(dataset, out, shards="bad", top_k=2, labels="labels.txt")
    table = pq.read_table("r.parquet")
    assert [str(t) for t in table.schema.types] == ["string", "int64", "double", "string", "string",
                                                    "list<element: int64>", "list<element: double>"]
    got = table.to_pylist()
    want = read_csv("r.csv")
    assert [r["path"] for r in got] == [r["path"] for r in want]
    for g, w in zip(got, want):
        assert g["class_id"] == (int(w["class_id"]) if w["class_id"] else None)
        assert g["score"] == (float(w["score"]) if w["score"] else None)
        assert (g["error"] or "") == w["error"] and (g["label"] or "") == w["label"]
        assert g["topk_ids"] == ([int(x) for x in w["topk_ids"].split()] if w["topk_ids"] else None)
    assert got[1]["class_id"] is None and got[1]["error"].startswith("UnsupportedFormat")
    # other chunk boundaries (as after a resume): the same bytes (row groups do not follow the chunks)
    go(dataset, "r2.parquet", shards="bad", top_k=2, labels="labels.txt", chunk_size=1)
    assert open("r2.parquet", "rb").read() == open("r.parquet", "rb").read()
    # file inputs: Parquet in one file and in parts of N rows, the same rows
    go(dataset, "files.parquet", images="files")
    go(dataset, "parts/", images="files", shard_rows=4, format="parquet")
    manifest = json.load(open("parts/manifest.json"))
    assert [p["rows"] for p in manifest["parts"]] == [4, 4, 4, 3]
    joined = [r for p in manifest["parts"] for r in pq.read_table(os.path.join("parts", p["name"])).to_pylist()]
    assert joined == pq.read_table("files.parquet").to_pylist()


def test_shard_to_shard_parts_are_named_after_their_shards(dataset, tmp_path):
    go(dataset, "one.csv", shards="data")
    s = go(dataset, "out/", shards="data", chunk_size=12, format="csv", engine="local")
    with open("out/.tasks.csv", newline="") as fh:  # the first shard alone (first result soon), then two
        assert sorted(int(t["count"]) for t in csv.DictReader(fh)) == [5, 10]  # whole shards in one task
    manifest = json.load(open("out/manifest.json"))
    assert [(p["name"], p["shard"], p["rows"]) for p in manifest["parts"]] == [
        (f"{k:05d}.csv", f"data/{k:05d}.tar", 5) for k in range(3)]
    lines = open("one.csv", "rb").read().splitlines(keepends=True)
    for k in range(3):
        assert open(f"out/{k:05d}.csv", "rb").read() == lines[0] + b"".join(lines[1 + 5 * k:6 + 5 * k])
    assert s.exit_code == 0 and s.images == 15


def start_cli(model, *args):
    cmd = [sys.executable, "-m", "compss_infer", "run", "--no-progress", "--model", model, "--set",
           "preprocess.mode=L", "--set", "preprocess.std=1", "--workers", "1", "--chunk-size", "3", *args]
    return subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            env={**os.environ, "PYTHONPATH": os.pathsep.join(sys.path)})


def test_resume_after_a_kill_mid_shard_writes_the_same_bytes(tmp_path, monkeypatch):
    """The master is SIGKILLed while the second of two 60-sample shards is half done; --resume writes
    the same results file and the same parts as an uninterrupted run."""
    monkeypatch.chdir(tmp_path)
    os.makedirs("data")
    for s in range(2):
        write_tar(f"data/{s}.tar", [m for i in range(s * 60, s * 60 + 60) for m in sample(i, extra=False)])
    model = tm.write_graph(tm.quadrant_graph(), str(tmp_path / "quad.pb"))
    go(model, "ref/", shards="data", format="csv", chunk_size=3)  # in-process: the same bytes as any engine
    proc = start_cli(model, "--shards", "data", "--output", "out/", "--format", "csv")
    deadline = time.monotonic() + 120
    while not os.path.exists("out/0.csv"):  # the first shard's part is written as it finishes
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.005)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(30)
    assert not os.path.exists("out/manifest.json") and not os.path.exists("out/1.csv")
    resumed = start_cli(model, "--shards", "data", "--output", "out/", "--format", "csv", "--resume")
    assert resumed.wait(120) == 0, resumed.communicate()
    summary = json.load(open("out/.summary.json"))
    assert 60 <= summary["resumed_with_done"] <= 120  # shard 0 was done; shard 1 not yet written as a part
    for name in ("0.csv", "1.csv", "manifest.json"):
        assert open(f"out/{name}", "rb").read() == open(f"ref/{name}", "rb").read()


def test_truth_csv_and_report_with_shards_and_parquet(dataset, tmp_path):
    """--truth names rows as they are written (<shard>/<member>); the report reads the run back."""
    with open("truth.csv", "w") as fh:
        fh.write("path,class_id\n" + "".join(f"data/{i // 5:05d}.tar/{i:06d}.png,{i % 4}\n" for i in range(15)
                                              if i != 3))
    s = go(dataset, "t.parquet", shards="data", truth="truth.csv", report=True)
    assert s.accuracy == 1.0 and s.data["accuracy"]["labelled"] == 14 and s.data["accuracy"]["images"] == 15
    assert s.report and os.path.getsize(s.report) > 0


def test_a_fresh_start_drops_an_interrupted_runs_shard_index(tmp_path):
    """--overwrite over an interrupted run's journal must not reuse its shard offsets (index.bin)."""
    from compss_infer.run.journal import Journal
    from compss_infer.run.sources.shards import INDEX_FILE
    j = Journal(str(tmp_path / "out.csv"))
    j.create()
    with open(os.path.join(j.dir, INDEX_FILE), "wb") as fh:
        fh.write(b"an earlier run's index")
    j.close()
    j.create()
    assert not os.path.exists(os.path.join(j.dir, INDEX_FILE))
    j.remove()
