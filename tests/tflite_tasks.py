"""Module-level task functions for the .tflite tests (workers import them by name)."""
from __future__ import annotations

import sys


def tensorflow_loaded(_value=None) -> bool:
    """Whether this process has imported TensorFlow (a .tflite worker must not have)."""
    return "tensorflow" in sys.modules
