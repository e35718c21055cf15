"""Build the fake JVM from the options file (what ``compss.start_runtime`` does)."""
from __future__ import annotations

import os
import sys
import tempfile
import uuid

from .config import read_node, read_options
from .runtime import Runtime


def runtime_from_options(path: str | None) -> Runtime:
    """The options runcompss (or tests/compss_fake/inprocess.py) wrote; the environment as of now."""
    opts = read_options(path) if path else {}
    environ = dict(os.environ)  # System.getenv: read once, at start-up (EnvironmentLoader.java)
    node = read_node(opts.get("compss.project.file") or None, opts.get("compss.resources.file") or None)
    run_id = opts.get("compss.uuid") or str(uuid.uuid4())
    log_dir = opts.get("compss.fake.logDir") or tempfile.mkdtemp(prefix="fake-compss-logs-")
    master_dir = opts.get("compss.master.workingDir") or os.path.join(log_dir, "tmpFiles")
    level = opts.get("compss.log.level", "off")
    default_home = os.pathsep.join(p for p in sys.path if os.path.isdir(os.path.join(p, "pycompss")))
    home = [p for p in opts.get("compss.fake.pycompssHome", default_home).split(":") if p]
    return Runtime(
        app_name=opts.get("compss.appName", "app"), log_dir=log_dir, master_dir=master_dir,
        worker_dir=os.path.join(node.working_dir, run_id), summary=opts.get("compss.summary") == "true",
        environ=environ,
        node=dict(cpus=node.cpus, gpus=node.gpus, limit_of_tasks=node.limit_of_tasks,
                  debug=level in ("debug", "trace"),
                  interpreter=opts.get("compss.python.interpreter") or sys.executable, pycompss_home=home,
                  pythonpath=node.pythonpath or opts.get("compss.worker.pythonpath", ""),
                  app_dir=node.app_dir or opts.get("compss.worker.appdir", os.getcwd()),
                  cpu_affinity=opts.get("compss.worker.cpu_affinity", "automatic"),
                  gpu_affinity=opts.get("compss.worker.gpu_affinity", "automatic"),
                  hide=[p for p in opts.get("compss.fake.hide", "").split(":") if p]))
