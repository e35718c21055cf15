"""The LiteRT backend: a ``.tflite`` model in ``ai_edge_litert``'s interpreter.  No TensorFlow.

Loading audits the flatbuffer (custom/Flex ops refused), checks the tensors against the
preprocessing, builds the interpreter with an explicit thread count (LiteRT's default is one) and
its default delegate, XNNPACK, and warms up.  Batches of any size are accepted: a dynamic batch
dimension is resized to the batch, a fixed one is fed in padded slices.

Integer (quantized) inputs: the worker hands over the decoded uint8 pixels, and each is mapped
through a 256-entry table per channel holding exactly what quantizing its normalized value gives
(``input_table``: the same float32 normalization as ``run``, then LiteRT's rounding, half away from
zero).  Where that table is the pixel itself or the pixel minus 128 (``mean 0, std 255``, scale
1/255, zero point -128), the feed is the pixels as they are or with their top bit flipped;
anything else (MobileNet's ``mean = std = 127.5``: zero point -1, so the exact value is pixel - 128.5,
rounded) goes through the table.  Quantized outputs are dequantized to float.
"""
from __future__ import annotations

import hashlib
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any, Sequence

import numpy as np

from ...core.contracts import ModelInfo, WorkerSpec
from ...core.errors import ConfigError, ModelError
from ..graph import input_layout
from ..session import resolve_threads
from ..batching import auto_batch
from ..batching import run_in_slices
from ..quiet import quiet_stderr
from ..tflite_audit import TensorDesc, TfliteModel, check_safety, read_tflite

_MODE_CHANNELS = {"L": 1, "RGB": 3, "BGR": 3}
_INT_RANGE = {"uint8": (0, 255), "int8": (-128, 127), "int16": (-32768, 32767)}


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return " ".join(text.splitlines()[0].split()) if text else type(exc).__name__


def _same_name(given: str, actual: str) -> bool:
    return given == actual or given == actual + ":0" or given.removesuffix(":0") == actual.removesuffix(":0")


def _pick(tensors: list[TensorDesc], wanted: str | None, what: str, path: str) -> int:
    if wanted:
        for i, t in enumerate(tensors):
            if _same_name(wanted, t.name):
                return i
        raise ModelError(f"model.{what}: no {what} tensor {wanted!r} in {path} (it has "
                         + ", ".join(str(t) for t in tensors) + ")")
    if len(tensors) == 1:
        return 0
    raise ModelError(f"cannot tell the {what}: set model.{what} to one of " + ", ".join(str(t) for t in tensors))


def input_table(pre: Any, channels: int, x: TensorDesc) -> np.ndarray:
    """(1 or channels, 256) int32: the exact quantized input for every pixel value of every channel.

    The normalization is ``preprocess.normalize`` itself (float32: the value the fp32 graph sees);
    the quantization is ``round(v / scale) + zero_point`` with the flatbuffer's scale, computed in
    float64 (so float32 noise never decides a rounding), half away from zero as LiteRT rounds, and
    clipped to the type's range.  With ``mean = std = 127.5`` and scale 1/127.5 (stored as float32,
    a hair above), pixel 255 is 126 and pixel 0 is -128, where ``pixel - 128`` would give 127 and -128.
    """
    from ...images.preprocess import normalize
    lo, hi = _INT_RANGE[x.dtype]
    n = channels if (len(pre.mean) > 1 or len(pre.std) > 1) else 1
    pixels = np.repeat(np.arange(256, dtype=np.uint8)[:, None], n, axis=1)
    v = normalize(pixels, pre, np.dtype(np.float32))
    t = v.astype(np.float64) / x.scale  # float64: the nearest grid point to the float32 value, ties decided exactly
    q = np.trunc(t + np.copysign(0.5, t)) + x.zero_point
    return np.clip(q, lo, hi).astype(np.int32).T.copy()


def _concrete_shape(x: TensorDesc, info: ModelInfo) -> list[int] | None:
    """The input shape to allocate when the model leaves a dimension open (None when all are fixed).

    Height, width and channels come from ``preprocess.size``/mode (checked by ``_analyze``); an open
    batch dimension starts at 1 and follows each batch later (``_run``).
    """
    if all(d is not None for d in x.shape):
        return None
    batch = info.fixed_batch or 1
    if info.input_kind == "image":
        return [batch, info.height, info.width, info.channels]
    if info.input_kind == "unbatched":
        return [info.height, info.width, info.channels]
    if info.input_kind == "flat":
        return [batch, info.height * info.width * info.channels]
    return None


class LiteRTPredictor:
    """A ``.tflite`` model ready to run batches; implements ``model.protocol.Predictor``."""

    def __init__(self, spec: WorkerSpec, data: bytes):
        started = time.perf_counter()
        self.spec = spec
        path = spec.model.path
        self.model_id = hashlib.sha256(data).hexdigest()[:16]
        if spec.session.device == "gpu":
            raise ConfigError("session.device=gpu: .tflite models run on the CPU (LiteRT with XNNPACK)")
        if spec.model.feeds:
            raise ConfigError("model.feeds does not apply to a .tflite model (it has one image input)")
        model = read_tflite(data, path)
        unsafe = check_safety(model, path, spec.model.allow_unsafe_ops)
        x = model.inputs[_pick(model.inputs, spec.model.input, "input", path)] if model.inputs else None
        if x is None or len(model.inputs) != 1:
            raise ModelError(f"{path}: expected one image input, found {len(model.inputs)}")
        y_index = _pick(model.outputs, spec.model.output, "output", path)
        y = model.outputs[y_index]
        info = self._analyze(model, x, y)
        _, self.threads = resolve_threads(spec.session, spec.default_threads)
        self._interp = self._make_interpreter(data, path, _concrete_shape(x, info))
        self._in = self._interp.get_input_details()[0]["index"]
        self._out = self._interp.get_output_details()[y_index]["index"]
        self._x, self._y = x, y
        self._dynamic = x.shape and x.shape[0] is None and info.input_kind in ("image", "flat")
        self._rows = None  # the batch size the interpreter is allocated for
        self._feed_dtype, self._table, self._fast = self._input_plan(x)
        batch = spec.batch_size or auto_batch(info.height, info.width, info.channels, info.fixed_batch, False)
        self.info = ModelInfo(**{**info.__dict__, "unsafe_ops": unsafe, "batch_size": batch})
        self.decoder = ThreadPoolExecutor(max_workers=max(1, spec.decode_threads),
                                          thread_name_prefix="compss-infer-decode")
        self._warm_up()
        self.load_s = time.perf_counter() - started

    # ------------------------------------------------------------------ loading
    def _make_interpreter(self, data: bytes, path: str, shape: list[int] | None) -> Any:
        """The interpreter, its input resized to ``shape`` (the size the run feeds) before allocation."""
        from ai_edge_litert.interpreter import Interpreter
        try:
            with quiet_stderr():
                interp = Interpreter(model_content=data, num_threads=self.threads)  # XNNPACK: the default
                if shape is not None:  # dynamic height/width: XNNPACK cannot plan a 1x1 placeholder shape
                    interp.resize_tensor_input(interp.get_input_details()[0]["index"], shape, strict=False)
                interp.allocate_tensors()
        except (ValueError, RuntimeError) as exc:
            raise ModelError(f"LiteRT cannot load {path}: {_first_line(exc)}") from None
        return interp

    def _analyze(self, model: TfliteModel, x: TensorDesc, y: TensorDesc) -> ModelInfo:
        """The same input/output rules as the GraphDef backend (graph.analyze), on flatbuffer tensors."""
        pre = self.spec.preprocess
        if x.dtype not in ("float32", "uint8", "int8"):
            raise ModelError(f"input {x}: expected a float32 image tensor or a quantized uint8/int8 one")
        if x.dtype != "float32" and not x.quantized and x.dtype != "uint8":
            raise ModelError(f"input {x}: an int8 input needs quantization parameters")
        kind, fixed = input_layout(x.dtype, x.shape)
        want_c = _MODE_CHANNELS[pre.mode]
        if kind in ("image", "unbatched"):
            gh, gw, gc = x.shape[-3:]
            if gc is not None and gc != want_c:
                raise ModelError(f"input {x} wants {gc} channels but preprocess.mode={pre.mode} gives {want_c}")
            if pre.size is not None and ((gh is not None and gh != pre.size[0]) or (gw is not None and gw != pre.size[1])):
                raise ModelError(f"preprocess.size {list(pre.size)} does not match input {x}")
            height, width = (pre.size if pre.size else (gh, gw))
            if height is None or width is None:
                raise ConfigError(f"preprocess.size is needed: input {x} has no fixed height/width")
        elif kind == "flat":
            if pre.size is None:
                raise ConfigError(f"preprocess.size is needed: input {x} is a flat vector")
            height, width = pre.size
            if x.shape[1] is not None and x.shape[1] != height * width * want_c:
                raise ModelError(f"input {x} wants {x.shape[1]} values per image but preprocess gives "
                                 f"{height}x{width}x{want_c}")
        else:
            raise ModelError(f"input {x}: expected [batch, height, width, channels]")
        if (len(pre.mean) == 3 or len(pre.std) == 3) and want_c == 1:
            raise ConfigError("preprocess.mean/std have 3 values but preprocess.mode=L has one channel")
        if x.dtype == "uint8" and not x.quantized and (any(pre.mean) or any(s != 1 for s in pre.std)):
            raise ConfigError(f"input {x} takes raw uint8 pixels: remove preprocess.mean/std")
        top_k = self.spec.top_k
        if y.dtype in ("float32", "float16") or (y.dtype in _INT_RANGE and y.quantized):
            out_kind = "scores"
            num_classes = y.shape[-1] if y.shape else None
            if num_classes is not None and top_k > num_classes:
                raise ConfigError(f"run.top_k={top_k} exceeds the model's {num_classes} classes")
        elif y.dtype in ("int32", "int64"):
            out_kind, num_classes = "class_id", model.class_counts.get(y.name)
            if top_k > 1:
                raise ConfigError(f"run.top_k={top_k} needs a model that outputs scores; {y} gives class ids")
        else:
            raise ModelError(f"output {y}: expected float or quantized scores, or integer class ids")
        return ModelInfo(input_name=x.name, input_dtype=x.dtype, input_shape=x.shape, input_kind=kind,
                         output_name=y.name, output_dtype=y.dtype, output_shape=y.shape, output_kind=out_kind,
                         fixed_batch=fixed, num_classes=num_classes, height=height, width=width, channels=want_c,
                         node_count=model.operator_count, function_count=model.subgraph_count - 1,
                         device="cpu (LiteRT, XNNPACK)", input_range=x.float_range())

    def _input_plan(self, x: TensorDesc) -> tuple[np.dtype, np.ndarray | None, str | None]:
        """(dtype the worker hands over, per-channel table or None, fast path or None).  See the docstring."""
        if x.dtype == "float32":
            return np.dtype(np.float32), None, None
        if not x.quantized:  # raw uint8 pixels
            return np.dtype(np.uint8), None, "same"
        table = input_table(self.spec.preprocess, _MODE_CHANNELS[self.spec.preprocess.mode], x)
        pixels = np.arange(256)
        if x.dtype == "uint8" and np.all(table == pixels):
            return np.dtype(np.uint8), table, "same"
        if x.dtype == "int8" and np.all(table == pixels - 128):
            return np.dtype(np.uint8), table, "xor"
        return np.dtype(np.uint8), table.astype(x.dtype), None

    @property
    def input_dtype(self) -> np.dtype | None:
        return self._feed_dtype

    @property
    def tensors(self) -> tuple[TensorDesc, TensorDesc]:
        """(input, output) as the flatbuffer describes them, quantization included."""
        return self._x, self._y

    def _warm_up(self) -> None:
        n = self.info.fixed_batch or self.info.batch_size
        zeros = np.zeros((n, self.info.height, self.info.width, self.info.channels), dtype=self._feed_dtype)
        try:
            self.infer(zeros)
        except Exception as exc:
            raise ModelError(f"the model fails on a test batch: {_first_line(exc)}") from None

    # ------------------------------------------------------------------ running
    def _quantize(self, batch: np.ndarray) -> np.ndarray:
        x = self._x
        if x.dtype == "float32":
            return np.asarray(batch, dtype=np.float32)
        if self._fast == "same":
            return np.asarray(batch, dtype=np.uint8)
        if self._fast == "xor":
            return np.bitwise_xor(batch, np.uint8(0x80)).view(np.int8)  # p - 128, no widening
        table = self._table
        if len(table) == 1 or batch.shape[-1] == 1:
            return table[0][batch]
        out = np.empty(batch.shape, dtype=x.dtype)
        for c in range(batch.shape[-1]):
            out[..., c] = table[c][batch[..., c]]
        return out

    def _run(self, value: np.ndarray) -> np.ndarray:
        it = self._interp
        if self._dynamic and self._rows != len(value):
            it.resize_tensor_input(self._in, list(value.shape), strict=False)
            it.allocate_tensors()
            self._rows = len(value)
        it.set_tensor(self._in, value)
        it.invoke()
        out = it.get_tensor(self._out)
        y = self._y
        if y.quantized and y.dtype in _INT_RANGE:
            out = (out.astype(np.float32) - y.zero_point) * np.float32(y.scale)
        return out

    def infer(self, batch: np.ndarray | Sequence[bytes]) -> np.ndarray:
        """Outputs ``(n, ...)`` for n images (the dtype ``input_dtype`` says)."""
        batch = np.asarray(batch)
        n = len(batch)
        kind = self.info.input_kind
        x = self._quantize(batch)
        if kind == "flat":
            x = x.reshape(n, -1)
        if kind == "unbatched":
            return np.stack([self._run(item) for item in x])
        fixed = self.info.fixed_batch
        if self._dynamic or fixed == n:
            return self._run(x)
        return run_in_slices(self._run, x, fixed, self.info.output_name)

    def close(self) -> None:
        self.decoder.shutdown(wait=False, cancel_futures=True)
        self._interp = None
