"""The values that cross process boundaries: what a worker is asked, and what it answers.

All are plain, picklable dataclasses (numpy arrays inside results), so any engine (in-process,
local process pool, PyCOMPSs) can carry them unchanged.
"""
from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from .specs import ModelSpec, PreprocessSpec, SessionSpec


@dataclass(frozen=True)
class WorkerSpec:
    """Everything ``classify_chunk`` needs besides the paths; hashable (it keys the model cache)."""

    model: ModelSpec
    preprocess: PreprocessSpec
    session: SessionSpec
    batch_size: int | None = None  # None = chosen by the worker from the model (sizing.auto_batch)
    top_k: int = 1
    default_threads: int | None = None  # intra-op threads when neither config nor COMPSs says
    decode_threads: int = 1
    warm_up_images: int | None = None  # images in the run: warm up with min(batch, this)

    def load_key(self) -> tuple:
        """The fields that shape a loaded predictor (not batch size: any batch runs on it)."""
        return (self.model, self.preprocess, self.session, self.top_k, self.default_threads,
                self.decode_threads)


@dataclass(frozen=True)
class ModelInfo:
    """What loading the model found out: tensors, shapes, kinds and the safety audit."""

    input_name: str
    input_dtype: str
    input_shape: tuple[int | None, ...] | None
    input_kind: str  # image | flat | unbatched | path | path_batch
    output_name: str
    output_dtype: str
    output_shape: tuple[int | None, ...] | None
    output_kind: str  # scores | class_id
    fixed_batch: int | None
    num_classes: int | None
    height: int | None
    width: int | None
    channels: int | None
    node_count: int
    function_count: int
    unsafe_ops: tuple[str, ...] = ()
    device: str = "cpu"
    batch_size: int = 1  # the batch the worker runs (and warmed up with)
    input_range: tuple[float, float] | None = None  # real values a quantized input holds (its scale, zero point)

    @property
    def takes_paths(self) -> bool:
        return self.input_kind in ("path", "path_batch")


@dataclass
class TaskTiming:
    """Where and when a chunk ran, and where its time went (seconds; epoch times)."""

    host: str
    pid: int
    started: float
    finished: float
    load_s: float = 0.0
    decode_s: float = 0.0
    infer_s: float = 0.0
    model_id: str = ""


@dataclass
class ChunkResult:
    """Per-image answers for one chunk, aligned with its paths; failures are data in ``errors``."""

    class_ids: np.ndarray  # int64, -1 where the image failed
    scores: np.ndarray | None  # float32 top score (None when the model outputs class ids)
    topk_ids: np.ndarray | None = None  # (n, k) int64
    topk_scores: np.ndarray | None = None  # (n, k) float32
    errors: dict[int, str] = field(default_factory=dict)  # offset in chunk -> "Kind: reason"
    timing: TaskTiming | None = None
    listed: list[str] | None = None  # row paths, when the worker found them (the samples of a tar shard slice)
    truth: np.ndarray | None = None  # int32 class ids from the samples' .cls members (-1: none), when asked
    notes: dict[int, str] = field(default_factory=dict)  # offset -> note on a classified row (a tied top score)

    def __len__(self) -> int:
        return int(self.class_ids.shape[0])

    @classmethod
    def all_failed(cls, n: int, text: str) -> "ChunkResult":
        """A result in which every image failed with the same reason (a chunk given up on)."""
        return cls(class_ids=np.full(n, -1, np.int64), scores=None,
                   errors={i: text for i in range(n)})


@dataclass(frozen=True)
class TaskError:
    """A COMPSs task that failed: ``text`` is ``Kind: reason``.

    ``setup``: the model could not be loaded there (a model error, or workers that keep dying while
    loading); the master aborts the run only when that repeats (on another node, or on the same node
    after a pause).  ``host``: the node it happened on.
    """

    text: str
    setup: bool = False
    host: str = ""
