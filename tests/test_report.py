"""``compss-infer report`` and ``run --report``: PNGs and one self-contained HTML page beside the results."""
import base64
import json
import os
import re
import sys

import pytest

import tinymodels as tm
from compss_infer.run import report as reportmod
from compss_infer.cli import main

PNG = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def finished_run(tmp_path, quadrant_images, capsys):
    """A run with ground truth and labels, chunks small enough for a timeline, and --report."""
    folder, items = quadrant_images(24, nested=True)
    labels = tmp_path / "labels.txt"
    labels.write_text("q0\nq1\nq2\nq3\n")  # folder names are the class names
    out = str(tmp_path / "res.csv")
    code = main(["run", "--no-progress", "--engine", "sequential", "--set", "preprocess.mode=L",
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
    assert main(["run", "--no-progress", "--engine", "sequential", "--set", "preprocess.mode=L", "--report",
                 "--model", tm.write_graph(tm.quadrant_graph(), str(tmp_path / "q.pb")), "--images", folder,
                 "--output", out]) == 0
    captured = capsys.readouterr()
    assert os.path.exists(out) and "compss-infer: report" not in captured.out and "no fonts today" in captured.err
