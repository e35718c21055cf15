"""`python -m benchmarks.int8`: the 8-bit contenders, measured in one run against fp32.

(e) W2 (MobileNetV2), whole process: `compss-infer run` with defaults on the fp32 .pb and on its
    int8 .tflite (written by `compss-infer quantize`), interleaved, median of --reps; ratio int8/fp32.
(f) model-only limits, fp32 (TF session) and int8 (LiteRT, XNNPACK), same batches, same cores.
(g) accuracy on the trained demo CNN: the bundled digits_cnn_int8.tflite against digits_cnn.pb on
    the 450 held-out digits (agreement, both accuracies).
W2's weights are random, so its int8 agreement says nothing about accuracy (quantize runs with
--min-agreement 0 there); (g) is the accuracy measurement.  `make bench` runs this after the others.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile

from . import harness, workloads

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DOC = os.path.join(ROOT, "docs", "benchmarks.md")
BEGIN, END = "<!-- int8:begin -->", "<!-- int8:end -->"


def py(*args: str) -> list[str]:
    return [sys.executable, *args]


def quantize(wl, work: str, samples: int) -> str:
    out = os.path.join(work, f"{wl.name}-{wl.count}-int8.tflite")
    if not os.path.exists(out):
        m = harness.run(py("-m", "compss_infer", "quantize", wl.model, "--calibration", wl.images, "--output", out,
                           "--samples", str(samples), "--min-agreement", "0", "--overwrite", "-q"))
        if m.returncode:
            raise SystemExit(f"quantize failed: {m.stderr_tail}")
    return out


def run_cmd(model: str, images: str, out: str) -> list[str]:
    return py("-m", "compss_infer", "run", "--model", model, "--images", images, "--output", out,
              "--overwrite", "--no-progress", "-q")


def whole_process(wl, int8: str, work: str, reps: int) -> dict:
    models = {"fp32": wl.model, "int8": int8}
    walls: dict[str, list[float]] = {k: [] for k in models}
    for rep in range(reps):
        for k in (list(models) if rep % 2 == 0 else list(reversed(list(models)))):
            out = os.path.join(work, f"int8-bench-{k}.csv")
            m = harness.run(run_cmd(models[k], wl.images, out))
            if m.returncode:
                raise SystemExit(f"run {k} failed: {m.stderr_tail}")
            walls[k].append(round(m.wall_s, 3))
            print(f"   rep {rep + 1} {k}: {wl.count / m.wall_s:.1f} img/s whole process", flush=True)
    med = {k: statistics.median(v) for k, v in walls.items()}
    rates = {k: round(wl.count / med[k], 1) for k in med}
    return {"walls_s": walls, "images_per_s": rates, "ratio_int8_over_fp32": round(rates["int8"] / rates["fp32"], 2)}


def model_limits(wl, int8: str, cores: int, seconds: float) -> dict:
    out = {}
    for k, model in (("fp32", wl.model), ("int8", int8)):
        m = harness.run(py("-m", "benchmarks.limits", "model", "--model", model, "--size", str(wl.height),
                           "--mode", wl.mode, "--batches", "1,8,32", "--cores", str(cores), "--seconds", str(seconds)))
        if m.returncode:
            raise SystemExit(f"model limit {k} failed: {m.stderr_tail}")
        out[k] = m.report
    out["ratio_int8_over_fp32"] = round(out["int8"]["images_per_s"] / out["fp32"]["images_per_s"], 2)
    return out


def digits_accuracy(work: str) -> dict:
    images = os.path.join(ROOT, "images", "digits")
    truth = {r["path"]: r["class_id"] for r in csv.DictReader(open(os.path.join(images, "truth.csv")))}
    got = {}
    for k, name in (("fp32", "digits_cnn.pb"), ("int8", "digits_cnn_int8.tflite")):
        out = os.path.join(work, f"digits-{k}.csv")
        m = harness.run(run_cmd(os.path.join(ROOT, "models", name), images, out))
        if m.returncode:
            raise SystemExit(f"digits {k} failed: {m.stderr_tail}")
        got[k] = {r["path"]: r["class_id"] for r in csv.DictReader(open(out))}
    n = len(truth)
    agree = sum(got["fp32"][p] == got["int8"][p] for p in truth)
    acc = {k: round(sum(got[k][p] == c for p, c in truth.items()) / n, 4) for k in got}
    return {"images": n, "agreement": round(agree / n, 4), "agreeing": agree, "accuracy": acc,
            "bytes": {k: os.path.getsize(os.path.join(ROOT, "models", f))
                      for k, f in (("fp32", "digits_cnn.pb"), ("int8", "digits_cnn_int8.tflite"))}}


def bench(work: str, count: int | None, reps: int, cores: int, seconds: float, samples: int = 200) -> dict:
    wl = workloads.build("W2", work, count)
    print(f"== int8: {wl.description}; quantizing", flush=True)
    int8 = quantize(wl, work, samples)
    res = {"workload": wl.to_dict(), "bytes": {"fp32": os.path.getsize(wl.model), "int8": os.path.getsize(int8)}}
    res["whole_process"] = whole_process(wl, int8, work, reps)
    res["model_only"] = model_limits(wl, int8, cores, seconds)
    res["digits"] = digits_accuracy(work)
    return res


def table_md(r: dict, machine: str) -> str:
    wp, mo, dg = r["whole_process"], r["model_only"], r["digits"]
    lim = lambda d: f"{d['images_per_s']:,.0f} ({d['layout']}, batch {d['batch']})"
    return "\n".join([
        f"**int8 vs fp32**, {r['workload']['description']}; int8 model written by `compss-infer quantize`.\n",
        "| contender | fp32 | int8 | int8 / fp32 |",
        "|---|---:|---:|---:|",
        f"| (e) `compss-infer run`, defaults, images/s whole process (median of {len(wp['walls_s']['fp32'])}) | "
        f"{wp['images_per_s']['fp32']:,.1f} | {wp['images_per_s']['int8']:,.1f} | **{wp['ratio_int8_over_fp32']}** |",
        f"| (f) model-only limit, images/s | {lim(mo['fp32'])} | {lim(mo['int8'])} | **{mo['ratio_int8_over_fp32']}** |",
        f"| model file, bytes | {r['bytes']['fp32']:,} | {r['bytes']['int8']:,} | "
        f"{r['bytes']['int8'] / r['bytes']['fp32']:.2f} |",
        f"| (g) demo CNN, accuracy on {dg['images']} held-out digits | {dg['accuracy']['fp32']:.4f} | "
        f"{dg['accuracy']['int8']:.4f} | agreement **{dg['agreement']:.4f}** ({dg['agreeing']}/{dg['images']}) |",
        f"| demo CNN file, bytes | {dg['bytes']['fp32']:,} | {dg['bytes']['int8']:,} | "
        f"{dg['bytes']['int8'] / dg['bytes']['fp32']:.2f} |",
        "",
        f"{machine}. fp32 and int8 runs interleaved in one run, so their ratio is the figure to trust.",
    ])


def update_doc(md: str) -> None:
    harness.replace_block(DOC, BEGIN, END, md, "8-bit models (int8, LiteRT)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=int, default=None, help="W2 images (default: the workload's 2,000)")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--seconds", type=float, default=1.5)
    ap.add_argument("--workdir")
    ap.add_argument("--json")
    ap.add_argument("--no-doc", action="store_true")
    ap.add_argument("--note", default="", help="appended to the machine line (e.g. 'machine shared')")
    a = ap.parse_args()
    from compss_infer.model.session import available_cpus
    cores = available_cpus()
    work = a.workdir or os.path.join(tempfile.gettempdir(), "compss-infer-bench")
    os.makedirs(work, exist_ok=True)
    res = bench(work, a.count, a.reps, cores, a.seconds)
    m = harness.machine()
    from datetime import datetime, timezone
    line = (f"Machine: {m['cpu']}, {m['cores']} cores; TensorFlow {m['tensorflow']}, ai-edge-litert "
            f"{_version('ai-edge-litert')}; {datetime.now(timezone.utc):%Y-%m-%d}{'; ' + a.note if a.note else ''}")
    md = table_md(res, line)
    print("\n" + md)
    path = a.json or os.path.join(HERE, "results", f"int8-{datetime.now(timezone.utc):%Y-%m-%d}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump({"machine": m, **res}, fh, indent=1)
    if not a.no_doc:
        update_doc(md)
    return 0


def _version(dist: str) -> str | None:
    from importlib import metadata
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


if __name__ == "__main__":
    sys.exit(main())
