"""Imported first by every forkserver of ours: the forkserver dies with the process that started it.

Without it a SIGKILLed parent leaves the forkserver behind, kept alive by its own busy workers (they
hold its "alive" pipe), and with it the workers and multiprocessing's resource tracker.  Workers
ask the same of the forkserver (``local._worker_main``), so the whole tree goes together.
"""
from .lifeline import die_with_parent

die_with_parent()
