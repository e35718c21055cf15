"""Bytes to pixels: which files are images and how to list them, safe decoding with limits, EXIF,
preprocessing.  Shared by the worker and by quantize's calibration.

May import: ``core`` only.  Never TensorFlow.
"""
