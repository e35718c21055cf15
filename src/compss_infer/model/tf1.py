"""TF1 checkpoints -> frozen GraphDefs: restore the variables, pick the tensors, fold to constants.

The graph comes from the ``.meta`` file (``tf.compat.v1.train.import_meta_graph``), the values
from the ``.index``/``.data`` files (its Saver), and ``graph_util.convert_variables_to_constants``
freezes what the outputs need, which drops the optimizer, the gradients, the Saver's own
Save/Restore ops and the training-only placeholders (labels).  Used by ``compss-infer freeze``
(to a file, verified) and by ``run`` (in memory, once per worker and checkpoint).
Worker-side: imports TensorFlow.
"""
from __future__ import annotations

import re
from dataclasses import dataclass, field, replace
from typing import Any, Sequence

import numpy as np

from ..core.errors import InputError, ModelError
from .graph import tensor_name
from .session import import_tf
from .checkpoint import CheckpointFiles

# Ops and name scopes that exist only to train or to save: never part of an answer.
_TRAINING_OP = re.compile(r"^(Resource)?(Sparse)?Apply|^Assign|^Scatter|^(Resource)?Scatter|Save|Restore|"
                          r"^MergeV2Checkpoints$|Summary|^IsVariableInitialized$|^VarIsInitializedOp$")
_TRAINING_SCOPE = re.compile(r"^(gradients|save)(_\d+)?(/|$)")
_NOT_OUTPUTS = frozenset({"NoOp", "Const", "Placeholder", "PlaceholderWithDefault", "Assert", "VarHandleOp",
                          "VariableV2", "Variable", "ReadVariableOp", "ControlTrigger", "PrintV2", "Print"})


def _first_line(exc: BaseException) -> str:
    text = (getattr(exc, "message", None) or str(exc) or type(exc).__name__).strip()
    return " ".join(text.splitlines()[0].split()) if text else type(exc).__name__


@dataclass
class Restored:
    """A checkpoint's graph in a session with its variables restored."""

    ckpt: CheckpointFiles
    graph: Any
    session: Any
    node_count: int  # nodes of the meta graph
    signature: dict[str, list[str]] = field(default_factory=dict)  # "inputs"/"outputs" -> tensor names
    seeds: dict[str, tuple[int, int]] = field(default_factory=dict)  # pinned random ops -> original seeds

    def close(self) -> None:
        self.session.close()


def _read_meta(tf: Any, ckpt: CheckpointFiles) -> Any:
    from tensorflow.core.protobuf import meta_graph_pb2
    meta = meta_graph_pb2.MetaGraphDef()
    try:
        with open(ckpt.meta, "rb") as fh:
            meta.ParseFromString(fh.read())
    except OSError as exc:
        raise ModelError(f"cannot read {ckpt.meta}: {exc.strerror}") from None
    except Exception as exc:  # DecodeError
        raise ModelError(f"{ckpt.meta} is not a valid meta graph (truncated or corrupt?): {_first_line(exc)}") from None
    if not meta.graph_def.node:
        raise ModelError(f"{ckpt.meta} holds no graph nodes")
    from tensorflow.python.framework import op_def_registry
    functions = {f.signature.name for f in meta.graph_def.library.function}
    used = {n.op for n in meta.graph_def.node}
    for f in meta.graph_def.library.function:
        used.update(n.op for n in f.node_def)
    unknown = sorted(op for op in used if op not in functions and op_def_registry.get(op) is None)
    if unknown:
        raise ModelError(f"{ckpt.meta} uses op(s) this TensorFlow {tf.__version__} does not register: "
                         f"{', '.join(unknown)} (load the custom op library, or use the TensorFlow it was written with)")
    return meta


def _pin_seeds(graph_def: Any) -> dict[str, tuple[int, int]]:
    """Give every unseeded random op a fixed seed, so the session and the frozen graph draw alike."""
    pinned = {}
    for i, node in enumerate(graph_def.node):
        if "seed2" in node.attr and "seed" in node.attr and node.attr["seed"].i == 0 and node.attr["seed2"].i == 0:
            pinned[node.name] = (0, 0)
            node.attr["seed"].i, node.attr["seed2"].i = 1, i + 1
    return pinned


def unpin_seeds(gd: Any, pinned: dict[str, tuple[int, int]]) -> None:
    """Undo ``_pin_seeds`` on a frozen graph (nodes keep their names through freezing)."""
    for node in gd.node:
        if node.name in pinned:
            node.attr["seed"].i, node.attr["seed2"].i = pinned[node.name]


def restore(ckpt: CheckpointFiles, pin_seeds: bool = False) -> Restored:
    """Import the meta graph and restore its variables; one-line ModelErrors for what goes wrong."""
    tf = import_tf()
    from tensorflow.python.util import deprecation
    meta = _read_meta(tf, ckpt)
    seeds = _pin_seeds(meta.graph_def) if pin_seeds else {}
    graph = tf.Graph()
    with graph.as_default(), deprecation.silence():
        try:
            saver = tf.compat.v1.train.import_meta_graph(meta, clear_devices=True)
        except Exception as exc:
            raise ModelError(f"cannot import the graph of {ckpt.meta}: {_first_line(exc)}") from None
        if saver is None and tf.compat.v1.global_variables():
            saver = tf.compat.v1.train.Saver()
    session = tf.compat.v1.Session(graph=graph, config=tf.compat.v1.ConfigProto(device_count={"GPU": 0}))
    if saver is not None:
        try:
            with graph.as_default():  # outside it, a Saver thinks it runs eagerly
                saver.restore(session, ckpt.prefix)
        except Exception as exc:
            session.close()
            text = str(exc)
            m = re.search(r"Key (\S+) not found in checkpoint", text)
            if m:
                raise ModelError(f"checkpoint {ckpt.prefix}: variable {m.group(1)} of the graph is not in it "
                                 f"(a checkpoint of another model, or an older version of this one?)") from None
            raise ModelError(f"cannot restore checkpoint {ckpt.prefix}: {_first_line(exc)}") from None
    signature = {}
    sigs = meta.signature_def
    name = "serving_default" if "serving_default" in sigs else (next(iter(sigs)) if len(sigs) == 1 else None)
    if name is not None:
        signature = {"inputs": [v.name for _, v in sorted(sigs[name].inputs.items())],
                     "outputs": [v.name for _, v in sorted(sigs[name].outputs.items())], "name": [name]}
    return Restored(ckpt, graph, session, len(meta.graph_def.node), signature, seeds)


# --------------------------------------------------------------------------- which tensors

@dataclass(frozen=True)
class Tensors:
    """The tensors a frozen graph is cut at, and where each choice came from."""

    input: str
    outputs: tuple[str, ...]
    input_from: str
    outputs_from: str


def _describe(t: Any) -> str:
    dims = "?" if t.shape.rank is None else "[" + ", ".join("?" if d is None else str(d) for d in t.shape.as_list()) + "]"
    return f"{t.name} ({t.dtype.name} {dims})"


def _tensor(graph: Any, name: str, what: str) -> Any:
    try:
        return graph.get_tensor_by_name(tensor_name(name))
    except (KeyError, ValueError):
        raise InputError(f"{what} {name!r}: no such tensor in the checkpoint's graph") from None


def _collection(graph: Any, key: str) -> list[Any]:
    out = []
    for item in graph.get_collection(key):
        t = item if hasattr(item, "dtype") else (item.outputs[0] if getattr(item, "outputs", None) else None)
        if t is not None and t not in out:
            out.append(t)
    return out


def _image_like(t: Any) -> bool:
    rank = t.shape.rank
    return rank in (0, 1) if t.dtype.name == "string" else (rank is None or 2 <= rank <= 4)


def _pick_input(cands: list[Any], origin: str) -> Any:
    preferred = [t for t in cands if t.op.type == "Placeholder" and _image_like(t)]
    if len(preferred) == 1:
        return preferred[0]
    if len(cands) == 1:
        return cands[0]
    shown = preferred or cands
    raise ModelError(f"cannot tell the input from {origin}: give --input-name one of "
                     + (", ".join(_describe(t) for t in shown) or "(no placeholder)"))


def _training_nodes(gd: Any) -> set[str]:
    """Nodes that train or save, and everything that depends on them."""
    consumers: dict[str, list[str]] = {}
    for n in gd.node:
        for inp in n.input:
            consumers.setdefault(inp.lstrip("^").split(":")[0], []).append(n.name)
    todo = [n.name for n in gd.node if _TRAINING_OP.search(n.op) or _TRAINING_SCOPE.match(n.name)]
    seen = set(todo)
    while todo:
        for c in consumers.get(todo.pop(), ()):
            if c not in seen:
                seen.add(c)
                todo.append(c)
    return seen


def detect_outputs(graph: Any, x: Any) -> tuple[list[Any], list[Any]]:
    """``run``'s output rule on a training graph: dangling number tensors that depend on the input,
    once the training and saving nodes are set aside.  Returns (candidates, preferred)."""
    gd = graph.as_graph_def()
    training = _training_nodes(gd)
    consumed: set[str] = set()
    data_consumers: dict[str, list[str]] = {}
    for n in gd.node:
        if n.name in training:
            continue
        for inp in n.input:
            src = inp.lstrip("^").split(":")[0]
            consumed.add(src)
            if not inp.startswith("^"):
                data_consumers.setdefault(src, []).append(n.name)
    downstream, todo = {x.op.name}, [x.op.name]
    while todo:
        for c in data_consumers.get(todo.pop(), ()):
            if c not in downstream:
                downstream.add(c)
                todo.append(c)
    cands = []
    for name in sorted(downstream - consumed - training):
        op = graph.get_operation_by_name(name)
        if op.type in _NOT_OUTPUTS or not op.outputs or any(t.op.type in ("Switch", "RefSwitch") for t in op.inputs):
            continue
        t = op.outputs[0]
        if t.dtype.is_floating or t.dtype.is_integer:
            cands.append(t)
    return cands, [t for t in cands if t.shape.rank is None or t.shape.rank >= 1]


def choose_tensors(r: Restored, input_name: str | None = None,
                   output_nodes: Sequence[str] | None = None) -> Tensors:
    """Flags, else the signature_def, else the inputs/outputs collections, else run's detection rules."""
    g = r.graph
    if input_name:
        x, x_from = _tensor(g, input_name, "--input-name"), "--input-name"
    elif r.signature.get("inputs"):
        x = _pick_input([_tensor(g, n, "signature input") for n in r.signature["inputs"]],
                        f"signature_def {r.signature['name'][0]!r}")
        x_from = f"signature_def {r.signature['name'][0]!r}"
    elif _collection(g, "inputs"):
        x, x_from = _pick_input(_collection(g, "inputs"), "the 'inputs' collection"), "the 'inputs' collection"
    else:
        placeholders = [op.outputs[0] for op in g.get_operations() if op.type == "Placeholder"]
        x, x_from = _pick_input(placeholders, "the graph's placeholders"), "detection"
    if output_nodes:
        ys, y_from = [_tensor(g, n, "--output-nodes") for n in output_nodes], "--output-nodes"
    elif r.signature.get("outputs"):
        ys = [_tensor(g, n, "signature output") for n in r.signature["outputs"]]
        y_from = f"signature_def {r.signature['name'][0]!r}"
    elif _collection(g, "outputs"):
        ys, y_from = _collection(g, "outputs"), "the 'outputs' collection"
    else:
        cands, preferred = detect_outputs(g, x)
        if len(preferred) == 1 or len(cands) == 1:
            ys = [preferred[0] if len(preferred) == 1 else cands[0]]
        else:
            raise ModelError("cannot tell the output: give --output-nodes one or more of "
                             + (", ".join(_describe(t) for t in (preferred or cands)) or "(no candidate)"))
        y_from = "detection"
    if x in ys:
        raise InputError(f"{x.name} is both the input and an output")
    return Tensors(x.name, tuple(t.name for t in ys), x_from, y_from)


def main_output(graph: Any, outputs: Sequence[str]) -> str:
    """The output ``run`` reads: the only one, else the first float tensor with a class axis."""
    if len(outputs) == 1:
        return outputs[0]
    for name in outputs:
        t = graph.get_tensor_by_name(name)
        if t.dtype.is_floating and t.shape.rank is not None and t.shape.rank >= 1:
            return name
    return outputs[0]


# --------------------------------------------------------------------------- freezing

def _constant_node(node: Any, value: Any, what: str) -> None:
    """Turn a Placeholder NodeDef into a Const holding ``value`` (checked against its dtype/shape)."""
    tf = import_tf()
    dtype = tf.as_dtype(node.attr["dtype"].type)
    try:
        arr = np.asarray(value, dtype=dtype.as_numpy_dtype)
    except (TypeError, ValueError):
        raise InputError(f"{what}: value {value!r} does not fit {node.name} ({dtype.name})") from None
    shape = tf.TensorShape(node.attr["shape"].shape) if "shape" in node.attr else tf.TensorShape(None)
    if not shape.is_compatible_with(arr.shape):
        raise InputError(f"{what}: value {value!r} has shape {list(arr.shape)}, {node.name} takes {shape}")
    proto = tf.make_tensor_proto(arr, dtype=dtype)
    node.op = "Const"
    for key in list(node.attr):
        if key not in ("dtype",):
            del node.attr[key]
    node.attr["value"].tensor.CopyFrom(proto)


def freeze(r: Restored, tensors: Tensors, constants: dict[str, Any] | None = None) -> Any:
    """The frozen inference graph: variables as constants, only what the outputs need, the named
    placeholders turned into constants.  Other placeholders stay (the run feeds them)."""
    tf = import_tf()
    from tensorflow.python.util import deprecation
    outputs = [name.split(":")[0] for name in tensors.outputs]
    with deprecation.silence():
        try:
            gd = tf.compat.v1.graph_util.convert_variables_to_constants(r.session, r.graph.as_graph_def(), outputs)
        except Exception as exc:
            raise ModelError(f"cannot freeze {r.ckpt.prefix}: {_first_line(exc)}") from None
        protected = outputs + [tensors.input.split(":")[0]] + [n.name for n in gd.node if n.op == "Placeholder"]
        gd = tf.compat.v1.graph_util.remove_training_nodes(gd, protected_nodes=protected)
    nodes = {n.name: n for n in gd.node}
    for name, value in (constants or {}).items():
        node_name = name.split(":")[0]
        node = nodes.get(node_name)
        if node is None or node.op not in ("Placeholder", "PlaceholderWithDefault"):
            left = sorted(n.name for n in gd.node if n.op == "Placeholder" and n.name != tensors.input.split(":")[0])
            raise InputError(f"--constant {name}: not a placeholder the outputs depend on "
                             f"(those are: {', '.join(left) or 'none'})")
        if node_name == tensors.input.split(":")[0]:
            raise InputError(f"--constant {name}: that is the input")
        _constant_node(node, value, f"--constant {name}")
    return gd


def leftover_feeds(gd: Any, tensors: Tensors) -> list[str]:
    """Placeholders of a frozen graph other than its input: what a run has to feed (model.feeds)."""
    return [n.name + ":0" for n in gd.node if n.op == "Placeholder" and n.name + ":0" != tensors.input]


def frozen_for_run(prefix: str, spec: Any) -> tuple[bytes, Any]:
    """``run --model CHECKPOINT``: the frozen graph's bytes for the entry ``prefix``, and the spec
    with the tensor names this freezing chose (so the predictor uses exactly those)."""
    from .checkpoint import checkpoint_files
    r = restore(checkpoint_files(prefix))
    try:
        tensors = choose_tensors(r, spec.model.input, [spec.model.output] if spec.model.output else None)
        out = main_output(r.graph, tensors.outputs)
        tensors = replace(tensors, outputs=(out,))
        gd = freeze(r, tensors)
    except (InputError, ModelError) as exc:  # a flag's name in freeze is model.input/output here
        text = str(exc).replace("--input-name", "model.input").replace("--output-nodes", "model.output")
        raise ModelError(f"{r.ckpt.prefix}: {text}") from None
    finally:
        r.close()
    model = replace(spec.model, input=tensors.input, output=out)
    return gd.SerializeToString(deterministic=True), replace(spec, model=model)
