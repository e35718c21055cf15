"""The ceilings: model-only throughput on in-memory tensors, and decode+resize-only throughput.

A ``.tflite`` model is run by LiteRT's interpreter (XNNPACK), a ``.pb`` by a TF session.

model: for each batch size, both ways of using all cores, best taken: one process with
  intra-op threads = cores, and `cores` single-threaded processes running at once.
decode: all images decoded and resized by `cores` processes: plain Pillow (open, convert, resize,
  to array: the unavoidable work) and compss-infer's own decoder (with its safety checks); on request
  (--variants) also its other decode modes and the libjpeg-turbo bindings simplejpeg and PyTurboJPEG.

`python -m benchmarks.limits model|decode ...` prints one JSON line.
"""
from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import time


def _session(model: str, intra: int, device: str):
    from compss_infer.model.session import import_tf
    tf = import_tf()
    gd = tf.compat.v1.GraphDef()
    with open(model, "rb") as fh:
        gd.ParseFromString(fh.read())
    g = tf.Graph()
    with g.as_default():
        tf.compat.v1.import_graph_def(gd, name="")
    cfg = tf.compat.v1.ConfigProto(intra_op_parallelism_threads=intra, inter_op_parallelism_threads=1)
    if device == "cpu":
        cfg.device_count["GPU"] = 0
    else:
        cfg.gpu_options.allow_growth = True
    return tf.compat.v1.Session(graph=g, config=cfg)


def _litert(model: str, intra: int):
    """(run(x), input dtype) for a .tflite model in LiteRT (XNNPACK), resized to each batch."""
    from ai_edge_litert.interpreter import Interpreter
    it = Interpreter(model_path=model, num_threads=intra)
    inp, out = it.get_input_details()[0], it.get_output_details()[0]
    rows = [None]

    def run(x):
        if rows[0] != len(x):
            it.resize_tensor_input(inp["index"], list(x.shape))
            it.allocate_tensors()
            rows[0] = len(x)
        it.set_tensor(inp["index"], x)
        it.invoke()
        return it.get_tensor(out["index"])
    return run, inp["dtype"]


def _model_worker(model, shape, intra, batches, seconds, device, barrier, queue):
    import numpy as np
    if model.endswith(".tflite"):
        infer, dtype = _litert(model, intra)
    else:
        sess = _session(model, intra, device)
        infer, dtype = (lambda x: sess.run("probs:0", {"images:0": x})), np.float32
    rng = np.random.default_rng(0)
    results = {}
    for b in batches:
        if np.dtype(dtype).kind == "f":
            x = rng.random((b, *shape), dtype=np.float32)
        else:
            x = rng.integers(np.iinfo(dtype).min, np.iinfo(dtype).max, (b, *shape)).astype(dtype)
        infer(x)  # warm-up for this shape
        barrier.wait()
        n, t0 = 0, time.perf_counter()
        while time.perf_counter() - t0 < seconds:
            infer(x)
            n += b
        results[b] = n / (time.perf_counter() - t0)
        barrier.wait()
    queue.put(results)


def model_limit(model: str, shape: tuple[int, ...], batches: list[int], cores: int, seconds: float,
                device: str = "cpu") -> dict:
    ctx = multiprocessing.get_context("spawn")
    layouts = {"1 process x %d threads" % cores: (1, cores), "%d processes x 1 thread" % cores: (cores, 1)}
    if device == "gpu":
        layouts = {"1 process (GPU)": (1, cores)}
    table = {}
    for name, (procs, intra) in layouts.items():
        barrier, queue = ctx.Barrier(procs), ctx.Queue()
        ps = [ctx.Process(target=_model_worker, args=(model, shape, intra, batches, seconds, device, barrier, queue))
              for _ in range(procs)]
        for p in ps:
            p.start()
        per = [queue.get() for _ in ps]
        for p in ps:
            p.join()
        table[name] = {b: round(sum(r[b] for r in per), 1) for b in batches}
    best = max(((v, name, b) for name, row in table.items() for b, v in row.items()))
    return {"images_per_s": best[0], "layout": best[1], "batch": best[2], "table": table}


def _decoder(variant: str, size: int, mode: str):
    """path -> (size, size, C) uint8, the way ``variant`` decodes; None if its library is missing here.

    pillow: the plain idiom, Image.open().convert().resize(). compss_infer[:safe|fast|full]: the
    project's decoder (default safe) with its safety checks. simplejpeg / turbojpeg: libjpeg-turbo
    bindings from PyPI, decoding to a numpy array that Pillow then resizes; "_scaled" asks them for
    libjpeg's M/8 scaling while the image stays SAFE_MARGIN x the target (safe's rule; they scale in
    eighths, Pillow in halves).
    They read no EXIF orientation and check only the header's size: what adopting them would still need.
    """
    import numpy as np
    from PIL import Image
    bilinear = Image.Resampling.BILINEAR
    if variant == "pillow":
        return lambda p: np.asarray(Image.open(p).convert(mode).resize((size, size)), np.uint8)
    if variant.startswith("compss_infer"):
        from compss_infer.core.specs import PreprocessSpec
        from compss_infer.images.preprocess import Geometry, decode
        how = variant.partition(":")[2] or "safe"
        spec, geo = PreprocessSpec(mode=mode, decode=how), Geometry(size, size, 1 if mode == "L" else 3)
        return lambda p: decode(p, spec, geo)
    base, _, scaled = variant.partition("_")
    from compss_infer.images.preprocess import SAFE_MARGIN
    least = int(SAFE_MARGIN * size) if scaled else 0
    try:
        if base == "simplejpeg":
            import simplejpeg

            def raw(data: bytes):
                h, w, _, _ = simplejpeg.decode_jpeg_header(data)  # the limit check reads this first
                fit = least if min(h, w) >= least else 0  # an unreachable minimum would make it upscale
                return simplejpeg.decode_jpeg(data, colorspace="GRAY" if mode == "L" else "RGB",
                                              min_height=fit, min_width=fit)
        elif base == "turbojpeg":
            from turbojpeg import TJPF_GRAY, TJPF_RGB, TurboJPEG
            tj = TurboJPEG()  # needs the system's libturbojpeg

            def raw(data: bytes):
                w, h, _, _ = tj.decode_header(data)
                fits = [f for f in tj.scaling_factors
                        if f[0] <= f[1] and w * f[0] // f[1] >= least and h * f[0] // f[1] >= least]
                factor = max(fits, key=lambda f: f[1] / f[0]) if least and fits else None
                return tj.decode(data, pixel_format=TJPF_GRAY if mode == "L" else TJPF_RGB, scaling_factor=factor)
        else:
            raise ValueError(variant)
    except (ImportError, OSError, RuntimeError):
        return None

    def run(p: str):
        with open(p, "rb") as fh:
            a = raw(fh.read())
        im = Image.fromarray(a[..., 0] if a.ndim == 3 and a.shape[2] == 1 else a)
        return np.asarray(im.resize((size, size), bilinear), np.uint8)
    return run


def _decode_share(args):
    paths, size, mode, variant = args
    fn = _decoder(variant, size, mode)
    if fn is None:
        return -1
    for p in paths:
        fn(p)
    return len(paths)


DEFAULT_VARIANTS = ("pillow", "compss_infer")


def decode_limit(images: str, size: int, mode: str, cores: int, variants=DEFAULT_VARIANTS, rounds: int = 1,
                 limit: int | None = None) -> dict:
    """Images/s of each decode variant on all cores; with ``rounds`` > 1 the variants take turns and each
    keeps its best round (on a shared machine the best is the least disturbed)."""
    paths = sorted(os.path.join(d, f) for d, _, fs in os.walk(images) for f in fs)[:limit]
    for p in paths:  # every variant reads from the page cache, as the contenders' later runs do
        with open(p, "rb") as fh:
            fh.read()
    ctx = multiprocessing.get_context("spawn")
    out = {}
    with ctx.Pool(cores) as pool:
        pool.map(_decode_share, [(paths[:cores * 5], size, mode, "compss_infer")] * cores)  # warm imports + caches
        for r in range(rounds):
            for variant in variants if r % 2 == 0 else list(reversed(variants)):
                shares = [(paths[i::cores], size, mode, variant) for i in range(cores)]
                t0 = time.perf_counter()
                done = pool.map(_decode_share, shares)
                rate = None if min(done) < 0 else round(sum(done) / (time.perf_counter() - t0), 1)
                out[variant] = rate if rate is None else max(rate, out.get(variant) or 0.0)
    # The ceiling is the faster of the project's default decoder and plain Pillow (which does a needless
    # same-size resize and copy on small images); bindings the project does not ship do not count.
    ours = [v for k, v in out.items() if k in ("pillow", "compss_infer", "compss_infer:safe") and v]
    return {"images_per_s": max(ours), **{k.replace(":", "_"): v for k, v in out.items()}}


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("kind", choices=["model", "decode"])
    ap.add_argument("--model")
    ap.add_argument("--images")
    ap.add_argument("--size", type=int, required=True)
    ap.add_argument("--mode", default="RGB")
    ap.add_argument("--batches", default="1,8,32,128,256")
    ap.add_argument("--cores", type=int, default=os.cpu_count())
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--device", default="cpu")
    ap.add_argument("--variants", default=",".join(DEFAULT_VARIANTS), help="decoders to time (decode only)")
    ap.add_argument("--rounds", type=int, default=1, help="decode: turns per variant, best kept")
    ap.add_argument("--limit", type=int, default=None, help="decode: at most this many images")
    a = ap.parse_args()
    if a.kind == "model":
        shape = (a.size, a.size, 1 if a.mode == "L" else 3)
        res = model_limit(a.model, shape, [int(b) for b in a.batches.split(",")], a.cores, a.seconds, a.device)
    else:
        res = decode_limit(a.images, a.size, a.mode, a.cores, a.variants.split(","), a.rounds, a.limit)
    print(json.dumps(res))


if __name__ == "__main__":
    main()
