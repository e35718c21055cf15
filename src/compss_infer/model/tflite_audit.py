"""Read a ``.tflite`` flatbuffer without running it: tensors, quantization, ops, and the safety audit.

LiteRT's builtin ops only compute on tensors; what can reach files, processes or arbitrary code is
a custom op (a kernel someone registers) or a TensorFlow "Flex" op (a TensorFlow kernel run through
the Flex delegate, which includes the file and Python ops the GraphDef audit refuses).  So the
audit refuses every custom op, Flex ones named as such.  Corrupt files are refused with one line.
"""
from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from ..core.errors import ModelError
from .formats import is_tflite_bytes

_TYPES = {0: "float32", 1: "float16", 2: "int32", 3: "uint8", 4: "int64", 5: "string", 6: "bool",
          7: "int16", 8: "complex64", 9: "int8", 10: "float64", 11: "complex128", 12: "uint64",
          15: "uint32", 16: "uint16", 17: "int4"}
CUSTOM = 32  # BuiltinOperator.CUSTOM
_INT_ENDS = {"uint8": (0, 255), "int8": (-128, 127), "int16": (-32768, 32767)}
_PASS_THROUGH = ("CAST", "RESHAPE", "SQUEEZE", "EXPAND_DIMS")  # a class id passes these unchanged


@dataclass(frozen=True)
class TensorDesc:
    """One input or output tensor of the main subgraph."""

    name: str
    dtype: str
    shape: tuple[int | None, ...]  # None = any size (shape_signature -1)
    scale: float = 0.0  # quantization (0 = not quantized)
    zero_point: int = 0

    @property
    def quantized(self) -> bool:
        return self.scale > 0

    def float_range(self) -> tuple[float, float] | None:
        """The real values an 8/16-bit quantized tensor can hold: ``(q - zero_point) * scale`` at its ends.

        For an input this is the range the model was calibrated on, so the range it expects.
        """
        ends = _INT_ENDS.get(self.dtype)
        if not self.quantized or ends is None:
            return None
        return ((ends[0] - self.zero_point) * self.scale, (ends[1] - self.zero_point) * self.scale)

    def __str__(self) -> str:
        dims = "[" + ", ".join("?" if d is None else str(d) for d in self.shape) + "]"
        q = f" (scale {self.scale:.6g}, zero point {self.zero_point})" if self.quantized else ""
        return f"{self.name} {self.dtype} {dims}{q}"


@dataclass
class TfliteModel:
    """What the flatbuffer says, before any interpreter sees it."""

    inputs: list[TensorDesc]
    outputs: list[TensorDesc]
    ops: dict[str, int]  # op name -> count over every subgraph
    operator_count: int
    subgraph_count: int
    unsafe: list[str] = field(default_factory=list)  # custom and Flex ops, each described
    description: str = ""
    version: int = 0
    class_counts: dict[str, int] = field(default_factory=dict)  # class-id output -> its ARG_MAX's classes


def _schema() -> Any:
    try:
        from ai_edge_litert import schema_py_generated as schema
    except ImportError:
        from ..core.errors import MissingDependency
        raise MissingDependency("running a .tflite model needs the ai-edge-litert package "
                                "(pip install 'ai-edge-litert>=2.3,<2.4')") from None
    return schema


def _op_names(schema: Any) -> dict[int, str]:
    return {v: k for k, v in vars(schema.BuiltinOperator).items() if not k.startswith("_") and isinstance(v, int)}


def _tensor(sg: Any, index: int) -> TensorDesc:
    t = sg.Tensors(index)
    sig = t.ShapeSignatureAsNumpy() if t.ShapeSignatureLength() else t.ShapeAsNumpy()
    shape = tuple(None if int(d) < 0 else int(d) for d in (sig if not isinstance(sig, int) else []))
    scale, zp = 0.0, 0
    q = t.Quantization()
    if q is not None and q.ScaleLength():
        scale = float(q.Scale(0))
        zp = int(q.ZeroPoint(0)) if q.ZeroPointLength() else 0
    name = (t.Name() or b"").decode("utf-8", "replace")
    return TensorDesc(name, _TYPES.get(t.Type(), f"type{t.Type()}"), shape, scale, zp)


def read_tflite(data: bytes, path: str) -> TfliteModel:
    """Parse and describe; any malformation is one ModelError line naming the file."""
    if not is_tflite_bytes(data[:8]):
        raise ModelError(f"{path} is not a valid .tflite model (no TFL3 flatbuffer identifier: "
                         f"truncated, corrupt, or another format)")
    schema = _schema()
    try:
        model = schema.Model.GetRootAsModel(data, 0)
        names = _op_names(schema)
        codes = []
        for i in range(model.OperatorCodesLength()):
            oc = model.OperatorCodes(i)
            code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
            custom = (oc.CustomCode() or b"").decode("utf-8", "replace")
            codes.append((code, custom))
        ops: Counter = Counter()
        unsafe: list[str] = []
        count = 0
        for s in range(model.SubgraphsLength()):
            sg = model.Subgraphs(s)
            for j in range(sg.OperatorsLength()):
                code, custom = codes[sg.Operators(j).OpcodeIndex()]
                name = custom if code == CUSTOM else names.get(code, f"BUILTIN_{code}")
                ops[name] += 1
                count += 1
                if code == CUSTOM:
                    text = describe_unsafe(custom)
                    if text not in unsafe:
                        unsafe.append(text)
        if model.SubgraphsLength() == 0:
            raise ModelError(f"{path} holds no subgraph (empty or corrupt .tflite)")
        main = model.Subgraphs(0)
        inputs = [_tensor(main, main.Inputs(i)) for i in range(main.InputsLength())]
        outputs = [_tensor(main, main.Outputs(i)) for i in range(main.OutputsLength())]
        counts = {}
        for i, out in enumerate(outputs):
            n = _argmax_classes(model, main, main.Outputs(i), codes, names)
            if n is not None:
                counts[out.name] = n
        desc = (model.Description() or b"").decode("utf-8", "replace")
        version = int(model.Version())
    except ModelError:
        raise
    except Exception as exc:  # struct.error, IndexError, UnicodeError: a damaged flatbuffer
        detail = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
        raise ModelError(f"{path} is not a valid .tflite model (truncated or corrupt?): {detail}") from None
    return TfliteModel(inputs=inputs, outputs=outputs, ops=dict(sorted(ops.items(), key=lambda kv: (-kv[1], kv[0]))),
                       operator_count=count, subgraph_count=model.SubgraphsLength(), unsafe=unsafe,
                       description=desc, version=version, class_counts=counts)


def _argmax_classes(model: Any, sg: Any, tensor: int, codes: list, names: dict[int, str]) -> int | None:
    """The classes a class-id output chooses from: its ARG_MAX input's length on the reduced axis."""
    producer = {}
    for j in range(sg.OperatorsLength()):
        op = sg.Operators(j)
        for o in op.OutputsAsNumpy() if op.OutputsLength() else []:
            producer[int(o)] = op
    for _ in range(32):
        op = producer.get(tensor)
        if op is None or not op.InputsLength():
            return None
        code, _custom = codes[op.OpcodeIndex()]
        name = names.get(code, "")
        if name in ("ARG_MAX", "ARG_MIN") and op.InputsLength() == 2:
            shape = _tensor(sg, int(op.Inputs(0))).shape
            axis_t = sg.Tensors(int(op.Inputs(1)))
            raw = model.Buffers(axis_t.Buffer()).DataAsNumpy() if axis_t.Buffer() < model.BuffersLength() else 0
            if isinstance(raw, int) or len(raw) not in (4, 8):
                return None
            axis = int(raw.view("<i4" if len(raw) == 4 else "<i8")[0])
            return shape[axis] if -len(shape) <= axis < len(shape) else None
        if name not in _PASS_THROUGH:
            return None
        tensor = int(op.Inputs(0))
    return None


@dataclass(frozen=True)
class OpNode:
    """One operator of the main subgraph: its builtin name and the names of its tensors."""

    op: str
    inputs: tuple[str, ...]
    outputs: tuple[str, ...]


def op_graph(data: bytes) -> list[OpNode]:
    """The main subgraph's operators in execution order (quantize's fallback walks producers/consumers)."""
    schema = _schema()
    model = schema.Model.GetRootAsModel(data, 0)
    names = _op_names(schema)
    sg = model.Subgraphs(0)

    def tname(i: int) -> str:
        return (sg.Tensors(i).Name() or b"").decode("utf-8", "replace") if i >= 0 else ""

    ops = []
    for j in range(sg.OperatorsLength()):
        op = sg.Operators(j)
        oc = model.OperatorCodes(op.OpcodeIndex())
        code = max(int(oc.BuiltinCode()), int(oc.DeprecatedBuiltinCode()))
        ins = tuple(tname(int(i)) for i in (op.InputsAsNumpy() if op.InputsLength() else []))
        outs = tuple(tname(int(i)) for i in (op.OutputsAsNumpy() if op.OutputsLength() else []))
        ops.append(OpNode(names.get(code, f"BUILTIN_{code}"), ins, outs))
    return ops


def describe_unsafe(custom_code: str) -> str:
    if custom_code.startswith("Flex"):
        return (f"{custom_code}: a TensorFlow (Flex) op, run by TensorFlow's own kernels "
                f"(file, Python and network ops among them)")
    return f"{custom_code or '(unnamed)'}: a custom op, run by code outside LiteRT's builtin kernels"


def check_safety(model: TfliteModel, path: str, allow_unsafe: bool) -> tuple[str, ...]:
    """Refuse custom/Flex ops (one line naming them) unless allowed; return what was found."""
    if model.unsafe and not allow_unsafe:
        shown = "; ".join(model.unsafe[:3])
        more = f"; and {len(model.unsafe) - 3} more" if len(model.unsafe) > 3 else ""
        raise ModelError(f"unsafe op(s) in {path}: {shown}{more} (pass --allow-unsafe-ops to run it anyway)")
    return tuple(model.unsafe)
