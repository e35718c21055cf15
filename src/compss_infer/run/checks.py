"""The refusals that need neither TensorFlow nor workers: run first, before anything starts.

Kept light (no numpy, no TensorFlow) so the command can refuse in a fraction of a second, before
it starts the forkserver that imports TensorFlow.  Also what ``compss-infer submit`` checks before
a job waits in a queue.
"""
from __future__ import annotations

import errno
import os
import stat
import tempfile

from ..core.specs import RunConfig
from ..core.errors import ConfigError, InputError, os_reason
from ..core.smallfile import describe_mode
from ..model.checkpoint import locate_checkpoint, looks_like_checkpoint
from ..model.files import check_model_path
from .outpaths import journal_busy, journal_dir, journal_exists, refuse_linked_side_files
from .results import check_output, format_for, is_sharded, refuse_special

MIN_FREE_BYTES = 1 << 20  # below this nothing useful fits: refuse as "no space left"


def check_config(cfg: RunConfig) -> tuple[str, str]:
    """Files and values every run needs.  Returns (output, format)."""
    r = cfg.run
    if not r.output:
        raise ConfigError("run.output: no results file given (--output FILE)")
    if sum(bool(x) for x in (r.images, r.image_list, r.shards)) != 1:
        raise ConfigError("give exactly one of --images DIR (run.images), --image-list FILE (run.image_list) or "
                          "--shards SPEC (run.shards)")
    truth_from = "folders" if r.truth_from_folders else r.truth_from
    if r.truth_from_folders and r.truth_from not in (None, "folders"):
        raise ConfigError(f"run.truth_from_folders and run.truth_from={r.truth_from} disagree: give one")
    if sum(bool(x) for x in (r.truth, truth_from)) > 1:
        raise ConfigError("give one source of ground truth: --truth CSV or --truth-from")
    if truth_from == "cls" and not r.shards:
        raise ConfigError("--truth-from cls reads the .cls members of tar shards: it needs --shards")
    if truth_from == "folders" and r.shards:
        raise ConfigError("--truth-from folders names classes by image folders; with --shards use --truth-from cls "
                          "or --truth CSV")
    if r.shards and r.shard_rows:
        raise ConfigError("run.shard_rows cuts parts of file inputs; with --shards and --output DIR/ each input "
                          "shard gets its own part")
    if r.stage_shards and not r.shards:
        raise ConfigError("run.stage_shards stages tar shards: it needs --shards")
    if r.stage_shards and not r.stage_model:
        raise ConfigError("run.stage_shards is for clusters without a shared file system, where the model must be "
                          "staged too: set run.stage_model: true as well")
    if r.output == "-":
        raise InputError("--output -: results cannot go to stdout (the run journals and renames its "
                         "results file); give a file name (./- for a file named '-')")
    check_model_path(cfg.model.path)
    if looks_like_checkpoint(cfg.model.path):  # a TF1 checkpoint: its newest entry must be complete
        locate_checkpoint(cfg.model.path)
        if r.stage_model:
            raise ConfigError("run.stage_model copies one model file; a TF1 checkpoint is several: "
                              "keep it on a shared file system, or freeze it first (compss-infer freeze)")
    if cfg.model.labels:  # a FIFO would hang the run, /dev/zero fill its memory: refuse them now
        _refuse_not_regular(cfg.model.labels, "model.labels")
    if r.truth and not os.path.isfile(r.truth):
        raise ConfigError(f"run.truth: file not found: {r.truth}")
    if r.report:
        from .report import require_matplotlib
        require_matplotlib()  # refuse before the work, not after it
    if not is_sharded(r.output):  # DIR/ is a folder of parts (an interrupted run's parts already in it)
        refuse_special(r.output)
    return r.output, format_for(r.output, r.format)


def _refuse_not_regular(path: str, key: str) -> None:
    try:
        mode = os.stat(path).st_mode
    except OSError as exc:
        raise ConfigError(f"{key}: cannot read {path}: {exc.strerror}") from None
    if not stat.S_ISREG(mode):
        raise ConfigError(f"{key}: {path} {describe_mode(mode)}, not a regular file")


def _existing_ancestor(folder: str) -> str:
    while not os.path.lexists(folder):
        parent = os.path.dirname(folder)
        if parent == folder:
            break
        folder = parent
    return folder


def check_writable_folder(folder: str, what: str) -> None:
    """Refuse (exit 2) a folder that cannot be created or written, or that has no free space.

    Probes for real (a temporary file created and removed) in the deepest folder that exists,
    since permission bits say nothing about a read-only mount, root, or ACLs.
    """
    folder = os.path.abspath(folder)
    base = _existing_ancestor(folder)
    if not os.path.isdir(base):
        raise InputError(f"{what}: cannot create {folder}: {base} is not a directory")
    try:
        fd, probe = tempfile.mkstemp(prefix=".compss-infer-probe.", dir=base)
    except OSError as exc:
        raise InputError(f"{what}: cannot write in {base}: {os_reason(exc)}") from None
    os.close(fd)
    os.unlink(probe)
    try:
        st = os.statvfs(base)
    except OSError:
        return
    free = st.f_bavail * st.f_frsize
    if free < MIN_FREE_BYTES:
        reason = os_reason(OSError(errno.ENOSPC, "no space left"))
        raise InputError(f"{what}: cannot write in {base}: {reason} ({free // 1024} KiB free)")


def check_output_location(output: str, report: bool = False) -> None:
    """Where the results, their temporary file, summary and journal go must be writable now.

    A symlinked output is written in its target's folder (atomic.py), and so is the journal
    (outpaths.py); the side files go beside the name given, never through a link.
    """
    folders = {os.path.dirname(os.path.abspath(output))}
    if os.path.islink(output) or is_sharded(output):
        folders.add(os.path.dirname(journal_dir(output)))
    for folder in sorted(folders):
        check_writable_folder(folder, f"--output {output}")
    refuse_linked_side_files(output, report)


def refuse_early(cfg: RunConfig) -> tuple[str, str]:
    """check_config, plus the rules that protect results and journals from being clobbered."""
    output, fmt = check_config(cfg)
    r = cfg.run
    if journal_busy(output):  # under this name or another one for the same file
        raise InputError(f"another compss-infer run is writing {output} now (its journal {journal_dir(output)} "
                         "is locked): wait for it, or choose another --output")
    if r.resume:
        if os.path.exists(output) and not r.overwrite:
            check_output(output, False, True)
        if not journal_exists(output):
            raise InputError(f"--resume: nothing to resume, no journal at {journal_dir(output)}")
    else:
        check_output(output, r.overwrite, False)
        if journal_exists(output) and not r.overwrite:
            raise InputError(f"an interrupted run left a journal at {journal_dir(output)}: "
                             "use --resume to continue it or --overwrite to start afresh")
    check_output_location(output, r.report)
    return output, fmt
