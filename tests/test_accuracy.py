"""Ground truth: --truth CSV and --truth-from-folders put accuracy, top-k accuracy, per-class
precision/recall and a confusion matrix in the summary; the numbers are recomputed here by hand."""
import json
import os
from collections import Counter

import pytest

import tinymodels as tm
from compss_infer.cli import main
from compss_infer.run.metrics import FolderTruth, Scorer


def run(*args):
    return main(["run", "--no-progress", "--engine", "sequential", "--set", "preprocess.mode=L",
                 "--set", "preprocess.std=1", *args])


@pytest.fixture
def nested(quadrant_images):
    folder, items = quadrant_images(16, nested=True)
    scores = {rel: tm.expected_scores(os.path.join(folder, rel)) for rel, _ in items}
    return folder, items, scores


def test_truth_csv_with_top_k(nested, tmp_path):
    folder, items, scores = nested
    # Every third image gets a wrong label: its true class is the model's second choice, so top-2 catches it.
    truth = {}
    for i, (rel, q) in enumerate(items):
        order = list(scores[rel].argsort()[::-1])
        truth[rel] = int(order[1]) if i % 3 == 0 else q
    truth_csv = tmp_path / "truth.csv"
    truth_csv.write_text("path,class_id\n" + "".join(f"{p},{c}\n" for p, c in truth.items()))
    out = str(tmp_path / "r.csv")
    assert run("--model", tm.write_graph(tm.quadrant_graph(), str(tmp_path / "q.pb")), "--images", folder,
               "--output", out, "--truth", str(truth_csv), "--top-k", "2") == 0
    acc = json.load(open(out + ".summary.json"))["accuracy"]

    predicted = {rel: int(s.argmax()) for rel, s in scores.items()}
    top2 = {rel: set(s.argsort()[::-1][:2].tolist()) for rel, s in scores.items()}
    n = len(items)
    assert acc["labelled"] == n and acc["failed"] == 0
    assert acc["accuracy"] == round(sum(predicted[p] == truth[p] for p in truth) / n, 6)
    assert acc["accuracy"] < 1.0 and acc["top2_accuracy"] == 1.0
    assert acc["top2_accuracy"] == round(sum(truth[p] in top2[p] for p in truth) / n, 6)
    pairs = Counter((truth[p], predicted[p]) for p in truth)
    classes = sorted({c for pair in pairs for c in pair})
    assert acc["confusion"] == {"classes": classes, "matrix": [[pairs[(t, q)] for q in classes] for t in classes]}
    for c in classes:
        tp = pairs[(c, c)]
        predicted_c = sum(v for (t, q), v in pairs.items() if q == c)
        actual_c = sum(v for (t, q), v in pairs.items() if t == c)
        assert acc["per_class"][str(c)] == {"precision": round(tp / predicted_c, 6) if predicted_c else None,
                                            "recall": round(tp / actual_c, 6) if actual_c else None,
                                            "support": actual_c}


def test_truth_from_folders_and_failed_images_count_as_wrong(nested, tmp_path):
    folder, items, _ = nested
    labels = tmp_path / "labels.txt"
    labels.write_text("q0\nq1\nq2\nq3\n")
    (tmp_path / "imgs" / "q2" / "broken.png").write_bytes(b"\x89PNG\r\n\x1a\n" + b"\0" * 20)
    (tmp_path / "imgs" / "loose.png").write_bytes(open(os.path.join(folder, items[0][0]), "rb").read())
    out = str(tmp_path / "f.jsonl")
    assert run("--model", tm.write_graph(tm.quadrant_graph(), str(tmp_path / "q.pb")), "--images", folder,
               "--output", out, "--labels", str(labels), "--truth-from-folders", "--top-k", "3") == 1
    summary = json.load(open(out + ".summary.json"))
    acc = summary["accuracy"]
    # 16 good images + 1 broken one under q2/; loose.png has no class folder, so it is not labelled.
    assert acc["labelled"] == 17 and acc["failed"] == 1
    assert acc["accuracy"] == round(16 / 17, 6) and acc["accuracy_of_classified"] == 1.0
    assert acc["top3_accuracy"] == round(16 / 17, 6)
    assert acc["confusion"]["matrix"] == [[4, 0, 0, 0], [0, 4, 0, 0], [0, 0, 4, 0], [0, 0, 0, 4]]
    assert summary["images"] == 18


def test_scorer_and_folder_truth_units():
    truth = FolderTruth(["cat", "dog"])
    assert truth.get("dog/x.png") == 1 and truth.get("x.png") is None and truth.get("bird/x.png") is None
    s = Scorer({"a": 0, "b": 1, "c": 1}, top_k=2)
    s.add("a", 0, [0, 1])
    s.add("b", 0, [0, 1])
    s.add("c", None, None)
    s.add("unlabelled", 1, [1, 0])
    out = s.summary()
    assert out["accuracy"] == round(1 / 3, 6) and out["top2_accuracy"] == round(2 / 3, 6)
    assert out["per_class"]["0"] == {"precision": 0.5, "recall": 1.0, "support": 1}
    assert out["per_class"]["1"] == {"precision": None, "recall": 0.0, "support": 1}
    assert Scorer({}, 1).summary() is None
