"""``inspect``: what a frozen graph takes and gives, before anyone runs it.

Everything comes from graph.py (reading, auto-detection, the safety audit), so what ``inspect``
says is exactly what ``run`` will decide.  Worker-side: imports TensorFlow.
"""
from __future__ import annotations

import os
from collections import Counter
from dataclasses import asdict, dataclass, field
from typing import Any

from . import graph as graphmod
from ..core.specs import ModelSpec
from .files import card_path_for
from ..core.yamlfile import load_yaml
from ..core.errors import CompssInferError


@dataclass
class TensorInfo:
    name: str
    dtype: str
    shape: list[int | None] | None  # None: unknown rank; None inside: any size

    @classmethod
    def of(cls, t: Any) -> "TensorInfo":
        shape = graphmod._shape(t)
        return cls(t.name, t.dtype.name, None if shape is None else list(shape))

    def __str__(self) -> str:
        dims = "?" if self.shape is None else "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"
        return f"{self.name} {self.dtype} {dims}"


@dataclass
class Inspection:
    """The facts ``compss-infer inspect`` prints (and writes as JSON with --json)."""

    path: str
    file_bytes: int
    format: str  # binary | text
    node_count: int
    function_count: int
    function_node_count: int
    inputs: list[TensorInfo]
    image_inputs: list[str]
    outputs: list[TensorInfo]  # candidate outputs (dangling number tensors)
    chosen_input: str | None  # what run would pick (card, then auto-detection); None = must be told
    chosen_output: str | None
    choice_note: str | None
    input_kind: str | None
    fixed_batch: int | None
    ops: dict[str, int]  # op -> count over the graph and its function library
    safe: bool
    unsafe_ops: list[str] = field(default_factory=list)
    card: str | None = None

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _card_names(model_path: str) -> tuple[str | None, str | None, str | None]:
    """(card path, input, output) from the model card beside the model, if there is one."""
    card = card_path_for(model_path)
    if not os.path.isfile(card):
        return None, None, None
    data = load_yaml(card, "model card") or {}
    model = data.get("model") if isinstance(data, dict) else None
    model = model if isinstance(model, dict) else {}
    return os.path.abspath(card), model.get("input"), model.get("output")


def inspect_model(path: str) -> Inspection:
    """Read, import and describe a .pb/.pbtxt GraphDef; raises ModelError when it cannot be read."""
    gd = graphmod.read_graph_def(path)
    graph = graphmod.import_graph(gd, path)
    card, card_in, card_out = _card_names(path)
    spec = ModelSpec(path=path, input=card_in, output=card_out)

    placeholders, image_like = graphmod.input_candidates(graph)
    out_all, out_preferred = graphmod.output_candidates(graph)
    notes = []
    x = y = None
    try:
        x = graphmod.find_input(graph, spec)
    except CompssInferError as exc:
        notes.append(str(exc))
    try:
        y = graphmod.find_output(graph, spec)
    except CompssInferError as exc:
        notes.append(str(exc))
    kind = batch = None
    if x is not None:
        kind, batch = graphmod.input_layout(x.dtype.name, graphmod._shape(x))
    takes_paths = kind in ("path", "path_batch")
    findings = graphmod.audit(gd, x.name if takes_paths and x is not None else None)

    ops: Counter = Counter(n.op for n in gd.node)
    fn_nodes = 0
    for fn in gd.library.function:
        ops.update(n.op for n in fn.node_def)
        fn_nodes += len(fn.node_def)
    return Inspection(
        path=os.path.abspath(path), file_bytes=os.path.getsize(path),
        format="text" if path.endswith(".pbtxt") else "binary",
        node_count=len(gd.node), function_count=len(gd.library.function), function_node_count=fn_nodes,
        inputs=[TensorInfo.of(t) for t in placeholders], image_inputs=[t.name for t in image_like],
        outputs=[TensorInfo.of(t) for t in (out_preferred or out_all)],
        chosen_input=x.name if x is not None else None, chosen_output=y.name if y is not None else None,
        choice_note="; ".join(notes) or None, input_kind=kind, fixed_batch=batch,
        ops=dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
        safe=not findings, unsafe_ops=[str(f) for f in findings], card=card,
    )


def format_text(info: Inspection) -> str:
    """The human-readable report (one fact per line, op histogram last)."""
    size = f"{info.file_bytes:,} bytes ({info.format})"
    lines = [f"model      {info.path}", f"file       {size}",
             f"nodes      {info.node_count}" + (f" (+ {info.function_node_count} in {info.function_count} "
                                                  f"library function(s))" if info.function_count else "")]
    if info.card:
        lines.append(f"card       {info.card}")
    lines.append("inputs")
    for t in info.inputs or []:
        mark = "*" if t.name == info.chosen_input else " "
        lines.append(f"  {mark} {t}" + ("" if t.name in info.image_inputs else "   (not image-like)"))
    if not info.inputs:
        lines.append("    (no Placeholder)")
    lines.append("candidate outputs")
    for t in info.outputs:
        lines.append(f"  {'*' if t.name == info.chosen_output else ' '} {t}")
    if not info.outputs:
        lines.append("    (none found)")
    if info.chosen_input and info.chosen_output:
        lines.append(f"run uses   {info.chosen_input} -> {info.chosen_output} (marked *)")
    if info.choice_note:
        lines.append(f"note       {info.choice_note}")
    if info.input_kind:
        batch = "any (dynamic)" if info.fixed_batch is None else str(info.fixed_batch)
        lines.append(f"input kind {info.input_kind}; batch dimension: {batch}")
    verdict = "safe (every op is on the allow-list)" if info.safe else \
        f"UNSAFE: {len(info.unsafe_ops)} op(s) refused (run needs --allow-unsafe-ops)"
    return "\n".join(lines + audit_and_ops_lines(verdict, info.unsafe_ops, info.ops))


def audit_and_ops_lines(verdict: str, unsafe_ops: list[str], ops: dict[str, int]) -> list[str]:
    """The report's tail, shared by the GraphDef and the .tflite reports: verdict, findings, op histogram."""
    lines = [f"audit      {verdict}"]
    lines.extend(f"  - {f}" for f in unsafe_ops)
    lines.append(f"ops        {len(ops)} types")
    width = max((len(op) for op in ops), default=0)
    lines.extend(f"  {op:<{width}}  {n}" for op, n in ops.items())
    return lines
