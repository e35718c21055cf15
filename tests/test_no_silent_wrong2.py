"""Issue 23: models without cards, path graphs, class-id outputs, odd numbers, dynamic .tflite, reports.

Every model is built here, on the fly (frozen graphs, and .tflite files converted by TensorFlow's own
converter); every answer is checked against the quadrant classifier's numpy answer.
"""
from __future__ import annotations

import csv
import json
import os
import shutil

import numpy as np
import pytest
from PIL import Image, ImageOps

import tinymodels as tm
from compss_infer.cli import main
from compss_infer.core.contracts import ModelInfo
from compss_infer.core.errors import ConfigError
from compss_infer.model.session import import_tf
from compss_infer.run.config import build_config

H = W = 8


def rows(path):
    with open(path, newline="", encoding="utf-8") as fh:
        return list(csv.DictReader(fh))


def run_cli(*args):
    return main(["run", "--no-progress", "--engine", "sequential", *args])


def refusal(capsys, *args):
    """(exit code, the one stderr line) of a run that must be refused."""
    capsys.readouterr()
    code = run_cli(*args)
    err = [line for line in capsys.readouterr().err.splitlines() if line.strip()]
    assert len(err) == 1, err
    return code, err[0]


def to_tflite(gd, path, shape, int8_range=None):
    """Convert a frozen graph (input ``images``, output ``probs``) with TensorFlow's converter.

    int8_range (lo, hi): full-integer quantization calibrated on uniform values in that range.
    """
    tf = import_tf()
    pb = path[:-len(".tflite")] + ".src.pb"
    tm.write_graph(gd, pb)
    out = [n.name for n in gd.node][-1]
    conv = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(pb, ["images"], [out], input_shapes={"images": shape})
    if int8_range:
        rng = np.random.default_rng(0)

        def calibration():
            for _ in range(32):
                yield [rng.uniform(*int8_range, size=[1] + [d or H for d in shape[1:]]).astype(np.float32)]
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = calibration
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        conv.inference_input_type = tf.int8
        conv.inference_output_type = tf.int8
    with open(path, "wb") as fh:
        fh.write(conv.convert())
    os.unlink(pb)
    return path


def minus_one_to_one_graph():
    """The quadrant classifier for inputs in [-1, 1] (MobileNet-style): x -> (x + 1) * 127.5 inside."""
    tf = import_tf()
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, H, W, 1], name="images")
        tf.nn.softmax(tm._quadrant_logits(tf, (x + 1.0) * 127.5, H, W), name="probs")
    return g.as_graph_def()


def truth_of(folder, items):
    return [int(tm.expected_scores(os.path.join(folder, rel)).argmax()) for rel, _ in items]


# --------------------------------------------------------------------------- 1. no unchosen preprocessing

def test_a_float_model_with_no_preprocessing_chosen_is_refused_before_work(tmp_path, quadrant_images, capsys):
    folder, items = quadrant_images(4)
    model = tm.write_graph(tm.quadrant_graph(), str(tmp_path / "q.pb"))
    out = str(tmp_path / "r.csv")
    code, line = refusal(capsys, "--model", model, "--images", folder, "--output", out, "--set", "preprocess.mode=L")
    assert code == 2 and not os.path.exists(out) and not os.path.exists(out + ".journal")
    assert "no model card, config or flag sets preprocess.mean/std for the float input images:0" in line
    assert "--set preprocess.mean=0 --set preprocess.std=1" in line  # how to declare raw pixels on purpose
    # the same choice made explicitly runs, and gives the raw-pixel model's right answers
    assert run_cli("--model", model, "--images", folder, "--output", out, "--set", "preprocess.mode=L",
                   "--set", "preprocess.mean=0", "--set", "preprocess.std=1") == 0
    assert [int(r["class_id"]) for r in rows(out)] == truth_of(folder, items)
    assert json.load(open(out + ".summary.json"))["warnings"] == []
    # quantize would write the unchosen scaling into the int8 model's card: refused the same way
    capsys.readouterr()
    lite = str(tmp_path / "q_int8.tflite")
    assert main(["quantize", model, "--calibration", folder, "--output", lite, "--set", "preprocess.mode=L"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "quantize would calibrate with, and write into the int8 model's card" in err[0]
    assert "--set preprocess.mean=0 --set preprocess.std=1" in err[0] and not os.path.exists(lite)


@pytest.fixture(scope="module")
def int8_minus_one(tmp_path_factory):
    """An int8 .tflite whose input expects [-1, 1], with no card beside it."""
    root = tmp_path_factory.mktemp("int8m1")
    return to_tflite(minus_one_to_one_graph(), str(root / "m1.tflite"), [None, H, W, 1], int8_range=(-1.0, 1.0))


def test_a_quantized_tflite_without_card_is_refused_with_the_range_its_input_expects(int8_minus_one, tmp_path,
                                                                                       quadrant_images, capsys):
    from compss_infer.model.tflite_audit import read_tflite
    x = read_tflite(open(int8_minus_one, "rb").read(), int8_minus_one).inputs[0]
    assert x.dtype == "int8" and abs(x.scale - 2 / 255) < 1e-4  # calibrated on [-1, 1]
    lo, hi = (-128 - x.zero_point) * x.scale, (127 - x.zero_point) * x.scale
    assert lo < -0.98 and hi > 0.98
    folder, items = quadrant_images(8)
    out = str(tmp_path / "r.csv")
    base = ("--model", int8_minus_one, "--images", folder, "--output", out, "--set", "preprocess.mode=L")
    code, line = refusal(capsys, *base)
    assert code == 2 and not os.path.exists(out)
    assert f"expects values in [{lo:.4g}, {hi:.4g}] (from its scale and zero point), not raw pixels 0..255" in line
    mean, std = 255 * -lo / (hi - lo), 255 / (hi - lo)
    fix = f"--set preprocess.mean={mean:.4g} --set preprocess.std={std:.4g}"
    assert fix in line
    # a range the model does not expect (0..1 into [-1, 1]) is refused too, even when chosen
    code, line = refusal(capsys, *base, "--set", "preprocess.std=255")
    assert code == 2 and "preprocess.mean/std feed values in [0, 1] but the quantized input" in line and fix in line
    # what the refusal suggests runs, and gives the right classes
    assert run_cli(*base, *fix.replace("--set ", "--set=").split()) == 0
    assert [int(r["class_id"]) for r in rows(out)] == truth_of(folder, items)
    # so does the MobileNet habit, mean = std = 127.5 (half a step off the grid: it fits)
    out2 = str(tmp_path / "r2.csv")
    assert run_cli("--model", int8_minus_one, "--images", folder, "--output", out2, "--set", "preprocess.mode=L",
                   "--set", "preprocess.mean=127.5", "--set", "preprocess.std=127.5") == 0
    assert [r["class_id"] for r in rows(out2)] == [r["class_id"] for r in rows(out)]
    # inspect prints the range it found
    capsys.readouterr()
    assert main(["inspect", int8_minus_one]) == 0
    text = capsys.readouterr().out
    assert f"input range [{lo:.4g}, {hi:.4g}] (from the input's scale and zero point)" in text
    assert f"preprocess.mean={mean:.4g} preprocess.std={std:.4g}" in text
    assert main(["inspect", int8_minus_one, "--json"]) == 0
    assert json.loads(capsys.readouterr().out)["input_range"] == pytest.approx([lo, hi])


def test_range_fit_rules():
    from compss_infer.images.ranges import fed_range, fits, mean_std_for
    imagenet = fed_range((123.7, 116.3, 103.5), (58.4, 57.1, 57.4))
    assert fits(imagenet, (-2.0, 2.5))  # a calibration range a little narrower than the data
    assert not fits(fed_range((0.0,), (1.0,)), (-1.0, 1.0))  # raw pixels saturate
    assert not fits(fed_range((0.0,), (255.0,)), (-1.0, 1.0)) and not fits((-1.0, 1.0), (0.0, 1.0))
    assert fits(fed_range((0.0,), (1.0,)), (0.0, 255.0))
    assert mean_std_for((0.0, 1.0)) == (0.0, 255.0)


# --------------------------------------------------------------------------- 2. path graphs and EXIF

def rotated_jpeg(path, quadrant, orientation):
    """A JPEG stored turned, with the EXIF orientation that turns it back to show ``quadrant`` upright."""
    upright = tm.quadrant_image(quadrant, 16, 16, seed=quadrant)
    undo = {3: Image.Transpose.ROTATE_180, 6: Image.Transpose.ROTATE_90, 8: Image.Transpose.ROTATE_270}[orientation]
    stored = upright.transpose(undo)
    exif = Image.Exif()
    exif[0x0112] = orientation
    stored.save(path, quality=95, exif=exif.tobytes())
    seen = ImageOps.exif_transpose(Image.open(path)).convert("L")
    assert int(tm.expected_scores(path).argmax()) != quadrant  # as stored, another quadrant is brightest
    seen.save(path + ".upright.png")
    assert int(tm.expected_scores(path + ".upright.png").argmax()) == quadrant
    os.unlink(path + ".upright.png")


def test_a_path_graph_never_classifies_a_turned_photo_silently(tmp_path, capsys):
    folder = tmp_path / "photos"
    folder.mkdir()
    for i, orientation in enumerate((3, 6, 8)):
        rotated_jpeg(str(folder / f"turned_{i}.jpg"), 1, orientation)
    tm.quadrant_image(2, 16, 16).save(folder / "plain.jpg", quality=95)
    tensor = tm.write_graph(tm.quadrant_graph(), str(tmp_path / "t.pb"))
    path_model = tm.write_graph(tm.path_graph(), str(tmp_path / "p.pb"))
    common = ("--images", str(folder), "--set", "preprocess.mode=L")
    t_out, p_out = str(tmp_path / "t.csv"), str(tmp_path / "p.csv")
    assert run_cli("--model", tensor, "--output", t_out, *common, "--set", "preprocess.std=1") == 0
    assert [r["class_id"] for r in rows(t_out)] == ["2", "1", "1", "1"]  # the tensor twin turns them upright
    assert run_cli("--model", path_model, "--output", p_out, "--images", str(folder)) == 1
    got = rows(p_out)
    assert got[0]["class_id"] == "2" and not got[0]["error"]
    for r, orientation in zip(got[1:], (3, 6, 8)):
        assert r["class_id"] == "" and r["error"].startswith(f"ExifOrientation: EXIF orientation {orientation} (")
        assert "cannot see the picture upright" in r["error"] and "preprocess.exif_transpose=false" in r["error"]
    assert json.load(open(p_out + ".summary.json"))["failures_by_kind"] == {"ExifOrientation": 3}
    # asked to classify the files as stored, both models agree
    assert run_cli("--model", path_model, "--output", p_out, "--images", str(folder), "--overwrite",
                   "--set", "preprocess.exif_transpose=false") == 0
    assert run_cli("--model", tensor, "--output", t_out, *common, "--set", "preprocess.std=1", "--overwrite",
                   "--set", "preprocess.exif_transpose=false") == 0
    assert [r["class_id"] for r in rows(p_out)] == [r["class_id"] for r in rows(t_out)]
    # a Pillow-side key the graph never sees is refused, not ignored
    code, line = refusal(capsys, "--model", path_model, "--output", str(tmp_path / "c.csv"), "--images", str(folder),
                         "--set", "preprocess.crop=0.5")
    assert code == 2 and line.endswith("preprocess.crop cannot be applied: the graph takes image paths (image_path:0) "
                                       "and decodes, resizes and scales them itself; remove it, or use a model with "
                                       "an image-tensor input")


# --------------------------------------------------------------------------- 6. decode reasons from path graphs

def test_path_graph_decode_errors_keep_tensorflows_reason(tmp_path):
    from compss_infer.core.contracts import WorkerSpec
    from compss_infer.core.specs import ModelSpec, PreprocessSpec, SessionSpec
    from compss_infer.worker import classify_chunk
    im = tm.quadrant_image(1, 16, 16, "RGB")
    im.convert("CMYK").save(tmp_path / "cmyk.jpg")
    im.save(tmp_path / "still.gif")
    im.save(tmp_path / "whole.png")
    png = (tmp_path / "whole.png").read_bytes()
    (tmp_path / "cut.png").write_bytes(png[:len(png) - 40])
    im.save(tmp_path / "whole.jpg")
    jpg = (tmp_path / "whole.jpg").read_bytes()
    (tmp_path / "cut.jpg").write_bytes(jpg[:len(jpg) // 2])
    names = ["cmyk.jpg", "still.gif", "cut.png", "cut.jpg", "whole.png"]
    want = ["DecodeError: jpeg::Uncompress failed. Invalid JPEG data or crop window.",
            "DecodeError: channels must be 0 or 3 for GIF, got 1",
            f"DecodeError: Invalid PNG data, size {len(png) - 40}",
            "DecodeError: jpeg::Uncompress failed. Invalid JPEG data or crop window."]
    for batched in (False, True):  # the scalar-path graph used to keep only "Node: 'decode_image/DecodeImage'"
        model = tm.write_graph(tm.path_graph(batched=batched), str(tmp_path / f"p{batched}.pb"))
        # the batched graph's ReadFile sits in the map_fn's library function: unsafe since issue 22
        spec = WorkerSpec(model=ModelSpec(path=model, allow_unsafe_ops=batched), preprocess=PreprocessSpec(),
                          session=SessionSpec(), batch_size=4, default_threads=1)
        res = classify_chunk(spec, [str(tmp_path / n) for n in names])
        assert [res.errors.get(i) for i in range(4)] == want
        assert 4 not in res.errors and res.class_ids[4] == 1


# --------------------------------------------------------------------------- 3. class-id outputs

def test_class_id_outputs_get_their_labels_checked(tmp_path, quadrant_images, capsys):
    folder, items = quadrant_images(8)
    labels = tmp_path / "labels.txt"
    labels.write_text("a\nb\nc\n")  # 3 lines for 4 classes: every label would be shifted
    model = tm.write_graph(tm.quadrant_graph(int_output=True), str(tmp_path / "ids.pb"))
    base = ("--images", folder, "--labels", str(labels), "--set", "preprocess.mode=L", "--set", "preprocess.std=1")
    out = str(tmp_path / "r.csv")
    code, line = refusal(capsys, "--model", model, "--set", "model.output=class_id:0", "--output", out, *base)
    assert code == 2 and "has 3 lines but the model has 4 classes" in line and "label_offset=1" in line
    # the same from a .tflite: the class count comes from the flatbuffer's ARG_MAX
    lite = to_tflite(tm.quadrant_graph(int_output=True), str(tmp_path / "ids.tflite"), [None, H, W, 1])
    code, line = refusal(capsys, "--model", lite, "--output", out, *base)
    assert code == 2 and "has 3 lines but the model has 4 classes" in line
    # and a graph whose class axis has no fixed length: a warning, and every row is range-checked
    tf = import_tf()
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, H, W, 1], name="images")
        logits = tm._quadrant_logits(tf, x, H, W)
        loose = tf.reshape(logits, tf.stack([tf.shape(logits)[0], -1]))  # (n, ?): the count is lost
        tf.argmax(loose, axis=1, output_type=tf.int64, name="class_id")
    loose_model = tm.write_graph(g.as_graph_def(), str(tmp_path / "loose.pb"))
    capsys.readouterr()
    assert run_cli("--model", loose_model, "--output", out, *base) == 1
    assert "the labels file's line count is not checked" in capsys.readouterr().err
    want = truth_of(folder, items)
    for r, q in zip(rows(out), want):
        if q == 3:
            assert r["error"] == "InferenceError: class id 3 has no line in the labels file (3 lines)"
        else:
            assert r["class_id"] == str(q) and r["label"] == "abc"[q]


def test_class_ids_beyond_the_class_count_are_error_rows():
    from compss_infer.model.outputcheck import batch_rows
    info = ModelInfo(input_name="x:0", input_dtype="float32", input_shape=(None, 2, 2, 1), input_kind="image",
                     output_name="y:0", output_dtype="int64", output_shape=(None,), output_kind="class_id",
                     fixed_batch=None, num_classes=4, height=2, width=2, channels=1, node_count=1, function_count=0)
    errors = {}
    out, kept = batch_rows(np.array([3, 4, 0]), [0, 1, 2], info, errors)
    assert kept == [0, 2] and errors == {1: "InferenceError: class id 4 is out of range (the model has 4 classes)"}


# --------------------------------------------------------------------------- 4. ambiguous truth names

def test_ambiguous_folder_names_are_refused_naming_the_labels(tmp_path, quadrant_images, capsys):
    folder, items = quadrant_images(8, nested=True)  # q0/ .. q3/
    labels = tmp_path / "labels.txt"
    labels.write_text("crane\nq1\ncrane\n3\n")  # "crane" twice (ImageNet has two); "3" is class 3's own id
    model = tm.write_graph(tm.quadrant_graph(), str(tmp_path / "q.pb"))
    base = ("--model", model, "--labels", str(labels), "--truth-from-folders", "--set", "preprocess.mode=L",
            "--set", "preprocess.std=1")
    os.rename(os.path.join(folder, "q0"), os.path.join(folder, "crane"))
    out = str(tmp_path / "r.csv")
    code, line = refusal(capsys, *base, "--images", folder, "--output", out)
    assert code == 2 and not os.path.exists(out)
    assert "'crane' is the label of classes 0 and 2" in line
    assert "name such folders by class id (e.g. crane/ -> 0/) or give --truth CSV with path,class_id" in line
    # folders named by class id are not ambiguous: the run goes on
    os.rename(os.path.join(folder, "crane"), os.path.join(folder, "0"))
    os.rename(os.path.join(folder, "q2"), os.path.join(folder, "2"))
    assert run_cli(*base, "--images", folder, "--output", out) == 0
    assert json.load(open(out + ".summary.json"))["accuracy"]["labelled"] == 6  # q1 by label, 0/ and 2/ by id
    # a label that is a number naming another class is ambiguous too
    labels.write_text("a\nq1\n1\nq3\n")
    os.rename(os.path.join(folder, "q3"), os.path.join(folder, "1"))
    code, line = refusal(capsys, *base, "--images", folder, "--output", str(tmp_path / "r2.csv"))
    assert code == 2 and "'1' is the label of class 2 and also class id 1" in line


# --------------------------------------------------------------------------- 5. numbers in a config

@pytest.mark.parametrize("args, needle", [
    (["--set", "preprocess.mean=.nan"], "preprocess.mean: expected a finite number, got nan"),
    (["--set", "preprocess.std=.inf"], "preprocess.std: expected a finite number, got inf"),
    (["--task-timeout", "nan"], "run.task_timeout: expected a finite number, got nan"),
    (["--task-timeout", "inf"], "run.task_timeout: expected a finite number, got inf"),
    (["--set", "run.task_timeout_floor=.nan"], "run.task_timeout_floor: expected a finite number, got nan"),
    (["--set", "preprocess.crop=.nan"], "preprocess.crop: expected a finite number, got nan"),
    (["--set", "model.feeds={'keep_prob:0': .nan}"], "model.feeds.keep_prob:0: expected a finite number, got nan"),
    (["--set", "run.workers=" + "9" * 40], "run.workers: must be <= 2147483647, got an integer of 40 digits"),
    (["--set", "run.batch_size=" + "1" * 5000], "--set run.batch_size: a number has more than 4,300 digits"),
    (["--set", "preprocess.size=[8, 100000]"], "preprocess.size: expected [height, width] of integers from 1 to 65535"),
])
def test_every_number_is_finite_and_in_range(tmp_path, capsys, args, needle):
    model = tm.write_graph(tm.quadrant_graph(), str(tmp_path / "q.pb"))
    code, line = refusal(capsys, "--model", model, "--images", str(tmp_path), "--output", str(tmp_path / "r.csv"),
                         *args)
    assert code == 2 and needle in line


def test_a_huge_integer_in_a_config_file_or_card_says_so(tmp_path):
    model = tm.write_graph(tm.quadrant_graph(), str(tmp_path / "q.pb"))
    config = tmp_path / "c.yaml"
    config.write_text("run:\n  workers: " + "7" * 5000 + "\n")
    with pytest.raises(ConfigError, match=r"c.yaml: a number has more than 4,300 digits"):
        build_config(str(config), {"model": {"path": model}})
    (tmp_path / "q.yaml").write_text("preprocess:\n  std: " + "7" * 5000 + "\n")
    with pytest.raises(ConfigError, match=r"model card file .*q.yaml: a number has more than 4,300 digits"):
        build_config(None, {"model": {"path": model}})


# --------------------------------------------------------------------------- 7. dynamic-shape .tflite

def dynamic_graph(batch):
    """The quadrant classifier for any height/width: a 3x3 VALID box filter, resized to 8x8 inside."""
    tf = import_tf()
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [batch, None, None, 1], name="images")
        box = tf.nn.conv2d(x, tf.constant(np.full((3, 3, 1, 1), 1 / 9, np.float32)), strides=1, padding="VALID")
        tf.nn.softmax(tm._quadrant_logits(tf, tf.image.resize(box, [H, W]), H, W), name="probs")
    return g.as_graph_def()


@pytest.mark.parametrize("batch", [1, None])
def test_a_dynamic_shape_tflite_is_resized_before_allocation(tmp_path, quadrant_images, capsys, batch):
    """batch 1: "Dimension mismatch" before; any batch: XNNPACK "failed to reshape" at load before."""
    folder, items = quadrant_images(6, h=24, w=24)
    lite = to_tflite(dynamic_graph(batch), str(tmp_path / "dyn.tflite"), [batch, None, None, 1])
    out = str(tmp_path / "r.csv")
    base = ("--model", lite, "--images", folder, "--output", out, "--set", "preprocess.mode=L",
            "--set", "preprocess.std=1")
    code, line = refusal(capsys, *base)
    assert code == 2 and "preprocess.size is needed" in line
    assert run_cli(*base, "--set", "preprocess.size=24", "--batch-size", "4") == 0
    assert [int(r["class_id"]) for r in rows(out)] == [q for _, q in items]


# --------------------------------------------------------------------------- 8. cards store relative paths

def test_a_quantized_model_its_card_and_labels_move_together(tmp_path, quadrant_images):
    import yaml
    folder, items = quadrant_images(20)
    src = tmp_path / "project"
    (src / "models").mkdir(parents=True)
    (src / "labels").mkdir()
    (src / "labels" / "quad.txt").write_text("top-left\ntop-right\nbottom-left\nbottom-right\n")
    pb = tm.write_graph(tm.quadrant_graph(H, W, normalized=True), str(src / "models" / "quad.pb"))
    (src / "models" / "quad.yaml").write_text("model: {labels: ../labels/quad.txt}\npreprocess: {mode: L, std: 255.0}\n")
    out = str(src / "models" / "quad_int8.tflite")
    assert main(["quantize", pb, "--calibration", folder, "--output", out, "--samples", "16"]) == 0
    card = yaml.safe_load(open(out[:-len(".tflite")] + ".yaml"))
    assert card["model"]["labels"] == "../labels/quad.txt"  # relative to the card, also above its folder
    moved = tmp_path / "elsewhere" / "copy"
    shutil.copytree(src, moved)
    shutil.rmtree(src)
    result = str(tmp_path / "r.csv")
    assert run_cli("--model", str(moved / "models" / "quad_int8.tflite"), "--images", folder, "--output", result) == 0
    names = ["top-left", "top-right", "bottom-left", "bottom-right"]
    assert [(int(r["class_id"]), r["label"]) for r in rows(result)] == [(q, names[q]) for _, q in items]
