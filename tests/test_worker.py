"""classify_chunk on real TensorFlow sessions over tiny graphs: every graph shape issue 2 names."""
import os
import shutil

import numpy as np
import pytest

import tinymodels as tm
from compss_infer.model import cache
from compss_infer.core.specs import ModelSpec, PreprocessSpec, SessionSpec
from compss_infer.core.contracts import WorkerSpec
from compss_infer.core.errors import ConfigError, ModelError
from compss_infer.worker import classify_chunk, warm_up


def spec_for(path, batch=4, top_k=1, mode="L", **model):
    return WorkerSpec(model=ModelSpec(path=path, **model), preprocess=PreprocessSpec(mode=mode),
                      session=SessionSpec(), batch_size=batch, top_k=top_k, default_threads=1)


@pytest.fixture
def images(quadrant_images):
    folder, items = quadrant_images(10)
    paths = [os.path.join(folder, rel) for rel, _ in items]
    truth = [tm.expected_scores(p) for p in paths]
    return paths, truth


def check(result, truth, scores=True):
    assert result.errors == {}
    assert result.class_ids.tolist() == [int(t.argmax()) for t in truth]
    if scores:
        np.testing.assert_allclose(result.scores, [t.max() for t in truth], rtol=1e-5)


def test_dynamic_batch_graph(quadrant_model, images):
    paths, truth = images
    res = classify_chunk(spec_for(quadrant_model()), paths)
    check(res, truth)
    assert res.timing.pid == os.getpid() and res.timing.model_id


def test_fixed_batch_1_matches_dynamic(quadrant_model, images):
    paths, truth = images
    dyn = classify_chunk(spec_for(quadrant_model("d.pb"), batch=8), paths)
    one = classify_chunk(spec_for(quadrant_model("one.pb", batch=1), batch=8), paths)
    check(one, truth)
    assert one.class_ids.tolist() == dyn.class_ids.tolist()
    np.testing.assert_allclose(one.scores, dyn.scores, rtol=1e-6)
    assert warm_up(spec_for(quadrant_model("one.pb", batch=1))).fixed_batch == 1


def test_fixed_batch_3_pads_the_last_slice(quadrant_model, images):
    paths, truth = images
    check(classify_chunk(spec_for(quadrant_model(batch=3), batch=4), paths), truth)


def test_keep_prob_feed(quadrant_model, images):
    paths, truth = images
    model = quadrant_model(keep_prob=True)
    with pytest.raises(ModelError, match="keep_prob:0.*not fed"):
        warm_up(spec_for(model))
    check(classify_chunk(spec_for(model, feeds=(("keep_prob:0", 1.0),)), paths), truth)
    flat = classify_chunk(spec_for(model, input="images:0", feeds=(("keep_prob", 0.0),)), paths)
    np.testing.assert_allclose(flat.scores, 0.25, rtol=1e-6)  # the feed really reaches the graph


def test_integer_class_output_has_empty_score(quadrant_model, images):
    paths, truth = images
    res = classify_chunk(spec_for(quadrant_model(int_output=True)), paths)
    check(res, truth, scores=False)
    assert res.scores is None
    with pytest.raises(ConfigError, match="top_k"):
        warm_up(spec_for(quadrant_model("i2.pb", int_output=True), top_k=2))


def test_pbtxt_model(quadrant_model, images):
    paths, truth = images
    check(classify_chunk(spec_for(quadrant_model("m.pbtxt")), paths), truth)


def test_scalar_path_input_graph(tmp_path, images):
    paths, truth = images
    model = tm.write_graph(tm.path_graph(), str(tmp_path / "p.pb"))
    info = warm_up(spec_for(model, output="probs_one:0"))
    assert info.input_kind == "path" and info.takes_paths
    check(classify_chunk(spec_for(model, output="probs_one:0"), paths), truth)


def test_batched_path_graph_isolates_a_bad_file(tmp_path, images):
    paths, truth = images
    bad = str(tmp_path / "bad.png")
    with open(bad, "wb") as fh:
        fh.write(b"\x89PNG\r\n\x1a\n" + b"garbage" * 20)
    model = tm.write_graph(tm.path_graph(batched=True), str(tmp_path / "pb.pb"))
    # its ReadFile sits in the map_fn's library function, which the audit refuses (issue 22)
    res = classify_chunk(spec_for(model, batch=4, allow_unsafe_ops=True), paths[:3] + [bad] + paths[3:])
    assert list(res.errors) == [3] and res.errors[3].startswith("DecodeError: ")
    good = np.delete(res.class_ids, 3).tolist()
    assert good == [int(t.argmax()) for t in truth]


def test_unbatched_and_flat_inputs(quadrant_model, images):
    paths, truth = images
    check(classify_chunk(spec_for(quadrant_model("u.pb", unbatched=True), output="probs_one:0"), paths), truth)
    flat = quadrant_model("f.pb", flat=True)
    with pytest.raises(ConfigError, match="preprocess.size is needed"):
        warm_up(spec_for(flat))
    spec = spec_for(flat)
    spec = WorkerSpec(model=spec.model, preprocess=PreprocessSpec(mode="L", size=(8, 8)), session=spec.session,
                      batch_size=4, default_threads=1)
    check(classify_chunk(spec, paths), truth)


def test_top_k(quadrant_model, images):
    paths, truth = images
    res = classify_chunk(spec_for(quadrant_model(), top_k=3), paths)
    for t, ids, sc in zip(truth, res.topk_ids, res.topk_scores):
        assert ids.tolist() == list(np.argsort(-t, kind="stable")[:3])
        np.testing.assert_allclose(sc, np.sort(t)[::-1][:3], rtol=1e-5)


def test_auto_detection_errors_list_candidates(quadrant_model):
    with pytest.raises(ModelError, match=r"set model.output to one of .*logits.*probs|probs.*logits"):
        warm_up(spec_for(quadrant_model(extra_output=True)))
    with pytest.raises(ModelError, match="no tensor 'nope:0'"):
        warm_up(spec_for(quadrant_model(), output="nope"))


def test_geometry_mismatches_are_refused(quadrant_model):
    with pytest.raises(ModelError, match="wants 3 channels"):
        warm_up(spec_for(quadrant_model(c=3)))
    spec = spec_for(quadrant_model())
    bad = WorkerSpec(model=spec.model, preprocess=PreprocessSpec(mode="L", size=(9, 9)), session=spec.session)
    with pytest.raises(ModelError, match="does not match"):
        warm_up(bad)


def test_bad_images_are_rows_not_exceptions(quadrant_model, images, tmp_path):
    paths, truth = images
    junk = tmp_path / "junk.png"
    junk.write_text("not an image")
    res = classify_chunk(spec_for(quadrant_model()), [paths[0], str(junk), str(tmp_path / "gone.png"), paths[1]])
    assert res.errors == {1: res.errors[1], 2: "NotFound: no such file"}
    assert res.errors[1].startswith("UnsupportedFormat:")
    assert res.class_ids.tolist() == [int(truth[0].argmax()), -1, -1, int(truth[1].argmax())]


def test_cache_reuses_and_reloads_a_replaced_model(tmp_path, images):
    paths, truth = images
    model = str(tmp_path / "m.pb")
    tm.write_graph(tm.quadrant_graph(), model)
    spec = spec_for(model)
    first = classify_chunk(spec, paths[:2])
    p1, loaded = cache.get_predictor(spec)
    assert not loaded  # the chunk above loaded it; this call reuses it
    # Replace the file with a graph that answers the opposite (keep_prob scaling by -1 inverts the order).
    tm.write_graph(tm.quadrant_graph(keep_prob=True), str(tmp_path / "new.pb"))
    shutil.move(str(tmp_path / "new.pb"), model)
    spec2 = spec_for(model, input="images:0", feeds=(("keep_prob:0", -1.0),))
    second = classify_chunk(spec2, paths[:2])
    assert second.timing.model_id != first.timing.model_id
    assert second.class_ids.tolist() == [int(t.argmin()) for t in truth[:2]]
