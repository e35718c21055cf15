"""`python -m benchmarks.realsize`: real-size photos (W3, W3L), where decoding sets the pace.

W3 (2,000 JPEGs of ~500x375) and W3L (400 of ~3000x2000), cut from the real photographs that
scikit-learn and scikit-image ship; MobileNet v1 224 in fp32 (.pb) and int8 (.tflite, made by
`compss-infer quantize`).  In one run:
- ceilings: model-only fp32 and int8; decode-only on all cores for the project's decoder in each
  `preprocess.decode` mode, plain Pillow, and the libjpeg-turbo bindings simplejpeg and PyTurboJPEG
  (where installed; PyTurboJPEG needs the system's libturbojpeg); the shared-core limit
  1/(1/model + 1/decode) with the project's default decoder;
- contenders, interleaved (order alternating), median of --reps: (b) the hand-written Pillow + TF
  loop (fp32), `compss-infer run` fp32, int8, and int8 with `preprocess.decode=fast`; with
  --baseline-src DIR also the same runs of another checkout's code (the "before" figures);
- top-1 agreement of `preprocess.decode` safe and fast with full decoding on every W3 and W3L image,
  with a trained model: --agreement-model, else the photo-trained MobileNet of benchmarks/photomodel.py
  (W3's random-weights model answers one class for every image).
Rates "after the first result" are the run's own (its summary), and for every contender also
count / (wall - first result) seen from outside, the same way for all.  Writes a JSON file and the
W3 table in docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import statistics
import subprocess
import sys
import tempfile
from datetime import datetime, timezone

from . import harness, limits, workloads

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DOC = os.path.join(ROOT, "docs", "benchmarks.md")
BEGIN, END = "<!-- w3:begin -->", "<!-- w3:end -->"
HAND_BATCH = 64
DECODERS = ("pillow", "compss_infer", "compss_infer:full", "compss_infer:fast", "simplejpeg", "simplejpeg_scaled",
            "turbojpeg", "turbojpeg_scaled")


def py(*args: str) -> list[str]:
    return [sys.executable, *args]


def run_cmd(model: str, images: str, out: str, extra: list[str] = ()) -> list[str]:
    return py("-m", "compss_infer", "run", "--model", model, "--images", images, "--output", out, "--overwrite",
              "--no-progress", "-q", *extra)


def quantize(wl, work: str, samples: int = 200) -> str:
    """W3's int8 twin, by `compss-infer quantize` (full int8; random weights: no agreement bar)."""
    out = os.path.join(work, f"{wl.name}-{wl.count}-int8.tflite")
    if not os.path.exists(out):
        m = harness.run(py("-m", "compss_infer", "quantize", wl.model, "--calibration", wl.images, "--output", out,
                           "--samples", str(samples), "--min-agreement", "0", "--no-fallback", "--overwrite", "-q"))
        if m.returncode:
            raise SystemExit(f"quantize failed: {m.stderr_tail}")
    return out


def contenders(wl, int8: str, work: str, baseline_src: str | None) -> dict:
    """name -> (command, env, results file, first-result probe)."""
    def ci(name: str, model: str, extra: list[str] = (), env: dict | None = None):
        out = os.path.join(work, f"{wl.name}-{name}.csv")
        return run_cmd(model, wl.images, out, list(extra)), env, out, harness.file_nonempty(
            out + ".journal/chunks.bin")
    hand = os.path.join(work, f"{wl.name}-hand.csv")
    specs = {"hand": (py(os.path.join(HERE, "handloop.py"), wl.model, wl.images, hand, "--size", str(wl.height),
                         "--mode", wl.mode, "--batch", str(HAND_BATCH)), None, hand, harness.file_has_lines(hand, 2)),
             "fp32": ci("fp32", wl.model), "int8": ci("int8", int8),
             "int8_fast": ci("int8_fast", int8, ["--set", "preprocess.decode=fast"])}
    if baseline_src:
        env = {"PYTHONPATH": os.path.join(os.path.abspath(baseline_src), "src")}
        specs["fp32_before"] = ci("fp32_before", wl.model, env=env)
        specs["int8_before"] = ci("int8_before", int8, env=env)
    return specs


def measure(name: str, spec, count: int) -> dict:
    cmd, env, out, probe = spec
    for stale in (out, out + ".journal/chunks.bin"):
        if os.path.exists(stale):
            os.unlink(stale)
    m = harness.run(cmd, first_result=probe, env=env)
    if m.returncode not in (0, 1):
        raise SystemExit(f"{name} failed ({m.returncode}):\n{m.stderr_tail}")
    rows = sum(1 for _ in open(out)) - 1
    if rows != count:
        raise SystemExit(f"{name} wrote {rows} rows, expected {count}")
    rec = {"wall_s": round(m.wall_s, 3), "images_per_s": round(count / m.wall_s, 1),
           "first_result_s": m.first_result_s, "peak_tree_pss_mb": m.peak_tree_pss_mb}
    first = m.first_result_s
    rec["outside_after_first_images_per_s"] = round(count / (m.wall_s - first), 1) if first else None
    if os.path.exists(out + ".summary.json"):
        rec["after_first_images_per_s"] = json.load(open(out + ".summary.json")).get("after_first_images_per_s")
    else:  # the hand loop's own clock, as the run's summary counts: images after its first batch / time since
        r = m.report
        after = count - min(HAND_BATCH, count)
        rec["after_first_images_per_s"] = round(after / (r["done_s"] - r["first_result_s"]), 1)
    return rec


def median_of(runs: list[dict]) -> dict:
    keys = [k for k, v in runs[0].items() if isinstance(v, (int, float))]
    med = {k: round(statistics.median(r[k] for r in runs if r.get(k) is not None), 3)
           for k in keys if any(r.get(k) is not None for r in runs)}
    return {**med, "runs": runs}


def classes(model: str, images: str, decode: str, work: str) -> dict[str, str]:
    out = os.path.join(work, f"agree-{decode}.csv")
    m = harness.run(run_cmd(model, images, out, ["--set", f"preprocess.decode={decode}"]))
    if m.returncode not in (0, 1):
        raise SystemExit(f"agreement run ({decode}) failed:\n{m.stderr_tail}")
    return {r["path"]: r["class_id"] for r in csv.DictReader(open(out)) if not r["error"]}


def agreement(model: str, sets: dict[str, str], work: str) -> dict:
    """Top-1 agreement of safe and fast decoding with full decoding, per image set."""
    res = {}
    for name, images in sets.items():
        got = {mode: classes(model, images, mode, work) for mode in ("full", "safe", "fast")}
        n = len(got["full"])
        res[name] = {"images": n, "distinct_classes_full": len(set(got["full"].values()))}
        for mode in ("safe", "fast"):
            same = sum(got[mode].get(p) == c for p, c in got["full"].items())
            res[name][mode] = {"agreeing": same, "agreement": round(same / n, 4)}
        print(f"   agreement {name}: safe {res[name]['safe']['agreement']:.4f}, fast "
              f"{res[name]['fast']['agreement']:.4f} ({n} images)", flush=True)
    return res


def trained_model(work: str) -> str | None:
    """Issue 17's photo-trained MobileNet (benchmarks/photomodel.py), where this checkout has it."""
    try:
        from . import photomodel
    except ImportError:
        return None
    return photomodel.build(work).model


def bench_set(wl, int8: str, work: str, args, cores: int, model_lim: dict) -> dict:
    print(f"== {wl.name}: {wl.description}; decode limits", flush=True)
    dec = limits.decode_limit(wl.images, wl.height, wl.mode, cores, DECODERS, rounds=args.rounds,
                              limit=args.decode_images.get(wl.name))
    print(f"   decode-only, images/s: {json.dumps(dec)}", flush=True)
    specs = contenders(wl, int8, work, args.baseline_src)
    runs: dict[str, list] = {k: [] for k in specs}
    for rep in range(args.reps):
        for k in specs if rep % 2 == 0 else list(reversed(list(specs))):
            rec = measure(k, specs[k], wl.count)
            runs[k].append(rec)
            print(f"   rep {rep + 1} {k}: {rec['images_per_s']} img/s whole, {rec['after_first_images_per_s']} after "
                  f"the first result (outside {rec['outside_after_first_images_per_s']})", flush=True)
    med = {k: median_of(v) for k, v in runs.items()}
    shared = {k: round(1 / (1 / model_lim[k]["images_per_s"] + 1 / dec["images_per_s"]), 1) for k in ("fp32", "int8")}
    shared["int8_fast"] = round(1 / (1 / model_lim["int8"]["images_per_s"] + 1 / dec["compss_infer_fast"]), 1)
    a = {k: med[k]["after_first_images_per_s"] for k in med}
    o = {k: med[k].get("outside_after_first_images_per_s") for k in med}
    ratios = {"int8/shared_core_limit": round(a["int8"] / shared["int8"], 3),
              "int8_fast/shared_core_limit_fast": round(a["int8_fast"] / shared["int8_fast"], 3),
              "fp32/shared_core_limit": round(a["fp32"] / shared["fp32"], 3),
              "int8/fp32": round(a["int8"] / a["fp32"], 2), "int8_fast/fp32": round(a["int8_fast"] / a["fp32"], 2),
              "fp32/hand": round(a["fp32"] / a["hand"], 2),
              "fp32/hand_outside": round(o["fp32"] / o["hand"], 2) if o["fp32"] and o["hand"] else None,
              "fp32/hand_whole": round(med["fp32"]["images_per_s"] / med["hand"]["images_per_s"], 2)}
    if "int8_before" in a:
        ratios.update({"int8_before/fp32_before": round(a["int8_before"] / a["fp32_before"], 2),
                       "fp32_before/hand": round(a["fp32_before"] / a["hand"], 2),
                       "int8_before/shared_core_limit": round(a["int8_before"] / shared["int8"], 3)})
    return {"workload": wl.to_dict(), "decode_only": dec, "shared_core_limit": shared, "contenders": med,
            "ratios": ratios}


def uptime() -> str:
    try:
        return subprocess.run(["uptime"], capture_output=True, text=True).stdout.strip()
    except OSError:
        return ""


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--count", type=lambda t: {k: int(v) for k, v in (i.split("=") for i in t.split(","))},
                    default={}, help="image counts, e.g. W3=2000,W3L=400")
    ap.add_argument("--decode-images", type=lambda t: {k: int(v) for k, v in (i.split("=") for i in t.split(","))},
                    default={"W3": 600, "W3L": 80}, help="images per decode-only measurement")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--rounds", type=int, default=3, help="decode-only turns per decoder (best kept)")
    ap.add_argument("--seconds", type=float, default=2.0, help="model-only seconds per batch size")
    ap.add_argument("--sets", default="W3,W3L")
    ap.add_argument("--baseline-src", help="a checkout of the code before (its src/ runs the *_before contenders)")
    ap.add_argument("--agreement-model", help="a trained .pb (with its card) for the agreement figures")
    ap.add_argument("--workdir", default=os.path.join(tempfile.gettempdir(), "compss-infer-bench"))
    ap.add_argument("--json")
    ap.add_argument("--no-doc", action="store_true")
    ap.add_argument("--note", default="", help="appended to the machine line")
    args = ap.parse_args()
    from compss_infer.model.session import available_cpus
    cores = available_cpus()
    os.makedirs(args.workdir, exist_ok=True)
    started = uptime()
    sets = {name: workloads.build(name, args.workdir, args.count.get(name)) for name in args.sets.split(",")}
    first = next(iter(sets.values()))
    int8 = quantize(first, args.workdir)
    print(f"== model-only limits ({os.path.basename(first.model)}, {os.path.basename(int8)})", flush=True)
    model_lim = {k: limits.model_limit(m, (first.height, first.width, 3), [1, 4, 16], cores, args.seconds)
                 for k, m in (("fp32", first.model), ("int8", int8))}
    res = {"machine": harness.machine(), "date": datetime.now(timezone.utc).strftime("%Y-%m-%d"),
           "uptime_before": started, "model_only": model_lim, "sets": {}}
    for name, wl in sets.items():
        res["sets"][name] = bench_set(wl, int8, args.workdir, args, cores, model_lim)
    model = args.agreement_model or trained_model(args.workdir)
    if model:
        res["agreement_model"] = model
        res["agreement"] = agreement(model, {n: wl.images for n, wl in sets.items()}, args.workdir)
    else:
        print("   no agreement figures: give --agreement-model (W3's random-weights model answers one class)")
    res["uptime_after"] = uptime()
    md = table_md(res, args.note)
    print("\n" + md)
    path = args.json or os.path.join(HERE, "results", f"realsize-{res['date']}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(res, fh, indent=1)
    if not args.no_doc:
        update_doc(md)
    return 0


LABELS = {"hand": "(b) hand-written loop: Pillow in a thread pool + one TF session, fp32",
          "fp32_before": "`compss-infer run` fp32, before", "fp32": "`compss-infer run` fp32",
          "int8_before": "`compss-infer run` int8, before", "int8": "`compss-infer run` int8",
          "int8_fast": "`compss-infer run` int8, `preprocess.decode=fast`"}


def table_md(res: dict, note: str) -> str:
    mo = res["model_only"]
    lines = [f"Model-only limits, images/s: fp32 {mo['fp32']['images_per_s']:,.0f} ({mo['fp32']['layout']}, batch "
             f"{mo['fp32']['batch']}), int8 {mo['int8']['images_per_s']:,.0f} ({mo['int8']['layout']}, batch "
             f"{mo['int8']['batch']}).\n"]
    for name, r in res["sets"].items():
        d, s, ra = r["decode_only"], r["shared_core_limit"], r["ratios"]
        lines += [f"**{name}**: {r['workload']['description']}.\n",
                  "| decode-only, all cores, images/s | " + " | ".join(k.replace("compss_infer_", "compss-infer ")
                                                                        .replace("compss_infer", "compss-infer safe")
                                                                        for k in d if k != "images_per_s") + " |",
                  "|---|" + "---:|" * (len(d) - 1),
                  "| | " + " | ".join(f"{v:,.0f}" if v else "not installed" for k, v in d.items()
                                      if k != "images_per_s") + " |", "",
                  "| contender | images/s whole process | after the first result (run's own) | "
                  "after the first result (seen from outside) |", "|---|---:|---:|---:|"]
        for k, label in LABELS.items():
            c = r["contenders"].get(k)
            if c:
                lines.append(f"| {label} | {c['images_per_s']:,.1f} | {c['after_first_images_per_s']:,.1f} | "
                             f"{c.get('outside_after_first_images_per_s') or 0:,.1f} |")
        lines.append(f"| shared-core limit 1/(1/model + 1/decode): fp32 / int8 / int8 fast | | "
                     f"{s['fp32']:,.0f} / {s['int8']:,.0f} / {s['int8_fast']:,.0f} | |")
        lines.append("\nRatios (after the first result): " + ", ".join(f"{k} **{v}**" for k, v in ra.items()
                                                                         if v is not None) + ".\n")
    if "agreement" in res:
        lines.append(f"Top-1 agreement with a full decode ({os.path.basename(res['agreement_model'])}):\n")
        lines += ["| set | images | distinct classes (full) | safe (default) | fast |", "|---|---:|---:|---:|---:|"]
        for name, a in res["agreement"].items():
            lines.append(f"| {name} | {a['images']} | {a['distinct_classes_full']} | {a['safe']['agreement']:.4f} "
                         f"({a['safe']['agreeing']}/{a['images']}) | {a['fast']['agreement']:.4f} "
                         f"({a['fast']['agreeing']}/{a['images']}) |")
        lines.append("")
    m = res["machine"]
    lines.append(f"Machine: {m['cpu']}, {m['cores']} cores; Python {m['python']}, TensorFlow {m['tensorflow']}; "
                 f"{res['date']}; load before: `{res['uptime_before']}`, after: `{res['uptime_after']}`"
                 f"{'; ' + note if note else ''}.")
    return "\n".join(lines)


def update_doc(md: str) -> None:
    harness.replace_block(DOC, BEGIN, END, md, "Real-size photos (W3, issue 20)")


if __name__ == "__main__":
    sys.exit(main())
