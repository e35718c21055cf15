"""Frozen GraphDef files: read (.pb / .pbtxt), audit ops, find and check the input/output tensors.

Worker-side (imports TensorFlow).  Every problem becomes a one-line ModelError or ConfigError, so a
bad model is refused before any image is touched.
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

from ..core.specs import ModelSpec, PreprocessSpec
from ..core.contracts import ModelInfo
from ..core.errors import ConfigError, ModelError, shown
from .oplist import PATH_CHAIN, is_allowed, reason
from .session import import_tf

# Node types that are never the answer of a classifier.
_NOT_OUTPUTS = frozenset({"NoOp", "Const", "Placeholder", "PlaceholderWithDefault", "Assert",
                          "VarHandleOp", "VariableV2", "Variable", "SaveV2", "RestoreV2", "WriteFile",
                          "ControlTrigger", "PrintV2", "Print"})
_MODE_CHANNELS = {"L": 1, "RGB": 3, "BGR": 3}


def tensor_name(name: str) -> str:
    """``probs`` -> ``probs:0``; names that already carry an output index are kept."""
    return name if ":" in name else name + ":0"


def read_model_bytes(path: str) -> bytes:
    try:
        with open(path, "rb") as fh:
            return fh.read()
    except OSError as exc:
        raise ModelError(f"cannot read model {path}: {exc.strerror}") from None


def parse_graph_def(data: bytes, path: str) -> Any:
    """Parse a binary (.pb) or text (.pbtxt) GraphDef; refuse empty or corrupt files."""
    tf = import_tf()
    gd = tf.compat.v1.GraphDef()
    if path.endswith(".pbtxt"):
        from google.protobuf import text_format
        try:
            text_format.Parse(data.decode("utf-8"), gd)
        except (text_format.ParseError, UnicodeDecodeError) as exc:
            raise ModelError(f"{path} is not a valid text GraphDef: {str(exc).splitlines()[0]}") from None
    else:
        try:
            gd.ParseFromString(data)
        except Exception as exc:  # google.protobuf.message.DecodeError and friends
            detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            raise ModelError(f"{path} is not a valid binary GraphDef (truncated or corrupt?): {detail}") from None
    if len(gd.node) == 0:
        raise ModelError(f"{path} holds no graph nodes (empty, truncated, or not a GraphDef)")
    return gd


def read_graph_def(path: str) -> Any:
    return parse_graph_def(read_model_bytes(path), path)


@dataclass(frozen=True)
class Finding:
    """One op the audit refuses, and where it sits."""

    op: str
    node: str
    where: str  # "graph" or "function NAME"
    why: str = ""  # when the op's own reason does not say it (a ReadFile fed by something else)

    def __str__(self) -> str:
        place = "" if self.where == "graph" else f" in {self.where[:80]}"
        return f"{self.op[:60]} (node {shown(self.node)}{place}): {self.why or reason(self.op)}"


def _tensor_ref(ref: str) -> str:
    """``name`` -> ``name:0``; ``^name`` (a control input) -> ``name:0``."""
    ref = ref.lstrip("^")
    return ref if ":" in ref else ref + ":0"


def path_fed(gd: Any, path_input: str) -> Callable[[str], bool]:
    """Whether a tensor of the graph carries only the path fed to ``path_input`` (see oplist.PATH_CHAIN).

    The greatest fixed point over the graph (loops through Merge/NextIteration included): a chain
    op is path-fed when every input that carries its string (PATH_CHAIN) is path-fed or is the
    input itself; anything else (a Const, another placeholder, any other op) is not.  Iterative, so
    a graph of any depth is fine.
    """
    source = _tensor_ref(path_input)
    content: dict[str, list[str]] = {}
    for n in gd.node:
        if n.op not in PATH_CHAIN or (n.op == "StringJoin" and "separator" in n.attr and n.attr["separator"].s):
            continue
        data = [i for i in n.input if not i.startswith("^")]
        pick = PATH_CHAIN[n.op]
        refs = [_tensor_ref(data[p]) for p in (range(len(data)) if pick is None else pick(len(data)))
                if p < len(data)]
        if refs:
            content[n.name] = refs
    good = set(content)
    users: dict[str, list[str]] = {}
    for name, refs in content.items():
        for r in refs:
            users.setdefault(r.rsplit(":", 1)[0], []).append(name)

    def fed(ref: str) -> bool:
        ref = _tensor_ref(ref)
        return ref == source or ref.rsplit(":", 1)[0] in good

    work = list(good)
    while work:
        name = work.pop()
        if name in good and not all(fed(r) for r in content[name]):
            good.discard(name)
            work.extend(users.get(name, ()))
    return fed


def audit(gd: Any, path_input: str | None) -> list[Finding]:
    """Every node of the graph and of every function in its library, against the allow-list.

    ``path_input``: the tensor the run feeds image paths to (``image_path:0``), or None when the
    input is not a path.  Then decoding is allowed, and a ``ReadFile`` whose file name is that path
    (oplist.PATH_CHAIN); any other ``ReadFile``, and any inside a library function, is refused.
    """
    takes_paths = path_input is not None
    fed = path_fed(gd, path_input) if path_input is not None else None
    found = []
    for n in gd.node:
        if n.op == "ReadFile" and fed is not None:
            data = [i for i in n.input if not i.startswith("^")]
            if not data or not fed(data[0]):
                found.append(Finding(n.op, n.name, "graph", "reads a file that is not the image path fed to "
                                     f"{shown(path_input)}"))
        elif not is_allowed(n.op, takes_paths):
            found.append(Finding(n.op, n.name, "graph"))
    for fn in gd.library.function:
        where = f"function {fn.signature.name}"
        for n in fn.node_def:
            if n.op == "ReadFile" and takes_paths:
                found.append(Finding(n.op, n.name, where, "reads files inside a library function (only a ReadFile "
                                     "the path input feeds in the graph itself is allowed)"))
            elif not is_allowed(n.op, takes_paths):
                found.append(Finding(n.op, n.name, where))
    return found


def import_graph(gd: Any, path: str) -> Any:
    tf = import_tf()
    graph = tf.Graph()
    try:
        with graph.as_default():
            tf.compat.v1.import_graph_def(gd, name="")
    except Exception as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise ModelError(f"cannot load graph {path}: {first}") from None
    return graph


def _shape(t: Any) -> tuple[int | None, ...] | None:
    return None if t.shape.rank is None else tuple(t.shape.as_list())


def _describe(t: Any) -> str:
    shape = _shape(t)
    dims = "?" if shape is None else "[" + ", ".join("?" if d is None else str(d) for d in shape) + "]"
    return f"{t.name} ({t.dtype.name} {dims})"


def _get_tensor(graph: Any, name: str, what: str) -> Any:
    try:
        return graph.get_tensor_by_name(tensor_name(name))
    except (KeyError, ValueError) as exc:
        raise ModelError(f"{what}: no tensor {tensor_name(name)!r} in the graph ({str(exc).splitlines()[0]})") from None


def input_candidates(graph: Any, fed: frozenset[str] = frozenset()) -> tuple[list[Any], list[Any]]:
    """(every Placeholder not in ``fed``, those of them that could take images)."""
    cands = [op.outputs[0] for op in graph.get_operations()
             if op.type == "Placeholder" and op.outputs[0].name not in fed]
    return cands, [t for t in cands if _image_like(t)]


def output_candidates(graph: Any) -> tuple[list[Any], list[Any]]:
    """(dangling number tensors, those of them with a batch or class axis): what could be the answer."""
    consumed: set[str] = set()
    for op in graph.get_operations():
        consumed.update(t.op.name for t in op.inputs)
        consumed.update(c.name for c in op.control_inputs)
    # TF1 control flow leaves dangling pivot Identities fed by Switch: never an answer.
    cands = [op.outputs[0] for op in graph.get_operations()
             if op.name not in consumed and op.type not in _NOT_OUTPUTS and op.outputs
             and not any(t.op.type in ("Switch", "RefSwitch") for t in op.inputs)
             and (op.outputs[0].dtype.is_floating or op.outputs[0].dtype.is_integer)]
    # Loop counters and other scalars dangle too; an answer has a batch or class axis.
    return cands, [t for t in cands if t.shape.rank is None or t.shape.rank >= 1]


def find_input(graph: Any, spec: ModelSpec) -> Any:
    if spec.input:
        return _get_tensor(graph, spec.input, "model.input")
    cands, preferred = input_candidates(graph, frozenset(tensor_name(k) for k, _ in spec.feeds))
    if not cands:
        raise ModelError("the graph has no Placeholder to feed images to: set model.input")
    return _pick(cands, preferred, "input")


def find_output(graph: Any, spec: ModelSpec) -> Any:
    if spec.output:
        return _get_tensor(graph, spec.output, "model.output")
    cands, preferred = output_candidates(graph)
    if not cands:
        raise ModelError("cannot find an output tensor: set model.output")
    return _pick(cands, preferred, "output")


def input_layout(dtype: str, shape: tuple[int | None, ...] | None) -> tuple[str | None, int | None]:
    """(kind, fixed batch) of an input tensor, by the rules ``analyze`` applies; (None, None) if unusable.

    Kinds: path (scalar string), path_batch (string vector), image [N,H,W,C], unbatched [H,W,C],
    flat [N,H*W*C].  A fixed batch of None means any batch size is accepted.
    """
    if shape is None:
        return None, None
    rank = len(shape)
    if dtype == "string":
        kind = {0: "path", 1: "path_batch"}.get(rank)
        batch = 1 if rank == 0 else (shape[0] if rank == 1 else None)
    else:
        kind = {4: "image", 3: "unbatched", 2: "flat"}.get(rank)
        batch = 1 if rank == 3 else (shape[0] if kind else None)
    if batch is not None and batch <= 0:
        batch = None
    return kind, batch


def _image_like(t: Any) -> bool:
    """Could this placeholder take images: a path string (scalar or vector) or a 2-4-D number tensor."""
    rank = t.shape.rank
    if t.dtype.name == "string":
        return rank in (0, 1)
    return rank is None or 2 <= rank <= 4


def _pick(cands: list[Any], preferred: list[Any], what: str) -> Any:
    """The single plausible tensor, else a ModelError listing the candidates."""
    if len(preferred) == 1:
        return preferred[0]
    if len(cands) == 1:
        return cands[0]
    shown = preferred or cands
    raise ModelError(f"cannot tell the {what}: set model.{what} to one of " + ", ".join(_describe(t) for t in shown))


def check_feeds(graph: Any, spec: ModelSpec, input_tensor: Any) -> dict[Any, Any]:
    """Resolve ``model.feeds``; refuse unknown names and placeholders nobody feeds."""
    import numpy as np
    feeds = {}
    for name, value in spec.feeds:
        t = _get_tensor(graph, name, "model.feeds")
        try:
            arr = np.asarray(value, dtype=t.dtype.as_numpy_dtype)
        except (TypeError, ValueError):
            raise ModelError(f"model.feeds: value {value!r} does not fit {_describe(t)}") from None
        if not t.shape.is_compatible_with(arr.shape):
            raise ModelError(f"model.feeds: value {value!r} has shape {list(arr.shape)}, {_describe(t)} wants another")
        feeds[t] = arr
    fed = {t.name for t in feeds} | {input_tensor.name}
    for op in graph.get_operations():
        if op.type == "Placeholder" and op.outputs[0].name not in fed:
            raise ModelError(f"placeholder {op.outputs[0].name!r} is not fed: add it to model.feeds "
                             f"(e.g. model.feeds: {{\"{op.outputs[0].name}\": 1.0}})")
    return feeds


def analyze(graph: Any, gd: Any, spec: ModelSpec, pre: PreprocessSpec, top_k: int) -> tuple[ModelInfo, Any, Any]:
    """Pick the tensors, classify the input/output kinds, check them against the preprocessing.

    Returns (info, input tensor, output tensor).
    """
    x = find_input(graph, spec)
    y = find_output(graph, spec)
    in_shape = _shape(x)
    in_dtype = x.dtype
    kind, fixed_batch = input_layout(in_dtype.name, in_shape)
    height = width = channels = None
    if in_dtype.name == "string":
        if kind is None:
            raise ModelError(f"string input {_describe(x)}: an image-path input must be a scalar or a vector")
    else:
        if not (in_dtype.is_floating or in_dtype.name == "uint8"):
            raise ModelError(f"input {_describe(x)}: expected a float or uint8 image tensor, or a string path")
        if in_shape is None:
            raise ModelError(f"input {_describe(x)} has unknown rank: expected [batch, height, width, channels]")
        want_c = _MODE_CHANNELS[pre.mode]
        if kind in ("image", "unbatched"):
            gh, gw, gc = in_shape[-3:]
            if gc is not None and gc != want_c:
                from ..images.preprocess import channel_hint
                raise ModelError(f"input {_describe(x)} wants {gc} channels but preprocess.mode={pre.mode} gives "
                                 f"{want_c}: {channel_hint(gc)}")
            if pre.size is not None and ((gh is not None and gh != pre.size[0]) or (gw is not None and gw != pre.size[1])):
                raise ModelError(f"preprocess.size {list(pre.size)} does not match input {_describe(x)}")
            height = pre.size[0] if pre.size else gh
            width = pre.size[1] if pre.size else gw
            if height is None or width is None:
                raise ConfigError(f"preprocess.size is needed: input {_describe(x)} has no fixed height/width")
            channels = want_c
        elif kind == "flat":
            if pre.size is None:
                raise ConfigError(f"preprocess.size is needed: input {_describe(x)} is a flat vector")
            height, width = pre.size
            channels = want_c
            if in_shape[1] is not None and in_shape[1] != height * width * channels:
                raise ModelError(f"input {_describe(x)} wants {in_shape[1]} values per image but "
                                 f"preprocess gives {height}x{width}x{channels} = {height * width * channels}")
        else:
            raise ModelError(f"input {_describe(x)}: expected [batch, height, width, channels]")
        if len(pre.mean) == 3 and channels == 1 or len(pre.std) == 3 and channels == 1:
            raise ConfigError("preprocess.mean/std have 3 values but preprocess.mode=L has one channel")
        if in_dtype.name == "uint8" and (any(pre.mean) or any(s != 1 for s in pre.std)):
            raise ConfigError(f"input {_describe(x)} takes raw uint8 pixels: remove preprocess.mean/std")

    out_dtype = y.dtype
    out_shape = _shape(y)
    if out_dtype.is_integer:
        out_kind = "class_id"
        num_classes = argmax_classes(y)
        if top_k > 1:
            raise ConfigError(f"run.top_k={top_k} needs a model that outputs scores; {_describe(y)} gives class ids")
    elif out_dtype.is_floating:
        out_kind = "scores"
        num_classes = out_shape[-1] if out_shape and out_shape[-1] is not None else None
        if num_classes is not None and top_k > num_classes:
            raise ConfigError(f"run.top_k={top_k} exceeds the model's {num_classes} classes")
    else:
        raise ModelError(f"output {_describe(y)}: expected float scores or integer class ids")

    info = ModelInfo(
        input_name=x.name, input_dtype=in_dtype.name, input_shape=in_shape, input_kind=kind,
        output_name=y.name, output_dtype=out_dtype.name, output_shape=out_shape, output_kind=out_kind,
        fixed_batch=fixed_batch, num_classes=num_classes, height=height, width=width, channels=channels,
        node_count=len(gd.node), function_count=len(gd.library.function),
    )
    return info, x, y


# Ops that pass a class id through unchanged, between the ArgMax and the output a card names.
_PASS_THROUGH = frozenset({"Identity", "Cast", "Squeeze", "Reshape", "ExpandDims", "StopGradient", "Snapshot"})


def argmax_classes(y: Any) -> int | None:
    """How many classes a class-id output chooses from: the length of the ArgMax input's reduced axis.

    Follows pass-through ops back from ``y``; None when no ArgMax is found or its axis has no fixed
    length (then every row's id is still range-checked against the labels file).
    """
    tf = import_tf()
    t = y
    for _ in range(32):  # a chain of renames, never a long one
        op = t.op
        if op.type in ("ArgMax", "ArgMin") and len(op.inputs) == 2:
            axis = tf.get_static_value(op.inputs[1])
            shape = _shape(op.inputs[0])
            if axis is None or shape is None or not -len(shape) <= int(axis) < len(shape):
                return None
            return shape[int(axis)]
        if op.type not in _PASS_THROUGH or not op.inputs:
            return None
        t = op.inputs[0]
    return None


def check_safety(gd: Any, info: ModelInfo, spec: ModelSpec) -> tuple[str, ...]:
    """Refuse unsafe ops unless allowed; return what was found (for the summary)."""
    findings = audit(gd, info.input_name if info.takes_paths else None)
    if findings and not spec.allow_unsafe_ops:
        listed = "; ".join(str(f) for f in findings[:3])
        more = f"; and {len(findings) - 3} more" if len(findings) > 3 else ""
        raise ModelError(f"unsafe op(s) in {spec.path}: {listed}{more} (pass --allow-unsafe-ops to run it anyway)")
    return tuple(str(f) for f in findings)
