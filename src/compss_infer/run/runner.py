"""One run, start to finish: check, start workers, plan, preflight, dispatch, assemble, summarise.

Workers start loading the model while the master discovers the images, so start-up costs are
paid in parallel.  Nothing is dispatched until the model passed its checks in a worker (the
master never imports TensorFlow itself, except with the in-process ``sequential`` engine).
"""
from __future__ import annotations

import hashlib
import json
import logging
import os
import signal
import socket
import sys
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone
from typing import Any

import numpy as np

from .._version import __version__
from ..core.specs import RunConfig
from ..core.contracts import ModelInfo, WorkerSpec
from ..engines import make_engine
from ..core.errors import (CompssInferError, ConfigError, InputError, ModelError, RunAborted, is_disk_full,
                           os_error_line, os_reason)
from .inputs import LineReader, Plan, decode_lines, iter_chunks, load_plan, make_plan
from .journal import Journal
from ..model.identity import model_identity, ranges_by_id, sha256_file
from ..model.quantcheck import card_check
from .metrics import FolderTruth, Scorer, load_truth_csv
from .progress import Progress
from .checks import refuse_early
from .labels import check_labels, load_labels
from .results import write_json
from ..core.atomic import write_atomically
from .results import MANIFEST, is_sharded
from .rows import RowFormat, listed_from_rows, row_ends
from .sinks.base import FileSink
from .sinks.parts import RowParts, ShardParts
from .sources.shards import ShardPlan, check_part_names, index_all, iter_shard_chunks, plan_shards
from .scheduler import Scheduler
from ..model.session import available_cpus
from ..engines.timelimit import TimeLimitPolicy
from .sizing import MAX_CHUNK, MAX_SHARD_CHUNK, auto_chunk, auto_workers, visible_gpus
from ..worker import classify_chunk, warm_up
from .advice import check_preprocessing, class_count_unknown, fast_decode

log = logging.getLogger("compss_infer")


class Interrupted(Exception):
    """SIGINT/SIGTERM during a run: the journal is kept, ``--resume`` continues (exit 130)."""

    exit_code = 130


@dataclass
class RunSummary:
    """What a finished run reports (also written as ``<output>.summary.json``)."""

    output: str
    summary_path: str
    images: int
    classified: int
    failed: int
    wall_s: float
    images_per_s: float
    exit_code: int
    after_first_images_per_s: float | None = None
    accuracy: float | None = None
    data: dict[str, Any] = field(default_factory=dict)
    report: str | None = None  # the HTML report, when run.report asked for one


def _versions() -> dict[str, str | None]:
    from importlib import metadata
    out: dict[str, str | None] = {"compss_infer": __version__, "python": sys.version.split()[0]}
    for dist in ("tensorflow-cpu", "tensorflow", "numpy", "pillow"):
        try:
            out[dist] = metadata.version(dist)
        except metadata.PackageNotFoundError:
            continue
    return out


def fingerprint_parts(cfg: RunConfig, model_sha: str, labels_sha: str | None, fmt: str,
                      plan_digest: str) -> dict[str, str]:
    """Identity of each thing that shapes the results file (model, labels, config, input list).

    --resume refuses when one changes, and names which.  The one place the resume identity is made.
    """
    d = cfg.to_dict()
    config = {
        "model": {k: d["model"][k] for k in ("input", "output", "feeds", "label_offset")},
        "preprocess": d["preprocess"],
        "session": {k: d["session"][k] for k in ("opt_level", "jit", "device")},
        "top_k": cfg.run.top_k,
        "format": fmt,
    }
    return {"model": model_sha, "labels": labels_sha or "",
            "config": hashlib.sha256(json.dumps(config, sort_keys=True).encode()).hexdigest(),
            "input list": plan_digest}


def fingerprint(cfg: RunConfig, model_sha: str, labels_sha: str | None, fmt: str, plan_digest: str) -> str:
    """One hash over ``fingerprint_parts``: --resume refuses when it changes."""
    parts = fingerprint_parts(cfg, model_sha, labels_sha, fmt, plan_digest)
    return hashlib.sha256(json.dumps(parts, sort_keys=True).encode()).hexdigest()


def _changed(header: dict[str, Any], parts: dict[str, str]) -> str:
    """Which of model, labels, config, input list differ from the journal's (for the refusal line)."""
    old = header.get("fingerprint_parts") or {}
    names = [k for k in parts if old.get(k) != parts[k]] if old else list(parts)
    return ", ".join(names) if old else "the model, its labels, the result-shaping config or the input list"


def _engine_options(cfg: RunConfig, workers: int, gpus: list[str]) -> dict[str, Any]:
    from ..model.formats import preload_modules
    r = cfg.run
    return {"workers": workers, "start_method": r.start_method,
            "task_timeout": TimeLimitPolicy.from_setting(r.task_timeout, r.task_timeout_floor),
            "stage_model": r.stage_model, "stage_shards": r.stage_shards, "device": cfg.session.device, "gpus": gpus,
            "preload": preload_modules(cfg.model.path)}


def _install_signal_handlers() -> dict[int, Any]:
    def handler(signum: int, _frame: Any) -> None:
        raise Interrupted(signal.Signals(signum).name)
    old = {}
    for sig in (signal.SIGINT, signal.SIGTERM):
        try:
            old[sig] = signal.signal(sig, handler)
        except ValueError:  # not the main thread (embedded use): leave signals alone
            pass
    return old


def run(cfg: RunConfig, started: float | None = None) -> RunSummary:
    """Classify every image of ``cfg``; returns the summary (exit code 0 or 1), raises on refusal.

    ``started``: time.monotonic() when the command began (the CLI passes it), so that the summary's
    wall time and time to first result count the command's own start-up too.
    """
    t0 = started if started is not None else time.monotonic()
    started_at = datetime.fromtimestamp(time.time() - (time.monotonic() - t0), timezone.utc)
    output, fmt = refuse_early(cfg)
    if not cfg.run.shards and is_sharded(output) != bool(cfg.run.shard_rows):
        raise ConfigError("run.shard_rows goes with an --output folder ending in / (DIR/): give both or neither")
    if cfg.run.engine == "sequential" and cfg.run.task_timeout not in (None, "auto"):
        log.warning("run.task_timeout is not enforced by the sequential engine")
    r = cfg.run
    labels = load_labels(cfg.model.labels)
    truth: Any = None
    if r.truth:
        truth = load_truth_csv(r.truth)
    elif r.truth_from_folders or r.truth_from == "folders":
        truth = FolderTruth(labels, cfg.model.label_offset)
    elif r.truth_from == "cls":
        truth = CLS_TRUTH
    model_ident = model_identity(cfg.model.path)  # a file, or a checkpoint's newest entry
    model_sha = model_ident.sha256()
    labels_sha = sha256_file(cfg.model.labels) if cfg.model.labels else None

    journal = Journal(output)
    cpus = available_cpus()
    gpus = visible_gpus() if r.engine == "local" and cfg.session.device == "gpu" else []
    if r.engine == "local":  # one worker per core, or per GPU: each worker owns one GPU
        workers = r.workers or (len(gpus) if gpus else auto_workers(model_ident.size, cpus))
    else:
        workers = r.workers or 1
    default_threads = max(1, cpus // workers) if r.engine == "local" else None
    spec = WorkerSpec(model=cfg.model, preprocess=cfg.preprocess, session=cfg.session,
                      batch_size=r.batch_size, top_k=r.top_k, default_threads=default_threads)

    old_handlers = _install_signal_handlers()
    engine = make_engine(r.engine, **_engine_options(cfg, workers, gpus))
    fresh = not r.resume
    try:
        if fresh:  # workers load the model while the master lists the images
            journal.create()
            with ThreadPoolExecutor(1, thread_name_prefix="compss-infer-plan") as planner:
                planning = planner.submit(plan_input, r, journal.plan_path)
                engine.start(warm_up, _warm_up_spec(spec, planning, PLAN_WAIT_S))  # may wait for the forkserver
                plan = planning.result()
            log.debug("planned %s images at %.2fs", plan.count, time.monotonic() - t0)
            fp_parts = fingerprint_parts(cfg, model_sha, labels_sha, fmt, plan.digest)
            fp = fingerprint(cfg, model_sha, labels_sha, fmt, plan.digest)
        else:  # refuse a changed run before starting anything
            header = journal.reopen()
            plan = _check_resumable(journal, header, r)
            fp_parts = fingerprint_parts(cfg, model_sha, labels_sha, fmt, plan.digest)
            fp = fingerprint(cfg, model_sha, labels_sha, fmt, plan.digest)
            if header.get("fingerprint") != fp:
                raise InputError(f"--resume refused: {_changed(header, fp_parts)} changed since {journal.dir} "
                                 f"was written (use --overwrite to start afresh)")
            left = int(header["images"]) - sum(b - a for a, b in journal.covered())
            engine.start(warm_up, replace(spec, warm_up_images=max(1, left)))
        info: ModelInfo = engine.preflight()
        log.debug("model ready in a worker at %.2fs", time.monotonic() - t0)
        if isinstance(plan, ShardPlan):
            if info.takes_paths:
                raise ModelError(f"{cfg.model.path} decodes image files by path inside the graph; tar shard members "
                                 f"have no path: use a model that takes pixels for --shards")
            if is_sharded(output):
                check_part_names(plan, fmt)
            index_all(plan, engine, journal.dir, r.window or 4 * engine.slots())
            log.debug("indexed %d shards (%d images) at %.2fs", len(plan.shards), plan.count, time.monotonic() - t0)
            if not fresh and plan.count != header.get("images"):
                raise InputError(f"--resume refused: the shard index in {journal.dir} is damaged "
                                 f"(use --overwrite to start afresh)")
        check_labels(labels, cfg.model.labels, info.num_classes, cfg.model.label_offset)  # before any work
        check_preprocessing(cfg, info)
        if isinstance(truth, FolderTruth):
            truth.num_classes = info.num_classes
            truth.check_folders(plan.listed())
        walk = plan.walk if isinstance(plan, Plan) else None  # --images: folders not listed, links not followed
        warnings = [w for w in (class_count_unknown(info, labels), fast_decode(cfg, info)) if w] + \
            (walk.warnings() if walk else [])
        for line in warnings:
            log.warning("%s", line)
        batch = r.batch_size or info.batch_size
        if fresh:
            chunk = r.chunk_size or auto_chunk(plan.count, workers, batch,
                                               cap=MAX_SHARD_CHUNK if isinstance(plan, ShardPlan) else MAX_CHUNK)
            first_chunk = min(batch, chunk) if not r.chunk_size else chunk  # a given chunk size is kept as is
            journal.write_header({"fingerprint": fp, "fingerprint_parts": fp_parts, "chunk_size": chunk, "first_chunk": first_chunk,
                                  "plan_base": plan.base, "shards": isinstance(plan, ShardPlan),
                                  "plan_digest": plan.digest, "images": plan.count, "format": fmt,
                                  "created": started_at.isoformat()})
        else:
            chunk = int(header["chunk_size"])
            first_chunk = int(header.get("first_chunk", chunk))
        spec = replace(spec, batch_size=batch)
        covered = journal.covered()
        done_before = sum(b - a for a, b in covered)
        window = r.window or (2 * engine.slots() if r.engine != "compss" else max(16, 4 * engine.slots()))
        progress = Progress(plan.count, done=done_before, enabled=r.progress, started=t0)
        log.info("%d images (%d already done), engine %s, %d worker(s), batch %d, chunk %d",
                 plan.count, done_before, r.engine, workers, batch, chunk)
        row_format = RowFormat(fmt=fmt, top_k=r.top_k,
                               labels=tuple(labels) if labels else None, label_offset=cfg.model.label_offset)
        parts = None
        if isinstance(plan, ShardPlan) and is_sharded(output):  # shard to shard: each part as its shard finishes
            parts = ShardParts(output, fmt, r.top_k, [(s.listed, s.base, max(0, s.count)) for s in plan.shards],
                               journal.read_at, lambda rec: row_ends(rec.rows, rec.count, rec.ends))
            parts.preload(journal.scan())
        scheduler = Scheduler(engine, spec, journal, progress, classify_chunk, r.max_retries, window, row_format,
                              on_record=parts.record if parts is not None else None)
        if isinstance(plan, ShardPlan):
            chunks = iter_shard_chunks(plan, journal.dir, chunk, covered, first_chunk, want_cls=truth is CLS_TRUTH,
                                       span=not r.stage_shards)  # a staged task gets one shard (one FILE_IN)
        else:
            chunks = iter_chunks(plan, chunk, covered, first_chunk)
        try:
            stats = scheduler.run(chunks)
        finally:
            progress.close()
        log.debug("all chunks done at %.2fs", time.monotonic() - t0)
        engine.close()
        if isinstance(plan, ShardPlan):
            warnings += plan.damaged
        summary = _finalize(cfg, journal, plan, output, fmt, labels, truth, info, model_sha, stats,
                            t0=t0, started_at=started_at, done_before=done_before, workers=workers,
                            batch=batch, chunk=chunk, engine=engine, warnings=warnings, progress=progress,
                            parts=parts)
        journal.remove()
        log.debug("results written at %.2fs", time.monotonic() - t0)
    except Interrupted as exc:
        engine.close(abort=True)
        if fresh and not (journal.exists() and journal.covered()):  # nothing to resume: leave no journal
            journal.remove()
            raise Interrupted(f"interrupted by {exc} during start-up, before any result; "
                              f"nothing to resume: run the same command again") from None
        journal.close()
        old_results = os.path.join(output, MANIFEST) if is_sharded(output) else output
        again = "--resume --overwrite" if os.path.exists(old_results) else "--resume"
        raise Interrupted(f"interrupted by {exc}; finished chunks are kept in {journal.dir}: "
                          f"run again with {again} to continue") from None
    except CompssInferError:
        engine.close(abort=True)
        if fresh and not journal.covered():
            journal.remove()
        else:
            journal.close()
        raise
    except OSError as exc:  # the disk filled, the mount went read-only, ...: exit 3, one line
        engine.close(abort=True)
        raise _aborted_by(exc, journal, output, fresh) from None
    except BaseException:
        engine.close(abort=True)
        journal.close()
        raise
    finally:
        for sig, handler in old_handlers.items():
            signal.signal(sig, handler)
    if r.report:  # after the run is complete: a Ctrl-C while plotting loses only the plot
        summary.report = _write_report(output)
    return summary


PLAN_WAIT_S = 2.0  # how long start-up waits for the image count before warming up with the full batch
CLS_TRUTH = "cls"  # --truth-from cls: the truth travels with each chunk's rows (its samples' .cls members)


def plan_input(r: Any, plan_path: str) -> Plan | ShardPlan:
    """The plan of ``--images``/``--image-list`` (one line per image) or of ``--shards`` (one line per shard)."""
    if r.shards:
        return plan_shards(r.shards, r.shards_base or os.getcwd(), plan_path)
    return make_plan(r.images, r.image_list, plan_path)


def _warm_up_spec(spec: WorkerSpec, planning: Any, wait: float) -> WorkerSpec:
    """Warm up with min(batch, images in the run): a 20-image run never pays for a batch of 256.

    Waits a little for the plan (TensorFlow is still loading in the forkserver meanwhile); a plan
    slower than that means a large run, for which the full batch is the right warm-up anyway.
    """
    from concurrent.futures import TimeoutError as FutureTimeout
    try:
        plan = planning.result(timeout=wait)
    except FutureTimeout:
        return spec
    except Exception:  # the planner's own error is raised where its result is taken
        return spec
    if plan.count is None:  # shards: counted once indexed, after the workers started
        return spec
    return replace(spec, warm_up_images=max(1, plan.count))


def _aborted_by(exc: OSError, journal: Journal, output: str, fresh: bool) -> RunAborted:
    """A file system failure mid-run: keep what is journaled, and say the command that continues."""
    reason = os_error_line(exc) if exc.filename else f"{os.path.dirname(os.path.abspath(output))}: {os_reason(exc)}"
    done = False
    try:
        done = journal.exists() and bool(journal.covered())
    except OSError:
        pass
    try:
        journal.close()
    except OSError:  # the buffered tail cannot be written either: resume drops a torn last line
        pass
    what = "the disk is full" if is_disk_full(exc) else "the run stopped on an OS error"
    if os.path.exists(output) and done:
        return RunAborted(f"{what} ({reason}) after {output} was written; the journal {journal.dir} is kept: "
                          f"once there is space, run the same command again with --resume --overwrite "
                          f"to rewrite the summary")
    if done or (not fresh and journal.exists()):
        return RunAborted(f"{what} ({reason}); finished chunks are kept in {journal.dir}: once there is "
                          f"space, run the same command again with --resume")
    if fresh:
        journal.remove()
    return RunAborted(f"{what} ({reason}) before any result was kept; once there is space, run the same "
                      f"command again")


def _write_report(output: str) -> str | None:
    """The run's HTML report; a plotting failure is logged, never turned into a failed run."""
    from .report import write_report
    try:
        return write_report(output).html
    except Exception as exc:  # the results are already safe: do not lose the exit code over a plot
        log.warning("the report could not be written: %s: %s", type(exc).__name__, exc)
        return None


def _check_resumable(journal: Journal, header: dict[str, Any], r: Any) -> Plan | ShardPlan:
    """Re-read the input list and refuse if it differs from the one the journal was started with."""
    if not os.path.exists(journal.plan_path):
        raise InputError(f"--resume: the journal {journal.dir} has no plan; use --overwrite to start afresh")
    probe = journal.plan_path + ".check"
    try:
        current = plan_input(r, probe)
    finally:
        if os.path.exists(probe):
            os.unlink(probe)
    if current.digest != header.get("plan_digest") or current.base != header.get("plan_base"):
        what = "the shards (their names, sizes or times)" if isinstance(current, ShardPlan) else "the input list"
        raise InputError(f"--resume refused: {what} changed since the journal was written "
                         "(use --overwrite to start afresh)")
    if isinstance(current, ShardPlan):
        return replace(current, path=journal.plan_path)
    if load_plan(journal.plan_path, header["plan_base"]).count != header.get("images"):
        raise InputError(f"--resume refused: the plan in {journal.dir} is damaged (use --overwrite to start afresh)")
    return replace(load_plan(journal.plan_path, header["plan_base"]), walk=current.walk)


def _finalize(cfg: RunConfig, journal: Journal, plan: Plan, output: str, fmt: str, labels: Any, truth: Any,
              info: ModelInfo, model_sha: str, stats: Any, *, t0: float, started_at: datetime,
              done_before: int, workers: int, batch: int, chunk: int, engine: Any,
              warnings: list[str] | None = None, progress: Progress | None = None,
              parts: ShardParts | None = None) -> RunSummary:
    """Assemble the results file in input order from the journal; write the summary and task log.

    With ``parts`` (shard input, ``--output DIR/``) the results were written shard by shard during the run:
    only the parts an earlier, interrupted run finished (and empty shards) are left, then the manifest.
    """
    top_k = cfg.run.top_k
    scorer = Scorer(truth, top_k) if truth is not None else None
    counts = {"ok": 0, "failed": 0, "tied": 0}
    kinds: dict[str, int] = {}
    models_used: dict[str, int] = {}
    tasks: list[list[Any]] = []
    listed = LineReader(plan.path) if scorer and isinstance(plan, Plan) else None

    def body(sink: Any) -> None:
        """Each record's rows in input order: bytes concatenated (or Arrow batches), no per-row object."""
        for rec in journal.records_in_order(plan.count):
            if rec.timing is not None:
                tasks.append([rec.start, rec.count, *rec.timing, rec.attempts, len(rec.errors)])
                models_used[rec.timing[7]] = models_used.get(rec.timing[7], 0) + 1
            for err in rec.errors.values():
                kind = err.split(":", 1)[0]
                kinds[kind] = kinds.get(kind, 0) + 1
            counts["failed"] += len(rec.errors)
            counts["ok"] += rec.count - len(rec.errors)
            counts["tied"] += rec.tied
            if scorer is not None:
                failed = np.zeros(rec.count, bool)
                failed[list(rec.errors)] = True
                if truth is CLS_TRUTH:
                    true = rec.truth if rec.truth is not None else np.full(rec.count, -1, np.int32)
                    scorer.add_arrays(true, rec.class_ids, rec.topk_ids, failed, first_path=None)
                else:
                    paths = decode_lines(listed.take(rec.count)) if listed is not None else \
                        listed_from_rows(rec.rows, fmt, rec.count)
                    scorer.add_many(paths, rec.class_ids, rec.topk_ids, failed)
            if sink is not None:
                sink.write(rec.rows, rec.count, row_ends(rec.rows, rec.count, rec.ends) if fmt != "parquet" else None)

    if parts is not None:
        body(None)
        parts.close(plan.count)
    else:
        # without --overwrite, the file is published only if the name is still free (never a silent overwrite)
        sink = (RowParts(output, fmt, top_k, cfg.run.shard_rows or plan.count) if is_sharded(output)
                else FileSink(output, fmt, top_k, replace=cfg.run.overwrite))
        try:
            body(sink)
        except BaseException:
            sink.abort()
            raise
        if isinstance(sink, RowParts):
            sink.close(plan.count)
        else:
            try:
                sink.close()
            except FileExistsError:
                raise InputError(f"output exists: {output} appeared while this run worked (another program "
                                 f"wrote it?); not replaced: the results are kept in {journal.dir}, run again "
                                 "with --resume --overwrite to replace it") from None
    end = time.monotonic()
    wall = end - t0
    after_first = progress.rates(end)[1] if progress is not None else None
    processed = plan.count - done_before
    summary_path = output + ".summary.json"
    tasks_path = output + ".tasks.csv"
    write_atomically(tasks_path, lambda fh: _write_tasks(fh, tasks, t0_epoch=started_at.timestamp()), follow=False)
    accuracy = scorer.summary() if scorer else None
    warnings = list(warnings or [])
    if scorer:
        for line in scorer.warnings():
            log.warning("%s", line)
            warnings.append(line)
        log.info("%s", scorer.coverage())
    if counts["tied"]:
        line = (f"{counts['tied']} classified image(s) had two or more classes sharing the top score (an int8 model's "
                f"scores come in steps of 1/256): each row keeps the lowest tied id and says TiedTopScore in its "
                f"error column")
        log.warning("%s", line)
        warnings.append(line)
    damaged = isinstance(plan, ShardPlan) and bool(plan.damaged)  # samples may be lost: never exit 0
    unlisted = plan.walk.unlisted if isinstance(plan, Plan) and plan.walk else []  # a folder not listed
    exit_code = 0 if counts["failed"] == 0 and not damaged and not unlisted else 1
    checked = card_check(cfg.model.card)  # an int8 model's agreement with fp32, as quantize measured it
    data: dict[str, Any] = {
        "output": output,
        "format": fmt,
        "images": plan.count,
        **({"shards": {"count": len(plan.shards), "damaged": plan.damaged}} if isinstance(plan, ShardPlan) else {}),
        "classified": counts["ok"],
        "failed": counts["failed"],
        "failures_by_kind": dict(sorted(kinds.items())),
        "tied_top_scores": counts["tied"],
        **({"unlisted_folders": {"count": len(unlisted), "folders": [
            {"folder": f, "reason": why} for f, why in unlisted[:100]]}} if unlisted else {}),
        "exit_code": exit_code,
        "wall_s": round(wall, 3),
        "images_per_s": round(processed / wall, 2) if wall > 0 else None,  # the whole process
        "after_first_images_per_s": round(after_first, 2) if after_first else None,
        "first_result_s": round(stats.first_result_at - t0, 3) if stats.first_result_at else None,
        "resumed_with_done": done_before,
        "engine": cfg.run.engine,
        "workers": workers,
        "batch_size": batch,
        "chunk_size": chunk,
        "tasks": {"ok": stats.tasks_done, "failed_attempts": stats.tasks_failed,
                  "images_given_up": stats.images_given_up,
                  "retries_by_cause": dict(sorted(stats.retries_by_cause.items())),
                  "worker_replacements": getattr(engine, "replaced", 0), "log": os.path.basename(tasks_path)},
        "model": {"path": cfg.model.path, "sha256": model_sha, "ids_used": models_used,
                  "ranges_used": ranges_by_id((t[0], t[1], t[9]) for t in tasks),
                  **{k: v for k, v in info.__dict__.items()},
                  **({"card_check": checked} if checked else {})},
        "accuracy": accuracy,
        "warnings": warnings,
        "config": cfg.to_dict(),
        "versions": _versions(),
        "host": socket.gethostname(),
        "cpus": available_cpus(),
        "started_at": started_at.isoformat(),
        "finished_at": datetime.now(timezone.utc).isoformat(),
    }
    write_json(summary_path, data)
    return RunSummary(output=output, summary_path=summary_path, images=plan.count, classified=counts["ok"],
                      failed=counts["failed"], wall_s=wall, images_per_s=processed / wall if wall > 0 else 0.0,
                      exit_code=exit_code, accuracy=accuracy["accuracy"] if accuracy else None, data=data,
                      after_first_images_per_s=after_first)


TASK_COLUMNS = ["start", "count", "host", "pid", "started_s", "finished_s", "load_s", "decode_wait_s",
                "infer_s", "model_id", "attempts", "errors"]


def _write_tasks(fh: Any, tasks: list[list[Any]], t0_epoch: float) -> None:
    """One line per finished task: the data the timeline report draws (times relative to run start)."""
    import csv
    w = csv.writer(fh, lineterminator="\n")
    w.writerow(TASK_COLUMNS)
    for start, count, host, pid, started, finished, load_s, decode_s, infer_s, model_id, attempts, errors in \
            sorted(tasks, key=lambda t: t[4]):
        w.writerow([start, count, host, pid, round(started - t0_epoch, 4), round(finished - t0_epoch, 4),
                    load_s, decode_s, infer_s, model_id, attempts, errors])
