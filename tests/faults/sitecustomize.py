"""Test-only fault injection for worker processes (on PYTHONPATH only in fault tests).

A real decoder bug that crashes the process is not at hand, so this stands in for one: when
COMPSS_INFER_TEST_FAULTS=1, decoding a file whose content starts with b"POISON" segfaults the
process for real (a NULL read), and b"HANG" makes it hang, like a decoder stuck on a bad file or a
dead network mount.  Everything else decodes normally.
"""
import os

if os.environ.get("COMPSS_INFER_TEST_FAULTS") == "1":
    import ctypes
    import time

    import compss_infer.images.preprocess as _pre

    _real_decode = _pre.decode

    def _faulty_decode(path, spec, geometry):
        try:
            with open(path, "rb") as fh:
                head = fh.read(6)
        except OSError:
            head = b""
        if head.startswith(b"POISON"):
            ctypes.string_at(0)
        if head.startswith(b"HANG"):
            time.sleep(3600)
        return _real_decode(path, spec, geometry)

    _pre.decode = _faulty_decode
