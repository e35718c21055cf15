"""Imported once by the local engine's forkserver, so every worker forks with TensorFlow loaded.

The forkserver outlives the master by the second a normal interpreter exit with TensorFlow loaded
takes (and keeps the master's stderr open meanwhile, so a pipe reading our output waits too).  It
holds no state worth a clean shutdown, so it leaves with os._exit.  Workers forked from it end via
multiprocessing's own os._exit and never run this handler.
"""
import atexit
import os

from ..session import import_tf

import_tf()
atexit.register(os._exit, 0)
