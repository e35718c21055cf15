"""Imported once by the local engine's forkserver, so every worker forks with TensorFlow loaded."""
from .session import import_tf

import_tf()
