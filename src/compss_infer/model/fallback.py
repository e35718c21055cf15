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
from typing import Any, Iterator

import numpy as np

from ..errors import ModelError
from .quiet import quiet_stderr
from .tflite_audit import op_graph, read_tflite

RANK_IMAGES = 32  # calibration images the ranking runs on
STEPS = (1, 2, 3, 4, 6, 8, 11, 16, 23, 32, 45, 64, 90, 128)  # worst tensors kept in float, step by step


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

    def ranking(self) -> list[tuple[str, float]]:
        """Op outputs, worst first: (tensor name, per-channel noise-to-signal ratio), zero-error ones left out."""
        tf = self.tf
        with _quiet():
            debug_model = self.debugger.get_debug_quantized_model()
            options = tf.lite.experimental.QuantizationDebugOptions(
                layer_direct_compare_metrics={"nsr": per_channel_nsr})
            dbg = tf.lite.experimental.QuantizationDebugger(quant_debug_model_content=debug_model,
                                                            debug_dataset=self._ranking_data, debug_options=options)
            dbg.run()
        # a NumericVerify op reads (quantized output, float twin's output); the twin keeps the calibrated name
        twin = {op.outputs[0]: op.inputs[1] for op in op_graph(debug_model)
                if op.outputs and op.outputs[0].startswith("NumericVerify/") and len(op.inputs) == 2}
        known = {name for op in self.ops for name in op.outputs}
        scored = []
        for key, metrics in dbg.layer_statistics.items():
            name = twin.get(key, key)
            value = float(metrics.get("nsr", 0.0))
            if name in known and value > 0 and np.isfinite(value):
                scored.append((name, value))
        return sorted(scored, key=lambda kv: -kv[1])

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
