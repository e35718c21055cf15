"""``optimize``: shrink a frozen graph for inference with TensorFlow's own transforms, then prove it
still computes the same thing.

Steps (``tensorflow.tools.graph_transforms`` is gone in TF 2.x, so these are what remains):

1. ``optimize_for_inference_lib.optimize_for_inference``: strips nodes the outputs do not need and
   training-only ones (Identity chains, CheckNumerics), folds batch norms (FusedBatchNorm after
   Conv2D/MatMul/DepthwiseConv2dNative) into the weights, and merges resize+pad+conv.  The image input
   and every other placeholder are kept (they are its "inputs"), the output is protected.
2. Grappler, TF's graph optimizer, run once offline with only the device-independent passes:
   pruning, constant folding, arithmetic simplification, dependency (control edge) cleanup.
   Layout and remapping passes are left out: they specialise a graph for one device.

TF's ``remove_training_nodes`` (inside step 1) deletes CheckNumerics nodes *and the data edges out of
them* (the consumer loses an input and the graph no longer imports), so CheckNumerics is first turned
into Identity here, which the same function splices out correctly.

The result is run next to the original on a random batch; it is written only if the outputs agree
within the tolerance.  Worker-side: imports TensorFlow.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import dataclass
from typing import Any

import numpy as np

from . import graph as graphmod
from ..core.specs import ModelSpec
from .files import card_path_for
from ..core.yamlfile import load_yaml
from ..core.errors import InputError, ModelError
from .freeze import write_graph_def
from .session import import_tf
from .verify import VERIFY_BATCH, Check, TempImages, compare, random_value, run_graph

GRAPPLER_PASSES = ("pruning", "constfold", "arithmetic", "dependency")


@dataclass
class OptimizeResult:
    output: str
    input: str
    output_tensor: str
    ops_before: dict[str, int]
    ops_after: dict[str, int]
    nodes_before: int
    nodes_after: int
    bytes_before: int
    bytes_after: int
    check: Check
    card: str | None


def op_counts(gd: Any) -> dict[str, int]:
    """Op type -> count over the graph and its function library."""
    ops: Counter = Counter(n.op for n in gd.node)
    for fn in gd.library.function:
        ops.update(n.op for n in fn.node_def)
    return dict(ops)


def _node(tensor: str) -> str:
    return tensor.split(":", 1)[0]


def grappler(gd: Any, outputs: list[str], passes: tuple[str, ...] = GRAPPLER_PASSES) -> Any:
    """Run Grappler's meta optimizer once on ``gd`` with ``passes``; ``outputs`` (node names) are kept."""
    tf = import_tf()
    from tensorflow.core.protobuf import config_pb2, rewriter_config_pb2
    from tensorflow.python.grappler import tf_optimizer

    graph = tf.Graph()
    with graph.as_default():
        tf.compat.v1.import_graph_def(gd, name="")
        meta = tf.compat.v1.train.export_meta_graph(graph_def=gd, graph=graph)
    meta.collection_def["train_op"].node_list.value.extend(outputs)  # Grappler's "fetch" nodes
    cfg = config_pb2.ConfigProto()
    rewrite = cfg.graph_options.rewrite_options
    rewrite.optimizers.extend(passes)
    rewrite.meta_optimizer_iterations = rewriter_config_pb2.RewriterConfig.ONE
    return tf_optimizer.OptimizeGraph(cfg, meta)


def splice_check_numerics(gd: Any, protected: list[str]) -> Any:
    """A copy of ``gd`` with CheckNumerics turned into Identity (see the module note on the TF bug)."""
    out = type(gd)()
    out.CopyFrom(gd)
    for node in out.node:
        if node.op in ("CheckNumerics", "CheckNumericsV2") and node.name not in protected:
            node.op = "Identity"
            del node.attr["message"]
    return out


def optimize_graph(gd: Any, inputs: list[str], input_dtypes: list[int], outputs: list[str]) -> Any:
    """The two-step rewrite (node names in, node names out); raises ModelError on a TF failure."""
    from tensorflow.python.tools import optimize_for_inference_lib

    try:
        folded = optimize_for_inference_lib.optimize_for_inference(splice_check_numerics(gd, outputs),
                                                                   inputs, outputs, input_dtypes,
                                                                   toco_compatible=False)
        # optimize_for_inference drops the function library; graphs that call functions need it back.
        folded.library.CopyFrom(gd.library)
        return grappler(folded, outputs)
    except Exception as exc:
        text = str(exc).strip()
        raise ModelError(f"TensorFlow could not optimize the graph: {text.splitlines()[0] if text else type(exc).__name__}") from None


def _card_tensors(model: str) -> tuple[str | None, str | None, str | None]:
    card = card_path_for(model)
    if not os.path.isfile(card):
        return None, None, None
    data = load_yaml(card, "model card") or {}
    section = data.get("model") if isinstance(data, dict) and isinstance(data.get("model"), dict) else {}
    return card, section.get("input"), section.get("output")


def check_destination(model: str, output: str, overwrite: bool) -> None:
    if not output.endswith((".pb", ".pbtxt")):
        raise InputError(f"--output {output}: expected a .pb or .pbtxt file name")
    if os.path.abspath(output) == os.path.abspath(model):
        raise InputError("--output must differ from MODEL (the original is needed to check the result)")
    if os.path.isdir(output):
        raise InputError(f"--output {output} is a directory")
    if os.path.exists(output) and not overwrite:
        raise InputError(f"{output} exists (use --overwrite to replace it)")


def optimize_model(model: str, output: str, input_name: str | None = None, output_name: str | None = None,
                   tolerance: float = 1e-5, overwrite: bool = False, seed: int = 0) -> OptimizeResult:
    """Optimize ``model`` into ``output`` (.pb or .pbtxt) after checking outputs agree on a random batch.

    The input and output come from the options, else the model card beside MODEL, else the same
    auto-detection ``run`` uses.  Every placeholder is kept and fed the same random values.
    """
    if not os.path.isfile(model):
        raise ModelError(f"model file not found: {model}")
    check_destination(model, output, overwrite)
    import_tf()  # fail here, with its own message, if TensorFlow cannot load
    gd = graphmod.read_graph_def(model)
    graph = graphmod.import_graph(gd, model)
    card, card_in, card_out = _card_tensors(model)
    spec = ModelSpec(path=model, input=input_name or card_in, output=output_name or card_out)
    x = graphmod.find_input(graph, spec)
    y = graphmod.find_output(graph, spec)
    placeholders = [op for op in graph.get_operations() if op.type == "Placeholder"]
    if x.op.type != "Placeholder":
        raise ModelError(f"input {x.name} is not a Placeholder ({x.op.type}): cannot optimize around it")

    out_node = _node(y.name)
    new_gd = optimize_graph(gd, [op.name for op in placeholders],
                            [op.outputs[0].dtype.as_datatype_enum for op in placeholders], [out_node])

    rng = np.random.default_rng(seed)
    _, batch = graphmod.input_layout(x.dtype.name, graphmod._shape(x))
    n = batch or VERIFY_BATCH
    with TempImages() as tmp:
        feeds = {}
        for op in placeholders:
            t = op.outputs[0]
            size = n if t is x else (graphmod.input_layout(t.dtype.name, graphmod._shape(t))[1] or n)
            feeds[t.name] = random_value(t.dtype.name, graphmod._shape(t), size, rng, tmp)
        want = run_graph(gd, feeds, y.name)
        got = run_graph(new_gd, feeds, y.name)
    check = compare(want, got, n, tolerance)
    if not check.ok:
        raise ModelError(f"the optimized graph does not reproduce {model}: {check}; nothing written")

    size = write_graph_def(new_gd, output)
    new_card = None
    if card:
        new_card = card_path_for(output)
        if os.path.abspath(new_card) != os.path.abspath(card) and (overwrite or not os.path.exists(new_card)):
            with open(card, encoding="utf-8") as fh:
                text = fh.read()
            from ..core.atomic import write_atomically
            write_atomically(new_card, lambda fh: fh.write(
                f"# Copied by compss-infer optimize from {os.path.basename(card)} "
                f"(same tensors; the graph is {os.path.basename(output)})\n" + text))
        else:
            new_card = None
    return OptimizeResult(output=output, input=x.name, output_tensor=y.name, ops_before=op_counts(gd),
                          ops_after=op_counts(new_gd), nodes_before=len(gd.node), nodes_after=len(new_gd.node),
                          bytes_before=os.path.getsize(model), bytes_after=size, check=check, card=new_card)


def format_op_table(before: dict[str, int], after: dict[str, int]) -> str:
    """Op counts side by side, largest change first."""
    ops = sorted(set(before) | set(after), key=lambda op: (-(before.get(op, 0) - after.get(op, 0)), op))
    width = max([len(op) for op in ops] + [2])
    lines = [f"  {'op':<{width}}  before  after"]
    for op in ops:
        lines.append(f"  {op:<{width}}  {before.get(op, 0):>6}  {after.get(op, 0):>5}")
    return "\n".join(lines)
