"""`compss-infer demo` on the shipped models and images: both reach 0.95 and agree on every image."""
import csv
import os

from compss_infer.cli import main

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def test_demo_passes(tmp_path, capsys):
    assert main(["demo", "--root", ROOT, "--output-dir", str(tmp_path), "--no-progress"]) == 0
    out = capsys.readouterr().out
    assert "fp32 models agree on 450/450 images" in out and "demo: PASS" in out
    import re
    int8 = re.search(r"int8 model agrees with fp32 on (\d+)/450", out)
    assert int8 and int(int8.group(1)) >= 446  # >= 99 %
    assert re.search(r"digits_cnn_int8.tflite: accuracy 0\.9[5-9]", out)
    rows = list(csv.DictReader(open(tmp_path / "digits_cnn.csv")))
    assert len(rows) == 450 and all(r["error"] == "" for r in rows)


def test_shipped_models_are_small_and_carded():
    for name in ("digits_cnn", "digits_cnn_path"):
        assert os.path.getsize(os.path.join(ROOT, "models", name + ".pb")) < 2 * 2**20
        assert os.path.isfile(os.path.join(ROOT, "models", name + ".yaml"))
    assert os.path.getsize(os.path.join(ROOT, "models", "digits_cnn_int8.tflite")) < 2**17
    import yaml
    card = yaml.safe_load(open(os.path.join(ROOT, "models", "digits_cnn_int8.yaml")))
    assert card["verification"]["check_images"] == 450 and card["verification"]["top1_agreement"] >= 0.99
    truth = list(csv.DictReader(open(os.path.join(ROOT, "images", "digits", "truth.csv"))))
    assert len(truth) == 450 and all(os.path.isfile(os.path.join(ROOT, "images", "digits", r["path"])) for r in truth)
