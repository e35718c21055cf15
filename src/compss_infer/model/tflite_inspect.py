"""``inspect`` for ``.tflite`` files: tensors, quantization, ops and the audit's verdict, no TensorFlow.

What it says comes from tflite_audit (the same reader and audit ``run`` uses).
"""
from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field
from typing import Any

from .files import card_path_for
from .graph import input_layout
from .quantcheck import card_check, card_check_line
from ..images.ranges import mean_std_for, short
from .tflite_audit import TensorDesc, read_tflite


def _tensor(t: TensorDesc) -> dict[str, Any]:
    d: dict[str, Any] = {"name": t.name, "dtype": t.dtype, "shape": list(t.shape)}
    d["quantization"] = {"scale": t.scale, "zero_point": t.zero_point} if t.quantized else None
    return d


@dataclass
class TfliteInspection:
    """The facts ``compss-infer inspect X.tflite`` prints (JSON with --json)."""

    path: str
    file_bytes: int
    format: str  # always "tflite"
    operator_count: int
    subgraph_count: int
    inputs: list[dict[str, Any]]
    outputs: list[dict[str, Any]]
    input_kind: str | None
    fixed_batch: int | None
    quantized: bool  # every input and output integer-quantized, or int8 ops inside
    ops: dict[str, int]
    safe: bool
    unsafe_ops: list[str] = field(default_factory=list)
    card: str | None = None
    description: str = ""
    card_check: dict[str, Any] | None = None  # the quantize check's figures, from the card
    input_range: list[float] | None = None  # values a quantized input holds, from its scale and zero point


    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def inspect_tflite(path: str) -> TfliteInspection:
    with open(path, "rb") as fh:
        data = fh.read()
    model = read_tflite(data, path)
    kind = batch = None
    if len(model.inputs) == 1:
        kind, batch = input_layout(model.inputs[0].dtype, model.inputs[0].shape)
    card = card_path_for(path)
    quantized = any(t.quantized for t in model.inputs + model.outputs) or "QUANTIZE" in model.ops
    span = model.inputs[0].float_range() if len(model.inputs) == 1 else None
    return TfliteInspection(
        path=os.path.abspath(path), file_bytes=len(data), format="tflite",
        operator_count=model.operator_count, subgraph_count=model.subgraph_count,
        inputs=[_tensor(t) for t in model.inputs], outputs=[_tensor(t) for t in model.outputs],
        input_kind=kind, fixed_batch=batch, quantized=quantized, ops=model.ops, safe=not model.unsafe,
        unsafe_ops=list(model.unsafe), card=os.path.abspath(card) if os.path.isfile(card) else None,
        description=model.description, card_check=card_check(card),
        input_range=list(span) if span else None)


def _line(t: dict[str, Any]) -> str:
    return str(TensorDesc(t["name"], t["dtype"], tuple(t["shape"]),
                          *((t["quantization"]["scale"], t["quantization"]["zero_point"]) if t["quantization"] else ())))


def format_tflite_text(info: TfliteInspection) -> str:
    lines = [f"model      {info.path}", f"file       {info.file_bytes:,} bytes (tflite, LiteRT flatbuffer)",
             f"operators  {info.operator_count}" + (f" in {info.subgraph_count} subgraphs" if info.subgraph_count > 1 else "")]
    if info.card:
        lines.append(f"card       {info.card}")
    if info.card_check:
        lines.append(f"check      {card_check_line(info.card_check)}")
    lines.append("inputs")
    lines.extend(f"    {_line(t)}" for t in info.inputs)
    lines.append("outputs")
    lines.extend(f"    {_line(t)}" for t in info.outputs)
    if info.input_kind:
        batch = "any (dynamic)" if info.fixed_batch is None else str(info.fixed_batch)
        lines.append(f"input kind {info.input_kind}; batch dimension: {batch}")
    lines.append(f"quantized  {'yes (integer tensors inside)' if info.quantized else 'no (float model)'}")
    if info.input_range:
        lo, hi = info.input_range
        mean, std = mean_std_for((lo, hi))
        lines.append(f"input range [{short(lo)}, {short(hi)}] (from the input's scale and zero point): pixels 0..255 "
                     f"map onto it with preprocess.mean={short(mean)} preprocess.std={short(std)}")
    verdict = "safe (LiteRT builtin ops only)" if info.safe else \
        f"UNSAFE: {len(info.unsafe_ops)} custom/Flex op(s) refused (run needs --allow-unsafe-ops)"
    from .inspection import audit_and_ops_lines
    return "\n".join(lines + audit_and_ops_lines(verdict, info.unsafe_ops, info.ops))
