"""Model backends behind the Predictor protocol, chosen from the model file by ``load_predictor``.

``tf_graph``: a frozen TensorFlow GraphDef in a tf.compat.v1.Session.  ``litert``: a ``.tflite``
flatbuffer in LiteRT's interpreter (never imports TensorFlow).
"""
from __future__ import annotations

from ...core.contracts import WorkerSpec
from ..formats import TFLITE, model_format
from ..protocol import Predictor


def load_predictor(spec: WorkerSpec, data: bytes) -> Predictor:
    """Load ``data`` (the bytes of ``spec.model.path``) with the backend its format needs."""
    if model_format(spec.model.path, data[:8]) == TFLITE:
        from .litert import LiteRTPredictor
        return LiteRTPredictor(spec, data)
    from .tf_graph import GraphPredictor
    return GraphPredictor(spec, data)
