"""`python -m benchmarks.int8`: 8-bit against fp32 on a MobileNet with trained weights, in one run.

The model is benchmarks/photomodel.py's MobileNet v1 (alpha 0.5, 128x128, 40 classes), trained here
on crops of the photographs scikit-learn and scikit-image ship (random weights show no quantization
damage).  `compss-infer quantize` makes two int8 models from it, calibrated on its 300 calibration
crops: full int8 (`--no-fallback --min-agreement 0`) and the default (check + float fallback), and
both are measured beside the fp32 graph:
(q) what quantize's own check said (agreement, 95 % lower bound, check images, ops kept in float);
(a) agreement with fp32 on 1,000 other crops never calibrated on (nor trained on), by `compss-infer run`;
    accuracy against the crops' true classes; rows with a tied top score;
(e) `compss-infer run` with defaults, whole process, interleaved, median of --reps; ratios to fp32;
(f) model-only limits (in-memory tensors; TF session for fp32, LiteRT with XNNPACK for int8);
(g) the bundled digits_cnn_int8.tflite against digits_cnn.pb on the 450 held-out digits.
`make bench` runs this after the others.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import sys
import tempfile

import yaml

from . import harness

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DOC = os.path.join(ROOT, "docs", "benchmarks.md")
BEGIN, END = "<!-- int8:begin -->", "<!-- int8:end -->"
KINDS = ("fp32", "full_int8", "written", "checked")
LABEL = {"fp32": "fp32 `.pb`", "full_int8": "full int8 (`--no-fallback`)",
         "written": "quantize defaults (check: held-out + views)", "checked": "quantize `--check` (1,000 crops)"}


def py(*args: str) -> list[str]:
    return [sys.executable, *args]


def quantize(pm, work: str, name: str, extra: list[str]) -> dict:
    """Run `compss-infer quantize`; (model path, its card's figures, quantize's own lines)."""
    out = os.path.join(work, f"photo-{name}.tflite")
    m = harness.run(py("-m", "compss_infer", "quantize", pm.model, "--calibration", pm.calib, "--output", out,
                       "--overwrite", *extra))
    if m.returncode:
        raise SystemExit(f"quantize {name} failed ({m.returncode}): {m.stderr_tail}")
    card = yaml.safe_load(open(out[:-len(".tflite")] + ".yaml"))
    return {"path": out, "wall_s": round(m.wall_s, 1), "verification": card["verification"],
            "float_ops": card["quantization"]["float_ops"], "output_dtype": card["quantization"]["output"]["dtype"]}


def run_cmd(model: str, images: str, out: str, *extra: str) -> list[str]:
    return py("-m", "compss_infer", "run", "--model", model, "--images", images, "--output", out,
              "--overwrite", "--no-progress", "-q", *extra)


def agreement(pm, models: dict[str, str], work: str) -> dict:
    """Each model over the 1,000 test crops: agreement with fp32's rows, accuracy, tied rows."""
    truth = os.path.join(pm.test, "truth.csv")
    got = {}
    for k, model in models.items():
        out = os.path.join(work, f"photo-agree-{k}.csv")
        m = harness.run(run_cmd(model, pm.test, out, "--truth", truth))
        if m.returncode:
            raise SystemExit(f"run {k} failed: {m.stderr_tail}")
        got[k] = list(csv.DictReader(open(out)))
    want = {r["path"]: r["class_id"] for r in csv.DictReader(open(truth))}
    n = len(got["fp32"])
    res = {"images": n}
    for k, rows in got.items():
        agree = sum(a["class_id"] == b["class_id"] for a, b in zip(rows, got["fp32"]))
        res[k] = {"agreeing": agree, "agreement": round(agree / n, 4),
                  "accuracy": round(sum(r["class_id"] == want[r["path"]] for r in rows) / n, 4),
                  "tied_rows": sum(r["error"].startswith("TiedTopScore") for r in rows)}
    from compss_infer.model.quantcheck import wilson_lower
    for k in models:
        res[k]["lower_bound_95"] = round(wilson_lower(res[k]["agreeing"], n), 4)
    return res


def whole_process(models: dict[str, str], images: str, count: int, work: str, reps: int) -> dict:
    walls: dict[str, list[float]] = {k: [] for k in models}
    order = list(models)
    for rep in range(reps):
        for k in (order if rep % 2 == 0 else list(reversed(order))):
            out = os.path.join(work, f"int8-bench-{k}.csv")
            m = harness.run(run_cmd(models[k], images, out))
            if m.returncode:
                raise SystemExit(f"run {k} failed: {m.stderr_tail}")
            walls[k].append(round(m.wall_s, 3))
            print(f"   rep {rep + 1} {k}: {count / m.wall_s:.1f} img/s whole process", flush=True)
    rates = {k: round(count / statistics.median(v), 1) for k, v in walls.items()}
    return {"walls_s": walls, "images_per_s": rates,
            "ratio_over_fp32": {k: round(rates[k] / rates["fp32"], 2) for k in models if k != "fp32"}}


def model_limits(models: dict[str, str], size: int, cores: int, seconds: float) -> dict:
    out: dict = {}
    for k, model in models.items():
        m = harness.run(py("-m", "benchmarks.limits", "model", "--model", model, "--size", str(size),
                           "--mode", "RGB", "--batches", "1,8,32", "--cores", str(cores), "--seconds", str(seconds)))
        if m.returncode:
            raise SystemExit(f"model limit {k} failed: {m.stderr_tail}")
        out[k] = m.report
    out["ratio_over_fp32"] = {k: round(out[k]["images_per_s"] / out["fp32"]["images_per_s"], 2)
                              for k in models if k != "fp32"}
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


def bench(work: str, reps: int, cores: int, seconds: float) -> dict:
    from . import photomodel
    print("== int8: the photo-trained MobileNet (built once, cached in the work folder)", flush=True)
    pm = photomodel.build(work)
    q = {"full_int8": quantize(pm, work, "full-int8", ["--no-fallback", "--min-agreement", "0"]),
         "written": quantize(pm, work, "written", []),
         "checked": quantize(pm, work, "checked", ["--check", pm.check])}
    models = {"fp32": pm.model, **{k: v["path"] for k, v in q.items()}}
    res = {"photo_model": pm.to_dict(), "quantize": q,
           "bytes": {k: os.path.getsize(v) for k, v in models.items()}}
    res["agreement"] = agreement(pm, models, work)
    res["whole_process"] = whole_process(models, pm.test, photomodel.TEST, work, reps)
    res["model_only"] = model_limits(models, photomodel.SIZE, cores, seconds)
    res["digits"] = digits_accuracy(work)
    return res


def _q(v: dict) -> str:
    return (f"{v['top1_agreement']:.4f} ({v['lower_bound_95']:.4f}; {v['check_images']}"
            + (f" = {v['held_out_images']} held out + {v['augmented_views']} views" if v.get("augmented_views") else "")
            + ")")


def table_md(r: dict, machine: str) -> str:
    pm, q, ag, wp, mo, dg = (r["photo_model"], r["quantize"], r["agreement"], r["whole_process"], r["model_only"],
                             r["digits"])

    def cols(cell) -> str:
        return " | ".join(cell(k) for k in KINDS)

    def ratio(d: dict, k: str) -> str:
        return "" if k == "fp32" else f" (**{d['ratio_over_fp32'][k]}x**)"

    def agree(k: str) -> str:
        a = ag[k]
        return f"**{a['agreement']:.4f}** ({a['agreeing']}/{ag['images']}; {a['lower_bound_95']:.4f})"

    def limit(k: str) -> str:
        d = mo[k]
        return f"{d['images_per_s']:,.0f} ({d['layout']}, batch {d['batch']}){ratio(mo, k)}"

    return "\n".join([
        f"**int8 vs fp32 on a trained MobileNet v1** (alpha 0.5, 128x128, {pm['classes']} classes, trained here "
        f"in {pm['train_s']:.0f} s on crops of {len(pm['photos'])} photos that scikit-learn and scikit-image ship; "
        f"fp32 accuracy {ag['fp32']['accuracy']:.4f} on its 1,000 test crops). The int8 models are written by "
        f"`compss-infer quantize` from the same 300 calibration crops (240 when quantize holds every 5th "
        f"out for its check).\n",
        f"| | {cols(lambda k: LABEL[k])} |",
        "|---|---:|---:|---:|---:|",
        "| (q) quantize's own check: agreement (95% lower bound, check set) | - | "
        + " | ".join(_q(q[k]["verification"]) for k in KINDS[1:]) + " |",
        "| ops kept in float; output | - | "
        + " | ".join(f"{len(q[k]['float_ops'])}; {q[k]['output_dtype']}" for k in KINDS[1:]) + " |",
        f"| (a) agreement with fp32 on {ag['images']:,} crops never calibrated on (95% lower bound) | 1 | "
        + " | ".join(agree(k) for k in KINDS[1:]) + " |",
        f"| accuracy on those crops | {cols(lambda k: format(ag[k]['accuracy'], '.4f'))} |",
        f"| rows with a tied top score (flagged) | {cols(lambda k: str(ag[k]['tied_rows']))} |",
        f"| (e) `compss-infer run`, defaults, images/s whole process (median of {len(wp['walls_s']['fp32'])}) | "
        f"{cols(lambda k: format(wp['images_per_s'][k], ',.1f') + ratio(wp, k))} |",
        f"| (f) model-only limit, images/s | {cols(limit)} |",
        f"| model file, bytes | {cols(lambda k: format(r['bytes'][k], ','))} |",
        "",
        f"(g) bundled demo CNN on {dg['images']} held-out digits: accuracy fp32 {dg['accuracy']['fp32']:.4f}, int8 "
        f"{dg['accuracy']['int8']:.4f}, agreement **{dg['agreement']:.4f}** ({dg['agreeing']}/{dg['images']}); "
        f"files {dg['bytes']['fp32']:,} and {dg['bytes']['int8']:,} bytes.",
        "",
        f"{machine}. All contenders interleaved in one run, so their ratios are the figures to trust.",
    ])


def update_doc(md: str) -> None:
    harness.replace_block(DOC, BEGIN, END, md, "8-bit models (int8, LiteRT)")


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
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
    res = bench(work, a.reps, cores, a.seconds)
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
