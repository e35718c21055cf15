"""Test-only fault injection for worker processes (on PYTHONPATH only in fault tests).

A real decoder bug that crashes the process is not at hand, so this stands in for one: when
COMPSS_INFER_TEST_FAULTS=1, decoding a file whose content starts with b"POISON" segfaults the
process for real (a NULL read), and b"HANG" makes it hang, like a decoder stuck on a bad file or a
dead network mount.  Everything else decodes normally.

Two more, each switched on by a file that the test creates and removes:

* ``COMPSS_INFER_TEST_STALL=FILE``: a forkserver's start-up hangs while FILE exists, like a
  TensorFlow import stuck on a dead shared file system;
* ``COMPSS_INFER_TEST_SLOW_LOAD=FILE``: a process's first model load takes as many seconds more as
  FILE says.
"""
import os
import sys

_stall = os.environ.get("COMPSS_INFER_TEST_STALL")
if _stall and "multiprocessing.forkserver" in " ".join(getattr(sys, "orig_argv", [])):
    import time
    while os.path.exists(_stall):
        time.sleep(0.05)

if os.environ.get("COMPSS_INFER_TEST_SLOW_LOAD"):
    import time

    import compss_infer.model.cache as _cache

    _real_get = _cache.get_predictor
    _loaded = []

    def _slow_get(spec, *args, **kwargs):
        if not _loaded:
            _loaded.append(True)
            try:
                with open(os.environ["COMPSS_INFER_TEST_SLOW_LOAD"]) as fh:
                    time.sleep(float(fh.read()))
            except OSError:
                pass
        return _real_get(spec, *args, **kwargs)

    _cache.get_predictor = _slow_get

if os.environ.get("COMPSS_INFER_TEST_FAULTS") == "1":
    import ctypes
    import time

    import compss_infer.images.preprocess as _pre

    _real_decode = _pre.decode

    def _faulty_decode(path, spec, geometry):
        head = b""
        if isinstance(path, (str, os.PathLike)):  # a file; a shard member is not one: left to the decoder
            try:
                with open(path, "rb") as fh:
                    head = fh.read(6)
            except (OSError, ValueError):
                pass
        if head.startswith(b"POISON"):
            ctypes.string_at(0)
        if head.startswith(b"HANG"):
            time.sleep(3600)
        return _real_decode(path, spec, geometry)

    _pre.decode = _faulty_decode
