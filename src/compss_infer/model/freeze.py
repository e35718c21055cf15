"""Freezing: turn a TF2 function (a Keras model call, say) into a frozen GraphDef with stable names.

``convert_variables_to_constants_v2`` wraps outputs as ``Identity``, ``Identity_1``, ... in sorted
key order; naming the outputs with ``tf.identity(..., name=...)`` inside the function gives a
contract that survives re-freezing.

``freeze_model`` is the ``compss-infer freeze`` command: load a Keras file or a SavedModel, freeze
it, check the frozen graph against the source on a random batch, and write the graph plus a model
card (the ``<model>.yaml`` that ``run`` applies) beside it.  Worker-side: imports TensorFlow.
"""
from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any, Callable

import numpy as np
import yaml

from .._version import __version__
from ..core.atomic import write_bytes
from .files import card_path_for
from ..core.errors import ConfigError, InputError, ModelError
from ..core.yamlfile import load_yaml, parse_yaml
from .graph import tensor_name
from .session import import_tf
from .verify import VERIFY_BATCH, Check, compare, random_value, run_graph

KERAS_EXTENSIONS = (".keras", ".h5", ".hdf5")
# First layers that mean "the model scales raw 0..255 pixels itself".  (Not Normalization: it is
# adapted to whatever data training fed it, which may already have been scaled outside the model.)
SELF_SCALING_LAYERS = ("Rescaling",)


def freeze_function(fn: Callable[[Any], Any], input_spec: Any, output_name: str = "probs") -> Any:
    """Trace ``fn`` for ``input_spec`` (a tf.TensorSpec with a name) and return a frozen GraphDef.

    The output is renamed to ``output_name`` inside the graph (``output_name:0``).  Nodes the
    output does not need (the function's trailing ``Identity``/``NoOp`` pair) are dropped, so that
    output auto-detection finds ``output_name`` itself.
    """
    tf = import_tf()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    @tf.function(input_signature=[input_spec])
    def wrapped(x: Any) -> Any:
        return {output_name: tf.identity(fn(x), name=output_name)}

    frozen = convert_variables_to_constants_v2(wrapped.get_concrete_function())
    return tf.compat.v1.graph_util.extract_sub_graph(frozen.graph.as_graph_def(), [output_name])


def write_graph_def(gd: Any, path: str) -> int:
    """Write binary (.pb) or text (.pbtxt) by extension; returns the size in bytes.

    Written under a temporary name and renamed, so a run that reloads a replaced model (the cache
    keys on file identity) never reads half a file.
    """
    if path.endswith(".pbtxt"):
        from google.protobuf import text_format
        data = text_format.MessageToString(gd).encode("utf-8")
    else:
        data = gd.SerializeToString(deterministic=True)  # map fields in a fixed order: same graph, same bytes
    write_bytes(path, data)
    return len(data)


# --------------------------------------------------------------------------- sources

@dataclass
class Source:
    """A model to freeze, reduced to one image input and one output."""

    path: str
    kind: str  # keras | savedmodel
    description: str
    fn: Callable[[Any], Any]  # input tensor -> output tensor
    input_shape: list[int | None]
    input_dtype: str
    first_layer: str | None = None  # class name of the first Keras layer (what it does to pixels)
    owner: Any = None  # the loaded object: a signature's variables live only as long as it does


def _first_line(exc: BaseException) -> str:
    """One line of an exception; for errors raised while tracing, the line that names the cause."""
    lines = [line.strip() for line in str(exc).strip().splitlines() if line.strip()]
    if not lines:
        return type(exc).__name__
    return " ".join((lines[-1] if lines[0].startswith("in user code") else lines[0]).split())


def _one(items: list[str], what: str, src: str) -> None:
    if len(items) != 1:
        raise ModelError(f"{src} has {len(items)} {what}s ({', '.join(items) or 'none'}); "
                         f"compss-infer freezes a model with exactly one")


def load_source(src: str) -> Source:
    """Load a Keras file (.keras, .h5) or a SavedModel directory; refuse anything else in one line."""
    check_source(src)
    tf = import_tf(keras=True)
    if os.path.isdir(src):
        return _load_saved_model(tf, src)
    try:
        model = tf.keras.models.load_model(src, compile=False)
    except Exception as exc:
        raise ModelError(f"cannot load Keras model {src}: {_first_line(exc)}") from None
    try:
        inputs, outputs = list(model.inputs), list(model.outputs)
    except (AttributeError, ValueError):
        raise ModelError(f"{src}: the model has no defined input (build it with an Input layer)") from None
    _one([getattr(t, "name", "?") for t in inputs], "input", src)
    _one([getattr(t, "name", "?") for t in outputs], "output", src)
    layers = [lyr for lyr in model.layers if type(lyr).__name__ != "InputLayer"]
    return Source(path=src, kind="keras", description=f"Keras {type(model).__name__} ({os.path.basename(src)})",
                  fn=lambda x: model(x, training=False), input_shape=list(inputs[0].shape),
                  input_dtype=tf.as_dtype(inputs[0].dtype).name,
                  first_layer=type(layers[0]).__name__ if layers else None)


def check_source(src: str) -> None:
    """The cheap checks, before TensorFlow is imported (seconds) for nothing."""
    if os.path.isdir(src):
        if not os.path.isfile(os.path.join(src, "saved_model.pb")):
            raise InputError(f"{src} is a directory without saved_model.pb: not a SavedModel (nor a TF1 "
                             f"checkpoint folder: no 'checkpoint' index file)")
        return
    if not os.path.isfile(src):
        raise InputError(f"source model not found: {src}")
    if not src.lower().endswith(KERAS_EXTENSIONS):
        raise InputError(f"{src}: expected a Keras file ({', '.join(KERAS_EXTENSIONS)}), a SavedModel directory "
                         f"or a TF1 checkpoint (prefix, .meta file, or folder)")


def _load_saved_model(tf: Any, src: str) -> Source:
    try:
        obj = tf.saved_model.load(src)
    except Exception as exc:
        raise ModelError(f"cannot load SavedModel {src}: {_first_line(exc)}") from None
    sigs = dict(obj.signatures)
    name = "serving_default" if "serving_default" in sigs else (next(iter(sigs)) if len(sigs) == 1 else None)
    if name is None:
        raise ModelError(f"{src}: no serving_default signature (signatures: {', '.join(sigs) or 'none'})")
    sig = sigs[name]
    args, kwargs = sig.structured_input_signature
    _one(list(kwargs) + [str(a) for a in args], "signature input", src)
    in_key, in_spec = next(iter(kwargs.items()))
    outputs = sig.structured_outputs
    _one(list(outputs), "signature output", src)
    out_key = next(iter(outputs))
    return Source(path=src, kind="savedmodel", description=f"SavedModel signature {name!r} ({os.path.basename(src.rstrip('/'))})",
                  fn=lambda x: sig(**{in_key: x})[out_key], input_shape=in_spec.shape.as_list(),
                  input_dtype=in_spec.dtype.name, owner=obj)


# --------------------------------------------------------------------------- freeze

@dataclass
class FreezeResult:
    output: str
    card: str
    bytes: int
    node_count: int
    input: str  # tensor name
    output_tensor: str
    input_desc: str
    output_desc: str
    check: Check
    kept_from_card: list[str] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)  # what else the user should know (checkpoints)


def _dims(shape: list[int | None] | None) -> str:
    return "?" if shape is None else "[" + ",".join("N" if i == 0 and d is None else ("?" if d is None else str(d))
                                                     for i, d in enumerate(shape)) + "]"


def suggest_preprocess(source: Source, shape: list[int | None]) -> tuple[dict[str, Any], list[str]]:
    """What the card can honestly say about preprocessing, and notes about what it cannot.

    Size and mode follow from an [N, H, W, C] input; mean/std only when the model's first layer
    scales pixels itself (then raw pixels, mean 0 std 1, are right).  Nothing is invented.
    """
    pre: dict[str, Any] = {}
    notes = []
    if len(shape) == 4:
        h, w, c = shape[1:]
        if h is not None and w is not None:
            pre["size"] = [h, w]
        else:
            notes.append("size: the input takes any height/width; set preprocess.size")
        if c == 1:
            pre["mode"] = "L"
        elif c == 3:
            pre["mode"] = "RGB"
            notes.append("mode: 3 channels assumed RGB; use BGR if the model was trained on BGR (Caffe-style)")
        else:
            notes.append(f"mode: {c} channels is not an image mode compss-infer decodes")
    else:
        notes.append(f"input rank {len(shape)}: not [N, H, W, C]; set preprocess.size and mode by hand")
    if source.first_layer in SELF_SCALING_LAYERS:
        pre["mean"], pre["std"] = 0.0, 1.0
        notes.append(f"mean/std: the model's first layer ({source.first_layer}) scales raw 0..255 pixels itself")
    else:
        notes.append("mean/std: unknown (not recorded in the source); run refuses until they are set: "
                     "set preprocess.mean/std to what the model was trained on (e.g. std: 255.0 for pixel/255, "
                     "or mean: 0.0 and std: 1.0 for raw 0..255 pixels)")
    return pre, notes


def model_card(source: Source, result_bytes: int, input_name: str, output_name: str, in_shape: list[int | None],
               out_shape: list[int | None] | None, out_dtype: str, check: Check) -> dict[str, Any]:
    """The card ``run`` reads beside the model (sections model and preprocess; the rest informs)."""
    pre, notes = suggest_preprocess(source, in_shape)
    tf = import_tf()
    card: dict[str, Any] = {
        "name": os.path.splitext(os.path.basename(source.path.rstrip("/")))[0],
        "description": f"Frozen from {source.description} by compss-infer freeze",
        "model": {"input": input_name, "output": output_name},
    }
    if pre:
        card["preprocess"] = pre
    card.update({
        "preprocess_notes": notes,
        "tensors": {input_name: f"{source.input_dtype} {_dims(in_shape)}", output_name: f"{out_dtype} {_dims(out_shape)}"},
        "bytes": result_bytes,
        "source": {"path": os.path.abspath(source.path), "kind": source.kind},
        "verified": {"batch": check.batch, "max_abs_diff": float(f"{check.max_abs_diff:.3g}"),
                     "tolerance": check.tolerance},
        "frozen_with": {"tensorflow": tf.__version__, "compss_infer": __version__},
    })
    return card


def _keep_user_choices(card: dict[str, Any], old_path: str) -> list[str]:
    """Re-freezing over a card a user edited: carry over what freezing cannot know (labels, mean/std)."""
    try:
        old = load_yaml(old_path, "model card") or {}
    except ConfigError:  # unreadable, or over the reader's limits: nothing to keep
        return []
    if not isinstance(old, dict):
        return []
    kept = []
    labels = (old.get("model") or {}).get("labels") if isinstance(old.get("model"), dict) else None
    if labels:
        card["model"]["labels"] = labels
        kept.append("model.labels")
    old_pre = old.get("preprocess") if isinstance(old.get("preprocess"), dict) else {}
    for key in ("mean", "std", "resize", "crop"):
        if key in old_pre and key not in card.get("preprocess", {}):
            card.setdefault("preprocess", {})[key] = old_pre[key]
            kept.append(f"preprocess.{key}")
    if "preprocess.mean" in kept or "preprocess.std" in kept:
        notes = [n for n in card["preprocess_notes"] if not n.startswith("mean/std: unknown")]
        card["preprocess_notes"] = notes + ["mean/std: kept from the card this one replaced"]
    return kept


def write_card(path: str, card: dict[str, Any], header: str) -> None:
    from ..core.atomic import write_atomically
    write_atomically(path, lambda fh: (fh.write(f"# {header}\n"), yaml.safe_dump(card, fh, sort_keys=False)))


def parse_batch(value: str | int | None) -> int | None:
    """``dynamic`` (or None) -> None; a positive integer -> itself."""
    if value is None or str(value).lower() == "dynamic":
        return None
    try:
        n = int(value)
    except ValueError:
        raise InputError(f"--batch {value!r}: expected dynamic or a positive integer") from None
    if n < 1:
        raise InputError(f"--batch {value!r}: expected dynamic or a positive integer")
    return n


def check_destination(output: str, overwrite: bool) -> str:
    """Refuse to clobber the model or its card; returns the card path."""
    if not output.endswith((".pb", ".pbtxt")):
        raise InputError(f"--output {output}: expected a .pb or .pbtxt file name")
    card = card_path_for(output)
    for path in (output, card):
        if os.path.isdir(path):
            raise InputError(f"--output: {path} is a directory")
        if os.path.exists(path) and not overwrite:
            raise InputError(f"{path} exists (use --overwrite to replace it)")
    return card


def freeze_model(src: str, output: str, input_name: str = "images", output_name: str = "probs",
                 batch: int | None = None, tolerance: float = 1e-5, overwrite: bool = False,
                 seed: int = 0) -> FreezeResult:
    """Freeze ``src`` into ``output`` (+ card); refuse (ModelError) if the frozen graph disagrees."""
    for name, flag in ((input_name, "--input-name"), (output_name, "--output-name")):
        if not name or ":" in name or "/" in name:
            raise InputError(f"{flag} {name!r}: expected a plain node name (no ':0', no '/')")
    if input_name == output_name:
        raise InputError("--input-name and --output-name must differ")
    card_path = check_destination(output, overwrite)
    check_source(src)
    tf = import_tf()
    source = load_source(src)
    shape = list(source.input_shape)
    if batch is not None and shape and shape[0] not in (None, batch):
        raise ModelError(f"{src} takes batches of exactly {shape[0]}: use --batch {shape[0]} or dynamic")
    if shape:
        shape[0] = batch
    spec = tf.TensorSpec(shape, tf.as_dtype(source.input_dtype), name=input_name)
    try:
        gd = freeze_function(source.fn, spec, output_name)
    except Exception as exc:
        raise ModelError(f"cannot freeze {src}: {_first_line(exc)}") from None

    n = batch or VERIFY_BATCH
    x = random_value(source.input_dtype, shape, n, np.random.default_rng(seed))
    try:
        want = source.fn(tf.constant(x))
        want = want.numpy() if hasattr(want, "numpy") else np.asarray(want)
    except Exception as exc:
        raise ModelError(f"{src} fails on a random batch of shape {list(np.shape(x))}: {_first_line(exc)}") from None
    got = run_graph(gd, {f"{input_name}:0": x}, f"{output_name}:0")
    check = compare(want, got, n, tolerance)
    if not check.ok:
        raise ModelError(f"the frozen graph does not reproduce {src}: {check}; nothing written")

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(gd, name="")
    y = graph.get_tensor_by_name(f"{output_name}:0")
    out_shape = None if y.shape.rank is None else y.shape.as_list()
    size = write_graph_def(gd, output)
    card = model_card(source, size, f"{input_name}:0", f"{output_name}:0", shape, out_shape, y.dtype.name, check)
    kept = _keep_user_choices(card, card_path) if os.path.exists(card_path) else []
    write_card(card_path, card, f"Model card written by compss-infer freeze from {os.path.basename(src.rstrip('/'))}")
    return FreezeResult(output=output, card=card_path, bytes=size, node_count=len(gd.node),
                        input=f"{input_name}:0", output_tensor=f"{output_name}:0",
                        input_desc=f"{source.input_dtype} {_dims(shape)}",
                        output_desc=f"{y.dtype.name} {_dims(out_shape)}", check=check, kept_from_card=kept)


# --------------------------------------------------------------------------- TF1 checkpoints

def parse_constants(items: list[str] | None) -> dict[str, Any]:
    """``--constant keep_prob=1.0`` (repeatable; the value is YAML) -> {"keep_prob": 1.0}."""
    out: dict[str, Any] = {}
    for item in items or []:
        name, sep, raw = item.partition("=")
        if not sep or not name.strip() or not raw.strip():
            raise InputError(f"--constant {item!r}: expected NAME=VALUE (e.g. keep_prob=1.0)")
        try:
            out[name.strip()] = parse_yaml(raw)
        except (yaml.YAMLError, ValueError):
            raise InputError(f"--constant {item!r}: the value is not valid YAML") from None
    return out


def freeze_checkpoint(src: str, output: str, input_name: str | None = None, output_nodes: list[str] | None = None,
                      constants: dict[str, Any] | None = None, tolerance: float = 1e-5, overwrite: bool = False,
                      seed: int = 0) -> FreezeResult:
    """Freeze a TF1 checkpoint (prefix, .meta, or folder -> newest entry) into ``output`` + card.

    Checked against the restored session on a random batch, with the same values fed to the
    placeholders that stay (random ops seeded alike for the check only; the graph written keeps
    its own seeds).
    """
    from .checkpoint import locate_checkpoint
    from . import tf1
    from .verify import TempImages
    card_path = check_destination(output, overwrite)
    ckpt = locate_checkpoint(src)
    r = tf1.restore(ckpt, pin_seeds=True)
    try:
        tensors = tf1.choose_tensors(r, input_name, output_nodes)
        gd = tf1.freeze(r, tensors, constants)
        feeds_left = tf1.leftover_feeds(gd, tensors)
        x = r.graph.get_tensor_by_name(tensors.input)
        shape = None if x.shape.rank is None else x.shape.as_list()
        rng = np.random.default_rng(seed)
        with TempImages() as tmp:
            feed = {tensors.input: random_value(x.dtype.name, shape, VERIFY_BATCH, rng, tmp)}
            for name in feeds_left:
                t = r.graph.get_tensor_by_name(name)
                feed[name] = random_value(t.dtype.name, None if t.shape.rank is None else t.shape.as_list(),
                                          VERIFY_BATCH, rng, tmp)
            want_feed = dict(feed)
            for name, value in (constants or {}).items():
                want_feed[tensor_name(name)] = value
            try:
                wants = r.session.run(list(tensors.outputs), feed_dict=want_feed)
            except Exception as exc:
                raise ModelError(f"{ckpt.prefix} fails on a random batch of shape "
                                 f"{list(np.shape(feed[tensors.input]))}: {tf1._first_line(exc)}") from None
            checks = [compare(want, run_graph(gd, feed, name), VERIFY_BATCH, tolerance)
                      for want, name in zip(wants, tensors.outputs)]
        check = max(checks, key=lambda c: (not c.ok, c.max_abs_diff))
        if not check.ok:
            raise ModelError(f"the frozen graph does not reproduce {ckpt.prefix}: {check}; nothing written")
        tf1.unpin_seeds(gd, r.seeds)
        out_name = tf1.main_output(r.graph, tensors.outputs)
        y = r.graph.get_tensor_by_name(out_name)
        out_shape = None if y.shape.rank is None else y.shape.as_list()
        node_count = r.node_count
    finally:
        r.close()
    size = write_graph_def(gd, output)
    source = Source(path=ckpt.prefix, kind="tf1-checkpoint", description=f"TF1 checkpoint {ckpt.name}",
                    fn=lambda v: v, input_shape=shape or [], input_dtype=x.dtype.name)
    card = model_card(source, size, tensors.input, out_name, shape or [], out_shape, y.dtype.name, check)
    card["source"].update({"files": [os.path.basename(f) for f in ckpt.files],
                           "input_from": tensors.input_from, "outputs_from": tensors.outputs_from})
    extra = [n for n in tensors.outputs if n != out_name]
    notes = [f"tensors: input from {tensors.input_from}, output(s) from {tensors.outputs_from}",
             f"stripped: {node_count} nodes in the meta graph, {len(gd.node)} kept for the output(s)"]
    if ckpt.note:
        notes.insert(0, f"took {ckpt.name}: the {ckpt.note}")
    if extra:
        card["other_outputs"] = extra
        notes.append(f"also kept output(s) {', '.join(extra)} (run reads model.output {out_name})")
    if constants:
        card["constants"] = {tensor_name(k): v for k, v in constants.items()}
        notes.append("constants: " + ", ".join(f"{tensor_name(k)}={v!r}" for k, v in constants.items()))
    if feeds_left:
        card["feeds_needed"] = feeds_left
        notes.append(f"placeholder(s) {', '.join(feeds_left)} stay feeds: set model.feeds in the card "
                     f"(or re-freeze with --constant NAME=VALUE)")
    kept = _keep_user_choices(card, card_path) if os.path.exists(card_path) else []
    write_card(card_path, card, f"Model card written by compss-infer freeze from checkpoint {ckpt.name}")
    return FreezeResult(output=output, card=card_path, bytes=size, node_count=len(gd.node), input=tensors.input,
                        output_tensor=out_name, input_desc=f"{x.dtype.name} {_dims(shape)}",
                        output_desc=f"{y.dtype.name} {_dims(out_shape)}", check=check, kept_from_card=kept,
                        notes=notes)
