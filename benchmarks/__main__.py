"""`python -m benchmarks`: compss-infer against the original pattern and a hand-written loop.

For each workload (W1 small CNN on 20,000 PNGs, W2 MobileNetV2 on 2,000 JPEGs) it measures, in one
run, interleaved, the median of --reps runs of:
  (a) the original 2017 pattern (graph + session per image; a subset, extrapolated),
  (b) a hand-written single-process TensorFlow loop,
  (c) `compss-infer run` with its defaults (local engine),
  (d) `compss-infer run` with the best settings a short sweep finds,
and the ceilings: model-only throughput (best batch, all cores) and decode+resize-only throughput;
then the int8 contenders (benchmarks/int8.py: a MobileNet trained here, full int8 and quantize's
fallback against fp32: agreement on images never calibrated on, whole-process and model-only speed;
demo-CNN accuracy);
and the real-size photos (benchmarks/realsize.py: W3 and W3L, decoders, fp32/int8, decode agreement).
Every contender is timed as a whole process, from start to results written.  Prints a table and the
ratios, writes a JSON file and updates the table in docs/benchmarks.md.
"""
from __future__ import annotations

import argparse
import csv
import json
import os
import platform
import statistics
import sys
import tempfile
import time
from datetime import datetime, timezone

from . import harness, workloads

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)
DOC = os.path.join(ROOT, "docs", "benchmarks.md")
BEGIN, END = "<!-- bench:begin -->", "<!-- bench:end -->"


def py(*args: str) -> list[str]:
    return [sys.executable, *args]


def ci_cmd(wl, out: str, extra: list[str], device: str) -> list[str]:
    cmd = py("-m", "compss_infer", "run", "--model", wl.model, "--images", wl.images, "--output", out,
             "--overwrite", "--no-progress", "-q")
    if device == "gpu":
        cmd += ["--device", "gpu"]
    return cmd + extra


def steady_rate(tasks_csv: str) -> float:
    """Images per second between the first task's start and the last task's end (no start-up)."""
    rows = list(csv.DictReader(open(tasks_csv)))
    span = max(float(r["finished_s"]) for r in rows) - min(float(r["started_s"]) for r in rows)
    return sum(int(r["count"]) for r in rows) / span if span > 0 else 0.0


def sweep(wl, work: str, cores: int, device: str, subset: int) -> tuple[list[str], list[dict]]:
    """Try worker/batch settings on a subset; return the fastest as extra flags, and the table."""
    listed = sorted(os.path.join(d, f) for d, _, fs in os.walk(wl.images) for f in fs)[:subset]
    lst = os.path.join(work, f"{wl.name}-subset.txt")
    with open(lst, "w") as fh:
        fh.write("\n".join(listed) + "\n")
    workers = sorted({1, max(1, cores // 2), cores}) if device == "cpu" else [1]
    batches = [64, 128, 256, 512] if wl.height <= 64 else [1, 4, 8, 16, 32]
    table = []
    for w in workers:
        for b in batches:
            out = os.path.join(work, f"sweep-{wl.name}.csv")
            flags = ["--workers", str(w), "--batch-size", str(b)]
            cmd = py("-m", "compss_infer", "run", "--model", wl.model, "--image-list", lst, "--output", out,
                     "--overwrite", "--no-progress", "-q", *flags) + (["--device", "gpu"] if device == "gpu" else [])
            m = harness.run(cmd)
            rate = steady_rate(out + ".tasks.csv") if m.returncode in (0, 1) else 0.0
            table.append({"workers": w, "batch_size": b, "steady_images_per_s": round(rate, 1)})
            print(f"  sweep {wl.name}: workers={w} batch={b}: {rate:.0f} img/s", flush=True)
    best = max(table, key=lambda r: r["steady_images_per_s"])
    return ["--workers", str(best["workers"]), "--batch-size", str(best["batch_size"])], table


def limits(wl, cores: int, device: str, seconds: float) -> dict:
    batches = "1,32,128,256,512" if wl.height <= 64 else "1,4,8,16,32"
    m = harness.run(py("-m", "benchmarks.limits", "model", "--model", wl.model, "--size", str(wl.height),
                       "--mode", wl.mode, "--batches", batches, "--cores", str(cores), "--seconds", str(seconds),
                       "--device", device))
    d = harness.run(py("-m", "benchmarks.limits", "decode", "--images", wl.images, "--size", str(wl.height),
                       "--mode", wl.mode, "--cores", str(cores)))
    if m.returncode or d.returncode:
        raise SystemExit(f"limits failed: {m.stderr_tail}\n{d.stderr_tail}")
    return {"model": m.report, "decode": d.report}


def contenders(wl, work: str, cores: int, device: str, best_flags: list[str], original_limit: int) -> dict:
    """name -> (command, first-result probe or None, how to get images/s)."""
    out = {k: os.path.join(work, f"{wl.name}-{k}.csv") for k in "abcd"}
    common = ["--size", str(wl.height), "--mode", wl.mode]
    return {
        "a": (py(os.path.join(HERE, "original.py"), wl.model, wl.images, out["a"], *common,
                 "--procs", str(cores), "--limit", str(original_limit)), None, out["a"]),
        "b": (py(os.path.join(HERE, "handloop.py"), wl.model, wl.images, out["b"], *common, "--device", device),
              harness.file_has_lines(out["b"], 2), out["b"]),
        "c": (ci_cmd(wl, out["c"], [], device), harness.file_nonempty(out["c"] + ".journal/chunks.bin"), out["c"]),
        "d": (ci_cmd(wl, out["d"], best_flags, device), harness.file_nonempty(out["d"] + ".journal/chunks.bin"),
              out["d"]),
    }


def measure_one(name: str, spec, wl) -> dict:
    cmd, probe, out = spec
    if os.path.exists(out):
        os.unlink(out)  # the first-result probe must not see the last run's file
    m = harness.run(cmd, first_result=probe)
    if m.returncode not in (0, 1):
        raise SystemExit(f"contender {name} failed ({m.returncode}):\n{m.stderr_tail}")
    rec = {"wall_s": round(m.wall_s, 3), "peak_tree_pss_mb": m.peak_tree_pss_mb,
           "peak_master_rss_mb": m.peak_master_rss_mb, "first_result_s": m.first_result_s}
    if name == "a":
        r = m.report
        per_image = (r["done_s"] - r["ready_s"]) / r["images"]
        startup = m.wall_s - (r["done_s"] - r["ready_s"])
        est = startup + per_image * wl.count
        rec.update({"images": r["images"], "extrapolated_wall_s": round(est, 2), "per_image_ms": round(per_image * 1e3, 2),
                    "images_per_s": round(wl.count / est, 2), "first_result_s": round(r["first_result_s"], 3)})
    else:
        rows = sum(1 for _ in open(out)) - 1
        if rows != wl.count:
            raise SystemExit(f"contender {name} wrote {rows} rows, expected {wl.count}")
        rec["images_per_s"] = round(wl.count / m.wall_s, 1)
    first = rec["first_result_s"]
    wall = rec.get("extrapolated_wall_s", rec["wall_s"])
    # After the first result: start-up (TensorFlow import, model load) taken out, the same way for all.
    rec["after_first_images_per_s"] = round(wl.count / (wall - first), 1) if first and wall > first else None
    return rec


def median_record(runs: list[dict]) -> dict:
    keys = [k for k in runs[0] if isinstance(runs[0][k], (int, float)) and runs[0][k] is not None]
    med = {k: round(statistics.median(r[k] for r in runs if r.get(k) is not None), 3) for k in keys}
    med["runs"] = runs
    return med


def bench_workload(name: str, args, work: str, cores: int) -> dict:
    count = args.count.get(name)
    print(f"== {name}: building workload", flush=True)
    wl = workloads.build(name, work, count)
    print(f"== {name}: {wl.description}; limits", flush=True)
    lim = limits(wl, cores, args.device, args.limit_seconds)
    print(f"   model limit {lim['model']['images_per_s']:.0f} img/s ({lim['model']['layout']}, batch "
          f"{lim['model']['batch']}); decode limit {lim['decode']['images_per_s']:.0f} img/s "
          f"(compss-infer's decoder {lim['decode']['compss_infer']:.0f})", flush=True)
    best_flags, table = sweep(wl, work, cores, args.device, args.sweep_subset.get(name, 2000))
    specs = contenders(wl, work, cores, args.device, best_flags, args.original_limit.get(name, 100))
    runs: dict[str, list[dict]] = {k: [] for k in specs}
    for rep in range(args.reps):
        for k in specs if rep % 2 == 0 else list(reversed(list(specs))):  # interleaved, order alternating
            rec = measure_one(k, specs[k], wl)
            runs[k].append(rec)
            print(f"   rep {rep + 1} ({k}) {rec['images_per_s']:.1f} img/s, first result "
                  f"{rec['first_result_s']}, peak {rec['peak_tree_pss_mb']} MB", flush=True)
    med = {k: median_record(v) for k, v in runs.items()}
    model_lim, decode_lim = lim["model"]["images_per_s"], lim["decode"]["images_per_s"]
    ceiling = min(model_lim, decode_lim)
    both = 1.0 / (1.0 / model_lim + 1.0 / decode_lim)  # decode and inference sharing the same cores
    c = med["c"]["images_per_s"]
    c_after = med["c"].get("after_first_images_per_s") or 0.0
    ratios = {"c/b": round(c / med["b"]["images_per_s"], 3), "c/a": round(c / med["a"]["images_per_s"], 1),
              "c/min(model,decode)": round(c / ceiling, 3),
              "c_after_first/min(model,decode)": round(c_after / ceiling, 3),
              "c_after_first/shared_core_limit": round(c_after / both, 3),
              "shared_core_limit": round(both, 1),
              "d/b": round(med["d"]["images_per_s"] / med["b"]["images_per_s"], 3)}
    return {"workload": wl.to_dict(), "limits": lim, "sweep": table, "best_flags": best_flags,
            "contenders": med, "ratios": ratios}


NAMES = {"a": "(a) original pattern: graph + session per image*", "b": "(b) hand-written TF loop",
         "c": "(c) compss-infer, defaults", "d": "(d) compss-infer, best found"}


def table_md(result: dict) -> str:
    lines = []
    for wname, r in result["workloads"].items():
        lim = r["limits"]
        lines.append(f"**{wname}**: {r['workload']['description']}. Best settings found for (d): "
                     f"`{' '.join(r['best_flags'])}`.\n")
        lines.append("| contender | images/s, whole process | images/s after the first result | "
                     "time to first result (s) | peak memory, all processes (MB, PSS) |")
        lines.append("|---|---:|---:|---:|---:|")
        for k, label in NAMES.items():
            c = r["contenders"][k]
            first, after = c.get("first_result_s"), c.get("after_first_images_per_s")
            lines.append(f"| {label} | {c['images_per_s']:,.1f} | {f'{after:,.1f}' if after else '-'} | "
                         f"{first if first is not None else '-'} | {c['peak_tree_pss_mb']:,.0f} |")
        lines.append(f"| model-only limit ({lim['model']['layout']}, batch {lim['model']['batch']}) | | "
                     f"{lim['model']['images_per_s']:,.0f} | | |")
        lines.append(f"| decode+resize-only limit (best of Pillow {lim['decode']['pillow']:,.0f} and "
                     f"compss-infer's decoder {lim['decode']['compss_infer']:,.0f}) | | "
                     f"{lim['decode']['images_per_s']:,.0f} | | |")
        ra = r["ratios"]
        lines.append(f"\nRatios: (c)/(b) = **{ra['c/b']}**, (c)/(a) = **{ra['c/a']}**, "
                     f"(c)/min(model, decode) = **{ra['c/min(model,decode)']}** whole process, "
                     f"**{ra['c_after_first/min(model,decode)']}** after the first result; against the "
                     f"shared-core limit 1/(1/model + 1/decode) = {ra['shared_core_limit']:,.0f} img/s: "
                     f"**{ra['c_after_first/shared_core_limit']}**; (d)/(b) = {ra['d/b']}.\n")
    m = result["machine"]
    lines.append(f"Machine: {m['cpu']}, {m['cores']} cores, {m['memory_mb']:,} MB; Python {m['python']}, "
                 f"TensorFlow {m['tensorflow']}; device {result['device']}; median of {result['reps']} runs; "
                 f"{result['date']}.\n")
    lines.append("\\* (a) classifies a subset and extrapolates its per-image cost to the whole set "
                 "(start-up measured, per-image cost x images).")
    return "\n".join(lines)


def update_doc(md: str) -> None:
    text = open(DOC).read() if os.path.exists(DOC) else f"# Benchmarks\n\n{BEGIN}\n{END}\n"
    if BEGIN not in text:
        text += f"\n{BEGIN}\n{END}\n"
    head, rest = text.split(BEGIN, 1)
    tail = rest.split(END, 1)[1]
    with open(DOC, "w") as fh:
        fh.write(f"{head}{BEGIN}\n{md}\n{END}{tail}")


def parse_counts(text: str | None) -> dict[str, int]:
    return {k: int(v) for k, v in (item.split("=") for item in text.split(","))} if text else {}


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--workloads", default="W1,W2")
    ap.add_argument("--reps", type=int, default=3)
    ap.add_argument("--device", choices=["cpu", "gpu"], default="cpu")
    ap.add_argument("--workdir", help="where workloads are built (reused between runs)")
    ap.add_argument("--count", type=parse_counts, default={}, help="override image counts, e.g. W1=2000,W2=200")
    ap.add_argument("--original-limit", type=parse_counts, default={"W1": 300, "W2": 24},
                    help="images the original pattern classifies before extrapolating")
    ap.add_argument("--sweep-subset", type=parse_counts, default={"W1": 6000, "W2": 240})
    ap.add_argument("--limit-seconds", type=float, default=1.5)
    ap.add_argument("--json", help="result file (default benchmarks/results/<host>-<date>.json)")
    ap.add_argument("--no-doc", action="store_true", help="do not update docs/benchmarks.md")
    ap.add_argument("--no-int8", action="store_true", help="skip the int8 contenders (benchmarks/int8.py)")
    ap.add_argument("--no-w3", action="store_true", help="skip the real-size photos (benchmarks/realsize.py)")
    args = ap.parse_args()
    from compss_infer.model.session import available_cpus
    cores = available_cpus()
    work = args.workdir or os.path.join(tempfile.gettempdir(), "compss-infer-bench")
    os.makedirs(work, exist_ok=True)
    started = time.monotonic()
    result = {"date": datetime.now(timezone.utc).strftime("%Y-%m-%d"), "machine": harness.machine(), "device": args.device,
              "reps": args.reps, "workloads": {}}
    for name in args.workloads.split(","):
        result["workloads"][name] = bench_workload(name, args, work, cores)
    int8_md = None
    if not args.no_int8 and args.device == "cpu":
        from . import int8
        result["int8"] = int8.bench(work, args.reps, cores, args.limit_seconds)
        m = result["machine"]
        int8_md = int8.table_md(result["int8"], f"Machine: {m['cpu']}, {m['cores']} cores; {result['date']}")
    if not args.no_w3 and args.device == "cpu":  # its own process: it writes its JSON and its doc table
        import subprocess
        subprocess.run([sys.executable, "-m", "benchmarks.realsize", "--workdir", work, "--reps", str(args.reps)]
                       + (["--no-doc"] if args.no_doc else []), check=True)
    result["bench_wall_s"] = round(time.monotonic() - started, 1)
    md = table_md(result)
    print("\n" + md + ("\n\n" + int8_md if int8_md else ""))
    path = args.json or os.path.join(HERE, "results", f"{platform.node()}-{result['date']}-{args.device}.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as fh:
        json.dump(result, fh, indent=1)
    print(f"\nwrote {path}")
    if not args.no_doc:
        update_doc(md)
        if int8_md:
            from . import int8
            int8.update_doc(int8_md)
        print(f"updated {DOC}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
