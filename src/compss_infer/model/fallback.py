"""Post-training int8 quantization with accuracy-aware fallback: calibrate once, then build candidates.

``Calibrated`` runs TensorFlow's converter once in calibrate-only mode (through
``tf.lite.experimental.QuantizationDebugger``, the public door to it), then makes an int8 model
(int8 input and output) with any set of ops kept in float (``denylisted_nodes``) in about a second.

Ranking: the debugger's instrumented model runs each quantized op beside its float twin on the same
inputs; for every op output we measure the noise-to-signal ratio *per channel* and average it over
channels.  Per channel, because per-tensor activation ranges are what int8 gets wrong: one outlier
channel widens the range until the other channels round to nothing, while a whole-tensor error
measure (dominated by the outlier itself) looks fine.

The model's output comes first when the int8 scores tied on the check: the op writing it (a softmax)
is then kept in float and the output is float32, which no rounding to 1/256 can tie.

Keeping a tensor in float means keeping its producer *and* its consumers in float: a float producer
whose output is re-quantized for an int8 consumer suffers the same rounding.  ``float_set`` does that.
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from ..errors import ModelError
from .quiet import quiet_stderr
from .tflite_audit import op_graph, read_tflite

RANK_IMAGES = 32  # calibration images the ranking runs on
GROWTH = 1.35  # tensors added per step: 1, 1, 1, 2, 2, 3, 4, ... (a few at a time, more as the list gets long)
MAX_STEPS = 40


@contextlib.contextmanager
def _quiet() -> Iterator[None]:
    """TensorFlow's converter chatter and tf.lite.Interpreter's deprecation warnings kept off the terminal."""
    with quiet_stderr(), warnings.catch_warnings():
        warnings.simplefilter("ignore")
        yield


def per_channel_nsr(float_value: np.ndarray, quant_value: np.ndarray, scale: float, zero_point: int) -> float:
    """Mean over channels of quantization-noise energy / signal energy (channels with no signal skipped)."""
    f = np.asarray(float_value, np.float64)
    q = (np.asarray(quant_value).astype(np.int32) - zero_point) * float(scale)
    c = f.shape[-1] if f.ndim else 1
    f, q = f.reshape(-1, c), q.reshape(-1, c)
    signal = np.sum(f * f, axis=0)
    noise = np.sum((q - f) ** 2, axis=0)
    live = signal > 1e-12 * max(float(signal.max()), 1e-30)
    if not np.any(live):
        return 0.0
    return float(np.mean(np.minimum(noise[live] / signal[live], 1.0)))


@dataclass(frozen=True)
class FloatOp:
    """One op kept in float: its builtin name and the tensor it writes."""

    op: str
    tensor: str

    def __str__(self) -> str:
        return f"{self.op} {self.tensor}"


class Calibrated:
    """A frozen graph calibrated once; ``model(denylist)`` gives int8 models with ops kept in float."""

    def __init__(self, model_path: str, input_name: str, output_name: str, calibration: np.ndarray):
        from .session import import_tf
        tf = self.tf = import_tf()
        self.calibration = calibration

        conv = tf.compat.v1.lite.TFLiteConverter.from_frozen_graph(
            model_path, [input_name.split(":")[0]], [output_name.split(":")[0]])
        conv.optimizations = [tf.lite.Optimize.DEFAULT]
        conv.representative_dataset = self._representative
        conv.target_spec.supported_ops = [tf.lite.OpsSet.TFLITE_BUILTINS_INT8]
        try:
            with _quiet():
                self.debugger = tf.lite.experimental.QuantizationDebugger(converter=conv,
                                                                          debug_dataset=self._ranking_data)
            self.ops = op_graph(self.debugger.calibrated_model)
            self.output_tensor = read_tflite(self.debugger.calibrated_model, model_path).outputs[0].name
            self.full = self.model([])  # the ops with no int8 kernel show here, before any search
        except ModelError:
            raise
        except Exception as exc:  # ConverterError: an op with no int8 kernel, and such
            text = " ".join(str(exc).split())
            raise ModelError(f"cannot quantize {model_path}: {text[:300]}") from None

    def _representative(self) -> Iterator[list[np.ndarray]]:
        for i in range(len(self.calibration)):
            yield [self.calibration[i:i + 1]]

    def _ranking_data(self) -> Iterator[list[np.ndarray]]:
        idx = np.linspace(0, len(self.calibration) - 1, min(RANK_IMAGES, len(self.calibration))).round().astype(int)
        for i in idx:
            yield [self.calibration[i:i + 1]]

    def model(self, denylist: list[str]) -> bytes:
        """int8 weights and activations, int8 input; the ``denylist`` tensors' ops in float.

        The output is int8 unless the op writing it is kept in float: then float32 (re-quantizing a
        float softmax would bring back its steps of 1/256 and the ties they make).
        """
        from tensorflow.lite.python import convert  # the debugger's own route to the MLIR quantizer
        tf = self.tf
        float_out = self.output_tensor in denylist  # "fully" quantized would re-quantize the output
        with _quiet():
            return convert.mlir_quantize(self.debugger.calibrated_model, fully_quantize=not float_out,
                                         input_data_type=tf.int8,
                                         output_data_type=tf.float32 if float_out else tf.int8,
                                         denylisted_nodes=list(denylist) or None)

    def ranking(self, denylist: list[str] = ()) -> list[tuple[str, float]]:
        """Quantized op outputs, worst first: (tensor name, per-channel noise-to-signal ratio).

        Measured on the model with ``denylist`` already in float, so an error that only shows once an
        upstream one is gone (everything downstream of a wiped-out tensor looks clean) is seen next time.
        """
        from tensorflow.lite.python import convert
        tf = self.tf
        with _quiet():
            debug_model = convert.mlir_quantize(self.debugger.calibrated_model, enable_numeric_verify=True,
                                                enable_whole_model_verify=True,
                                                denylisted_nodes=list(denylist) or None)
            options = tf.lite.experimental.QuantizationDebugOptions(
                layer_direct_compare_metrics={"nsr": per_channel_nsr})
            try:
                dbg = tf.lite.experimental.QuantizationDebugger(quant_debug_model_content=debug_model,
                                                                debug_dataset=self._ranking_data, debug_options=options)
            except ValueError:  # no quantized op left to verify
                return []
            dbg.run()
        # a NumericVerify op reads (quantized output, float twin's output); the twin keeps the calibrated name
        twin = {op.outputs[0]: op.inputs[1] for op in op_graph(debug_model)
                if op.outputs and op.outputs[0].startswith("NumericVerify/") and len(op.inputs) == 2}
        known = {name for op in self.ops for name in op.outputs} - set(denylist)
        damage = {}
        for key, metrics in dbg.layer_statistics.items():
            value = float(metrics.get("nsr", 0.0))
            damage[twin.get(key, key)] = value if np.isfinite(value) else 1.0
        scored = []
        for op in self.ops:  # the damage an op adds: its output's, less the worst its inputs brought
            for name in op.outputs:
                if name in known and name in damage:
                    added = damage[name] - max([damage.get(i, 0.0) for i in op.inputs] or [0.0])
                    if added > 0:
                        scored.append((name, added))
        # equal scores (a wiped-out tensor saturates at 1.0, and so may what follows it): upstream first,
        # since an error flows downstream and the first one is the cause
        order = {out: i for i, op in enumerate(self.ops) for out in op.outputs}
        return sorted(scored, key=lambda kv: (-round(kv[1], 3), order[kv[0]]))

    def float_set(self, tensors: list[str]) -> list[FloatOp]:
        """The ops to keep in float so that each of ``tensors`` stays float: producer and consumers."""
        chosen: dict[str, str] = {}
        for t in tensors:
            for op in self.ops:
                if t in op.outputs or t in op.inputs:
                    for out in op.outputs:
                        chosen.setdefault(out, op.op)
        order = {out: i for i, op in enumerate(self.ops) for out in op.outputs}
        return [FloatOp(op, t) for t, op in sorted(chosen.items(), key=lambda kv: order[kv[0]])]


@dataclass
class Found:
    """The fallback's outcome: the last model tried, what it keeps in float, and its check."""

    blob: bytes
    float_ops: list[FloatOp]
    verification: Any  # quantcheck.Verification
    predictor: Any


def search(cal: Calibrated, measure: Callable[[bytes], tuple[Any, Any]], target: float,
           say: Callable[[str], None], output_first: bool) -> Found | None:
    """Keep the noisiest op outputs in float, a few more each step, re-ranked each step, until the
    check's lower bound reaches ``target`` or nothing quantized is left to blame.

    ``measure(blob) -> (Verification, predictor)``; ``output_first``: the check saw tied int8 scores,
    so the output op goes first (a float32 output cannot tie on a 1/256 step).
    """
    chosen: list[str] = []
    found = None
    take = 1.0
    for _ in range(MAX_STEPS):
        ranked = [t for t, _ in cal.ranking([o.tensor for o in found.float_ops] if found else [])]
        if output_first and cal.output_tensor not in chosen:
            ranked = [cal.output_tensor] + [t for t in ranked if t != cal.output_tensor]
        ranked = [t for t in ranked if t not in chosen]
        if not ranked:
            break
        chosen += ranked[:int(take)]
        take *= GROWTH
        ops = cal.float_set(chosen)
        blob = cal.model([o.tensor for o in ops])
        ver, predictor = measure(blob)
        found = Found(blob, ops, ver, predictor)
        say(f"keeping {len(ops)} ops in float: {ver.line()}")
        if ver.lower_bound >= target:
            break
    return found
