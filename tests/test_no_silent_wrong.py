"""Issue 10: every row is right or says why not.  Odd graphs and files built on the fly, real sessions."""
import csv
import json
import os

import numpy as np
import pytest

import tinymodels as tm
from badimages import png_with_header
from compss_infer.cli import main
from compss_infer.core.specs import ModelSpec, PreprocessSpec, SessionSpec
from compss_infer.core.contracts import WorkerSpec
from compss_infer.core.errors import ConfigError, ModelError
from compss_infer.run.labels import check_labels, label_for, load_labels
from compss_infer.run.metrics import load_truth_csv
from compss_infer.worker import classify_chunk, warm_up


def spec_for(path, batch=4, top_k=1, pre=None, **model):
    return WorkerSpec(model=ModelSpec(path=path, **model), preprocess=pre or PreprocessSpec(mode="L"),
                      session=SessionSpec(), batch_size=batch, top_k=top_k, default_threads=1)


def run_cli(*args):
    return main(["run", "--no-progress", "--engine", "sequential", "--set", "preprocess.mode=L",
                 "--set", "preprocess.std=1", *args])


@pytest.fixture
def images(quadrant_images):
    folder, items = quadrant_images(10)
    paths = [os.path.join(folder, rel) for rel, _ in items]
    return paths, [tm.expected_scores(p) for p in paths]


def odd(tmp_path, kind, **kw):
    return tm.write_graph(tm.odd_output_graph(kind, **kw), str(tmp_path / f"{kind}.pb"))


@pytest.mark.parametrize("kind, needle", [
    ("batch_mean", r"shape \(1, 4\) for an input batch \(2, 8, 8, 1\)"),
    ("doubled", r"shape \(2, 4\) for an input batch \(1, 8, 8, 1\)"),
    ("scalar", r"scalar \(rank 0\)"),
])
def test_outputs_that_do_not_follow_the_batch_are_refused_at_warm_up(tmp_path, kind, needle):
    with pytest.raises(ModelError, match=needle):
        warm_up(spec_for(odd(tmp_path, kind)))


def test_fixed_batch_graph_must_output_its_batch(tmp_path):
    with pytest.raises(ModelError, match=r"shape \(1, 4\) does not follow the fixed input batch"):
        warm_up(spec_for(odd(tmp_path, "batch_mean", batch=3)))


def test_refusal_is_one_line_exit_2(tmp_path, quadrant_images, capsys):
    folder, _ = quadrant_images(4)
    out = str(tmp_path / "r.csv")
    assert run_cli("--model", odd(tmp_path, "batch_mean"), "--set", "model.output=out:0",
                   "--images", folder, "--output", out) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "leading dimension does not follow the batch" in err[0], err
    assert not os.path.exists(out) and not os.path.exists(out + ".journal")


def test_row_count_checked_on_every_batch(tmp_path, images):
    """first_two is right at batch 1 and 2 (so warm-up passes) and wrong at 4: those rows fail, none shift."""
    paths, truth = images
    res = classify_chunk(spec_for(odd(tmp_path, "first_two"), batch=4), paths)  # batches of 4, 4, 2
    assert sorted(res.errors) == list(range(8))
    assert all(e.startswith("InferenceError: the model returned output shape (2, 4) for a batch of 4")
               for e in res.errors.values())
    assert res.class_ids[8:].tolist() == [int(t.argmax()) for t in truth[8:]]
    assert (res.class_ids[:8] == -1).all()


def test_nan_scores_are_error_rows_and_the_run_exits_1(tmp_path, quadrant_images):
    folder, items = quadrant_images(8)
    model = odd(tmp_path, "nan_q3")
    paths = [os.path.join(folder, rel) for rel, _ in items]
    res = classify_chunk(spec_for(model, top_k=2), paths)
    want_bad = {i for i, (_, q) in enumerate(items) if q == 3}
    assert set(res.errors) == want_bad and want_bad
    assert all(res.errors[i] == "InferenceError: non-finite scores (NaN)" for i in want_bad)
    good = [i for i in range(len(paths)) if i not in want_bad]
    assert np.isfinite(res.scores[good]).all() and np.isfinite(res.topk_scores[good]).all()

    out = str(tmp_path / "n.csv")
    assert run_cli("--model", model, "--images", folder, "--output", out, "--top-k", "2") == 1
    rows = list(csv.DictReader(open(out)))
    for r in rows:
        if r["error"]:
            assert r["error"] == "InferenceError: non-finite scores (NaN)" and r["class_id"] == r["score"] == ""
        else:
            assert r["score"] and len(r["topk_scores"].split()) == 2 and "nan" not in r["topk_scores"]
    summary = json.load(open(out + ".summary.json"))
    assert summary["failed"] == len(want_bad) and summary["failures_by_kind"] == {"InferenceError": len(want_bad)}


@pytest.fixture
def labelled_run(tmp_path, quadrant_images):
    folder, items = quadrant_images(8)
    model = tm.write_graph(tm.quadrant_graph(), str(tmp_path / "q.pb"))

    def go(lines, *extra, bom=False):
        path = tmp_path / "labels.txt"
        path.write_text(("\ufeff" if bom else "") + "".join(f"{x}\n" for x in lines), encoding="utf-8")
        out = str(tmp_path / f"r{len(lines)}_{len(extra)}.csv")
        code = run_cli("--model", model, "--images", folder, "--output", out, "--labels", str(path), *extra)
        return code, out
    return go, items


@pytest.mark.parametrize("lines, offset_hint", [(["a", "b", "c"], "--set model.label_offset=1"),
                                                (["bg", "a", "b", "c", "d"], "--set model.label_offset=-1")])
def test_labels_off_by_one_are_refused_before_work(labelled_run, capsys, lines, offset_hint):
    go, _ = labelled_run
    capsys.readouterr()
    code, out = go(lines)
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and not os.path.exists(out) and not os.path.exists(out + ".journal")
    assert len(err) == 1 and f"has {len(lines)} lines but the model has 4 classes" in err[0], err
    assert "labels.txt" in err[0] and offset_hint in err[0]


def test_label_offset_names_class_i_by_line_i_minus_offset(labelled_run):
    go, items = labelled_run
    code, out = go(["top-right", "bottom-left", "bottom-right"], "--set", "model.label_offset=1")
    assert code == 0
    names = {0: "", 1: "top-right", 2: "bottom-left", 3: "bottom-right"}
    rows = list(csv.DictReader(open(out)))
    assert rows and all(r["label"] == names[int(r["class_id"])] for r in rows)
    code, out = go(["background", "q0", "q1", "q2", "q3"], "--set", "model.label_offset=-1", bom=True)
    assert code == 0 and {r["label"] for r in csv.DictReader(open(out))} == {"q0", "q1", "q2", "q3"}


def test_labels_bom_crlf_and_trailing_newlines(tmp_path):
    p = tmp_path / "l.txt"
    p.write_bytes("\ufeffcat\r\ndog\r\n\r\n".encode("utf-8"))
    labels = load_labels(str(p))
    assert labels == ["cat", "dog"]
    check_labels(labels, str(p), 2, 0)
    with pytest.raises(ConfigError, match="label_offset=1"):
        check_labels(labels, str(p), 3, 0)
    assert label_for(0, labels, 1) is None and label_for(2, labels, 1) == "dog" and label_for(3, labels, 1) is None


def test_path_graph_keeps_the_decoders_reason_and_refuses_a_bomb(tmp_path, images):
    paths, truth = images
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    bomb = tmp_path / "bomb.png"
    bomb.write_bytes(png_with_header(20000, 20000))
    model = tm.write_graph(tm.path_graph(batched=True), str(tmp_path / "pb.pb"))
    # its ReadFile sits in the map_fn's library function, which the audit refuses (issue 22)
    res = classify_chunk(spec_for(model, batch=4, allow_unsafe_ops=True), paths[:2] + [str(broken), str(bomb)] + paths[2:])
    assert sorted(res.errors) == [2, 3]
    assert res.errors[2].startswith("DecodeError: ") and "Graph execution error" not in res.errors[2]
    assert "PNG" in res.errors[2]
    assert res.errors[3] == "DecompressionBomb: 20000x20000 = 400000000 pixels exceeds preprocess.max_pixels=89478485"
    assert np.delete(res.class_ids, [2, 3]).tolist() == [int(t.argmax()) for t in truth]


def test_channel_mismatch_names_the_fix(quadrant_model):
    with pytest.raises(ModelError, match=r"wants 1 channels but preprocess.mode=RGB gives 3: use --set preprocess.mode=L"):
        warm_up(spec_for(quadrant_model(), pre=PreprocessSpec(mode="RGB")))


def test_truth_partial_coverage_duplicates_bom_and_no_match(tmp_path, quadrant_images, capsys):
    folder, items = quadrant_images(8)
    model = tm.write_graph(tm.quadrant_graph(), str(tmp_path / "q.pb"))
    truth = tmp_path / "truth.csv"
    truth.write_text("\ufeffpath,class_id\n" + "".join(f"{rel},{q}\n" for rel, q in items[:5]), encoding="utf-8")
    out = str(tmp_path / "t.csv")
    assert run_cli("--model", model, "--images", folder, "--output", out, "--truth", str(truth)) == 0
    summary = json.load(open(out + ".summary.json"))
    acc = summary["accuracy"]
    assert acc["labelled"] == 5 and acc["images"] == 8 and acc["without_truth"] == 3
    assert acc["coverage"] == "accuracy 1.0000 on 5 of 8 images (3 without truth)"
    assert acc["coverage"] in capsys.readouterr().out

    dup = tmp_path / "dup.csv"
    dup.write_text(f"{items[0][0]},1\n{items[1][0]},2\n{items[0][0]},3\n")
    with pytest.raises(ConfigError, match=r"line 3: .* is class 3 here but class 1 on line 1"):
        load_truth_csv(str(dup))
    capsys.readouterr()
    assert run_cli("--model", model, "--images", folder, "--output", str(tmp_path / "d.csv"), "--truth", str(dup)) == 2
    assert "is class 3 here" in capsys.readouterr().err

    absolute = tmp_path / "abs.csv"
    absolute.write_text("".join(f"{os.path.join(folder, rel)},{q}\n" for rel, q in items))
    out = str(tmp_path / "a.csv")
    assert run_cli("--model", model, "--images", folder, "--output", out, "--truth", str(absolute)) == 0
    summary = json.load(open(out + ".summary.json"))
    assert summary["accuracy"] is None
    line = f"no result matched the ground truth: result path {items[0][0]!r} vs truth path {os.path.join(folder, items[0][0])!r}"
    assert line in summary["warnings"] and line in capsys.readouterr().err


def test_truth_from_folders_warns_about_unknown_folder_names(tmp_path, quadrant_images):
    folder, items = quadrant_images(8, nested=True)  # q0/ .. q3/
    os.rename(os.path.join(folder, "q1"), os.path.join(folder, "1"))  # a class id is a fine folder name
    os.rename(os.path.join(folder, "q3"), os.path.join(folder, "misc"))
    labels = tmp_path / "labels.txt"
    labels.write_text("q0\nqq1\nq2\nq3x\n")
    out = str(tmp_path / "f.csv")
    assert run_cli("--model", tm.write_graph(tm.quadrant_graph(), str(tmp_path / "q.pb")), "--images", folder,
                   "--output", out, "--labels", str(labels), "--truth-from-folders") == 0
    summary = json.load(open(out + ".summary.json"))
    assert summary["accuracy"]["labelled"] == 6 and summary["accuracy"]["accuracy"] == 1.0
    assert any("2 image(s) under folders that are neither class ids nor labels: 'misc'" in w
               for w in summary["warnings"])


def test_batch_rows_units():
    from compss_infer.core.contracts import ModelInfo
    from compss_infer.model.outputcheck import batch_rows
    base = dict(input_name="x:0", input_dtype="float32", input_shape=(None, 2, 2, 1), input_kind="image",
                output_name="y:0", output_dtype="float32", output_shape=(None, 3), fixed_batch=None, num_classes=3,
                height=2, width=2, channels=1, node_count=1, function_count=0)
    scores = ModelInfo(output_kind="scores", **base)
    errors = {}
    rows, kept = batch_rows(np.array([[0.1, 0.2, 0.7], [np.inf, 0, 0], [np.nan, np.inf, 0]]), [5, 6, 7], scores, errors)
    assert kept == [5] and rows.tolist() == [[np.float32(0.1), np.float32(0.2), np.float32(0.7)]]
    assert errors == {6: "InferenceError: non-finite scores (Inf)", 7: "InferenceError: non-finite scores (NaN, Inf)"}
    errors = {}
    assert batch_rows(np.float32(1.0), [0, 1], scores, errors) == (None, []) and sorted(errors) == [0, 1]
    ids = ModelInfo(output_kind="class_id", **{**base, "output_dtype": "int64", "num_classes": None})
    errors = {}
    rows, kept = batch_rows(np.array([2, -1]), [0, 1], ids, errors)
    assert kept == [0] and errors == {1: "InferenceError: negative class id -1"}
