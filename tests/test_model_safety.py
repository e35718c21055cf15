"""Issue 4, item 6: graphs are audited (function library included) before any work; bad models
are refused with one line and exit code 2."""
import os

import pytest

import tinymodels as tm
from compss_infer.cli import main
from compss_infer.model.graph import audit
from compss_infer.model.oplist import ALLOWED_OPS, PATH_INPUT_OPS
from compss_infer.model.session import import_tf

tf = import_tf()


def quadrant_with(extra):
    """The quadrant graph plus whatever ``extra(graph, probs_tensor)`` adds (probs keeps its name)."""
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 8, 8, 1], name="images")
        logits = tm._quadrant_logits(tf, x, 8, 8)
        logits = extra(logits)
        tf.nn.softmax(logits, name="probs")
    return g.as_graph_def()


def run_model(tmp_path, gd, *extra, images=None):
    model = tm.write_graph(gd, str(tmp_path / "m.pb"))
    if images is None:
        images = str(tmp_path / "imgs")
        tm.make_images(images, 4)
    return main(["run", "--no-progress", "--model", model, "--images", images, "--output",
                 str(tmp_path / "out.csv"), "--set", "preprocess.mode=L",
                 "--set", "preprocess.std=1", "--set", "model.output=probs:0", *extra])


def with_write_file(target):
    def extra(logits):
        w = tf.io.write_file(target, tf.strings.as_string(tf.reduce_sum(logits)))
        with tf.control_dependencies([w]):
            return tf.identity(logits)
    return extra


def test_write_file_behind_a_control_dependency_is_refused(tmp_path, capsys):
    target = str(tmp_path / "pwned.txt")
    assert run_model(tmp_path, quadrant_with(with_write_file(target))) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "WriteFile" in err[0] and "writes files" in err[0] and "--allow-unsafe-ops" in err[0]
    assert not os.path.exists(target) and not os.path.exists(tmp_path / "out.csv")
    # The audit was right: allowed explicitly, the graph really writes the file.
    assert run_model(tmp_path, quadrant_with(with_write_file(target)), "--allow-unsafe-ops") == 0
    assert os.path.exists(target)


def test_py_func_is_refused(tmp_path, capsys):
    def extra(logits):
        return tf.compat.v1.py_func(lambda a: a, [logits], tf.float32, stateful=False)
    assert run_model(tmp_path, quadrant_with(extra)) == 2
    err = capsys.readouterr().err
    assert "PyFunc" in err and "runs Python code" in err


def test_an_op_hidden_in_the_function_library_is_found(tmp_path, capsys):
    target = str(tmp_path / "hidden.txt")

    def extra(logits):
        @tf.function
        def sneaky(v):
            tf.io.write_file(target, "x")
            return v * 1.0
        return sneaky(logits)
    gd = quadrant_with(extra)
    assert not any(n.op == "WriteFile" for n in gd.node)  # not visible at the top level
    findings = audit(gd, path_input=None)
    assert [f.op for f in findings] == ["WriteFile"] and findings[0].where.startswith("function ")
    assert run_model(tmp_path, gd) == 2
    err = capsys.readouterr().err
    assert "WriteFile" in err and "in function" in err and not os.path.exists(target)


def test_file_reading_is_allowed_only_for_path_input_graphs(tmp_path):
    def extra(logits):
        return logits + tf.cast(tf.strings.length(tf.io.read_file("/etc/hostname")), tf.float32) * 0
    findings = audit(quadrant_with(extra), path_input=None)
    assert [f.op for f in findings] == ["ReadFile"]
    assert audit(tm.path_graph(), path_input="image_path:0") == []
    assert {f.op for f in audit(tm.path_graph(), path_input=None)} == {"ReadFile", "DecodeImage"}


@pytest.mark.parametrize("flags, needle", [
    (["--set", "model.input=nope:0"], "model.input: no tensor 'nope:0'"),
    (["--set", "model.feeds={\"missing:0\": 1.0}"], "model.feeds: no tensor 'missing:0'"),
    (["--set", "preprocess.size=[9,9]"], "does not match input"),
    (["--set", "preprocess.mean=[1,2,3]"], "3 values but preprocess.mode=L"),
])
def test_tensor_and_shape_mismatches_are_refused(tmp_path, capsys, flags, needle):
    assert run_model(tmp_path, tm.quadrant_graph(), *flags) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0], err


def test_wrong_input_rank_and_dtype_are_refused(tmp_path, capsys):
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.int32, [None, 8, 8, 1], name="images")
        tf.nn.softmax(tm._quadrant_logits(tf, tf.cast(x, tf.float32), 8, 8), name="probs")
    assert run_model(tmp_path, g.as_graph_def()) == 2
    assert "expected a float or uint8 image tensor" in capsys.readouterr().err
    g = tf.Graph()
    with g.as_default():
        x = tf.compat.v1.placeholder(tf.float32, [None, 2, 8, 8, 1], name="images")
        tf.nn.softmax(tf.reduce_mean(x, axis=[1, 2, 3]), name="probs")
    assert run_model(tmp_path, g.as_graph_def()) == 2
    assert "expected [batch, height, width, channels]" in capsys.readouterr().err


def test_allow_list_names_real_ops():
    from tensorflow.core.framework import op_def_pb2
    from tensorflow.python.client import pywrap_tf_session as c_api
    ops = op_def_pb2.OpList()
    ops.ParseFromString(c_api.TF_GetBuffer(c_api.TF_GetAllOpList()))
    registered = {o.name for o in ops.op}
    assert not (ALLOWED_OPS | PATH_INPUT_OPS) - registered
    dangerous = {"WriteFile", "SaveV2", "PyFunc", "EagerPyFunc", "PyFuncStateless", "RemoteCall",
                 "MergeV2Checkpoints", "PrintV2", "ReadFile", "MatchingFiles", "ImmutableConst",
                 "FileSystemSetConfiguration", "RestoreV2", "TFRecordDataset", "DebugIdentityV3"}
    assert not dangerous & ALLOWED_OPS


def test_unknown_op_type_is_refused(tmp_path, capsys):
    gd = tm.quadrant_graph()
    node = next(n for n in gd.node if n.name == "probs")
    node.op = "NotARealOp"
    assert run_model(tmp_path, gd) == 2
    err = capsys.readouterr().err
    assert "NotARealOp" in err and err.count("\n") == 1
