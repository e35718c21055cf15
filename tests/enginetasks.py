"""Module-level task functions for engine tests (workers import them by name)."""
from __future__ import annotations

import ctypes
import os
import signal
import time

import numpy as np

from compss_infer.core.contracts import ChunkResult
from compss_infer.core.errors import ConfigError


def init_ok(value):
    return {"pid": os.getpid(), "value": value}


def init_config_error(_value):
    raise ConfigError("session.device=gpu but TensorFlow sees no GPU")


def init_crash(_value):
    os.kill(os.getpid(), signal.SIGKILL)


def echo(x):
    return x


def whoami():
    return os.getpid()


def sleep(seconds):
    time.sleep(seconds)
    return seconds


def boom(message):
    raise ValueError(message)


def segfault():
    ctypes.string_at(0)  # a real SIGSEGV


def kill_self():
    os.kill(os.getpid(), signal.SIGKILL)


def fake_classify(_spec, paths):
    """Answer class = len(basename) for each path; a path with 'poison' crashes the process for real."""
    if any("poison" in os.path.basename(p) for p in paths):
        ctypes.string_at(0)
    ids = np.array([len(os.path.basename(p)) for p in paths], np.int64)
    return ChunkResult(class_ids=ids, scores=np.ones(len(paths), np.float32))


def cuda_visible(_value=None):
    return os.environ.get("CUDA_VISIBLE_DEVICES")


def cuda_visible_slow(_value=None):
    time.sleep(0.3)
    return os.environ.get("CUDA_VISIBLE_DEVICES")
