"""The refusals that need neither TensorFlow nor workers: run first, before anything starts.

Kept light (no numpy, no TensorFlow) so the command can refuse in a fraction of a second, before
it starts the forkserver that imports TensorFlow.  Also what ``compss-infer submit`` checks before
a job waits in a queue.
"""
from __future__ import annotations

import os

from .config import RunConfig
from .errors import ConfigError, InputError, ModelError
from .model.checkpoint import locate_checkpoint, looks_like_checkpoint
from .results import check_output, format_for


def journal_exists(output: str) -> bool:
    return os.path.isfile(os.path.join(output + ".journal", "header.json"))


def check_config(cfg: RunConfig) -> tuple[str, str]:
    """Files and values every run needs.  Returns (output, format)."""
    r = cfg.run
    if not r.output:
        raise ConfigError("run.output: no results file given (--output FILE)")
    if bool(r.images) == bool(r.image_list):
        raise ConfigError("give exactly one of --images DIR (run.images) or --image-list FILE (run.image_list)")
    if looks_like_checkpoint(cfg.model.path):  # a TF1 checkpoint: its newest entry must be complete
        locate_checkpoint(cfg.model.path)
        if r.stage_model:
            raise ConfigError("run.stage_model copies one model file; a TF1 checkpoint is several: "
                              "keep it on a shared file system, or freeze it first (compss-infer freeze)")
    elif not os.path.isfile(cfg.model.path):
        raise ModelError(f"model file not found: {cfg.model.path}")
    if r.truth and not os.path.isfile(r.truth):
        raise ConfigError(f"run.truth: file not found: {r.truth}")
    if r.report:
        from .report import require_matplotlib
        require_matplotlib()  # refuse before the work, not after it
    return r.output, format_for(r.output, r.format)


def refuse_early(cfg: RunConfig) -> tuple[str, str]:
    """check_config, plus the rules that protect results and journals from being clobbered."""
    output, fmt = check_config(cfg)
    r = cfg.run
    if r.resume:
        if os.path.exists(output) and not r.overwrite:
            check_output(output, False, True)
        if not journal_exists(output):
            raise InputError(f"--resume: nothing to resume, no journal at {output}.journal")
    else:
        check_output(output, r.overwrite, False)
        if journal_exists(output) and not r.overwrite:
            raise InputError(f"an interrupted run left a journal at {output}.journal: "
                             "use --resume to continue it or --overwrite to start afresh")
    return output, fmt
