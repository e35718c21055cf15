"""The one interface every model backend gives the worker: describe, infer a batch, close."""
from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor
from typing import Protocol, Sequence, runtime_checkable

import numpy as np

from ..core.contracts import ModelInfo


@runtime_checkable
class Predictor(Protocol):
    """A loaded, checked, warmed-up model in this process (cached by ``compss_infer.model.cache``).

    ``info``: the tensors and kinds the worker needs (ModelInfo).  ``input_dtype``: what dtype
    ``preprocess.normalize`` must produce (uint8 = raw pixels; None for path inputs).  ``infer``
    takes a batch of any size and returns one output row per item.  ``decoder``: the thread pool
    that decodes the next batch while this one runs.
    """

    info: ModelInfo
    model_id: str
    load_s: float
    decoder: ThreadPoolExecutor

    @property
    def input_dtype(self) -> np.dtype | None: ...

    def infer(self, batch: np.ndarray | Sequence[bytes]) -> np.ndarray: ...

    def close(self) -> None: ...
