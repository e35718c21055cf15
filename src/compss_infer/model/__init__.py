"""Model formats beyond a single frozen GraphDef file (TF1 checkpoints, other backends)."""
