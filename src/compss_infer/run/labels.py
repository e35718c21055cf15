"""Class names: the labels file, ``model.label_offset``, and the count check against the model.

Line ``i - offset`` names class ``i`` (offset 1: TF-slim ImageNet graphs with a background class 0
and a 1000-line labels file).  A file whose line count does not fit the model's classes is refused
before any work: every label would be shifted.  A byte-order mark and trailing newlines are fine.
"""
from __future__ import annotations

import io
from typing import Sequence

from ..core.errors import ConfigError
from ..core.smallfile import SmallFileError, read_small_file

MAX_LABELS_BYTES = 64 << 20  # one short line per class: 21k ImageNet classes are under 1 MiB


def load_labels(path: str | None) -> list[str] | None:
    """The lines of the labels file (BOM dropped, CR/LF stripped, trailing blank lines ignored).

    It must be a regular file (a FIFO would block, ``/dev/zero`` never ends) of at most 64 MiB.
    """
    if not path:
        return None
    try:
        data = read_small_file(path, MAX_LABELS_BYTES)
        with io.StringIO(data.decode("utf-8-sig"), newline=None) as fh:
            labels = [line.rstrip("\r\n") for line in fh]
    except SmallFileError as exc:
        raise ConfigError(f"model.labels: {path} {exc}") from None
    except OSError as exc:
        raise ConfigError(f"model.labels: cannot read {path}: {exc.strerror}") from None
    except UnicodeDecodeError as exc:
        raise ConfigError(f"model.labels: {path} is not UTF-8 text (byte {exc.start})") from None
    while labels and not labels[-1].strip():
        labels.pop()
    return labels


def check_labels(labels: Sequence[str] | None, path: str | None, num_classes: int | None, offset: int) -> None:
    """Refuse a labels file that does not name exactly the model's classes (with this offset)."""
    if not labels or num_classes is None:
        return
    want = num_classes - offset
    if len(labels) == want:
        return
    shown = f" with model.label_offset={offset}" if offset else ""
    hint = ""
    if len(labels) == want - 1:
        hint = f" (a background class 0? use --set model.label_offset={offset + 1})"
    elif len(labels) == want + 1:
        hint = f" (a first line naming a class the model lacks? use --set model.label_offset={offset - 1})"
    raise ConfigError(f"model.labels {path} has {len(labels)} lines but the model has {num_classes} classes"
                      f"{shown}: expected {want} lines{hint}")


def label_for(class_id: int, labels: Sequence[str] | None, offset: int = 0) -> str | None:
    """The name of ``class_id``, or None (no labels, or a class with no line such as background)."""
    if not labels:
        return None
    i = class_id - offset
    return labels[i] if 0 <= i < len(labels) else None
