"""``compss-infer freeze``: Keras files and SavedModels to a frozen graph + model card, verified,
and the round trip Keras -> freeze -> run giving Keras's own classes."""
import csv
import os

import numpy as np
import pytest
import yaml

import kerasmodels as km
from compss_infer.model import freeze as freezemod
from compss_infer.cli import main
from compss_infer.model.graph import read_graph_def

# Keras 3 saving converts variables with np.array(copy=False): its own warning, not ours.
pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


@pytest.fixture(scope="module")
def sources(tmp_path_factory):
    """One tiny model saved three ways, plus one without a Rescaling layer."""
    d = tmp_path_factory.mktemp("src")
    model = km.tiny_classifier()
    model.save(str(d / "m.keras"))
    model.save(str(d / "m.h5"))
    model.export(str(d / "saved"), verbose=False)
    plain = km.tiny_classifier(16, 16, 3, classes=3, rescale=False, seed=1)
    plain.save(str(d / "rgb.keras"))
    return {"model": model, "keras": str(d / "m.keras"), "h5": str(d / "m.h5"), "saved": str(d / "saved"),
            "rgb": str(d / "rgb.keras")}


def one_error_line(capsys):
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("compss-infer: error: "), err
    return err[0]


def test_keras_file_to_pb_and_card(sources, tmp_path, capsys):
    out = str(tmp_path / "m.pb")
    assert main(["freeze", sources["keras"], "--output", out]) == 0
    printed = capsys.readouterr().out
    assert "max |difference|" in printed and ": ok" in printed
    card = yaml.safe_load(open(tmp_path / "m.yaml"))
    assert card["model"] == {"input": "images:0", "output": "probs:0"}
    # Rescaling as first layer: the model takes raw pixels, so mean 0 / std 1 is known, not invented.
    assert card["preprocess"] == {"size": [8, 8], "mode": "L", "mean": 0.0, "std": 1.0}
    assert card["tensors"] == {"images:0": "float32 [N,8,8,1]", "probs:0": "float32 [N,4]"}
    assert card["verified"]["max_abs_diff"] <= 1e-5 and card["bytes"] == os.path.getsize(out)
    gd = read_graph_def(out)
    names = {n.name: n for n in gd.node}
    assert names["images"].op == "Placeholder" and names["probs"].op == "Identity"
    assert not [n for n in gd.node if n.op == "NoOp"]  # the trailing Identity/NoOp pair is gone
    assert [d.size for d in names["images"].attr["shape"].shape.dim] == [-1, 8, 8, 1]


def test_h5_with_fixed_batch_and_custom_names(sources, tmp_path):
    out = str(tmp_path / "fixed.pbtxt")
    assert main(["freeze", sources["h5"], "--output", out, "--batch", "2",
                 "--input-name", "pixels", "--output-name", "scores"]) == 0
    gd = read_graph_def(out)
    ph = next(n for n in gd.node if n.op == "Placeholder")
    assert ph.name == "pixels" and [d.size for d in ph.attr["shape"].shape.dim] == [2, 8, 8, 1]
    card = yaml.safe_load(open(tmp_path / "fixed.yaml"))
    assert card["model"] == {"input": "pixels:0", "output": "scores:0"} and card["verified"]["batch"] == 2


def test_saved_model_directory(sources, tmp_path):
    out = str(tmp_path / "sm.pb")
    assert main(["freeze", sources["saved"], "--output", out]) == 0
    card = yaml.safe_load(open(tmp_path / "sm.yaml"))
    assert card["source"]["kind"] == "savedmodel" and card["model"]["output"] == "probs:0"
    # A SavedModel signature says nothing about its layers: mean/std stay unknown.
    assert "mean" not in card["preprocess"] and any(n.startswith("mean/std: unknown") for n in card["preprocess_notes"])


def test_rgb_model_without_rescaling_says_mean_std_unknown(sources, tmp_path):
    assert main(["freeze", sources["rgb"], "--output", str(tmp_path / "rgb.pb")]) == 0
    card = yaml.safe_load(open(tmp_path / "rgb.yaml"))
    assert card["preprocess"] == {"size": [16, 16], "mode": "RGB"}
    notes = " ".join(card["preprocess_notes"])
    assert "mean/std: unknown" in notes and "BGR" in notes


def test_refreezing_keeps_labels_and_mean_std_from_an_edited_card(sources, tmp_path):
    out = str(tmp_path / "rgb.pb")
    assert main(["freeze", sources["rgb"], "--output", out]) == 0
    card_path = tmp_path / "rgb.yaml"
    card = yaml.safe_load(open(card_path))
    card["model"]["labels"] = "rgb.labels.txt"
    card["preprocess"].update(mean=[1.0, 2.0, 3.0], std=255.0)
    card_path.write_text(yaml.safe_dump(card))
    assert main(["freeze", sources["rgb"], "--output", out]) == 2  # exists: refused without --overwrite
    assert main(["freeze", sources["rgb"], "--output", out, "--overwrite"]) == 0
    card = yaml.safe_load(open(card_path))
    assert card["model"]["labels"] == "rgb.labels.txt"
    assert card["preprocess"]["mean"] == [1.0, 2.0, 3.0] and card["preprocess"]["std"] == 255.0


def test_refusals_are_one_line_and_write_nothing(sources, tmp_path, capsys, monkeypatch):
    bad = tmp_path / "notes.txt"
    bad.write_text("hello")
    cases = [
        (["freeze", str(bad), "--output", str(tmp_path / "a.pb")], "expected a Keras file"),
        (["freeze", str(tmp_path / "missing.keras"), "--output", str(tmp_path / "a.pb")], "not found"),
        (["freeze", str(tmp_path), "--output", str(tmp_path / "a.pb")], "not a SavedModel"),
        (["freeze", sources["keras"], "--output", str(tmp_path / "a.onnx")], ".pb or .pbtxt"),
        (["freeze", sources["keras"], "--output", str(tmp_path / "a.pb"), "--batch", "0"], "--batch"),
        (["freeze", sources["keras"], "--output", str(tmp_path / "a.pb"), "--input-name", "x:0"], "plain node name"),
    ]
    for args, needle in cases:
        capsys.readouterr()
        assert main(args) == 2, args
        assert needle in one_error_line(capsys), args
    # A frozen graph that disagrees with its source is refused, and nothing is written.
    real = freezemod.run_graph
    monkeypatch.setattr(freezemod, "run_graph", lambda gd, feeds, fetch: real(gd, feeds, fetch) + 0.01)
    capsys.readouterr()
    assert main(["freeze", sources["keras"], "--output", str(tmp_path / "a.pb")]) == 2
    assert "does not reproduce" in one_error_line(capsys)
    assert not os.path.exists(tmp_path / "a.pb") and not os.path.exists(tmp_path / "a.yaml")


def test_round_trip_keras_freeze_run_gives_keras_classes(sources, tmp_path, quadrant_images):
    folder, items = quadrant_images(24)
    model_path = str(tmp_path / "rt.pb")
    assert main(["freeze", sources["keras"], "--output", model_path]) == 0
    out = str(tmp_path / "rt.csv")
    # No preprocessing flags: the card beside the model says size 8x8, mode L, raw pixels.
    assert main(["run", "--no-progress", "--model", model_path, "--images", folder, "--output", out,
                 "--engine", "sequential"]) == 0
    with open(out, newline="") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["path"] for r in rows] == [rel for rel, _ in items]
    probs = sources["model"].predict(km.pixels([os.path.join(folder, rel) for rel, _ in items]), verbose=0)
    assert [int(r["class_id"]) for r in rows] == probs.argmax(1).tolist()
    assert len(set(probs.argmax(1).tolist())) > 1  # the check means something
    assert np.allclose([float(r["score"]) for r in rows], probs.max(1), atol=1e-5)


def test_parse_batch():
    assert freezemod.parse_batch("dynamic") is None and freezemod.parse_batch("8") == 8
