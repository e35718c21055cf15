"""The COMPSs task environment: computing units per task and the executor's backstop alarm.

Two values must be fixed when the task module is decorated, so they travel in the master's
environment, exported by the launch scripts (and checked again by the engine):

* ``COMPSS_INFER_CU``: computing units per task, read by ``@constraint(computing_units="$COMPSS_INFER_CU")``
  when COMPSs registers the task type; from ``session.intra_op_threads`` (default 1);
* ``COMPSS_INFER_TIME_OUT``: the ``@task(time_out=...)`` in seconds, the executor's alarm.  The
  chunk's own limit travels with each task and the node's inference server enforces it (it kills
  the chunk's worker process); the alarm is only a backstop: ``run.task_timeout`` + the model-loading allowance
  (5 x ``run.task_timeout_floor``) + 5 s for a fixed limit, 0 (none) for ``auto`` and ``none``.
"""
from __future__ import annotations

import math
import os
from typing import Mapping

from ..core.errors import ConfigError
from ..core.specs import RunConfig, SessionSpec


CU_ENV = "COMPSS_INFER_CU"
TIME_OUT_ENV = "COMPSS_INFER_TIME_OUT"
ALARM_GRACE = 5  # the alarm fires this long after a fixed limit: the node server's clear Timeout comes first
GPU_TASK_CPUS = 1  # the GPU task variant: processors=[1 CPU, 1 GPU]


def _env_int(name: str, environ: Mapping[str, str]) -> int | None:
    raw = environ.get(name)
    if raw is None or raw == "":
        return None
    if not raw.strip().isdigit() or int(raw) < 1:
        raise ConfigError(f"{name}={raw!r} in the environment: expected a positive integer")
    return int(raw)


def computing_units(session: SessionSpec, environ: Mapping[str, str] = os.environ) -> int:
    """CPU computing units per task: session.intra_op_threads if set (the environment must agree),
    else ``$COMPSS_INFER_CU``, else 1.  TensorFlow then takes its threads from COMPSS_NUM_THREADS."""
    env = _env_int(CU_ENV, environ)
    if session.intra_op_threads:
        if env is not None and env != session.intra_op_threads:
            raise ConfigError(f"{CU_ENV}={env} in the environment but session.intra_op_threads="
                              f"{session.intra_op_threads}: the task constraint and TensorFlow's threads would "
                              f"disagree (unset {CU_ENV} or change the config)")
        return session.intra_op_threads
    return env or 1


def task_time_out(task_timeout: float | str | None, environ: Mapping[str, str] = os.environ,
                  floor: float | None = None) -> int:
    """The COMPSs task ``time_out`` (the executor's backstop alarm) in whole seconds, 0 = none.

    A fixed ``run.task_timeout`` gives it + the model-loading allowance + ALARM_GRACE (the
    node server's own, clearer Timeout comes first); ``auto`` and ``none`` give 0 (the limit of each
    chunk travels with the task).  ``$COMPSS_INFER_TIME_OUT``, if set, must agree."""
    from .timelimit import TimeLimitPolicy
    fixed = isinstance(task_timeout, (int, float)) and not isinstance(task_timeout, bool) and task_timeout > 0
    load = TimeLimitPolicy(auto=False, fixed=float(task_timeout), floor=floor or 60.0).load_allowance if fixed else 0
    seconds = max(1, math.ceil(task_timeout)) + math.ceil(load) + ALARM_GRACE if fixed else 0
    raw = environ.get(TIME_OUT_ENV)
    if raw not in (None, ""):
        if not raw.strip().isdigit() or int(raw) != seconds:
            setting = f"{task_timeout:g}s" if fixed else (task_timeout or "none")
            raise ConfigError(f"{TIME_OUT_ENV}={raw} in the environment but run.task_timeout={setting} gives "
                              f"{seconds} (unset {TIME_OUT_ENV}: the launch scripts export it)")
    return seconds


def task_env(cfg: RunConfig, environ: Mapping[str, str] = os.environ) -> dict[str, str]:
    """The variables the master's environment must carry for this config."""
    return {CU_ENV: str(computing_units(cfg.session, environ)),
            TIME_OUT_ENV: str(task_time_out(cfg.run.task_timeout, environ, cfg.run.task_timeout_floor))}


def cpus_per_task(cfg: RunConfig, environ: Mapping[str, str] = os.environ) -> int:
    return GPU_TASK_CPUS if cfg.session.device == "gpu" else computing_units(cfg.session, environ)
