"""The per-worker-process model cache: the one piece of global state in compss-infer.

A worker (local pool process, PyCOMPSs executor, or the master itself for the sequential engine)
loads a model once and reuses it for every later chunk.  Which backend loads it (TensorFlow
GraphDef or LiteRT .tflite) is decided from the file by ``model.backends.load_predictor``.  The key
holds the model's identity (real path, size, mtime; for a TF1 checkpoint, its newest entry's files),
so a model file replaced on disk or a newer checkpoint is loaded afresh by the next chunk, and the
older predictor for that path is closed.
"""
from __future__ import annotations

import os
from collections import OrderedDict
from typing import Any

from ..core.contracts import WorkerSpec
from ..core.errors import ModelError
from .identity import model_identity

MAX_ENTRIES = 2
_CACHE: "OrderedDict[tuple[Any, ...], Any]" = OrderedDict()


def file_identity(path: str) -> tuple[str, int, int]:
    try:
        real = os.path.realpath(path)
        st = os.stat(real)
    except OSError as exc:
        raise ModelError(f"cannot read model {path}: {exc.strerror}") from None
    return real, st.st_size, st.st_mtime_ns


def get_predictor(spec: WorkerSpec) -> tuple[Any, bool]:
    """(predictor, loaded_now).  Threads from COMPSS_NUM_THREADS are part of the key."""
    from .graph import read_model_bytes
    from .backends import load_predictor

    identity = model_identity(spec.model.path)
    key = (identity.key, spec.load_key(), os.environ.get("COMPSS_NUM_THREADS"))
    hit = _CACHE.get(key)
    if hit is not None:
        _CACHE.move_to_end(key)
        return hit, False
    for old in [k for k in _CACHE if k[1][0].path == spec.model.path]:
        _CACHE.pop(old).close()
    if identity.kind == "checkpoint":  # frozen in memory, once per worker and checkpoint entry
        from .tf1 import frozen_for_run
        from .predictor import Predictor
        data, named = frozen_for_run(identity.path, spec)  # named: the spec with the tensors it chose
        predictor = Predictor(named, data)
        predictor.model_id = f"{identity.name}:{predictor.model_id}"
    else:
        predictor = load_predictor(spec, read_model_bytes(identity.path))
    _CACHE[key] = predictor
    while len(_CACHE) > MAX_ENTRIES:
        _CACHE.popitem(last=False)[1].close()
    return predictor, True


def clear() -> None:
    """Close every cached session (tests, and a worker shutting down)."""
    while _CACHE:
        _CACHE.popitem()[1].close()
