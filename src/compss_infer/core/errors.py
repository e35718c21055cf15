"""Errors that refuse a run before any work starts (exit code 2).

Per-image failures are *data* (an error row), never one of these exceptions.
"""
from __future__ import annotations


class CompssInferError(Exception):
    """Base class: a problem the user must fix; printed as one line, exit code 2."""

    exit_code = 2
    kind = "Error"

    def one_line(self) -> str:
        text = " ".join(str(self).split())
        return f"{self.kind}: {text}" if text else self.kind


class ConfigError(CompssInferError):
    """A bad key, value or type in the configuration or on the command line."""

    kind = "ConfigError"


class ModelError(CompssInferError):
    """The model file cannot be used: unreadable, corrupt, unsafe, or mismatched with the config."""

    kind = "ModelError"


class InputError(CompssInferError):
    """The image source or the output location cannot be used as given."""

    kind = "InputError"


class RunAborted(CompssInferError):
    """The run started but cannot go on (workers keep dying at start-up, say); the journal is kept."""

    kind = "RunAborted"
    exit_code = 3


class MissingDependency(CompssInferError):
    """An optional extra the command needs is not installed (the message says how to install it)."""

    kind = "MissingDependency"


def shown(value: object, limit: int = 60) -> str:
    """``repr(value)``, cut to ``limit`` characters: a refusal never formats an unbounded value
    (a YAML alias bomb expands to ~10^9 items, a nested list may be thousands of levels deep); a
    huge integer is shown by its size, not its 4,000 digits."""
    import reprlib
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) > 10**30:
        try:
            return f"an integer of {len(str(abs(value)))} digits"
        except ValueError:  # over Python's 4,300-digit limit for int -> str
            return "an integer of more than 4,300 digits"
    r = reprlib.Repr()
    r.maxlevel, r.maxlist, r.maxtuple, r.maxdict, r.maxset = 2, 4, 4, 4, 4
    r.maxstring = r.maxother = r.maxlong = limit
    try:
        text = r.repr(value)
    except ValueError:  # an integer inside it over the digit limit
        return f"a {type(value).__name__} too large to show"
    return text if len(text) <= limit else text[:limit - 3] + "..."


# The reasons the user reads, worded the same wherever a file system refuses us.
_REASONS = {
    "EROFS": "read-only file system",
    "ENOSPC": "no space left",
    "EDQUOT": "no space left (disk quota exceeded)",
    "EFBIG": "no space left (file too large)",
    "EACCES": "permission denied",
    "EPERM": "permission denied",
    "EISDIR": "is a directory",
    "ENOTDIR": "not a directory",
    "ENOENT": "no such file or directory",
}
DISK_FULL = ("ENOSPC", "EDQUOT", "EFBIG")


def os_reason(exc: OSError) -> str:
    """``read-only file system``, ``no space left``, ... : the short reason for an OSError."""
    import errno as _errno
    name = _errno.errorcode.get(exc.errno or 0, "")
    if name in _REASONS:
        return _REASONS[name]
    text = exc.strerror or str(exc) or type(exc).__name__
    return text[:1].lower() + text[1:]


def is_disk_full(exc: BaseException) -> bool:
    import errno as _errno
    return isinstance(exc, OSError) and _errno.errorcode.get(exc.errno or 0, "") in DISK_FULL


def os_error_line(exc: OSError) -> str:
    """One line naming the path and the reason (``/data/out.csv: read-only file system``)."""
    path = exc.filename if exc.filename is not None else None
    if isinstance(path, bytes):
        path = path.decode("utf-8", "replace")
    return f"{path}: {os_reason(exc)}" if path else os_reason(exc)
