"""compss-infer: batch image classification with frozen TensorFlow graphs, on one node or many.

Importing this package does not import TensorFlow.  Public API::

    from compss_infer import run, load_config
    summary = run(load_config("configs/local.yaml", overrides={"run": {"output": "out.csv"}}))
"""
from __future__ import annotations

from typing import Any

from ._version import __version__

__all__ = ["__version__", "run", "load_config"]


def load_config(path: str | None = None, overrides: dict[str, Any] | None = None,
                sets: list[str] | None = None):
    """Build a validated RunConfig from a YAML file, a nested dict of overrides and --set strings."""
    from .run.config import build_config
    return build_config(path, overrides, sets)


def run(config: Any):
    """Run a classification job; ``config`` is a RunConfig or a YAML path.  Returns a RunSummary."""
    from .core.specs import RunConfig
    from .run.runner import run as _run
    if not isinstance(config, RunConfig):
        config = load_config(str(config))
    return _run(config)
