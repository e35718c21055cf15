"""``compss-infer report`` and ``run --report``: PNGs and one self-contained HTML page beside the results."""
import base64
from collections import Counter
import json
import os
import re
import sys

import pytest

import tinymodels as tm
from compss_infer.run import report as reportmod
from compss_infer.cli import main
from compss_infer.run.results import read_rows

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def finished_run(tmp_path, quadrant_images, capsys):
    """A run with ground truth and labels, chunks small enough for a timeline, and --report."""
    folder, items = quadrant_images(24, nested=True)
    labels = tmp_path / "labels.txt"
    labels.write_text("q0\nq1\nq2\nq3\n")  # folder names are the class names
    out = str(tmp_path / "res.csv")
    code = main(["run", "--no-progress", "--engine", "sequential", "--set", "preprocess.mode=L",
                 "--set", "preprocess.std=1",
                 "--model", tm.write_graph(tm.quadrant_graph(), str(tmp_path / "q.pb")), "--images", folder,
                 "--output", out, "--labels", str(labels), "--truth-from-folders", "--chunk-size", "5", "--report"])
    assert code == 0
    assert f"report {out}.report.html" in capsys.readouterr().out
    return out


def test_run_report_writes_a_self_contained_page(finished_run, capsys):
    out = finished_run
    for name in ("timeline", "throughput", "confusion"):
        with open(f"{out}.{name}.png", "rb") as fh:
            assert fh.read(8) == PNG
    page = open(out + ".report.html", encoding="utf-8").read()
    sources = re.findall(r"src='([^']*)'", page)
    assert len(sources) == 3 and all(s.startswith("data:image/png;base64,") for s in sources)
    assert all(base64.b64decode(s.split(",", 1)[1])[:8] == PNG for s in sources)
    assert "href=" not in page and "<script" not in page  # nothing fetched from elsewhere
    assert "100.00 %" in page and "3 q3" in page  # accuracy and per-class rows with label names


def test_report_command_on_a_finished_run(finished_run, capsys):
    out = finished_run
    os.unlink(out + ".report.html")
    os.unlink(out + ".confusion.png")
    capsys.readouterr()
    assert main(["report", out]) == 0
    printed = capsys.readouterr().out
    assert printed.startswith(f"report: {out}.report.html") and os.path.exists(out + ".confusion.png")


def test_timeline_data_and_throughput_series():
    rows = [reportmod.TaskRow(0, 10, "h:1", 0.0, 1.0, 0.5, "a", 0), reportmod.TaskRow(10, 10, "h:2", 0.5, 1.5, 0.0, "b", 1)]
    xs, ys = reportmod.throughput_series(rows, bins=3)
    assert len(xs) == 3 and abs(sum(y * 0.5 for y in ys) - 20) < 1e-9  # all 20 images accounted for
    assert reportmod.plot_timeline(rows)[:8] == PNG


def test_without_summary_or_matplotlib_exit_2_in_one_line(tmp_path, capsys, monkeypatch, finished_run):
    capsys.readouterr()
    assert main(["report", str(tmp_path / "nothing.csv")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "no run summary" in err[0]
    monkeypatch.setitem(sys.modules, "matplotlib", None)  # import matplotlib now raises ImportError
    for args in (["report", finished_run],
                 ["run", "--no-progress", "--model", str(tmp_path / "q.pb"), "--images", str(tmp_path), "--output",
                  str(tmp_path / "new.csv"), "--report"]):
        assert main(args) == 2
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and "pip install 'compss-infer[report]'" in err[0], err
    assert not os.path.exists(tmp_path / "new.csv")


def test_summary_without_truth_or_tasks(tmp_path):
    out = str(tmp_path / "r.csv")
    with open(out + ".summary.json", "w") as fh:
        json.dump({"images": 0, "accuracy": None, "model": {}}, fh)
    files = reportmod.write_report(out)
    page = open(files.html).read()
    assert "no task log" in page and "no ground truth given" in page and files.images == {}


def test_a_failing_plot_does_not_fail_the_run(tmp_path, quadrant_images, monkeypatch, capsys):
    folder, _ = quadrant_images(4)

    def broken(results):
        raise RuntimeError("no fonts today")
    monkeypatch.setattr(reportmod, "write_report", broken)
    out = str(tmp_path / "r.csv")
    assert main(["run", "--no-progress", "--engine", "sequential", "--set", "preprocess.mode=L",
                 "--set", "preprocess.std=1", "--report",
                 "--model", tm.write_graph(tm.quadrant_graph(), str(tmp_path / "q.pb")), "--images", folder,
                 "--output", out]) == 0
    captured = capsys.readouterr()
    assert os.path.exists(out) and "compss-infer: report" not in captured.out and "no fonts today" in captured.err


def test_report_lists_failed_and_misclassified_images(tmp_path, quadrant_images, capsys):
    folder, items = quadrant_images(12)
    (tmp_path / "imgs" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"junk" * 10)
    labels = tmp_path / "labels.txt"
    labels.write_text("top-left\ntop-right\nbottom-left\nbottom-right\n")
    wrong = {items[1][0]: 3, items[5][0]: 3, items[6][0]: 0}  # truth that disagrees with the (right) model
    truth = tmp_path / "truth.csv"
    truth.write_text("".join(f"{rel},{wrong.get(rel, q)}\n" for rel, q in items) + "broken.png,2\n")
    out = str(tmp_path / "r.csv")
    assert main(["run", "--no-progress", "--engine", "sequential", "--set", "preprocess.mode=L",
                 "--set", "preprocess.std=1", "--model", tm.write_graph(tm.quadrant_graph(), str(tmp_path / "q.pb")),
                 "--images", folder, "--output", out, "--labels", str(labels), "--truth", str(truth)]) == 1
    capsys.readouterr()
    assert main(["report", out]) == 0
    assert "lists 1 failed and 3 misclassified image(s)" in capsys.readouterr().out
    review = reportmod.review_run(out, json.load(open(out + ".summary.json")))
    reason = next(r["error"] for r in read_rows(out) if r["path"] == "broken.png")
    assert review.failed == [("broken.png", reason)] and reason.startswith("DecodeError: ")
    mistaken = [(rel, wrong[rel], q) for rel, q in items if rel in wrong]  # in input order
    assert review.misclassified == mistaken and review.misclassified_total == 3
    pairs = Counter((t, q) for _, t, q in mistaken)
    assert review.confusions == sorted(((t, q, c) for (t, q), c in pairs.items()), key=lambda x: (-x[2], x[0], x[1]))
    assert review.confusions[0][2] == 2  # items 1 and 5 are both quadrant 1, both called 3 by the truth
    page = open(out + ".report.html", encoding="utf-8").read()
    assert "Failed images (1)" in page and f"<td>broken.png</td><td>{reason}</td>" in page
    rel, t, q = review.misclassified[0]
    names = labels.read_text().split()
    assert f"<td>{rel}</td><td>{t} {names[t]}</td><td>{q} {names[q]}</td>" in page
    assert "Most frequent confusions</h2>" in page and "confusion.png" not in page


def _confusion(n, pairs):
    matrix = [[0] * n for _ in range(n)]
    for i in range(n):
        matrix[i][i] = 5 + i % 3
    for (t, p), c in pairs.items():
        matrix[t][p] = c
    return {"classes": list(range(n)), "matrix": matrix}


def test_the_confusion_matrix_is_readable_at_20_classes():
    """No two class names overlap on either axis and every count fits its cell, with ImageNet-length names."""
    labels = [f"class number {i}, a long ImageNet-style name with commas" for i in range(20)]
    fig = reportmod.confusion_figure(_confusion(20, {(3, 4): 117, (10, 2): 9}), labels)
    fig.canvas.draw()
    renderer = fig.canvas.get_renderer()
    ax = fig.axes[0]
    for ticks, along in ((ax.get_xticklabels(), 0), (ax.get_yticklabels(), 1)):
        boxes = sorted((t.get_window_extent(renderer) for t in ticks), key=lambda b: (b.x0, b.y0)[along])
        assert len(boxes) == 20 and all(t.get_fontsize() >= 7 for t in ticks)
        for a, b in zip(boxes, boxes[1:]):
            assert (a.x1 <= b.x0) if along == 0 else (a.y1 <= b.y0), "class names overlap"
    cell = ax.get_window_extent(renderer).width / 20
    counts = [t for t in ax.texts if t.get_text().isdigit()]
    assert len(counts) == 22 and all(t.get_window_extent(renderer).width < cell for t in counts)


def test_at_1000_classes_the_top_confusions_replace_the_matrix(tmp_path):
    n = 1000
    pairs = {(5, 7): 9, (3, 2): 6, (999, 0): 4}
    confusion = _confusion(n, pairs)
    out = str(tmp_path / "big.csv")
    with open(out, "w") as fh:
        fh.write("path,class_id,score,label,error\n")
        rows = [(f"{t}/{i}.png", p) for (t, p), c in pairs.items() for i in range(c)]
        rows += [(f"{c}/ok.png", c) for c in range(n)]
        fh.writelines(f"{path},{p},0.9,,\n" for path, p in rows)
    with open(out + ".summary.json", "w") as fh:
        json.dump({"images": len(rows), "model": {"num_classes": n},
                   "config": {"run": {"truth_from_folders": True}, "model": {}},
                   "accuracy": {"accuracy": 0.98, "labelled": len(rows), "confusion": confusion, "per_class": {}}}, fh)
    files = reportmod.write_report(out)
    assert "confusion" not in files.images and not os.path.exists(out + ".confusion.png")
    assert files.review.confusions == [(5, 7, 9), (3, 2, 6), (999, 0, 4)]
    assert files.review.misclassified_total == 19 and len(files.review.misclassified) == 19
    page = open(files.html, encoding="utf-8").read()
    assert "Most frequent confusions (1000 classes: a matrix would be unreadable)" in page
    assert page.index("<td>5</td><td>7</td><td>9</td>") < page.index("<td>3</td><td>2</td><td>6</td>")
