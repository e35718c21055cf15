"""The run configuration's types: frozen dataclasses every floor may read (validated by run/config.py)."""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

PILLOW_MAX_PIXELS = 89_478_485  # Pillow's own Image.MAX_IMAGE_PIXELS default
RESIZE_METHODS = ("bilinear", "nearest", "bicubic", "area")
# safe: JPEG DCT scaling only while the image stays >= 4x the model's size (the default); fast: down to
# the model's size, then a box reduce (can change answers; run warns); full: every pixel decoded.
DECODE_MODES = ("safe", "fast", "full")
MODES = ("L", "RGB", "BGR")
ENGINES = ("local", "sequential", "compss")
FORMATS = ("csv", "jsonl", "parquet")
TRUTH_FROM = ("folders", "cls")
START_METHODS = ("forkserver", "spawn")


@dataclass(frozen=True)
class ModelSpec:
    """Which graph to run and how to talk to it."""

    path: str
    input: str | None = None
    output: str | None = None
    feeds: tuple[tuple[str, Any], ...] = ()
    labels: str | None = None
    card: str | None = None
    allow_unsafe_ops: bool = False
    label_offset: int = 0  # class i is named by labels line i - offset (1: TF-slim background class 0)


@dataclass(frozen=True)
class PreprocessSpec:
    """How a file becomes a model input (Pillow, on the worker)."""

    size: tuple[int, int] | None = None  # (H, W); None = take it from the graph
    mode: str = "RGB"
    resize: str = "bilinear"
    crop: float = 1.0
    mean: tuple[float, ...] = (0.0,)
    std: tuple[float, ...] = (1.0,)
    exif_transpose: bool = True
    max_pixels: int = PILLOW_MAX_PIXELS
    decode: str = "safe"  # one of DECODE_MODES: how far a large image may be shrunk before the resize


@dataclass(frozen=True)
class SessionSpec:
    """tf.compat.v1.Session options. ``None`` threads = decided per worker at run time."""

    inter_op_threads: int | None = None
    intra_op_threads: int | None = None
    opt_level: str = "L1"
    jit: bool = False
    device: str = "cpu"


@dataclass(frozen=True)
class RunSpec:
    """What to classify, where results go, and how the work is spread."""

    images: str | None = None
    image_list: str | None = None
    shards: str | None = None  # tar shards: a brace pattern, a folder of .tar files, a .tar or a list file
    shards_base: str | None = None  # the folder relative --shards paths resolve against (set by the config layering)
    output: str | None = None
    format: str | None = None
    engine: str = "local"
    workers: int | None = None
    batch_size: int | None = None
    chunk_size: int | None = None
    top_k: int = 1
    overwrite: bool = False
    resume: bool = False
    progress: bool = True
    max_retries: int = 2
    task_timeout: float | str | None = "auto"  # "auto" | seconds | None ("none"); see timelimit.py
    task_timeout_floor: float = 60.0  # the auto rule's floor (seconds)
    truth: str | None = None
    truth_from_folders: bool = False
    truth_from: str | None = None  # folders | cls (the samples' .cls members of tar shards)
    start_method: str = "forkserver"
    window: int | None = None
    stage_model: bool = False
    stage_shards: bool = False  # COMPSs without a shared file system: each task gets its shard as a FILE_IN
    report: bool = False
    shard_rows: int | None = None  # with --output DIR/: part-00000.<fmt> ... of this many rows + manifest.json


@dataclass(frozen=True)
class RunConfig:
    """The whole, validated configuration of one run."""

    model: ModelSpec
    preprocess: PreprocessSpec = field(default_factory=PreprocessSpec)
    session: SessionSpec = field(default_factory=SessionSpec)
    run: RunSpec = field(default_factory=RunSpec)
    # "section.key" of every value some layer (card, file, flag, --set) set: to tell a default nobody chose
    chosen: frozenset[str] = field(default=frozenset(), compare=False)

    def to_dict(self) -> dict[str, Any]:
        """Plain, YAML/JSON-serialisable form (for summaries and fingerprints)."""
        d = asdict(self)
        d.pop("chosen", None)
        d["model"]["feeds"] = {k: list(v) if isinstance(v, tuple) else v for k, v in self.model.feeds}
        for key in ("size", "mean", "std"):
            value = d["preprocess"][key]
            d["preprocess"][key] = list(value) if value is not None else None
        return d
