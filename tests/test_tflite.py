"""8-bit models: ``quantize`` (convert + verify + card), and ``run --model X.tflite`` on every engine.

The models are the tiny quadrant classifier (tinymodels), quantized here; the checks compare real
LiteRT outputs with the fp32 graph's and with the numpy answer.
"""
from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import yaml

from compss_support import SRC, TESTS, clean_compss_env  # noqa: F401 - fixture
import tinymodels as tm
from compss_infer.cli import main
from compss_infer.run.config import build_config
from compss_infer.run.runner import run

H = W = 8


def rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


@pytest.fixture(scope="module")
def quantized(tmp_path_factory):
    """(fp32 .pb, its int8 .tflite written by `compss-infer quantize`, calibration folder, exit code)."""
    root = tmp_path_factory.mktemp("int8")
    pb = tm.write_graph(tm.quadrant_graph(H, W, normalized=True), str(root / "quad.pb"))
    Path(root / "quad.yaml").write_text("model: {input: 'images:0', output: 'probs:0'}\n"
                                        "preprocess: {mode: L, std: 255.0}\n")
    calib = str(root / "calib")
    tm.make_images(calib, 40, H, W)
    out = str(root / "quad_int8.tflite")
    code = main(["quantize", pb, "--calibration", calib, "--output", out, "--samples", "32"])
    return pb, out, calib, code


def test_quantize_writes_a_checked_int8_model_and_its_card(quantized):
    pb, out, _, code = quantized
    assert code == 0 and os.path.isfile(out)
    card = yaml.safe_load(Path(out[:-len(".tflite")] + ".yaml").read_text())
    assert card["model"] == {"input": "images", "output": "probs"}
    assert card["preprocess"]["size"] == [H, W] and card["preprocess"]["std"] == [255.0]
    assert card["quantization"]["input"]["dtype"] == "int8" and card["quantization"]["weights"] == "int8"
    assert card["quantization"]["calibration_images"] == 32
    ver = card["verification"]
    # every 5th of 40 held out, topped up with 20 augmented views of each; the bound decides
    assert ver["held_out_images"] == 8 and ver["augmented_views"] == 160 and ver["check_images"] == 168
    assert ver["lower_bound_95"] >= 0.95 and ver["top1_agreement"] >= ver["lower_bound_95"]
    assert "steps of" in card["quantization"]["scores"] or card["quantization"]["output"]["dtype"] == "float32"
    import hashlib
    assert card["source"]["sha256"] == hashlib.sha256(Path(pb).read_bytes()).hexdigest()
    from compss_infer.model.tflite_audit import read_tflite
    model = read_tflite(Path(out).read_bytes(), out)
    assert model.inputs[0].shape == (None, H, W, 1)  # the batch stays dynamic
    assert not model.unsafe and not any(op.startswith("Flex") for op in model.ops)


def test_a_tflite_run_needs_only_the_model_and_agrees_with_fp32(quantized, tmp_path):
    pb, out, _, _ = quantized
    folder = str(tmp_path / "imgs")
    truth = tm.make_images(folder, 24, H, W)
    int8 = str(tmp_path / "int8.csv")
    assert main(["run", "--model", out, "--images", folder, "--output", int8, "--engine", "sequential",
                 "--no-progress", "--top-k", "2"]) == 0
    fp32 = str(tmp_path / "fp32.csv")
    assert main(["run", "--model", pb, "--images", folder, "--output", fp32, "--engine", "sequential",
                 "--no-progress", "--top-k", "2"]) == 0
    a, b = rows(int8), rows(fp32)
    assert [r["class_id"] for r in a] == [r["class_id"] for r in b] == [str(q) for _, q in truth]
    for r, f in zip(a, b):
        assert abs(float(r["score"]) - float(f["score"])) < 0.05
    summary = json.loads(Path(int8 + ".summary.json").read_text())
    assert summary["model"]["input_dtype"] == "int8" and summary["model"]["device"] == "cpu (LiteRT, XNNPACK)"


def test_quantize_refuses_below_min_agreement_and_writes_nothing(tmp_path, capsys):
    """Calibrated on dark images only, the int8 ranges clip every bright quadrant: answers collapse.

    With --no-fallback nothing may be kept in float, so the refusal is the only way out."""
    pb = tm.write_graph(tm.quadrant_graph(H, W, normalized=True), str(tmp_path / "quad.pb"))
    dark = tmp_path / "dark"
    dark.mkdir()
    rng = np.random.default_rng(0)
    from PIL import Image
    for i in range(12):
        Image.fromarray(rng.integers(0, 6, (H, W), dtype=np.uint8), "L").save(dark / f"d{i}.png")
    check = str(tmp_path / "check")
    tm.make_images(check, 12, H, W)
    out = tmp_path / "bad.tflite"
    code = main(["quantize", pb, "--calibration", str(dark), "--check", check, "--output", str(out),
                 "--set", "preprocess.mode=L", "--set", "preprocess.std=255", "--min-agreement", "0.9",
                 "--no-fallback"])
    err = capsys.readouterr().err
    assert code == 1
    line = [x for x in err.splitlines() if "not written" in x]
    assert len(line) == 1 and "top-1 agreement" in line[0] and "95% lower bound" in line[0]
    assert "/252 images: 12 images of --check" in line[0] and "240 augmented views" in line[0]
    assert "--min-agreement 0.9" in line[0] and "--no-fallback" in line[0]
    assert not out.exists() and not (tmp_path / "bad.yaml").exists()


@pytest.fixture(scope="module")
def hostile(tmp_path_factory):
    """(fp32 .pb with one quantization-hostile layer, the partly-float .tflite quantize wrote, stdout, code)."""
    import contextlib
    import io
    root = tmp_path_factory.mktemp("hostile")
    pb = tm.write_graph(tm.hostile_graph(H, W), str(root / "hostile.pb"))
    Path(root / "hostile.yaml").write_text("model: {input: 'images:0', output: 'probs:0'}\n"
                                           "preprocess: {mode: L, std: 255.0}\n")
    calib = str(root / "calib")
    tm.make_images(calib, 60, H, W)
    out = str(root / "hostile_int8.tflite")
    buf = io.StringIO()
    with contextlib.redirect_stdout(buf):
        code = main(["quantize", pb, "--calibration", calib, "--output", out, "--samples", "48"])
    return pb, out, buf.getvalue(), code


def test_a_quantization_hostile_layer_is_caught_by_the_check_and_fixed_by_the_fallback(hostile, tmp_path, capsys):
    pb, out, printed, code = hostile
    # full int8 alone: the outlier channel's scale wipes out the signal, and the check says so
    refused = str(tmp_path / "full.tflite")
    calib = os.path.join(os.path.dirname(out), "calib")
    assert main(["quantize", pb, "--calibration", calib, "--output", refused, "--samples", "48",
                 "--no-fallback"]) == 1
    line = [x for x in capsys.readouterr().err.splitlines() if "not written" in x]
    assert len(line) == 1 and "--no-fallback" in line[0] and not os.path.exists(refused)
    # with the fallback: both convolutions around the hostile tensor stay in float, and it passes
    assert code == 0, printed
    card = yaml.safe_load(Path(out[:-len(".tflite")] + ".yaml").read_text())
    ver, floats = card["verification"], card["quantization"]["float_ops"]
    assert any(f.startswith("CONV_2D spread") for f in floats) and any(f.startswith("CONV_2D mix") for f in floats)
    assert ver["full_int8"]["lower_bound_95"] < 0.95 <= ver["lower_bound_95"]
    assert ver["full_int8"]["top1_agreement"] < 0.8 and ver["check_images"] == 12 + 12 * 20
    assert set(ver["model_only_images_per_s"]) == {"full_int8", "written"}
    assert "kept in float: " in printed and "CONV_2D spread" in printed and "for full int8" in printed
    from compss_infer.model.tflite_audit import read_tflite
    model = read_tflite(Path(out).read_bytes(), out)
    assert model.inputs[0].dtype == "int8" and "DEQUANTIZE" in model.ops and "CONV_2D" in model.ops


def test_a_check_set_too_small_to_show_the_target_is_refused_before_any_work(tmp_path, capsys):
    pb = tm.write_graph(tm.quadrant_graph(H, W, normalized=True), str(tmp_path / "quad.pb"))
    calib = str(tmp_path / "calib")
    tm.make_images(calib, 10, H, W)  # 2 held out: 42 images with views, a bound of at most 0.916
    few = str(tmp_path / "few")
    tm.make_images(few, 3, H, W)
    for extra in ([], ["--check", few]):
        out = tmp_path / "q.tflite"
        code = main(["quantize", pb, "--calibration", calib, "--output", str(out), "--set", "preprocess.mode=L",
                     "--set", "preprocess.std=255", *extra])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1, err
        assert "CheckTooSmall" in err[0] and "--check DIR" in err[0] and "0.95" in err[0]
        assert "calibrating" not in " ".join(err) and not out.exists()
    # a lower target that such a set can show is accepted
    assert main(["quantize", pb, "--calibration", calib, "--output", str(tmp_path / "ok.tflite"),
                 "--set", "preprocess.mode=L", "--set", "preprocess.std=255", "--min-agreement", "0.5"]) == 0


def test_wilson_lower_bound():
    from compss_infer.model.quantcheck import Z95, images_needed, wilson_lower
    assert abs(wilson_lower(19, 20) - 0.7639) < 5e-4  # the textbook 19/20 interval: [0.764, 0.991]
    assert abs(wilson_lower(50, 50) - 50 / (50 + Z95 ** 2)) < 1e-12
    assert wilson_lower(0, 10) == 0.0 and wilson_lower(0, 0) == 0.0
    n = images_needed(0.95)
    assert wilson_lower(n, n) >= 0.95 > wilson_lower(n - 1, n - 1) and n == 73


def test_tied_top_scores_are_flagged_in_the_row_not_passed_off_as_answers(quantized, tmp_path):
    """Two equally bright quadrants tie in fp32 itself; one grey level apart, the int8 softmax's steps
    of 1/256 tie them where fp32 tells them apart.  Either way the row says so."""
    from PIL import Image
    pb, _, calib, _ = quantized
    full = str(tmp_path / "full_int8.tflite")
    assert main(["quantize", pb, "--calibration", calib, "--output", full, "--samples", "32",
                 "--no-fallback", "--min-agreement", "0"]) == 0
    folder = tmp_path / "ties"
    folder.mkdir()
    base = np.full((H, W), 40, np.uint8)
    base[:4, 4:] = 200  # quadrant 1
    base[4:, 4:] = 200  # quadrant 3
    Image.fromarray(base, "L").save(folder / "a_exact.png")
    near = base.copy()
    near[7, 7] = 201  # quadrant 3 a sixteenth of a grey level brighter
    Image.fromarray(near, "L").save(folder / "b_near.png")
    got = {}
    for name, model in (("fp32", pb), ("int8", full)):
        res = str(tmp_path / f"{name}.csv")
        assert main(["run", "--model", model, "--images", str(folder), "--output", res, "--engine", "sequential",
                     "--no-progress"]) == 0
        got[name] = rows(res)
    exact, near_fp32 = got["fp32"]
    assert exact["class_id"] == "1" and exact["error"].startswith("TiedTopScore: classes 1 3 share the top score")
    assert near_fp32["class_id"] == "3" and near_fp32["error"] == ""
    near_int8 = got["int8"][1]
    assert near_int8["error"].startswith("TiedTopScore: classes 1 3") and near_int8["class_id"] == "1"
    summary = json.loads(Path(str(tmp_path / "int8.csv") + ".summary.json").read_text())
    assert summary["classified"] == 2 and summary["failed"] == 0
    assert summary["tied_top_scores"] == 2 and any("TiedTopScore" in w for w in summary["warnings"])
    fp32 = json.loads(Path(str(tmp_path / "fp32.csv") + ".summary.json").read_text())
    assert fp32["tied_top_scores"] == 1  # the exact tie only
    import pyarrow.parquet as pq  # the same note in a Parquet results file
    res = str(tmp_path / "int8.parquet")
    assert main(["run", "--model", full, "--images", str(folder), "--output", res, "--engine", "sequential",
                 "--no-progress"]) == 0
    table = pq.read_table(res).to_pylist()
    assert table[1]["class_id"] == 1 and table[1]["error"] == near_int8["error"]


def test_summary_and_inspect_show_the_cards_check(hostile, tmp_path, capsys):
    _, out, _, _ = hostile
    card = yaml.safe_load(Path(out[:-len(".tflite")] + ".yaml").read_text())["verification"]
    folder = str(tmp_path / "imgs")
    tm.make_images(folder, 4, H, W)
    res = str(tmp_path / "r.csv")
    assert main(["run", "--model", out, "--images", folder, "--output", res, "--engine", "sequential"]) == 0
    assert "model card: top-1 agreement" in capsys.readouterr().out
    check = json.loads(Path(res + ".summary.json").read_text())["model"]["card_check"]
    assert check["lower_bound_95"] == card["lower_bound_95"] and check["check_images"] == card["check_images"]
    assert check["float_ops"] and check["full_int8"] == card["full_int8"]
    assert main(["inspect", out]) == 0
    text = capsys.readouterr().out
    assert f"check      top-1 agreement {card['top1_agreement']:.4f} with fp32, 95% lower bound" in text
    assert "ops kept in float" in text


@pytest.mark.parametrize("engine", ["local", "compss"])
def test_a_tflite_run_on_each_engine_equals_a_sequential_run(engine, hostile, tmp_path, request):
    """The partly-float model (int8 in, float ops inside): same bytes on every engine, right answers."""
    _, out, _, _ = hostile
    folder = str(tmp_path / "imgs")
    truth = tm.make_images(folder, 20, H, W)
    ref = str(tmp_path / "seq.csv")
    cfg = lambda output, name, **kw: build_config(None, {"model": {"path": out}, "run": {
        "images": folder, "output": output, "progress": False, "engine": name, "chunk_size": 3, **kw}})
    assert run(cfg(ref, "sequential")).exit_code == 0
    got = str(tmp_path / f"{engine}.csv")
    if engine == "compss":  # the real binding on the session's shared runtime (tests/compss_support.py)
        request.getfixturevalue("compss_master")
    summary = run(cfg(got, engine, workers=2))
    assert summary.exit_code == 0 and summary.classified == 20
    assert Path(got).read_bytes() == Path(ref).read_bytes()
    assert [r["class_id"] for r in rows(got)] == [str(q) for _, q in truth]


def test_without_a_runtime_the_compss_engine_runs_its_tasks_in_the_master(quantized, tmp_path):
    """Plain python with the real PyCOMPSs binding importable but no runcompss: tasks run in the caller
    (as documented for PyCOMPSs 2.5-3.3) and compss_wait_on passes the value through; the engine still
    works.  A .tflite model, so that neither the caller nor its task child imports TensorFlow."""
    from compss_support import REAL_PYCOMPSS, subprocess_env
    _, out, _, _ = quantized
    folder = str(tmp_path / "imgs")
    items = tm.make_images(folder, 4, H, W)
    script = f"""
import os, sys
from compss_infer.run.config import build_config
from compss_infer.core.contracts import WorkerSpec
from compss_infer.engines import make_engine
from compss_infer.worker import classify_chunk, warm_up
cfg = build_config(None, {{"model": {{"path": {out!r}}}}})
spec = WorkerSpec(cfg.model, cfg.preprocess, cfg.session, default_threads=1)
paths = [os.path.join({folder!r}, rel) for rel in {[rel for rel, _ in items]!r}]
engine = make_engine("compss"); engine.start(warm_up, spec)
engine.submit(7, classify_chunk, spec, paths)
(outcome,) = engine.poll(0); engine.close(abort=True)
print(outcome.key, outcome.failure, len(outcome.value.class_ids), "tensorflow" in sys.modules)
"""
    proc = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120,
                          env=subprocess_env(str(tmp_path), REAL_PYCOMPSS, COMPSS_INFER_CU="1"))
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.strip() == "7 None 4 False" and "no COMPSs runtime" in proc.stderr


def test_local_workers_running_a_tflite_model_never_import_tensorflow(hostile, tmp_path):
    """A fresh master (its own forkserver), wired as runner.run wires the local engine; the partly-float model."""
    _, out, _, _ = hostile
    script = f"""
import sys
from compss_infer.run.config import build_config
from compss_infer.core.contracts import WorkerSpec
from compss_infer.engines import make_engine
from compss_infer.run.runner import _engine_options
from compss_infer.worker import warm_up
import tflite_tasks
cfg = build_config(None, {{"model": {{"path": {out!r}}}}})
engine = make_engine("local", **_engine_options(cfg, 2, []))
spec = WorkerSpec(cfg.model, cfg.preprocess, cfg.session, default_threads=1)
engine.start(warm_up, spec)
engine.preflight()
for k in range(2):
    engine.submit(k, tflite_tasks.tensorflow_loaded, None)
got = []
while len(got) < 2:
    got += engine.poll(5.0)
engine.close()
print("worker_tf", sorted(o.value for o in got), "master_tf", "tensorflow" in sys.modules)
"""
    env = dict(os.environ, PYTHONPATH=os.pathsep.join([SRC, TESTS]))
    proc = subprocess.run([sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    assert "worker_tf [False, False] master_tf False" in proc.stdout, proc.stdout + proc.stderr


def test_a_fixed_batch_1_model_runs_any_batch(tmp_path):
    pb = tm.write_graph(tm.quadrant_graph(H, W, batch=1, normalized=True), str(tmp_path / "one.pb"))
    calib = str(tmp_path / "calib")
    truth = tm.make_images(calib, 15, H, W)
    out = str(tmp_path / "one_int8.tflite")
    assert main(["quantize", pb, "--calibration", calib, "--output", out, "--set", "preprocess.mode=L",
                 "--set", "preprocess.std=255", "--min-agreement", "0"]) == 0
    from compss_infer.model.tflite_audit import read_tflite
    assert read_tflite(Path(out).read_bytes(), out).inputs[0].shape == (1, H, W, 1)
    res = str(tmp_path / "r.csv")
    summary = run(build_config(None, {"model": {"path": out}, "run": {
        "images": calib, "output": res, "progress": False, "engine": "sequential", "batch_size": 4}}))
    assert summary.exit_code == 0
    assert [r["class_id"] for r in rows(res)] == [str(q) for _, q in truth]


def _flex_model(path: str) -> str:
    from compss_infer.model.session import import_tf
    from compss_infer.model.quiet import quiet_stderr
    tf = import_tf()
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, H, W, 1], name="images")
        m = tf.raw_ops.Sinh(x=tf.reduce_mean(x, axis=[1, 2, 3]))  # no LiteRT builtin: a Flex op
        tf.nn.softmax(tf.stack([m, -m], axis=1), name="probs")
    pb = path[:-len(".tflite")] + ".pb"
    tm.write_graph(g.as_graph_def(), pb)
    conv = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(pb, ["images"], ["probs"])
    conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS, tf.lite.OpsSet.SELECT_TF_OPS]
    with quiet_stderr():
        Path(path).write_bytes(conv.convert())
    return path


def test_a_flex_op_model_is_refused_with_one_line_naming_the_op(tmp_path, capsys):
    model = _flex_model(str(tmp_path / "flex.tflite"))
    folder = str(tmp_path / "imgs")
    tm.make_images(folder, 2, H, W)
    code = main(["run", "--model", model, "--images", folder, "--output", str(tmp_path / "o.csv"),
                 "--engine", "sequential", "--no-progress", "--set", "preprocess.mode=L"])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 2 and len(err) == 1
    assert "FlexSinh" in err[0] and "Flex" in err[0] and "--allow-unsafe-ops" in err[0]
    assert not (tmp_path / "o.csv").exists()
    assert main(["inspect", model]) == 0
    text = capsys.readouterr().out
    assert "UNSAFE" in text and "FlexSinh" in text


def test_a_corrupt_tflite_is_refused_with_one_line(quantized, tmp_path, capsys):
    _, out, _, _ = quantized
    folder = str(tmp_path / "imgs")
    tm.make_images(folder, 2, H, W)
    data = Path(out).read_bytes()
    for name, blob in (("truncated", data[:len(data) // 3]), ("garbage", b"\x00" * 64)):
        bad = tmp_path / f"{name}.tflite"
        bad.write_bytes(blob)
        code = main(["run", "--model", str(bad), "--images", folder, "--output", str(tmp_path / f"{name}.csv"),
                     "--engine", "sequential", "--no-progress", "--set", "preprocess.mode=L"])
        err = capsys.readouterr().err.strip().splitlines()
        assert code == 2 and len(err) == 1 and "not a valid .tflite model" in err[0], err


def test_inspect_describes_a_tflite_model(quantized, capsys):
    _, out, _, _ = quantized
    assert main(["inspect", out]) == 0
    text = capsys.readouterr().out
    assert "images int8 [?, 8, 8, 1] (scale" in text and "audit      safe" in text and "CONV_2D" not in text
    assert main(["inspect", out, "--json"]) == 0
    facts = json.loads(capsys.readouterr().out)
    assert facts["format"] == "tflite" and facts["safe"] and facts["inputs"][0]["quantization"]["zero_point"] == -128


def test_settings_that_do_not_apply_to_litert_say_so(quantized, tmp_path, capsys):
    _, out, calib, _ = quantized
    code = main(["run", "--model", out, "--images", calib, "--output", str(tmp_path / "o.csv"),
                 "--engine", "sequential", "--no-progress", "--set", "session.jit=true",
                 "--set", "session.opt_level=L0"])
    err = capsys.readouterr().err
    assert code == 0 and "session.jit does not apply" in err and "session.opt_level does not apply" in err


def _exact(pre, x, pixels):
    """The reference quantization, in exact rational arithmetic: round(v / scale) + zero point, half away."""
    from fractions import Fraction
    from compss_infer.images.preprocess import normalize
    v = normalize(np.asarray(pixels, np.uint8).reshape(-1, 1), pre, np.dtype(np.float32)).ravel()
    out = []
    for f in v:
        t = Fraction(float(f)) / Fraction(x.scale)
        r = int(t + Fraction(1, 2)) if t >= 0 else -int(-t + Fraction(1, 2))
        out.append(min(127, max(-128, r + x.zero_point)) if x.dtype == "int8" else min(255, max(0, r + x.zero_point)))
    return out


class _Plan:
    """A LiteRTPredictor cut down to what the input plan needs (the table and the feed)."""

    def __new__(cls, pre, x):
        from compss_infer.model.backends.litert import LiteRTPredictor
        p = object.__new__(LiteRTPredictor)
        p.spec = type("S", (), {"preprocess": pre})()
        p._x = x
        p._feed_dtype, p._table, p._fast = p._input_plan(x)
        return p


def test_the_int8_feed_is_exact_for_any_scale_and_zero_point():
    from compss_infer.model.tflite_audit import TensorDesc
    from compss_infer.core.specs import PreprocessSpec
    px = np.arange(256, dtype=np.uint8).reshape(1, 256, 1)
    # mean 0, std 255, scale 1/255 (as float32), zero point -128: the pixel minus 128, fed by flipping a bit
    pre = PreprocessSpec(mode="L", std=(255.0,))
    x = TensorDesc("x", "int8", (None, 256, 1), float(np.float32(1 / 255)), -128)
    p = _Plan(pre, x)
    assert p.input_dtype == np.uint8 and p._fast == "xor"
    assert p._quantize(px).ravel().tolist() == _exact(pre, x, range(256)) == list(range(-128, 128))
    # MobileNet's mean = std = 127.5: scale 1/127.5, zero point -1; pixel - 128 would be half a step off
    pre = PreprocessSpec(mode="L", mean=(127.5,), std=(127.5,))
    x = TensorDesc("x", "int8", (None, 256, 1), float(np.float32(1 / 127.5)), -1)
    p = _Plan(pre, x)
    got = p._quantize(px).ravel().tolist()
    assert p.input_dtype == np.uint8 and p._fast is None
    assert got == _exact(pre, x, range(256))
    assert got != list(range(-128, 128)) and got[255] == 126 and got[0] == -128
    # an odd scale and zero point, per-channel mean/std, RGB
    pre = PreprocessSpec(mode="RGB", mean=(123.7, 116.3, 103.5), std=(58.4, 57.1, 57.4))
    x = TensorDesc("x", "int8", (None, 1, 256, 3), 0.0187, 7)
    p = _Plan(pre, x)
    rgb = np.stack([np.arange(256, dtype=np.uint8)] * 3, axis=-1).reshape(1, 1, 256, 3)
    got = p._quantize(rgb)
    assert got.dtype == np.int8 and p._fast is None
    for c in range(3):
        one = PreprocessSpec(mode="L", mean=(pre.mean[c],), std=(pre.std[c],))
        assert got[..., c].ravel().tolist() == _exact(one, x, range(256))
    # a raw uint8 input (no quantization) takes the pixels as they are
    p = _Plan(PreprocessSpec(mode="L"), TensorDesc("x", "uint8", (None, 256, 1)))
    assert p._fast == "same" and p._quantize(px) is px or np.array_equal(p._quantize(px), px)
