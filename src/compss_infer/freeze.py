"""Freezing: turn a TF2 function (a Keras model call, say) into a frozen GraphDef with stable names.

``convert_variables_to_constants_v2`` wraps outputs as ``Identity``, ``Identity_1``, ... in sorted
key order; naming the outputs with ``tf.identity(..., name=...)`` inside the function gives a
contract that survives re-freezing.
"""
from __future__ import annotations

from typing import Any, Callable

from .session import import_tf


def freeze_function(fn: Callable[[Any], Any], input_spec: Any, output_name: str = "probs") -> Any:
    """Trace ``fn`` for ``input_spec`` (a tf.TensorSpec with a name) and return a frozen GraphDef.

    The output is renamed to ``output_name`` inside the graph (``output_name:0``).
    """
    tf = import_tf()
    from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

    @tf.function(input_signature=[input_spec])
    def wrapped(x: Any) -> Any:
        return {output_name: tf.identity(fn(x), name=output_name)}

    frozen = convert_variables_to_constants_v2(wrapped.get_concrete_function())
    return frozen.graph.as_graph_def()


def write_graph_def(gd: Any, path: str) -> int:
    """Write binary (.pb) or text (.pbtxt) by extension; returns the size in bytes."""
    if path.endswith(".pbtxt"):
        from google.protobuf import text_format
        data = text_format.MessageToString(gd).encode("utf-8")
    else:
        data = gd.SerializeToString()
    with open(path, "wb") as fh:
        fh.write(data)
    return len(data)
