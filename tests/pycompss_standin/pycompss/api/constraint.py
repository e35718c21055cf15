"""``from pycompss.api.constraint import constraint``, placed above ``@task``."""
from __future__ import annotations

from typing import Any, Callable

from .._standin_runtime import constraint_decorator


def constraint(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    if args:
        raise TypeError("@constraint takes keyword arguments only")
    return constraint_decorator(kwargs)


Constraint = constraint
