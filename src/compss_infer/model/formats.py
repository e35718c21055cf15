"""Which kind of model a file holds, told from its bytes (not only its name), without TensorFlow."""
from __future__ import annotations

TFLITE = "tflite"
GRAPHDEF = "graphdef"
TFLITE_IDENTIFIER = b"TFL3"  # the flatbuffer file identifier, bytes 4..8 of every .tflite

# What the local engine's forkserver imports before forking workers, per model kind: a .tflite
# worker never imports TensorFlow (about 3 s and 560 MB saved per worker).
_PRELOAD = {
    GRAPHDEF: ("compss_infer.model.backends.tf_preload",),
    TFLITE: ("numpy", "PIL.Image", "ai_edge_litert.interpreter", "compss_infer.worker"),
}


def is_tflite_bytes(head: bytes) -> bool:
    return len(head) >= 8 and head[4:8] == TFLITE_IDENTIFIER


def model_format(path: str, head: bytes | None = None) -> str:
    """``tflite`` for a LiteRT flatbuffer (by identifier, or by the .tflite name), else ``graphdef``.

    A file named .tflite without the identifier is still ``tflite``, so the LiteRT reader refuses
    it as corrupt instead of the GraphDef parser giving a confusing message.  ``head``: the file's
    first bytes when the caller already has them.
    """
    if head is not None and is_tflite_bytes(head):
        return TFLITE
    from .files import model_kind
    return TFLITE if model_kind(path) == "TFLite" else GRAPHDEF


def preload_modules(model_path: str) -> list[str]:
    """Modules a worker pool should import once, up front, for this model."""
    return list(_PRELOAD[model_format(model_path)])


def ignored_settings(model_path: str, session: object) -> list[str]:
    """Session settings the model's backend does not use, each as a warning line (empty: none)."""
    if model_format(model_path) != TFLITE:
        return []
    notes = []
    if getattr(session, "opt_level", "L1") != "L1":
        notes.append("session.opt_level does not apply to a .tflite model (LiteRT has no graph optimizer level)")
    if getattr(session, "jit", False):
        notes.append("session.jit does not apply to a .tflite model (LiteRT runs XNNPACK kernels, not XLA)")
    if getattr(session, "inter_op_threads", None) is not None:
        notes.append("session.inter_op_threads does not apply to a .tflite model "
                     "(LiteRT uses session.intra_op_threads only)")
    return notes
