"""compss-infer benchmarks: `python -m benchmarks` (or `make bench`). See docs/benchmarks.md."""
