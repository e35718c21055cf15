"""The model side of compss-infer: what a model file is, and the backends that run it.

A loaded model is a :class:`~compss_infer.model.protocol.Predictor`; ``backends.load_predictor``
picks the implementation from the file (a TensorFlow GraphDef or a LiteRT ``.tflite`` flatbuffer);
``checkpoint`` and ``tf1`` turn TF1 Saver checkpoints into GraphDefs, and ``identity`` says what a
model path is (a file, or a checkpoint's newest entry).  Workers and engines see only the protocol.
Nothing here imports TensorFlow at module level.  ``cache`` is the per-worker model cache (the one
process-global state), ``files`` what a path holds, ``outputcheck`` the backend-agnostic answer checks.

May import: ``images`` and ``core`` (never ``worker``, ``engines``, ``run`` or the commands).
"""
