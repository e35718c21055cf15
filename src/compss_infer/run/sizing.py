"""Default sizes chosen from the machine and the model: workers and chunk size (the batch size
default is ``model/batching.auto_batch``: the backends need it too).

Rules (measured on 2-core machines, see docs/benchmarks.md): several single-threaded workers
beat one multi-threaded session, so the local engine runs one worker per core with one intra-op
thread each, fewer if memory is short; batches are sized by pixels per image so a batch stays
around a few megabytes; chunks are large enough that per-task overhead is noise and small enough
that every worker gets several (load balance, progress, little lost work on a crash).
"""
from __future__ import annotations

import math

from ..model.session import available_cpus

WORKER_BASE_BYTES = 450 * 2**20  # TensorFlow runtime + Python, per process (shared in part under forkserver)
MAX_CHUNK = 1024
MAX_SHARD_CHUNK = 10_000  # tar shards: a task may take a whole shard of img2dataset's default size


def visible_gpus(environ: dict[str, str] | None = None) -> list[str]:
    """GPU ids this process may use, found without TensorFlow: CUDA_VISIBLE_DEVICES, else nvidia-smi."""
    import os
    import shutil
    import subprocess
    env = os.environ if environ is None else environ
    if "CUDA_VISIBLE_DEVICES" in env:
        return [g.strip() for g in env["CUDA_VISIBLE_DEVICES"].split(",") if g.strip() and g.strip() != "-1"]
    if shutil.which("nvidia-smi") is None:
        return []
    try:
        out = subprocess.run(["nvidia-smi", "-L"], capture_output=True, text=True, timeout=10).stdout
    except (OSError, subprocess.SubprocessError):
        return []
    return [str(i) for i, line in enumerate(l for l in out.splitlines() if l.startswith("GPU "))]


def mem_available() -> int | None:
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024
    except (OSError, ValueError, IndexError):
        pass
    return None


def auto_workers(model_bytes: int, cpus: int | None = None) -> int:
    """One worker per usable core, fewer when memory would not hold them."""
    cpus = cpus or available_cpus()
    avail = mem_available()
    if avail is None:
        return cpus
    per_worker = WORKER_BASE_BYTES + 4 * model_bytes
    return max(1, min(cpus, int(0.8 * avail) // per_worker))


def auto_chunk(images: int, workers: int, batch: int, per_worker: int = 8, cap: int = MAX_CHUNK) -> int:
    """About ``per_worker`` chunks per worker, a whole number of batches, at most ``cap``.

    Tar shards pass ``cap=MAX_SHARD_CHUNK``: a chunk never crosses a shard, so shards of up to 10,000
    samples go whole to one task when the run is large (the master's cost per image then falls by the
    chunk size, and the shard is read in one pass).
    """
    target = math.ceil(images / max(1, workers * per_worker))
    if target <= batch:
        return max(1, target)
    return min(max(batch, cap), math.ceil(target / batch) * batch)
