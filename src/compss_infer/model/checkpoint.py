"""TF1 Saver checkpoints on disk: recognise one, find its newest entry, list its files.

A checkpoint is a prefix (``dir/model.ckpt-49``) with ``PREFIX.index``, ``PREFIX.data-K-of-N``
and ``PREFIX.meta`` (the graph).  A training folder holds several, named by the text-format
``checkpoint`` index file a Saver rewrites after each save.  Nothing here imports TensorFlow or
protobuf: the master (``checks.py``, the resume fingerprint) and ``submit`` use it too.
"""
from __future__ import annotations

import codecs
import os
import re
from dataclasses import dataclass

from ..core.errors import ModelError

INDEX_FILE = "checkpoint"  # what tf.compat.v1.train.Saver writes beside its checkpoints
_ENTRY = re.compile(r'^\s*(model_checkpoint_path|all_model_checkpoint_paths)\s*:\s*"((?:[^"\\]|\\.)*)"\s*$')
_DATA = re.compile(r"\.data-(\d{5})-of-(\d{5})$")


@dataclass(frozen=True)
class CheckpointFiles:
    """One checkpoint entry and every file it is made of (absolute paths)."""

    prefix: str
    index: str
    data: tuple[str, ...]
    meta: str
    note: str = ""  # why an older entry than the newest was taken, if one was

    @property
    def name(self) -> str:
        return os.path.basename(self.prefix)

    @property
    def files(self) -> tuple[str, ...]:
        return (self.index, *self.data, self.meta)


def _is_prefix(path: str) -> bool:
    if os.path.isfile(path + ".index") or os.path.isfile(path + ".meta"):
        return True
    folder, base = os.path.split(path)
    try:
        return any(n.startswith(base + ".data-") for n in os.listdir(folder or "."))
    except OSError:
        return False


def looks_like_checkpoint(path: str) -> bool:
    """A folder with a ``checkpoint`` index file, a ``.meta`` file, or a prefix with checkpoint files."""
    if os.path.isdir(path):
        return os.path.isfile(os.path.join(path, INDEX_FILE))
    if path.endswith(".meta") and os.path.isfile(path):
        return True
    return not os.path.isfile(path) and _is_prefix(path)


def read_index(folder: str) -> list[str]:
    """The entries of a folder's ``checkpoint`` file, oldest first, newest (model_checkpoint_path) last.

    Entries are resolved against the folder.  An absolute entry (a Saver's default) is taken from
    this folder when it is there by name: a Saver keeps its checkpoints beside the index, and a
    moved or copied folder must not read the original's files.
    """
    index = os.path.join(folder, INDEX_FILE)
    try:
        with open(index, encoding="utf-8") as fh:
            lines = fh.read().splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise ModelError(f"cannot read checkpoint index {index}: {getattr(exc, 'strerror', None) or exc}") from None
    newest, listed = None, []
    for line in lines:
        m = _ENTRY.match(line)
        if not m:
            continue
        value = codecs.escape_decode(m.group(2).encode("utf-8"))[0].decode("utf-8")
        entry = _resolve_entry(folder, value)
        if m.group(1) == "model_checkpoint_path":
            newest = entry
        elif entry not in listed:
            listed.append(entry)
    if newest is None:
        raise ModelError(f"{index} names no checkpoint (no model_checkpoint_path line)")
    return [e for e in listed if e != newest] + [newest]


def _resolve_entry(folder: str, value: str) -> str:
    if not os.path.isabs(value):
        return os.path.join(folder, value)
    here = os.path.join(folder, os.path.basename(value))
    return here if _is_prefix(here) else value


def checkpoint_files(prefix: str) -> CheckpointFiles:
    """Every file of the entry ``prefix``; a one-line ModelError naming the first one missing."""
    prefix = os.path.abspath(prefix)
    folder, base = os.path.split(prefix)
    index = prefix + ".index"
    if not os.path.isfile(index):
        raise ModelError(f"checkpoint {prefix}: missing {base}.index (the variables' index)")
    shards: dict[int, int] = {}
    try:
        names = os.listdir(folder)
    except OSError as exc:
        raise ModelError(f"cannot list {folder}: {exc.strerror}") from None
    for n in names:
        m = _DATA.search(n)
        if m and n[:m.start()] == base:
            shards[int(m.group(1))] = int(m.group(2))
    if not shards:
        raise ModelError(f"checkpoint {prefix}: missing {base}.data-00000-of-00001 (the variables' values)")
    total = max(shards.values())
    missing = [i for i in range(total) if i not in shards]
    if missing or len(set(shards.values())) != 1:
        raise ModelError(f"checkpoint {prefix}: missing {base}.data-{(missing or [0])[0]:05d}-of-{total:05d}")
    meta = prefix + ".meta"
    if not os.path.isfile(meta):
        raise ModelError(f"checkpoint {prefix}: missing {base}.meta (the graph; TF2 tf.train.Checkpoint "
                         f"and Saver(write_meta_graph=False) do not write one)")
    data = tuple(os.path.join(folder, f"{base}.data-{i:05d}-of-{total:05d}") for i in range(total))
    return CheckpointFiles(prefix=prefix, index=index, data=data, meta=meta)


def locate_checkpoint(path: str) -> CheckpointFiles:
    """The checkpoint ``path`` names: a prefix, its ``.meta`` file, or a folder's newest entry.

    In a folder, the newest entry whose files are all there is taken: a trainer may be writing
    the newest one right now (a Saver updates the index before it writes the ``.meta``).  When no
    entry is complete, the error names what the newest one lacks.
    """
    path = os.path.abspath(path)
    if os.path.isdir(path):
        entries = read_index(path)
        newest_error = None
        for entry in reversed(entries):
            try:
                found = checkpoint_files(entry)
            except ModelError as exc:
                newest_error = newest_error or exc
                continue
            if entry != entries[-1]:
                note = f"newest entry {os.path.basename(entries[-1])} is incomplete ({newest_error})"
                found = CheckpointFiles(found.prefix, found.index, found.data, found.meta, note)
            return found
        raise newest_error  # type: ignore[misc]
    if path.endswith(".meta"):
        path = path[:-len(".meta")]
    return checkpoint_files(path)
