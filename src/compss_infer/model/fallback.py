"""Post-training int8 quantization with accuracy-aware fallback: calibrate once, then build candidates.

``Calibrated`` runs TensorFlow's converter once in calibrate-only mode (through
``tf.lite.experimental.QuantizationDebugger``, the public door to it), then makes an int8 model
(int8 input) with any set of ops kept in float (``denylisted_nodes``) in about a second.

Ranking (``sensitivity``): each op is kept in float alone and the candidate runs on calibration
images; what counts is how much of fp32's top-1 margin it gives back.  Measured, because per-op
noise does not say how it grows downstream (issue 17: MobileNet v1's first layers).  When no op
helps measurably on its own, the debugger's noise ranking (``ranking``) orders the rest: per channel
noise-to-signal ratio, because per-tensor activation ranges are what int8 gets wrong (one outlier
channel widens the range until the other channels round to nothing, while a whole-tensor measure,
dominated by the outlier itself, looks fine), each op charged with what it adds to its inputs' noise.

Keeping a tensor in float means keeping its producer *and* its consumers in float: a float producer
whose output is re-quantized for an int8 consumer suffers the same rounding.  ``float_set`` does that.
When the op writing the model's output stays in float, the output is float32 (a re-quantized softmax
would bring back its 1/256 steps and the ties they make).
"""
from __future__ import annotations

import contextlib
import warnings
from dataclasses import dataclass
from typing import Any, Callable, Iterator

import numpy as np

from ..core.errors import ModelError
from .quiet import quiet_stderr
from .tflite_audit import op_graph, read_tflite

RANK_IMAGES = 32  # calibration images the debugger's noise ranking runs on
SENSITIVITY_IMAGES = 256  # calibration images each op's float twin is measured on
GROWTH = 1.35  # tensors added per step: 1, 1, 1, 2, 2, 3, 4, ... (a few at a time, more as the list gets long)
MAX_CANDIDATES = 64  # ops whose float twin is tried one by one; past this, the debugger's noisiest


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


def margin_lost(out: np.ndarray, reference: np.ndarray) -> float:
    """Mean over images of how much of fp32's top-1 margin (its top score minus the runner-up's) int8 lost.

    A top-1 answer flips when that margin is gone, so this is the smooth measure of what the check
    counts; rounding of small scores that decide nothing barely moves it.
    """
    rows = np.arange(len(reference))
    top = reference.argmax(1)

    def margin(p: np.ndarray) -> np.ndarray:
        q = np.array(p, np.float64)
        best = q[rows, top]
        q[rows, top] = -np.inf
        return best - q.max(1)
    return float(np.mean(np.maximum(0.0, margin(reference) - margin(out)))) if reference.shape[1] > 1 else 0.0


def sensitivity(cal: Calibrated, outputs: Callable[[bytes], np.ndarray], reference: np.ndarray,
                chosen: list[str], say: Callable[[str], None]) -> list[str]:
    """Op outputs by what keeping each in float (besides ``chosen``) gives back: the margin lost now minus
    the margin lost with it in float, on calibration images; best first, gains above zero only.

    Measured, because the debugger's per-op noise does not say how it grows downstream: an early
    layer's small error can flip more answers than a late layer's large one.  Past MAX_CANDIDATES
    ops, only the ones the debugger finds noisiest are tried.
    """
    now = [o.tensor for o in cal.float_set(chosen)]
    base = margin_lost(outputs(cal.model(now)), reference)
    names = [out for op in cal.ops for out in op.outputs[:1] if out not in now]
    if len(names) > MAX_CANDIDATES:
        names = [t for t, _ in cal.ranking(now)][:MAX_CANDIDATES]
    say(f"measuring what keeping each of {len(names)} ops in float gives back (the model now loses "
        f"{base:.4f} of fp32's top-1 margin on {len(reference)} calibration images)")
    gains, seen = [], {tuple(now)}
    for t in names:
        ops = tuple(o.tensor for o in cal.float_set(chosen + [t]))
        if ops in seen:
            continue
        seen.add(ops)
        gain = base - margin_lost(outputs(cal.model(list(ops))), reference)
        if gain > 0:
            gains.append((t, gain))
    return [t for t, _ in sorted(gains, key=lambda kv: -kv[1])]


def search(cal: Calibrated, outputs: Callable[[bytes], np.ndarray], reference: np.ndarray,
           measure: Callable[[bytes], tuple[Any, Any]], target: float, say: Callable[[str], None]) -> Found | None:
    """Keep op outputs in float, a few more each step, until the check's lower bound reaches ``target``.

    The order is measured (``sensitivity``); when no op left helps measurably on its own, it is
    measured again around what is already float, and when still none does, the debugger's noisiest
    come next and then every op left: the search ends only on a passing model or an all-float one.
    ``measure(blob) -> (Verification, predictor)`` runs the check.
    """
    found = None
    chosen: list[str] = []
    queue: list[str] = []
    remeasured = False
    take = 1.0
    while True:
        if not queue:
            float_now = [o.tensor for o in found.float_ops] if found else []
            if not remeasured or not chosen:
                queue = [t for t in sensitivity(cal, outputs, reference, chosen, say) if t not in float_now]
                remeasured = bool(chosen)
            if not queue:
                rest = [t for t, _ in cal.ranking(float_now)] + [out for op in cal.ops for out in op.outputs[:1]]
                queue = list(dict.fromkeys(t for t in rest if t not in float_now and t not in chosen))
            if not queue:
                break
        chosen += queue[:int(take)]
        queue = queue[int(take):]
        take *= GROWTH
        ops = cal.float_set(chosen)
        if found is not None and ops == found.float_ops:
            continue
        ver, predictor = measure(blob := cal.model([o.tensor for o in ops]))
        found = Found(blob, ops, ver, predictor)
        say(f"keeping {len(ops)} ops in float: {ver.line()}")
        if ver.lower_bound >= target:
            break
    return found
