"""``from pycompss.api.task import task``: keywords returns, time_out, priority, on_failure, directions."""
from __future__ import annotations

from typing import Any, Callable

from .._standin_runtime import task_decorator


def task(*args: Any, **kwargs: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``@task(...)`` (always with parentheses, as in PyCOMPSs)."""
    if args:
        raise TypeError("@task takes keyword arguments only (write @task(returns=1), not @task)")
    return task_decorator(kwargs)


Task = task
