"""TensorFlow session settings: quiet import, thread counts, optimizer level, XLA JIT, device.

Worker-side only: nothing here runs in a master that does not itself run TensorFlow.
"""
from __future__ import annotations

import importlib
import os
import sys
import tempfile
from typing import Any

from ..core.specs import SessionSpec
from ..core.errors import ConfigError


def import_tf(quiet: bool = True, keras: bool = False) -> Any:
    """Import TensorFlow once, with its start-up chatter (oneDNN, absl) kept off stderr.

    The C++ logging ignores TF_CPP_MIN_LOG_LEVEL for some lines, so stderr is redirected at the
    file-descriptor level around the import; on failure the captured text is shown.

    ``keras=False`` (inference): ``import tensorflow`` eagerly imports all of Keras (and through it
    scikit-learn and SciPy when installed), about a third of its import time, which a frozen graph
    never needs.  Keras is hidden during the import and stays loadable: ``tf.keras`` still imports
    it on first use.  ``keras=True`` (freezing, training) also runs the eager Keras load TensorFlow
    does itself, which registers Keras objects for SavedModel loading.
    """
    if "tensorflow" in sys.modules:
        tf = sys.modules["tensorflow"]
        if keras:
            _load_keras()
        return tf
    hide_keras = not keras and "keras" not in sys.modules
    if hide_keras:
        sys.modules["keras"] = None  # type: ignore[assignment]  # TensorFlow catches the ImportError
    try:
        tf = _import_quietly() if quiet else importlib.import_module("tensorflow")
    finally:
        if hide_keras and sys.modules.get("keras", 0) is None:
            del sys.modules["keras"]
    if keras:
        _load_keras()
    return tf


def _load_keras() -> None:
    try:
        importlib.import_module("keras.src.optimizers")
    except (ImportError, AttributeError):
        pass


def _import_quietly() -> Any:
    os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as capture:
        os.dup2(capture.fileno(), 2)
        try:
            import tensorflow as tf
        except BaseException:
            os.dup2(saved, 2)
            capture.seek(0)
            sys.stderr.write(capture.read().decode("utf-8", "replace"))
            raise
        finally:
            os.dup2(saved, 2)
            os.close(saved)
    tf.get_logger().setLevel("ERROR")
    try:
        import absl.logging
        absl.logging.set_verbosity(absl.logging.ERROR)
    except ImportError:  # pragma: no cover - absl ships with TF
        pass
    return tf


def resolve_threads(spec: SessionSpec, default_intra: int | None) -> tuple[int, int]:
    """(inter, intra) op threads.

    intra: the config's value, else COMPSS_NUM_THREADS (the task's computing units under COMPSs),
    else the engine's share of the cores (cores // workers), else all cores.
    inter: the config's value, else 1 (small inference graphs gain nothing from op parallelism,
    and it avoids oversubscribing cores shared with other workers).
    """
    intra = spec.intra_op_threads
    if intra is None:
        env = os.environ.get("COMPSS_NUM_THREADS", "")
        if env.strip().isdigit() and int(env) > 0:
            intra = int(env)
        elif default_intra:
            intra = default_intra
        else:
            intra = available_cpus()
    inter = spec.inter_op_threads if spec.inter_op_threads is not None else 1
    return inter, intra


def available_cpus() -> int:
    """CPUs this process may use: affinity mask, capped by a cgroup v2 CPU quota."""
    try:
        n = len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        n = os.cpu_count() or 1
    try:
        with open("/sys/fs/cgroup/cpu.max") as fh:
            quota, period = fh.read().split()[:2]
        if quota != "max":
            n = min(n, max(1, int(int(quota) // int(period))))
    except (OSError, ValueError):
        pass
    return max(1, n)


def config_proto(spec: SessionSpec, inter: int, intra: int) -> Any:
    """Build the ConfigProto for one session."""
    tf = import_tf()
    cfg = tf.compat.v1.ConfigProto(
        inter_op_parallelism_threads=inter,
        intra_op_parallelism_threads=intra,
        allow_soft_placement=True,
    )
    opts = cfg.graph_options.optimizer_options
    opts.opt_level = tf.compat.v1.OptimizerOptions.L0 if spec.opt_level == "L0" else tf.compat.v1.OptimizerOptions.L1
    opts.global_jit_level = tf.compat.v1.OptimizerOptions.ON_1 if spec.jit else tf.compat.v1.OptimizerOptions.OFF
    if spec.device == "gpu":
        cfg.gpu_options.allow_growth = True
    else:
        cfg.device_count["GPU"] = 0
    return cfg


def check_device(spec: SessionSpec) -> str:
    """Fail clearly when a GPU is asked for and TensorFlow sees none; return a device description."""
    if spec.device != "gpu":
        return "cpu"
    tf = import_tf()
    gpus = tf.config.list_physical_devices("GPU")
    if not gpus:
        built = "with" if tf.test.is_built_with_cuda() else "without"
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        hint = f"; CUDA_VISIBLE_DEVICES={visible!r}" if visible is not None else ""
        raise ConfigError(f"session.device=gpu but TensorFlow sees no GPU (TensorFlow built {built} CUDA{hint})")
    return f"gpu ({len(gpus)} visible: {os.environ.get('CUDA_VISIBLE_DEVICES', 'all')})"
