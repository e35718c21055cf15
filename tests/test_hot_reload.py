"""Model hot reload in a real local-engine run: the model file is replaced (atomic rename) after the
first chunk is journaled; later chunks use the new model, and the summary records both fingerprints."""
import csv
import hashlib
import json
import os

import tinymodels as tm
from compss_infer.cli import main
from compss_infer.run.journal import Journal


inverted_graph = tm.inverted_graph


def fingerprint(path):
    return hashlib.sha256(open(path, "rb").read()).hexdigest()[:16]


def test_replaced_model_is_used_by_later_chunks(tmp_path, quadrant_images, monkeypatch):
    folder, items = quadrant_images(10)
    listing = tmp_path / "imgs" / "list.txt"
    listing.write_text("".join(rel + "\n" for rel, _ in items))
    live = tm.write_graph(tm.quadrant_graph(), str(tmp_path / "live.pb"))
    staged = tm.write_graph(inverted_graph(), str(tmp_path / "staged.pb"))
    old_id, new_id = fingerprint(live), fingerprint(staged)
    st = os.stat(live)
    os.utime(staged, ns=(st.st_atime_ns, st.st_mtime_ns + 10**9))  # a distinct identity even on coarse clocks

    journaled = []
    real_append = Journal.append

    def append_then_replace(self, record):
        real_append(self, record)
        journaled.append(record.start)
        if len(journaled) == 1:
            assert os.path.getsize(self.chunks_path) > 0  # the first chunk is in the journal
            os.replace(staged, live)  # atomic: a worker sees the old file or the new one, never half
    monkeypatch.setattr(Journal, "append", append_then_replace)

    out = str(tmp_path / "hot.csv")
    # One worker, chunks of 2, one chunk in flight: chunk 2 is dispatched after the replacement.
    assert main(["run", "--no-progress", "--model", live, "--image-list", str(listing), "--output", out,
                 "--set", "preprocess.mode=L",
                 "--set", "preprocess.std=1", "--engine", "local", "--workers", "1", "--chunk-size", "2",
                 "--set", "run.window=1"]) == 0
    assert sorted(journaled) == [0, 2, 4, 6, 8]

    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    for i, (row, (rel, _)) in enumerate(zip(rows, items)):
        scores = tm.expected_scores(os.path.join(folder, rel))
        want = scores.argmax() if i < 2 else scores.argmin()
        assert row["path"] == rel and int(row["class_id"]) == int(want), (i, row)

    summary = json.load(open(out + ".summary.json"))
    assert summary["model"]["ids_used"] == {old_id: 1, new_id: 4}
    with open(out + ".tasks.csv", newline="") as fh:
        tasks = sorted(csv.DictReader(fh), key=lambda t: int(t["start"]))
    assert [t["model_id"] for t in tasks] == [old_id] + [new_id] * 4
    assert len({t["pid"] for t in tasks}) == 1  # the same worker process reloaded it
    assert float(tasks[1]["load_s"]) > 0 and float(tasks[2]["load_s"]) == 0  # loaded once, then cached
