"""``from pycompss.api.on_failure import on_failure``: ``@on_failure(management=..., returns=default)``."""
from __future__ import annotations

from typing import Any, Callable

from .._standin_runtime import on_failure_decorator


def on_failure(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    if args:
        raise TypeError("@on_failure takes keyword arguments only")
    return on_failure_decorator(**kwargs)
