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
    assert ver["check_images"] == 8 and ver["top1_agreement"] >= 0.95  # every 5th of 40 held out
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
    """Calibrated on dark images only, the int8 ranges clip every bright quadrant: answers collapse."""
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
                 "--set", "preprocess.mode=L", "--set", "preprocess.std=255", "--min-agreement", "0.99"])
    err = capsys.readouterr().err
    assert code == 1
    line = [x for x in err.splitlines() if "not written" in x]
    assert len(line) == 1 and "top-1 agreement" in line[0] and "/12 images" in line[0] and "0.99" in line[0]
    assert not out.exists() and not (tmp_path / "bad.yaml").exists()


@pytest.mark.parametrize("engine", ["local", "compss"])
def test_a_tflite_run_on_each_engine_equals_a_sequential_run(engine, quantized, tmp_path, request):
    _, out, _, _ = quantized
    folder = str(tmp_path / "imgs")
    tm.make_images(folder, 20, H, W)
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


def test_local_workers_running_a_tflite_model_never_import_tensorflow(quantized, tmp_path):
    """A fresh master (its own forkserver), wired as runner.run wires the local engine."""
    _, out, _, _ = quantized
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
                 "--set", "preprocess.std=255"]) == 0
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


def test_integer_inputs_take_raw_pixels_when_scale_and_zero_point_allow():
    from compss_infer.model.backends.litert import LiteRTPredictor
    from compss_infer.model.tflite_audit import TensorDesc
    from compss_infer.core.specs import PreprocessSpec

    class Fake(LiteRTPredictor):
        def __init__(self, pre, x):  # only what _input_plan and _quantize need
            self.spec = type("S", (), {"preprocess": pre})()
            self._x = x
            self._feed_dtype, self._shift = self._input_plan(x)

    px = np.array([[0, 1, 127, 128, 255]], np.uint8)
    f = Fake(PreprocessSpec(std=(255.0,)), TensorDesc("x", "int8", (None, 5), 1 / 255, -128))
    assert f.input_dtype == np.uint8 and f._shift == -128
    assert f._quantize(px).tolist() == [[-128, -127, -1, 0, 127]]
    # MobileNet-style (p - 127.5) / 127.5 with scale 2/255: still a pure shift
    f = Fake(PreprocessSpec(mean=(127.5,), std=(127.5,)), TensorDesc("x", "uint8", (None, 5), 2 / 255, 128))
    assert f.input_dtype == np.uint8 and abs(f._shift) <= 1
    # std 1 with scale 1/255: the floats must be quantized (no pixel shortcut)
    f = Fake(PreprocessSpec(), TensorDesc("x", "int8", (None, 5), 1 / 255, -128))
    assert f.input_dtype == np.float32
    assert f._quantize(np.array([[0.0, 0.5, 1.0, 2.0]])).tolist() == [[-128, 0, 127, 127]]
