"""The identity of a model path: what the worker cache keys on and what ``--resume`` compares.

A frozen graph file (.pb, .pbtxt, .tflite) is one file; a TF1 checkpoint (folder or prefix) is the
files of its newest entry.  The key (real paths, sizes, mtimes) is cheap to take before every
chunk, so a model replaced on disk or a newer checkpoint written by a trainer is picked up by the
next chunk; ``sha256()`` (contents) is taken once per run for the resume fingerprint.
"""
from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from typing import Iterable

from ..core.errors import ModelError
from .checkpoint import locate_checkpoint, looks_like_checkpoint


@dataclass(frozen=True)
class ModelIdentity:
    kind: str  # file | checkpoint
    path: str  # the real path of the file, or the checkpoint entry's prefix
    files: tuple[tuple[str, int, int], ...]  # (real path, size, mtime_ns) of every file it is made of

    @property
    def key(self) -> tuple:
        return (self.path, self.files)

    @property
    def name(self) -> str:
        return os.path.basename(self.path)

    @property
    def size(self) -> int:
        return sum(f[1] for f in self.files)

    def sha256(self) -> str:
        """A digest of the contents: a single file's own sha256; for a checkpoint, over its files."""
        if self.kind == "file":
            return sha256_file(self.path)
        h = hashlib.sha256()
        for path, _, _ in self.files:  # names without the step: a re-saved identical checkpoint matches
            h.update(os.path.basename(path)[len(self.name):].encode() + b"\0" + sha256_file(path).encode())
        return h.hexdigest()


def model_identity(path: str) -> ModelIdentity:
    """The identity of ``path`` now; a one-line ModelError when it cannot be read."""
    if looks_like_checkpoint(path):
        ckpt = locate_checkpoint(path)
        return ModelIdentity("checkpoint", ckpt.prefix, tuple(_stat(f) for f in ckpt.files))
    real = os.path.realpath(path)
    return ModelIdentity("file", real, (_stat(real, path),))


def _stat(real: str, shown: str | None = None) -> tuple[str, int, int]:
    try:
        st = os.stat(real)
    except OSError as exc:
        raise ModelError(f"cannot read model {shown or real}: {exc.strerror}") from None
    return real, st.st_size, st.st_mtime_ns


def sha256_file(path: str) -> str:
    """A file's SHA-256 (hex), read in blocks; a one-line ModelError when it cannot be read."""
    h = hashlib.sha256()
    try:
        with open(path, "rb") as fh:
            for block in iter(lambda: fh.read(1 << 20), b""):
                h.update(block)
    except OSError as exc:
        raise ModelError(f"cannot read model {path}: {exc.strerror}") from None
    return h.hexdigest()


def ranges_by_id(tasks: Iterable[tuple[int, int, str]]) -> dict[str, list[list[int]]]:
    """(start, count, model id) per finished task -> {id: [[first, end), ...]}, adjacent ranges merged."""
    out: dict[str, list[list[int]]] = {}
    for start, count, mid in sorted(tasks):
        spans = out.setdefault(mid, [])
        if spans and spans[-1][1] == start:
            spans[-1][1] = start + count
        else:
            spans.append([start, start + count])
    return out
