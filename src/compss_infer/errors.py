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
