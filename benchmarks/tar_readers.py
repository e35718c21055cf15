"""Reading a shard's images: compss-infer's own reader (headers by offset, members by pread) against
WebDataset's tar reader and the standard library's ``tarfile``, in one run, interleaved.

Each contender gets every image member's bytes of the same shards (the work before decoding):
- ``own``: ``index_shard`` (headers only) then, per chunk, ``read_slice`` + ``readers.fetch`` (what a
  worker does);
- ``webdataset``: ``webdataset.tariterators.tar_file_expander`` + ``group_by_keys`` (its streaming reader);
- ``tarfile``: ``tarfile.open`` and ``extractfile`` of each image member.
WebDataset is not a dependency: ``pip install webdataset`` to include it (it is skipped otherwise).

``python -m benchmarks.tar_readers [--shards 4 --samples 2000]`` prints members/s and one JSON line.
"""
from __future__ import annotations

import argparse
import io
import json
import os
import statistics
import sys
import tarfile
import tempfile
import time

import numpy as np


def make_shards(folder: str, shards: int, samples: int, image_bytes: int) -> list[str]:
    rng = np.random.default_rng(0)
    paths = []
    for k in range(shards):
        path = os.path.join(folder, f"{k:05d}.tar")
        with tarfile.open(path, "w") as tf:
            for i in range(samples):
                key = f"{k * samples + i:09d}"
                for ext, data in (("jpg", rng.bytes(image_bytes)), ("cls", str(i % 10).encode()),
                                  ("json", b'{"w": 224, "h": 224}'), ("txt", b"a caption")):
                    ti = tarfile.TarInfo(f"{key}.{ext}")
                    ti.size = len(data)
                    tf.addfile(ti, io.BytesIO(data))
        paths.append(path)
    return paths


def own(paths: list[str], chunk: int) -> int:
    from compss_infer.images.readers import fetch
    from compss_infer.images.shards import ShardSlice, index_shard, read_slice
    n = 0
    for path in paths:
        ix = index_shard(path)
        sl = ShardSlice(path, path, ix.size, ix.mtime_ns, 0, ix.starts)
        for a in range(0, len(sl), chunk):
            _, sources, _ = read_slice(sl[a:a + chunk])
            for b in range(0, len(sources), 64):  # a worker fetches one batch at a time
                n += sum(len(x) for x in fetch(sources[b:b + 64]))
    return n


def webdataset_reader(paths: list[str], chunk: int) -> int:
    from webdataset import tariterators
    n = 0
    for path in paths:
        with open(path, "rb") as fh:
            for sample in tariterators.group_by_keys(tariterators.tar_file_expander([{"stream": fh, "url": path}])):
                n += len(sample["jpg"])
    return n


def tarfile_reader(paths: list[str], chunk: int) -> int:
    n = 0
    for path in paths:
        with tarfile.open(path) as tf:
            for m in tf:
                if m.name.endswith(".jpg"):
                    n += len(tf.extractfile(m).read())
    return n


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--shards", type=int, default=4)
    ap.add_argument("--samples", type=int, default=2000)
    ap.add_argument("--image-bytes", type=int, default=20_000)
    ap.add_argument("--chunk", type=int, default=256)
    ap.add_argument("--reps", type=int, default=3)
    args = ap.parse_args()
    contenders = {"own": own, "tarfile": tarfile_reader}
    try:
        import webdataset  # noqa: F401
        contenders["webdataset"] = webdataset_reader
    except ImportError:
        print("webdataset is not installed: left out (pip install webdataset)")
    with tempfile.TemporaryDirectory(prefix="compss-infer-tar-") as work:
        paths = make_shards(work, args.shards, args.samples, args.image_bytes)
        for p in paths:  # warm the page cache: every contender reads from memory
            open(p, "rb").read()
        times: dict[str, list[float]] = {k: [] for k in contenders}
        expected = args.shards * args.samples * args.image_bytes
        for rep in range(args.reps):
            for name in (list(contenders) if rep % 2 == 0 else list(contenders)[::-1]):
                t = time.perf_counter()
                got = contenders[name](paths, args.chunk)
                times[name].append(time.perf_counter() - t)
                assert got == expected, (name, got, expected)
    members = args.shards * args.samples
    rates = {k: round(members / statistics.median(v)) for k, v in times.items()}
    for k, r in rates.items():
        print(f"{k:<11} {r:>9,} images/s  ({r / rates['own']:.2f}x own)")
    print(json.dumps({"tar_readers": {"shards": args.shards, "samples_per_shard": args.samples, "members_per_sample": 4,
                                      "image_bytes": args.image_bytes, "reps": args.reps, "images_per_s": rates}}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
