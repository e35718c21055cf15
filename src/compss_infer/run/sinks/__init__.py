"""Where a run's rows go: one results file (CSV, JSONL or Parquet), parts of N rows, or one part per
input tar shard; all behind one small protocol (``base.Sink``).

May import: ``run.results`` (the row writers' header and refusal rules), ``images``, ``core``.
pyarrow is imported only for Parquet.
"""
