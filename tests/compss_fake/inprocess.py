"""Make the current process a COMPSs master, as ``launch.py``'s ``compss_main`` does, minus the app.

For tests that share one runtime (a session-scoped fixture) and for benchmarks: the real binding's
``compss_start`` runs here, so every ``@task`` call of this process goes through the real master
code to the fake JVM, and the real piper worker runs the tasks.  The steps are compss_main's:
``CONTEXT.set_master()``, ``compss_start``, then the master temp folder; the app's logging set-up
is left out (it would reconfigure the caller's root logger).

The node is described by the same files runcompss is given (a resources.xml/project.xml written
here), and the environment the fake JVM snapshots is this process's, with ``env`` applied for the
duration of the start only: later changes are not seen, as with the real JVM.
"""
from __future__ import annotations

import importlib
import os
import sys
import uuid
from typing import Any, Mapping

HERE = os.path.dirname(os.path.abspath(__file__))

RESOURCES = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<ResourcesList><ComputeNode Name="localhost">
<Processor Name="MainProcessor"><ComputingUnits>{cpus}</ComputingUnits></Processor>{gpu}
</ComputeNode></ResourcesList>
"""
GPU = '\n<Processor Name="GPU"><Type>GPU</Type><ComputingUnits>{gpus}</ComputingUnits></Processor>'
PROJECT = """<?xml version="1.0" encoding="UTF-8" standalone="yes"?>
<Project><MasterNode/><ComputeNode Name="localhost"><WorkingDir>{working_dir}</WorkingDir>
<Application><Pythonpath>{pythonpath}</Pythonpath></Application></ComputeNode></Project>
"""


def start(*, real_python: str, log_dir: str, working_dir: str, cpus: int = 2, gpus: int = 0,
          cpu_affinity: str = "disabled", gpu_affinity: str = "automatic", log_level: str = "off",
          pythonpath: str = "", env: Mapping[str, str] | None = None, hide: tuple[str, ...] = ()) -> Any:
    """Start the runtime in this process; returns the fake JVM (``compss.runtime()``)."""
    from affinity import ensure
    from fakejvm.config import write_options
    os.makedirs(log_dir, exist_ok=True)
    resources = os.path.join(log_dir, "resources.xml")
    project = os.path.join(log_dir, "project.xml")
    with open(resources, "w") as fh:
        fh.write(RESOURCES.format(cpus=cpus, gpu=GPU.format(gpus=gpus) if gpus else ""))
    with open(project, "w") as fh:
        fh.write(PROJECT.format(working_dir=working_dir, pythonpath=pythonpath))
    home = ":".join(p for p in (real_python, HERE, ensure(real_python)) if p)
    options = write_options(os.path.join(log_dir, "jvm_options"), {
        "compss.appName": os.path.basename(sys.argv[0] or "python"), "compss.uuid": str(uuid.uuid4()),
        "compss.master.workingDir": os.path.join(log_dir, "tmpFiles") + "/", "compss.fake.logDir": log_dir,
        "compss.project.file": project, "compss.resources.file": resources, "compss.log.level": log_level,
        "compss.python.interpreter": sys.executable, "compss.worker.cpu_affinity": cpu_affinity,
        "compss.worker.gpu_affinity": gpu_affinity, "compss.fake.pycompssHome": home,
        "compss.fake.hide": ":".join(hide)})
    env = dict(env or {})
    old = env.pop("PYTHONPATH", os.environ.get("PYTHONPATH"))  # runcompss: the binding's home first, then
    changes = {**env, "JVM_OPTIONS_FILE": options,  # --pythonpath, then the caller's
               "PYTHONPATH": home + ":" + pythonpath + (":" + old if old else "")}
    saved = {key: os.environ.get(key) for key in changes}
    os.environ.update(changes)
    try:
        from pycompss.util.context import CONTEXT
        CONTEXT.set_master()
        # pycompss.api.api picks the real or the dummy API when it is imported: launch.py imports it
        # after set_master; a process that imported it before (out of scope) gets it again.
        import pycompss.api.api
        importlib.reload(pycompss.api.api)
        from pycompss.api.api import compss_start
        from pycompss.runtime.binding import get_tmp_path
        from pycompss.runtime.commons import GLOBALS
        from pycompss.runtime.start.initialization import LAUNCH_STATUS
        compss_start(log_level, False, False)
        LAUNCH_STATUS.set_app_path(os.path.abspath(sys.argv[0] or "python"))
        GLOBALS.set_temporary_directory(get_tmp_path())
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value
    import compss
    return compss.runtime()


def stop(code: int = 0) -> None:
    """``compss_stop``: the object tracker's files deleted, every task waited for, the node stopped."""
    from pycompss.api.api import compss_stop
    compss_stop(code)
