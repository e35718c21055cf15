"""The TensorFlow GraphDef backend: today's ``compss_infer.model.predictor.Predictor`` under the protocol.

The implementation stays in predictor.py (with graph.py and session.py) until the package is
re-laid; this module is the seam's name for it.
"""
from __future__ import annotations

from ..predictor import Predictor as GraphPredictor

__all__ = ["GraphPredictor"]
