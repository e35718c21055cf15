"""One run, on the master: config layering and checks, the plan (inputs), the scheduler, the journal,
results files, rows, labels, metrics, sizing, progress, the runner and the report; COMPSs job building.

May import: ``engines``, ``worker``, ``model``, ``images``, ``core``.  Never TensorFlow (the model is
checked in a worker); ``rows.classify_rows`` is the one function of this floor that runs in workers.
"""
