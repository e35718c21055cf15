"""``compss-infer optimize``: training-only and unused nodes gone, batch norms and constants folded,
outputs unchanged (checked), refusals in one line."""
import os

import numpy as np
import pytest
import yaml

import kerasmodels as km
import tinymodels as tm
from compss_infer.model import optimize as optmod
from compss_infer.cli import main
from compss_infer.model.graph import read_graph_def
from compss_infer.model.session import import_tf
from compss_infer.model.verify import run_graph

pytestmark = pytest.mark.filterwarnings("ignore:__array__ implementation:DeprecationWarning")


def bn_graph():
    """Conv2D + FusedBatchNormV3 (inference mode), an Identity chain, CheckNumerics and an unused branch."""
    tf = import_tf()
    rng = np.random.default_rng(0)
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 1], name="images")
        y = tf.nn.conv2d(x, tf.constant(rng.normal(size=(3, 3, 1, 4)), tf.float32), 1, "SAME")
        c = lambda lo, hi: tf.constant(rng.uniform(lo, hi, 4), tf.float32)  # noqa: E731
        y, _, _ = tf.compat.v1.nn.fused_batch_norm(y, c(0.5, 2), c(-1, 1), mean=c(-1, 1), variance=c(0.5, 2),
                                                   is_training=False)
        y = tf.debugging.check_numerics(tf.identity(tf.nn.relu(y)), "relu")
        y = tf.reduce_mean(y, [1, 2])
        tf.identity(y * 2.0, name="debug_out")  # dangling: nobody needs it
        tf.nn.softmax(y, name="probs")
    return g.as_graph_def()


def test_folds_batch_norm_strips_unused_and_keeps_outputs(tmp_path, capsys):
    src = tm.write_graph(bn_graph(), str(tmp_path / "bn.pbtxt"))
    (tmp_path / "bn.yaml").write_text("model:\n  input: images:0\n  output: probs:0\n")
    out = str(tmp_path / "bn.opt.pbtxt")
    assert main(["optimize", src, "--output", out]) == 0
    printed = capsys.readouterr().out
    assert "op" in printed and "before" in printed and "FusedBatchNormV3" in printed and ": ok" in printed
    before, after = read_graph_def(src), read_graph_def(out)
    ops = optmod.op_counts(after)
    assert "FusedBatchNormV3" not in ops and "CheckNumerics" not in ops
    assert "debug_out" not in {n.name for n in after.node} and len(after.node) < len(before.node)
    assert ops["Conv2D"] == 1 and ops["Placeholder"] == 1
    x = np.random.default_rng(1).random((5, 8, 8, 1)).astype(np.float32)
    a, b = (run_graph(gd, {"images:0": x}, "probs:0") for gd in (before, after))
    assert np.abs(a - b).max() < 1e-5
    # The card travels with the graph (same tensors).
    assert yaml.safe_load(open(tmp_path / "bn.opt.yaml"))["model"]["output"] == "probs:0"


def test_frozen_keras_model_with_batchnorm_shrinks(tmp_path, capsys):
    model = km.tiny_classifier(batchnorm=True)
    model.save(str(tmp_path / "k.keras"))
    assert main(["freeze", str(tmp_path / "k.keras"), "--output", str(tmp_path / "k.pb")]) == 0
    assert main(["optimize", str(tmp_path / "k.pb"), "--output", str(tmp_path / "k.opt.pb")]) == 0
    before, after = read_graph_def(str(tmp_path / "k.pb")), read_graph_def(str(tmp_path / "k.opt.pb"))
    assert len(after.node) < len(before.node)
    assert "Rsqrt" in optmod.op_counts(before) and "Rsqrt" not in optmod.op_counts(after)  # BN folded
    x = np.random.default_rng(2).uniform(0, 255, (3, 8, 8, 1)).astype(np.float32)
    want = model.predict(x, verbose=0)
    assert np.abs(run_graph(after, {"images:0": x}, "probs:0") - want).max() < 1e-5


def test_extra_placeholders_are_kept_and_fed(tmp_path):
    src = tm.write_graph(tm.quadrant_graph(keep_prob=True), str(tmp_path / "kp.pb"))
    out = str(tmp_path / "kp.opt.pb")
    assert main(["optimize", src, "--output", out]) == 0
    after = read_graph_def(out)
    assert sorted(n.name for n in after.node if n.op == "Placeholder") == ["images", "keep_prob"]


def test_mismatch_and_bad_destinations_are_refused(tmp_path, capsys, monkeypatch):
    src = tm.write_graph(tm.quadrant_graph(), str(tmp_path / "q.pb"))
    existing = tmp_path / "exists.pb"
    existing.write_bytes(b"keep")
    cases = [
        (["optimize", src, "--output", src], "must differ"),
        (["optimize", src, "--output", str(existing)], "--overwrite"),
        (["optimize", src, "--output", str(tmp_path / "q.txt")], ".pb or .pbtxt"),
        (["optimize", str(tmp_path / "none.pb"), "--output", str(tmp_path / "o.pb")], "not found"),
        (["optimize", src, "--output", str(tmp_path / "o.pb"), "--output-name", "nope:0"], "no tensor"),
    ]
    for args, needle in cases:
        capsys.readouterr()
        assert main(args) == 2, args
        err = capsys.readouterr().err.strip().splitlines()
        assert len(err) == 1 and needle in err[0], (args, err)
    assert existing.read_bytes() == b"keep"

    # An "optimization" that changes the answers is never written.
    def broken(gd, inputs, dtypes, outputs):
        return tm.inverted_graph()
    monkeypatch.setattr(optmod, "optimize_graph", broken)
    capsys.readouterr()
    assert main(["optimize", src, "--output", str(tmp_path / "o.pb")]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "does not reproduce" in err[0] and "MISMATCH" in err[0]
    assert not os.path.exists(tmp_path / "o.pb")
