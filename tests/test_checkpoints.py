"""Issue 13: TF1 Saver checkpoints, frozen by ``compss-infer freeze`` and run straight from a
training folder, including a newer checkpoint written mid-run (hot reload) and --resume refusing
a changed checkpoint.  The checkpoints are real (a tiny graph trained a few steps, saved with
tf.compat.v1.train.Saver); answers are checked against numpy computed from the saved weights."""
import csv
import json
import os
import shutil

import numpy as np
import pytest
import yaml

import ckptmodels as cm
import tinymodels as tm
from compss_infer.run import runner
from compss_infer.cli import main
from compss_infer.model.graph import read_graph_def
from compss_infer.run.journal import Journal
from compss_infer.model import tf1
from compss_infer.model.checkpoint import locate_checkpoint, looks_like_checkpoint, read_index
from compss_infer.model.identity import model_identity, ranges_by_id
from compss_infer.model.session import import_tf
from compss_infer.model.verify import run_graph

RUN = ["run", "--no-progress", "--set", "preprocess.mode=L",
       "--set", "preprocess.std=1", "--set", 'model.feeds={"keep_prob:0": 1.0}']


@pytest.fixture(scope="module")
def ckpt(tmp_path_factory):
    """A training folder with one checkpoint (model.ckpt-5), and 10 quadrant images."""
    root = tmp_path_factory.mktemp("ckpt")
    saved = cm.save_checkpoint(str(root / "train"))
    images = str(root / "imgs")
    items = tm.make_images(images, 10)
    return {"root": root, "folder": str(root / "train"), "saved": saved, "images": images, "items": items}


def one_error_line(capsys):
    """The one error line (warnings such as "no model card sets preprocess.mean/std" may precede it)."""
    err = [line for line in capsys.readouterr().err.strip().splitlines() if line.startswith("compss-infer: error:")]
    assert len(err) == 1, err
    return err[0]


def copy_folder(ckpt, tmp_path, name="train"):
    dst = str(tmp_path / name)
    shutil.copytree(ckpt["folder"], dst)
    with open(os.path.join(dst, "checkpoint"), "w") as fh:  # entries relative, as a moved folder has them
        fh.write('model_checkpoint_path: "model.ckpt-5"\nall_model_checkpoint_paths: "model.ckpt-5"\n')
    return dst


def rows_of(path):
    with open(path, newline="") as fh:
        return list(csv.DictReader(fh))


# --------------------------------------------------------------------------- locating

def test_locating_checkpoints_without_tensorflow(ckpt, tmp_path):
    folder, prefix = ckpt["folder"], ckpt["saved"].prefix
    assert all(looks_like_checkpoint(p) for p in (folder, prefix, prefix + ".meta"))
    assert not looks_like_checkpoint(str(tmp_path)) and not looks_like_checkpoint(prefix + ".index")
    assert locate_checkpoint(folder) == locate_checkpoint(prefix) == locate_checkpoint(prefix + ".meta")
    found = locate_checkpoint(folder)
    assert found.name == "model.ckpt-5" and [os.path.basename(f) for f in found.files] == \
        ["model.ckpt-5.index", "model.ckpt-5.data-00000-of-00001", "model.ckpt-5.meta"]
    # The Saver wrote absolute entries; a moved folder's are found by name.
    moved = str(tmp_path / "moved")
    shutil.copytree(folder, moved)
    assert read_index(moved) == [os.path.join(moved, "model.ckpt-5")]
    ident = model_identity(moved)
    assert ident.kind == "checkpoint" and ident.name == "model.ckpt-5" and len(ident.files) == 3
    assert ident.sha256() == model_identity(folder).sha256()  # same contents, same digest
    # A newer entry whose .meta is not written yet (a Saver writes it last): the older one is taken.
    for suffix in (".index", ".data-00000-of-00001"):
        shutil.copy(os.path.join(moved, "model.ckpt-5" + suffix), os.path.join(moved, "model.ckpt-9" + suffix))
    with open(os.path.join(moved, "checkpoint"), "w") as fh:
        fh.write('model_checkpoint_path: "model.ckpt-9"\nall_model_checkpoint_paths: "model.ckpt-5"\n'
                 'all_model_checkpoint_paths: "model.ckpt-9"\n')
    taken = locate_checkpoint(moved)
    assert taken.name == "model.ckpt-5" and "model.ckpt-9 is incomplete" in taken.note and ".meta" in taken.note
    shutil.copy(os.path.join(moved, "model.ckpt-5.meta"), os.path.join(moved, "model.ckpt-9.meta"))
    assert locate_checkpoint(moved).name == "model.ckpt-9" and model_identity(moved).key != ident.key
    assert ranges_by_id([(4, 2, "b"), (0, 2, "a"), (2, 2, "a"), (8, 2, "a")]) == {"a": [[0, 4], [8, 10]], "b": [[4, 6]]}


# --------------------------------------------------------------------------- freeze

def test_freeze_by_prefix_meta_and_folder(ckpt, tmp_path, capsys):
    saved = ckpt["saved"]
    outs = {}
    for how, src in (("prefix", saved.prefix), ("meta", saved.prefix + ".meta"), ("folder", ckpt["folder"])):
        out = str(tmp_path / f"{how}.pb")
        assert main(["freeze", src, "--output", out, "--constant", "keep_prob=1.0"]) == 0
        outs[how] = open(out, "rb").read()
    printed = capsys.readouterr().out
    assert "input from the 'inputs' collection, output(s) from the 'outputs' collection" in printed
    assert outs["prefix"] == outs["meta"] == outs["folder"]  # the same checkpoint, the same bytes
    card = yaml.safe_load(open(tmp_path / "folder.yaml"))
    assert card["model"] == {"input": "images:0", "output": "probs:0"}
    assert card["constants"] == {"keep_prob:0": 1.0} and "feeds_needed" not in card
    assert card["preprocess"] == {"size": [8, 8], "mode": "L"} and card["verified"]["max_abs_diff"] <= 1e-6
    assert card["source"]["kind"] == "tf1-checkpoint" and card["source"]["path"] == saved.prefix

    gd = read_graph_def(str(tmp_path / "folder.pb"))
    ops = {n.name: n.op for n in gd.node}
    assert ops["keep_prob"] == "Const" and ops["images"] == "Placeholder" and "labels" not in ops
    assert not [o for o in ops.values() if o in ("VarHandleOp", "VariableV2", "SaveV2", "RestoreV2")
                or "Apply" in o or "Assign" in o]
    meta_ops = {n.op for n in tf1._read_meta(import_tf(), locate_checkpoint(saved.prefix)).graph_def.node}
    assert {"SaveV2", "RestoreV2", "ResourceApplyGradientDescent"} & meta_ops  # the training graph had them
    paths = [os.path.join(ckpt["images"], rel) for rel, _ in ckpt["items"]]
    x = np.stack([np.asarray(tm.Image.open(p), np.float32)[..., None] for p in paths])
    got = run_graph(gd, {"images:0": x}, "probs:0")
    want = np.stack([cm.expected(p, saved) for p in paths])
    np.testing.assert_allclose(got, want, rtol=1e-5, atol=1e-6)


def test_freeze_leaves_keep_prob_as_a_feed_and_names_from_flags(ckpt, tmp_path, capsys):
    out = str(tmp_path / "feed.pb")
    assert main(["freeze", ckpt["folder"], "--output", out, "--input-name", "images",
                 "--output-nodes", "probs,add"]) == 0
    printed = capsys.readouterr().out
    assert "keep_prob:0 stay feeds" in printed and "input from --input-name" in printed
    card = yaml.safe_load(open(tmp_path / "feed.yaml"))
    assert card["feeds_needed"] == ["keep_prob:0"] and card["other_outputs"] == ["add:0"]
    assert card["model"]["output"] == "probs:0"
    ops = {n.name: n.op for n in read_graph_def(out).node}
    assert ops["keep_prob"] == "Placeholder" and "add" in ops
    # Random ops (dropout) are seeded only for the check: the written graph keeps its own (unseeded) ones.
    assert all(n.attr["seed2"].i == 0 for n in read_graph_def(out).node if "seed2" in n.attr)


def test_freeze_signature_and_detection(tmp_path, capsys):
    signed = cm.save_checkpoint(str(tmp_path / "signed"), collections=False, signature=True, steps=1)
    assert main(["freeze", signed.prefix, "--output", str(tmp_path / "s.pb"), "--constant", "keep_prob=1"]) == 0
    assert "input from signature_def 'serving_default'" in capsys.readouterr().out
    bare = cm.save_checkpoint(str(tmp_path / "bare"), collections=False, steps=1)
    assert main(["freeze", bare.prefix, "--output", str(tmp_path / "d.pb"), "--constant", "keep_prob=1"]) == 0
    printed = capsys.readouterr().out
    assert "input from detection, output(s) from detection" in printed and "output probs:0" in printed


# --------------------------------------------------------------------------- errors, one line each

def test_each_checkpoint_error_is_one_line(ckpt, tmp_path, capsys):
    def freeze_fails(src, needle, *extra):
        assert main(["freeze", src, "--output", str(tmp_path / "x.pb"), *extra]) == 2
        line = one_error_line(capsys)
        assert needle in line, line
        assert not os.path.exists(tmp_path / "x.pb")

    for suffix, needle in ((".index", "missing model.ckpt-5.index"),
                           (".data-00000-of-00001", "missing model.ckpt-5.data-00000-of-00001"),
                           (".meta", "missing model.ckpt-5.meta")):
        broken = copy_folder(ckpt, tmp_path, "no" + suffix.split("-")[0].strip("."))
        os.unlink(os.path.join(broken, "model.ckpt-5" + suffix))
        freeze_fails(broken, needle)
        # run refuses it before any worker starts
        assert main(RUN + ["--model", broken, "--images", ckpt["images"], "--output", str(tmp_path / "r.csv")]) == 2
        assert needle in one_error_line(capsys)

    custom = copy_folder(ckpt, tmp_path, "custom")
    def unknown_op(meta):
        next(n for n in meta.graph_def.node if n.name == "probs").op = "MyFancySoftmax"
    cm.rewrite_meta(os.path.join(custom, "model.ckpt-5"), unknown_op)
    freeze_fails(custom, "does not register: MyFancySoftmax")

    other = cm.save_checkpoint(str(tmp_path / "other"), extra_var=True, steps=1)
    mismatched = copy_folder(ckpt, tmp_path, "mismatched")
    shutil.copy(other.prefix + ".meta", os.path.join(mismatched, "model.ckpt-5.meta"))
    freeze_fails(mismatched, "variable dense/extra of the graph is not in it")

    freeze_fails(ckpt["folder"], "--constant nope: not a placeholder the outputs depend on (those are: keep_prob)",
                 "--constant", "nope=1")
    freeze_fails(ckpt["folder"], "no such tensor", "--output-nodes", "nothing_here")
    freeze_fails(ckpt["folder"], "--output-nodes", "--output-name", "probs")
    assert main(["inspect", ckpt["folder"]]) == 2
    assert f"compss-infer freeze {ckpt['folder']} --output MODEL.pb" in one_error_line(capsys)


# --------------------------------------------------------------------------- run

def test_run_checkpoint_folder_gives_the_rows_of_its_frozen_pb(ckpt, tmp_path, capsys):
    pb = str(tmp_path / "frozen.pb")
    assert main(["freeze", ckpt["folder"], "--output", pb, "--constant", "keep_prob=1.0"]) == 0
    from_pb, from_ckpt = str(tmp_path / "pb.csv"), str(tmp_path / "ckpt.csv")
    base = ["run", "--no-progress", "--images", ckpt["images"], "--engine", "sequential", "--chunk-size", "4"]
    # its card names the tensors and mode; mean/std it cannot know (run refuses without them): raw pixels
    assert main(base + ["--model", pb, "--output", from_pb, "--set", "preprocess.std=1"]) == 0
    assert main(RUN + ["--model", ckpt["folder"], "--images", ckpt["images"], "--output", from_ckpt,
                       "--engine", "sequential", "--chunk-size", "4"]) == 0
    assert open(from_pb, "rb").read() == open(from_ckpt, "rb").read()
    for row, (rel, _) in zip(rows_of(from_ckpt), ckpt["items"]):
        assert int(row["class_id"]) == cm.expected(os.path.join(ckpt["images"], rel), ckpt["saved"]).argmax()
    model = json.load(open(from_ckpt + ".summary.json"))["model"]
    (mid,) = model["ids_used"]
    assert mid.startswith("model.ckpt-5:") and model["ranges_used"] == {mid: [[0, 10]]}
    assert model["unsafe_ops"] == [] and model["sha256"] == model_identity(ckpt["folder"]).sha256()
    # Without keep_prob fed, the run is refused before any image: the placeholder is named.
    assert main(["run", "--no-progress", "--set", "preprocess.mode=L",
                 "--set", "preprocess.std=1", "--model", ckpt["folder"], "--images",
                 ckpt["images"], "--output", str(tmp_path / "nofeed.csv"), "--engine", "sequential"]) == 2
    assert "placeholder 'keep_prob:0' is not fed" in one_error_line(capsys)
    # COMPSs staging copies one file; a checkpoint is several: refused up front.
    assert main(RUN + ["--model", ckpt["folder"], "--images", ckpt["images"], "--output", str(tmp_path / "st.csv"),
                       "--set", "run.stage_model=true"]) == 2
    assert "a TF1 checkpoint is several" in one_error_line(capsys)


def test_a_checkpoint_runs_on_the_compss_engine_as_on_sequential(ckpt, tmp_path, compss_master):
    """Through the real PyCOMPSs binding (the session's shared runtime): the task's child restores and
    freezes the checkpoint itself, from the folder on the (shared) disk."""
    out = {}
    for engine in ("sequential", "compss"):
        out[engine] = str(tmp_path / f"{engine}.csv")
        assert main(RUN + ["--model", ckpt["folder"], "--images", ckpt["images"], "--output", out[engine],
                           "--engine", engine, "--chunk-size", "4", "--workers", "2"]) == 0
    assert open(out["compss"], "rb").read() == open(out["sequential"], "rb").read()
    assert {t.ce.signature.rsplit(".", 1)[1] for t in compss_master.tasks()} == {"_classify_task"}
    assert len(compss_master.jobs()) == 3  # 10 images in chunks of 4


def test_newer_checkpoint_mid_run_is_used_by_later_chunks(ckpt, tmp_path, monkeypatch):
    folder = copy_folder(ckpt, tmp_path)
    listing = tmp_path / "list.txt"
    listing.write_text("".join(os.path.join(ckpt["images"], rel) + "\n" for rel, _ in ckpt["items"]))
    newer = []
    real_append = Journal.append

    def append_then_train(self, record):
        real_append(self, record)
        if not newer:  # the first chunk is journaled: the trainer saves its next checkpoint
            assert os.path.getsize(self.chunks_path) > 0
            newer.append(cm.save_checkpoint(folder, negate=True, start_step=95, seed=1))
    monkeypatch.setattr(Journal, "append", append_then_train)

    out = str(tmp_path / "hot.csv")
    # One worker, chunks of 2, one chunk in flight: chunk 2 is dispatched after the new checkpoint.
    assert main(RUN + ["--model", folder, "--image-list", str(listing), "--output", out, "--engine", "local",
                       "--workers", "1", "--chunk-size", "2", "--set", "run.window=1"]) == 0
    assert newer and newer[0].prefix.endswith("model.ckpt-100")
    for i, row in enumerate(rows_of(out)):
        saved = ckpt["saved"] if i < 2 else newer[0]
        scores = cm.expected(listing.read_text().splitlines()[i], saved)
        assert int(row["class_id"]) == scores.argmax(), (i, row)
        assert float(row["score"]) == pytest.approx(scores.max(), rel=1e-4)
    model = json.load(open(out + ".summary.json"))["model"]
    assert sorted(model["ids_used"].values()) == [1, 4]
    old_id, new_id = sorted(model["ids_used"], key=lambda k: model["ids_used"][k])
    assert old_id.startswith("model.ckpt-5:") and new_id.startswith("model.ckpt-100:")
    assert model["ranges_used"] == {old_id: [[0, 2]], new_id: [[2, 10]]}
    with open(out + ".tasks.csv", newline="") as fh:
        tasks = sorted(csv.DictReader(fh), key=lambda t: int(t["start"]))
    assert len({t["pid"] for t in tasks}) == 1  # the same worker froze the new checkpoint
    assert float(tasks[1]["load_s"]) > 0 and float(tasks[2]["load_s"]) == 0  # frozen once, then cached


def test_resume_refuses_a_changed_checkpoint(ckpt, tmp_path, monkeypatch, capsys):
    folder = copy_folder(ckpt, tmp_path)
    out = str(tmp_path / "r.csv")
    args = RUN + ["--model", folder, "--images", ckpt["images"], "--output", out, "--engine", "sequential",
                  "--chunk-size", "2"]
    real_append = Journal.append

    def append_then_interrupt(self, record):
        real_append(self, record)
        raise runner.Interrupted("SIGINT")  # what the signal handler raises: Ctrl-C after one chunk
    monkeypatch.setattr(Journal, "append", append_then_interrupt)
    assert main(args) == 130
    monkeypatch.setattr(Journal, "append", real_append)
    index = os.path.join(folder, "checkpoint")
    before = open(index).read()
    cm.save_checkpoint(folder, start_step=7, steps=1)  # the trainer saved again meanwhile
    capsys.readouterr()
    assert main(args + ["--resume"]) == 2
    assert "--resume refused" in one_error_line(capsys)
    with open(index, "w") as fh:  # back to the checkpoint the run started with: resumable again
        fh.write(before)
    assert main(args + ["--resume"]) == 0
    assert json.load(open(out + ".summary.json"))["resumed_with_done"] == 2
