"""The ``process_affinity`` extension the real executors pin themselves with, built from its source.

A COMPSs installation ships it beside the binding; here it is compiled from
``compss-3.3/python/ext/process_affinity.cc`` with g++ into a cache folder outside the project
(``$COMPSS_FAKE_BUILD``, default ``/tmp/compss-fake-build``), keyed by the source's hash and the
interpreter.  Never committed.  The source folder here lacks the ``process_affinity.h`` the .cc
includes, so the build writes one with the system headers it needs (Python.h, sched.h, unistd.h,
vector).  Without g++ or Python's headers it cannot be built: ``ensure`` then
returns None with the reason, and the executors print the real binding's warning ("Could not import
process affinity library: CPU AFFINITY NOT SUPPORTED!") and run unpinned.
"""
from __future__ import annotations

import hashlib
import os
import shutil
import subprocess
import sys
import tempfile

LAST_ERROR = ""
HEADER = "#include <Python.h>\n#include <sched.h>\n#include <unistd.h>\n#include <vector>\n"


def _source(real_python: str) -> str:
    return os.path.join(real_python, "ext", "process_affinity.cc")


def ensure(real_python: str, interpreter: str = sys.executable) -> str | None:
    """The folder holding a built ``process_affinity`` for ``interpreter`` (None if it cannot be built)."""
    global LAST_ERROR
    source = _source(real_python)
    try:
        with open(source, "rb") as fh:
            digest = hashlib.sha256(fh.read()).hexdigest()[:12]
        info = subprocess.run([interpreter, "-c", "import sysconfig, sys; print(sysconfig.get_paths()['include']);"
                               "print(sysconfig.get_config_var('EXT_SUFFIX')); print(sys.implementation.cache_tag)"],
                              capture_output=True, text=True, check=True).stdout.split("\n")
    except (OSError, subprocess.CalledProcessError) as exc:
        LAST_ERROR = f"cannot read {source} or ask {interpreter}: {exc}"
        return None
    include, suffix, tag = info[0], info[1], info[2]
    root = os.environ.get("COMPSS_FAKE_BUILD") or os.path.join("/tmp", "compss-fake-build")
    folder = os.path.join(root, f"process_affinity-{tag}-{digest}")
    target = os.path.join(folder, "process_affinity" + suffix)
    if os.path.exists(target):
        return folder
    compiler = shutil.which("g++")
    if compiler is None:
        LAST_ERROR = "g++ is not installed"
        return None
    os.makedirs(root, exist_ok=True)
    work = tempfile.mkdtemp(dir=root)
    try:
        with open(os.path.join(work, "process_affinity.h"), "w") as fh:
            fh.write(HEADER)
        built = os.path.join(work, "process_affinity" + suffix)
        proc = subprocess.run([compiler, "-shared", "-fPIC", "-O2", f"-I{include}", f"-I{work}", source, "-o", built],
                              capture_output=True, text=True)
        if proc.returncode != 0:
            LAST_ERROR = f"g++ failed: {proc.stderr.strip()[-500:]}"
            return None
        try:
            os.rename(work, folder)  # atomic: a concurrent build that won leaves its own
        except OSError:
            pass
        return folder if os.path.exists(target) else None
    finally:
        shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    print(ensure(sys.argv[1]) or LAST_ERROR)
