"""Start the REAL ``pycompss/worker/piper/piper_worker.py`` as the Java side does, with two additions.

1. Its logger.  ``load_loggers`` reads ``logging_worker_*.json`` from ``../../../../log`` of its own
   folder, where a COMPSs installation has it and the source tree does not; without it the logger
   has no handler and every executor dies on ``logger.handlers[0]``.  So a file handler goes on the
   logger it uses (``<log dir>/binding_worker.log``) before the real ``main`` runs.
2. Fake hygiene, not COMPSs behaviour: the kernel SIGKILLs this process when its parent (the master,
   where the fake JVM lives) dies.  The real piper worker would spin on its control pipe for good.

Everything else is the real module: ``python piper_worker.py ARGS`` as ``PythonMirror.java`` builds it.
"""
import ctypes
import importlib.util
import logging
import os
import runpy
import signal
import sys

PR_SET_PDEATHSIG = 1
ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGKILL)

package = importlib.util.find_spec("pycompss").submodule_search_locations[0]
worker = os.path.join(package, "worker", "piper", "piper_worker.py")
handler = logging.FileHandler(os.path.join(sys.argv[2], "binding_worker.log"))
handler.setFormatter(logging.Formatter("%(asctime)s %(levelname)s %(name)s %(message)s"))
logger = logging.getLogger("pycompss.worker.piper.piper_worker")
logger.addHandler(handler)
logger.setLevel(logging.DEBUG if sys.argv[5] == "true" else logging.INFO)
sys.argv[0] = worker
sys.path[0] = os.path.dirname(worker)
runpy.run_path(worker, run_name="__main__")
