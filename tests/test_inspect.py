"""``compss-infer inspect``: tensors, candidates, op histogram, batch dimension and audit verdict."""
import json

import pytest

import tinymodels as tm
from compss_infer.cli import main
from compss_infer.model.session import import_tf


def inspect_json(capsys, path):
    capsys.readouterr()
    assert main(["inspect", path, "--json"]) == 0
    return json.loads(capsys.readouterr().out)


def test_pbtxt_with_an_extra_placeholder(tmp_path, capsys):
    path = tm.write_graph(tm.quadrant_graph(keep_prob=True), str(tmp_path / "q.pbtxt"))
    info = inspect_json(capsys, path)
    assert info["format"] == "text" and info["file_bytes"] > 0 and info["node_count"] > 5
    assert {t["name"]: (t["dtype"], t["shape"]) for t in info["inputs"]} == {
        "images:0": ("float32", [None, 8, 8, 1]), "keep_prob:0": ("float32", [])}
    assert info["image_inputs"] == ["images:0"] and info["chosen_input"] == "images:0"
    assert [t["name"] for t in info["outputs"]] == ["probs:0"] and info["chosen_output"] == "probs:0"
    assert info["input_kind"] == "image" and info["fixed_batch"] is None
    assert info["ops"]["Softmax"] == 1 and info["ops"]["Placeholder"] == 2
    assert sum(info["ops"].values()) == info["node_count"]
    assert info["safe"] is True and info["unsafe_ops"] == []


def test_fixed_batch_ambiguous_outputs_and_text_form(tmp_path, capsys):
    path = tm.write_graph(tm.quadrant_graph(batch=4, extra_output=True), str(tmp_path / "q.pb"))
    info = inspect_json(capsys, path)
    assert info["fixed_batch"] == 4 and info["format"] == "binary"
    assert sorted(t["name"] for t in info["outputs"]) == ["logits:0", "probs:0"]
    assert info["chosen_output"] is None and "cannot tell the output" in info["choice_note"]
    assert main(["inspect", path]) == 0
    text = capsys.readouterr().out
    for needle in ("inputs", "images:0 float32 [4, 8, 8, 1]", "candidate outputs", "batch dimension: 4",
                   "audit      safe", "Softmax"):
        assert needle in text, needle


def test_model_card_names_the_output(tmp_path, capsys):
    path = tm.write_graph(tm.quadrant_graph(extra_output=True), str(tmp_path / "q.pb"))
    (tmp_path / "q.yaml").write_text("model:\n  output: logits:0\n")
    info = inspect_json(capsys, path)
    assert info["chosen_output"] == "logits:0" and info["card"] == str(tmp_path / "q.yaml")


def test_path_input_graph_and_unsafe_ops(tmp_path, capsys):
    path = tm.write_graph(tm.path_graph(batched=True), str(tmp_path / "p.pb"))
    info = inspect_json(capsys, path)
    # A batch of paths is read in a map_fn loop: its ReadFile sits in a library function, which the
    # audit does not trace (issue 22), so the graph is unsafe; the scalar path graph is safe.
    assert info["input_kind"] == "path_batch" and info["safe"] is False
    assert [u.split(" ")[0] for u in info["unsafe_ops"]] == ["ReadFile"] and "library function" in info["unsafe_ops"][0]
    assert info["function_count"] >= 1 and info["ops"]["ReadFile"] == 1  # counted inside the map_fn body
    scalar = tm.write_graph(tm.path_graph(), str(tmp_path / "p1.pb"))
    assert inspect_json(capsys, scalar)["safe"] is True
    tf = import_tf()
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(tm.quadrant_graph(), name="")
        tf.io.write_file("/tmp/owned", "x", name="sneaky")
    path = tm.write_graph(g.as_graph_def(), str(tmp_path / "bad.pb"))
    info = inspect_json(capsys, path)
    assert info["safe"] is False and any("WriteFile" in f and "sneaky" in f for f in info["unsafe_ops"])
    assert main(["inspect", path]) == 0
    assert "UNSAFE" in capsys.readouterr().out


@pytest.mark.parametrize("content,needle", [(None, "not found"), (b"\x08\x01garbage", "ModelError")])
def test_unreadable_models_exit_2_in_one_line(tmp_path, capsys, content, needle):
    path = tmp_path / "m.pb"
    if content is not None:
        path.write_bytes(content)
    capsys.readouterr()
    assert main(["inspect", str(path)]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and needle in err[0]
