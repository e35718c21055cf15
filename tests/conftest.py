"""Shared fixtures: tiny models and images built on the fly in tmp dirs."""
from __future__ import annotations

import os
import sys

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)  # tinymodels, badimages
# Child processes (COMPSs executors, CLI subprocesses) import the test helper modules too.
os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (HERE, os.environ.get("PYTHONPATH")) if p)
ROOT = os.path.dirname(HERE)


@pytest.fixture
def quadrant_model(tmp_path):
    """Factory: write a quadrant-classifier graph (tinymodels.quadrant_graph kwargs) and return its path."""
    import tinymodels

    def make(name: str = "quad.pb", **kwargs):
        return tinymodels.write_graph(tinymodels.quadrant_graph(**kwargs), str(tmp_path / name))
    return make


@pytest.fixture
def quadrant_images(tmp_path):
    """Factory: n quadrant images in tmp_path/<folder>; returns (folder, [(rel, class)])."""
    import tinymodels

    def make(n: int = 12, folder: str = "imgs", **kwargs):
        path = str(tmp_path / folder)
        return path, tinymodels.make_images(path, n, **kwargs)
    return make


@pytest.fixture(autouse=True)
def _fresh_model_cache():
    """Tests that run the sequential engine load models in this process: start each test clean."""
    yield
    if "compss_infer.model.cache" in sys.modules:
        sys.modules["compss_infer.model.cache"].clear()


def base_flags(model: str, images: str, output: str, **run) -> dict:
    """Command-line-style overrides for a run of the quadrant model on L images."""
    flags = {"model": {"path": model}, "preprocess": {"mode": "L", "std": 1.0},
             "run": {"images": images, "output": output, "progress": False, **run}}
    return flags


@pytest.fixture(scope="session")
def _session_runtime(tmp_path_factory):
    """One COMPSs runtime (the real binding on the fake Java side) for the whole session."""
    from compss_support import shared_runtime  # imported only when a test needs it (it extends sys.path)
    yield from shared_runtime(tmp_path_factory)


@pytest.fixture
def compss_master(_session_runtime, monkeypatch):
    """This pytest process as the COMPSs master of the shared runtime (tests/compss_support.py)."""
    from compss_support import shared_master
    yield from shared_master(_session_runtime, monkeypatch)
