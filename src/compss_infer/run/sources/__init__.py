"""Inputs that are not one file per image: tar shards (``shards.py``).  Folders and list files are
planned by ``run/inputs.py``, whose plan (one line per image) and chunk cutting the shard plan mirrors.

May import: ``run`` (inputs, journal), ``engines``, ``images``, ``core``.
"""
