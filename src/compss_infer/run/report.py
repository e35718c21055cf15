"""The run report: task timeline, throughput over time and confusion matrix, in one HTML page.

Reads what a finished run left beside its results file ``OUT``: ``OUT.summary.json`` and
``OUT.tasks.csv`` (one line per chunk: where and when it ran).  Writes, beside ``OUT``:
``OUT.timeline.png``, ``OUT.throughput.png``, ``OUT.confusion.png`` (when truth was known, up to 30
classes) and ``OUT.report.html``, which embeds the images as data URIs so it can be mailed or archived
alone, and lists what to act on (review.py): failed images, misclassified ones, the top confusions.

Plotting is an optional extra (``pip install 'compss-infer[report]'``): matplotlib is imported only
here, inside functions, through its object API with the Agg canvas (no pyplot global state, no
display needed).  The master runs this; TensorFlow is never imported.
"""
from __future__ import annotations

import base64
import csv
import html
import importlib.util
import io
import json
import os
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import Any

from .._version import __version__
from ..core.atomic import write_bytes
from .outpaths import REPORT_SUFFIXES, refuse_links
from ..core.errors import InputError, MissingDependency
from .review import MAX_LISTED, Review, review_run

INSTALL_HINT = "the report needs matplotlib: pip install 'compss-infer[report]'"
MAX_ANNOTATED_CLASSES = 30
MAX_MATRIX_CLASSES = 30  # above this a matrix is unreadable: the most frequent confusions are listed instead
NAME_CHARS = 22  # class names on the matrix's axes are cut to this (ImageNet names run to 80 characters)
START_UP_SHOWN = 0.5  # draw the start-up to scale when it is at most this share of the run


def require_matplotlib() -> None:
    """Refuse early (exit 2, one line) when the plotting extra is not installed."""
    try:
        found = importlib.util.find_spec("matplotlib") is not None
    except (ImportError, ValueError):
        found = False
    if not found:
        raise MissingDependency(INSTALL_HINT)


def _figure(width: float, height: float) -> Any:
    try:
        from matplotlib.backends.backend_agg import FigureCanvasAgg
        from matplotlib.figure import Figure
    except ImportError:
        raise MissingDependency(INSTALL_HINT) from None
    fig = Figure(figsize=(width, height), dpi=100)
    FigureCanvasAgg(fig)
    return fig


def _png(fig: Any) -> bytes:
    buf = io.BytesIO()
    fig.savefig(buf, format="png", bbox_inches="tight")
    return buf.getvalue()


# --------------------------------------------------------------------------- data

@dataclass
class TaskRow:
    start: int
    count: int
    worker: str  # host:pid
    started: float
    finished: float
    load_s: float
    model_id: str
    errors: int


@dataclass
class RunData:
    results: str
    summary: dict[str, Any]
    tasks: list[TaskRow]
    labels: list[str] | None
    notes: list[str] = field(default_factory=list)


def _float(value: str) -> float:
    try:
        return float(value)
    except (TypeError, ValueError):
        return 0.0


def load_run(results: str) -> RunData:
    """The summary and task log beside ``results``; InputError when the run left no summary."""
    summary_path = results + ".summary.json"
    try:
        with open(summary_path, encoding="utf-8") as fh:
            summary = json.load(fh)
    except FileNotFoundError:
        raise InputError(f"no run summary at {summary_path} (is {results} the results file of a finished run?)") from None
    except (OSError, ValueError) as exc:
        raise InputError(f"cannot read {summary_path}: {exc}") from None
    notes = []
    tasks = []
    tasks_path = results + ".tasks.csv"
    try:
        with open(tasks_path, encoding="utf-8", newline="") as fh:
            for row in csv.DictReader(fh):
                tasks.append(TaskRow(start=int(_float(row.get("start", "0"))), count=int(_float(row.get("count", "0"))),
                                     worker=f"{row.get('host', '?')}:{row.get('pid', '?')}",
                                     started=_float(row.get("started_s", "0")), finished=_float(row.get("finished_s", "0")),
                                     load_s=_float(row.get("load_s", "0")), model_id=row.get("model_id", ""),
                                     errors=int(_float(row.get("errors", "0")))))
    except FileNotFoundError:
        notes.append(f"no task log at {tasks_path}: timeline and throughput left out")
    labels = None
    model_cfg = (summary.get("config") or {}).get("model") or {}
    labels_path = model_cfg.get("labels")
    if labels_path and os.path.isfile(labels_path):
        from .labels import load_labels
        offset = int(model_cfg.get("label_offset") or 0)  # indexed by class id below: shift by the offset
        lines = load_labels(labels_path) or []
        labels = [str(i) for i in range(offset)] + lines if offset >= 0 else lines[-offset:]
    return RunData(results=results, summary=summary, tasks=tasks, labels=labels, notes=notes)


# --------------------------------------------------------------------------- plots

def plot_timeline(tasks: list[TaskRow]) -> bytes:
    """One row per worker process, one bar per chunk; colour = model fingerprint, hatched = model load."""
    workers: list[str] = []
    for t in sorted(tasks, key=lambda t: t.started):
        if t.worker not in workers:
            workers.append(t.worker)
    models = sorted({t.model_id for t in tasks}, key=lambda m: min(t.started for t in tasks if t.model_id == m))
    fig = _figure(10, max(2.0, 0.8 + 0.35 * len(workers)))
    ax = fig.add_subplot(1, 1, 1)
    palette = ["#4c78a8", "#f58518", "#54a24b", "#b279a2", "#e45756", "#72b7b2", "#9d755d", "#bab0ac"]
    color = {m: palette[i % len(palette)] for i, m in enumerate(models)}
    for t in tasks:
        y = workers.index(t.worker)
        ax.barh(y, t.finished - t.started, left=t.started, height=0.7, color=color[t.model_id],
                edgecolor="#d62728" if t.errors else "white", linewidth=1.5 if t.errors else 0.5)
        if t.load_s > 0:
            ax.barh(y, min(t.load_s, t.finished - t.started), left=t.started, height=0.7, color="none",
                    edgecolor="black", hatch="///", linewidth=0)
    _show_start_up(ax, tasks)
    ax.set_yticks(range(len(workers)))
    ax.set_yticklabels(workers, fontsize=8 if len(workers) < 30 else 5)
    ax.invert_yaxis()
    ax.set_xlabel("seconds since the run started")
    ax.set_title(f"Chunks per worker ({len(tasks)} chunks, {len(workers)} worker processes)")
    if len(models) > 1:
        from matplotlib.patches import Patch
        ax.legend(handles=[Patch(color=color[m], label=f"model {m}") for m in models], fontsize=8, loc="best")
    ax.grid(axis="x", alpha=0.3)
    return _png(fig)


def _show_start_up(ax: Any, tasks: list[TaskRow]) -> None:
    """Show the time before the first chunk (worker start-up, model loading, image discovery).

    Time axes start at the run's start with that time shaded, unless it dwarfs the chunks (short
    runs): then the axis zooms on the chunks and the start-up time is written on the plot.
    """
    first = min(t.started for t in tasks)
    last = max(t.finished for t in tasks)
    if first <= 0:
        return
    if first <= START_UP_SHOWN * last:
        ax.axvspan(0, first, color="#eeeeee", zorder=0)
        ax.text(first / 2, 0.5, "start-up", transform=ax.get_xaxis_transform(), ha="center", va="center",
                color="#777777", fontsize=8)
        ax.set_xlim(left=0.0)
    else:
        ax.text(0.01, 0.97, f"first chunk started {first:.2f} s after the run (start-up)", transform=ax.transAxes,
                ha="left", va="top", color="#777777", fontsize=8)


def throughput_series(tasks: list[TaskRow], bins: int = 50) -> tuple[list[float], list[float]]:
    """(bin centres, images/s): each chunk's images spread evenly over the time it ran."""
    if not tasks:
        return [], []
    t0 = min(t.started for t in tasks)
    t1 = max(t.finished for t in tasks)
    span = max(t1 - t0, 1e-6)
    width = span / bins
    rate = [0.0] * bins
    for t in tasks:
        dur = t.finished - t.started
        if dur <= 0:
            rate[min(bins - 1, int((t.finished - t0) / width))] += t.count / width
            continue
        for b in range(max(0, int((t.started - t0) / width)), min(bins, int((t.finished - t0) / width) + 1)):
            lo, hi = t0 + b * width, t0 + (b + 1) * width
            overlap = min(hi, t.finished) - max(lo, t.started)
            if overlap > 0:
                rate[b] += t.count * overlap / dur / width
    return [t0 + (b + 0.5) * width for b in range(bins)], rate


def plot_throughput(tasks: list[TaskRow]) -> bytes:
    """Images/s over time, and the average from the first chunk's start to the last one's end."""
    xs, ys = throughput_series(tasks)
    fig = _figure(10, 3)
    ax = fig.add_subplot(1, 1, 1)
    ax.plot(xs, ys, drawstyle="steps-mid", color="#4c78a8", label="images/s")
    if tasks:
        span = max(t.finished for t in tasks) - min(t.started for t in tasks)
        if span > 0:
            average = sum(t.count for t in tasks) / span
            ax.axhline(average, color="#f58518", linestyle="--",
                       label=f"average while chunks ran: {average:,.0f} images/s")
        _show_start_up(ax, tasks)
    ax.set_xlabel("seconds since the run started")
    ax.set_ylabel("images/s")
    ax.set_ylim(bottom=0)
    ax.set_title("Throughput over time")
    ax.legend(fontsize=8, loc="lower right")
    ax.grid(alpha=0.3)
    return _png(fig)


def class_name(c: int, labels: list[str] | None, width: int | None = None) -> str:
    """``3 cat`` (or ``3`` without a labels line), cut to ``width`` characters with an ellipsis."""
    name = f"{c} {labels[c]}" if labels and 0 <= c < len(labels) and labels[c] else str(c)
    return name if width is None or len(name) <= width else name[:width - 1] + "\u2026"


def plot_confusion(confusion: dict[str, Any], labels: list[str] | None) -> bytes:
    """Rows: true class, columns: predicted; colour = share of the row, numbers = counts."""
    return _png(confusion_figure(confusion, labels))


def confusion_figure(confusion: dict[str, Any], labels: list[str] | None) -> Any:
    """The matrix as a matplotlib Figure (up to MAX_MATRIX_CLASSES classes; tests measure its labels)."""
    classes = confusion["classes"]
    matrix = confusion["matrix"]
    n = len(classes)
    names = [class_name(c, labels, NAME_CHARS) for c in classes]
    side = min(14.0, max(4.0, 0.45 * n + 2))
    fig = _figure(side, side)
    ax = fig.add_subplot(1, 1, 1)
    shares = [[v / max(1, sum(row)) for v in row] for row in matrix]
    im = ax.imshow(shares, cmap="Blues", vmin=0, vmax=1)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04, label="share of the true class")
    ax.set_xticks(range(n))
    ax.set_yticks(range(n))
    font = 8 if n <= 20 else 5
    ax.set_xticklabels(names, rotation=90, fontsize=font)
    ax.set_yticklabels(names, fontsize=font)
    ax.set_xlabel("predicted class")
    ax.set_ylabel("true class")
    ax.set_title("Confusion matrix")
    if n <= MAX_ANNOTATED_CLASSES:
        for i in range(n):
            for j in range(n):
                if matrix[i][j]:
                    ax.text(j, i, str(matrix[i][j]), ha="center", va="center", fontsize=font,
                            color="white" if shares[i][j] > 0.5 else "black")
    return fig


# --------------------------------------------------------------------------- page

@dataclass
class ReportFiles:
    html: str
    images: dict[str, str]  # name -> PNG path
    review: Review | None = None  # the failed and misclassified images the page lists


def _kv_table(rows: list[tuple[str, Any]]) -> str:
    cells = "".join(f"<tr><th>{html.escape(k)}</th><td>{html.escape(str(v))}</td></tr>" for k, v in rows if v is not None)
    return f"<table class='kv'>{cells}</table>"


def _pct(v: Any) -> str | None:
    return None if v is None else f"{100 * v:.2f} %"


def _accuracy_html(acc: dict[str, Any], labels: list[str] | None) -> str:
    topk = [(k, v) for k, v in acc.items() if k.startswith("top") and k.endswith("_accuracy")]
    rows = [("labelled images", acc.get("labelled")), ("accuracy (top-1)", _pct(acc.get("accuracy"))),
            *[(f"top-{k[3:-9]} accuracy", _pct(v)) for k, v in topk],
            ("accuracy of classified images", _pct(acc.get("accuracy_of_classified"))),
            ("labelled images that failed", acc.get("failed"))]
    body = [_kv_table(rows), "<table class='grid'><tr><th>class</th><th>precision</th><th>recall</th><th>support</th></tr>"]
    for cid, m in sorted((acc.get("per_class") or {}).items(), key=lambda kv: int(kv[0])):
        c = int(cid)
        name = f"{c} {labels[c]}" if labels and 0 <= c < len(labels) else str(c)
        body.append(f"<tr><td>{html.escape(name)}</td><td>{_pct(m.get('precision')) or '-'}</td>"
                    f"<td>{_pct(m.get('recall')) or '-'}</td><td>{m.get('support')}</td></tr>")
    body.append("</table>")
    return "".join(body)


STYLE = """body{font-family:system-ui,sans-serif;margin:2em auto;max-width:1100px;color:#222}
h1{font-size:1.4em}h2{font-size:1.15em;margin-top:1.6em;border-bottom:1px solid #ddd}
table{border-collapse:collapse;margin:.5em 0}th,td{padding:.2em .8em;text-align:left}
table.kv th{color:#555;font-weight:normal}table.grid td,table.grid th{border:1px solid #ddd}
img{max-width:100%;height:auto}.note{color:#a15c00}.foot{color:#777;font-size:.85em;margin-top:2em}"""


def _cut(text: str, width: int = 160) -> str:
    return text if len(text) <= width else text[:width - 1] + "\u2026"


def _review_html(review: Review, labels: list[str] | None, classes: int) -> str:
    """The images to act on: failed ones with their reason, misclassified ones, the top confusions."""
    parts = []
    if review.failed_total:
        parts.append(f"<h2>Failed images ({review.failed_total})</h2><table class='grid'><tr><th>path</th>"
                     f"<th>reason</th></tr>")
        parts.extend(f"<tr><td>{html.escape(p)}</td><td>{html.escape(_cut(e))}</td></tr>" for p, e in review.failed)
        parts.append("</table>" + _more(review.failed_total, len(review.failed)))
    if review.confusions:
        many = f" ({classes} classes: a matrix would be unreadable)" if classes > MAX_MATRIX_CLASSES else ""
        parts.append(f"<h2>Most frequent confusions{many}</h2><table class='grid'><tr><th>true class</th>"
                     f"<th>predicted as</th><th>images</th></tr>")
        parts.extend(f"<tr><td>{html.escape(class_name(t, labels))}</td><td>{html.escape(class_name(p, labels))}"
                     f"</td><td>{c}</td></tr>" for t, p, c in review.confusions)
        parts.append("</table>")
    if review.misclassified_total:
        parts.append(f"<h2>Misclassified images ({review.misclassified_total})</h2><table class='grid'><tr>"
                     f"<th>path</th><th>true class</th><th>predicted</th></tr>")
        parts.extend(f"<tr><td>{html.escape(path)}</td><td>{html.escape(class_name(t, labels))}</td>"
                     f"<td>{html.escape(class_name(p, labels))}</td></tr>" for path, t, p in review.misclassified)
        parts.append("</table>" + _more(review.misclassified_total, len(review.misclassified)))
    if review.note:
        parts.append(f"<p class='note'>{html.escape(review.note)}</p>")
    return "".join(parts)


def _more(total: int, shown: int) -> str:
    return f"<p>the first {shown} of {total} are listed (at most {MAX_LISTED})</p>" if total > shown else ""


def render_html(data: RunData, pngs: dict[str, bytes], review: Review | None = None) -> str:
    s = data.summary
    title = f"compss-infer report: {os.path.basename(data.results)}"
    acc = s.get("accuracy")
    model = s.get("model") or {}
    overview = _kv_table([
        ("results", data.results), ("images", s.get("images")), ("classified", s.get("classified")),
        ("failed", s.get("failed")),
        ("failures by kind", ", ".join(f"{k}: {v}" for k, v in (s.get("failures_by_kind") or {}).items()) or None),
        ("wall time", f"{s.get('wall_s')} s"), ("throughput", f"{s.get('images_per_s')} img/s whole process"),
        ("after the first result", f"{s['after_first_images_per_s']} img/s"
         if s.get("after_first_images_per_s") else None),
        ("first result after", f"{s.get('first_result_s')} s" if s.get("first_result_s") is not None else None),
        ("engine", s.get("engine")), ("workers", s.get("workers")), ("batch size", s.get("batch_size")),
        ("chunk size", s.get("chunk_size")), ("accuracy", _pct(acc.get("accuracy")) if acc else "no ground truth given"),
        ("host", s.get("host")), ("started", s.get("started_at")),
    ])
    parts = [f"<!doctype html><html><head><meta charset='utf-8'><title>{html.escape(title)}</title>"
             f"<style>{STYLE}</style></head><body><h1>{html.escape(title)}</h1>", overview]
    parts.extend(f"<p class='note'>{html.escape(n)}</p>" for n in data.notes)
    captions = {"timeline": ("Task timeline", "Each bar is one chunk on one worker process; hatched: time spent "
                             "loading the model; red edge: the chunk had failed images; colours: model fingerprints."),
                "throughput": ("Throughput", "Images per second over the run (each chunk's images spread over its "
                               "run time); the wall-clock figure above also counts the start-up."),
                "confusion": ("Confusion matrix", "Rows are true classes, columns predicted ones.")}
    for name in ("timeline", "throughput"):
        if name in pngs:
            head, text = captions[name]
            parts.append(f"<h2>{head}</h2><p>{html.escape(text)}</p>{_img(pngs[name], head)}")
    if acc:
        parts.append("<h2>Accuracy</h2>" + _accuracy_html(acc, data.labels))
        if "confusion" in pngs:
            parts.append(f"<p>{captions['confusion'][1]}</p>{_img(pngs['confusion'], 'Confusion matrix')}")
    if review is not None:
        parts.append(_review_html(review, data.labels, len(((acc or {}).get("confusion") or {}).get("classes") or [])))
    ids = model.get("ids_used") or {}
    parts.append("<h2>Model</h2>" + _kv_table([
        ("path", model.get("path")), ("sha256", model.get("sha256")),
        ("input", f"{model.get('input_name')} {model.get('input_dtype')} {model.get('input_shape')}"),
        ("output", f"{model.get('output_name')} {model.get('output_dtype')} {model.get('output_shape')}"),
        ("fingerprints used (chunks)", ", ".join(f"{k}: {v}" for k, v in ids.items()) or None),
    ]))
    if len(ids) > 1:
        parts.append("<p class='note'>The model file was replaced during the run: chunks used "
                     f"{len(ids)} different models (see the timeline colours).</p>")
    stamp = datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M UTC")
    parts.append(f"<p class='foot'>compss-infer {__version__}, {stamp}</p></body></html>\n")
    return "".join(parts)


def _img(png: bytes, alt: str) -> str:
    return f"<img alt='{html.escape(alt)}' src='data:image/png;base64,{base64.b64encode(png).decode('ascii')}'>"


def write_report(results: str) -> ReportFiles:
    """Draw the plots for the finished run that wrote ``results`` and write the page beside it."""
    require_matplotlib()
    refuse_links([results + s for s in REPORT_SUFFIXES], f"report for {results}")
    data = load_run(results)
    pngs: dict[str, bytes] = {}
    if data.tasks:
        pngs["timeline"] = plot_timeline(data.tasks)
        pngs["throughput"] = plot_throughput(data.tasks)
    elif not data.notes:
        data.notes.append("no chunk ran in this run (nothing to draw on a timeline)")
    acc = data.summary.get("accuracy")
    if acc and 0 < len((acc.get("confusion") or {}).get("classes") or []) <= MAX_MATRIX_CLASSES:
        pngs["confusion"] = plot_confusion(acc["confusion"], data.labels)
    review = review_run(results, data.summary) if os.path.exists(results) else None
    images = {}
    for name, png in pngs.items():
        path = f"{results}.{name}.png"
        write_bytes(path, png, follow=False)  # side files: never through a planted link
        images[name] = path
    page = f"{results}.report.html"
    write_bytes(page, render_html(data, pngs, review).encode("utf-8"), follow=False)
    return ReportFiles(html=page, images=images, review=review)
