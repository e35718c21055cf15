"""What kind of model a path names, judged from its name and first bytes, without TensorFlow.

Used to refuse early with a useful hint: a model given where the YAML config goes ("did you mean
--model"), a folder or a Keras/SavedModel given to ``--model`` ("run compss-infer freeze first").
``looks_like_checkpoint`` (from ``model/checkpoint.py``, the one place that decides whether a folder
or prefix is a TF1 checkpoint) lets checkpoints through: ``--model`` runs them.
"""
from __future__ import annotations

import os
import stat

from ..core.errors import ModelError
from .checkpoint import looks_like_checkpoint  # the rule itself lives with the checkpoint code

GRAPH_EXTENSIONS = (".pb", ".pbtxt")
MODEL_EXTENSIONS = (".pb", ".pbtxt", ".tflite")
KERAS_EXTENSIONS = (".keras", ".h5", ".hdf5")


def is_saved_model(path: str) -> bool:
    return os.path.isdir(path) and any(os.path.isfile(os.path.join(path, n))
                                       for n in ("saved_model.pb", "saved_model.pbtxt"))


def _head(path: str, n: int = 4096) -> bytes:
    """The first bytes of a regular file; nothing for anything else (a FIFO would block the open)."""
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0))
    except OSError:
        return b""
    try:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            return b""
        os.set_blocking(fd, True)
        return os.read(fd, n)
    except OSError:
        return b""
    finally:
        os.close(fd)


def _varint(data: bytes, i: int) -> tuple[int, int] | None:
    value = shift = 0
    while i < len(data) and shift < 64:
        b = data[i]
        value |= (b & 0x7F) << shift
        i += 1
        if not b & 0x80:
            return value, i
        shift += 7
    return None


def looks_like_graphdef_bytes(data: bytes) -> bool:
    """A binary GraphDef starts with a node (field 1) whose NodeDef starts with its name (field 1)."""
    if len(data) < 4 or data[0] != 0x0A:
        return False
    parsed = _varint(data, 1)
    if parsed is None:
        return False
    _, i = parsed
    if i >= len(data) or data[i] != 0x0A:
        return False
    name = _varint(data, i + 1)
    return name is not None and 0 < name[0] < 4096


def _binary(head: bytes) -> bool:
    """Control bytes no text file (YAML included) has."""
    return any(b < 9 or 13 < b < 32 for b in head[:512])


def model_kind(path: str) -> str | None:
    """``GraphDef``, ``TFLite``, ``Keras`` or ``SavedModel`` when ``path`` looks like a model, else None."""
    if is_saved_model(path):
        return "SavedModel"
    if os.path.isdir(path):
        return None
    ext = os.path.splitext(path)[1].lower()
    if ext in KERAS_EXTENSIONS:
        return "Keras"
    if ext == ".tflite":
        return "TFLite"
    if ext in GRAPH_EXTENSIONS:
        return "GraphDef"
    head = _head(path)
    if head[4:8] == b"TFL3":
        return "TFLite"
    if head.startswith(b"\x89HDF\r\n\x1a\n") or head.startswith(b"PK\x03\x04"):
        return "Keras"
    if _binary(head) and looks_like_graphdef_bytes(head):
        return "GraphDef"
    return None


def check_model_path(path: str, flag: str = "--model") -> None:
    """Refuse what ``--model`` cannot run, with the command that makes it runnable."""
    freeze = f"freeze it first: compss-infer freeze {path} --output MODEL.pb"
    if is_saved_model(path):
        raise ModelError(f"{flag} {path} is a SavedModel; {freeze}")
    if os.path.isdir(path):
        if looks_like_checkpoint(path):
            return
        raise ModelError(f"{flag} {path} is a folder, not a model file (.pb, .pbtxt)")
    if not os.path.exists(path):
        if looks_like_checkpoint(path):
            return
        raise ModelError(f"model file not found: {path}")
    if model_kind(path) == "Keras":
        raise ModelError(f"{flag} {path} is a Keras model; {freeze}")
    if not os.path.isfile(path):
        raise ModelError(f"{flag} {path} is not a regular file")


def card_path_for(model_path: str) -> str:
    """The model card that sits beside a model: ``digits.pb`` -> ``digits.yaml``."""
    return os.path.splitext(model_path)[0] + ".yaml"
