"""Run configuration: YAML + flag + ``--set`` layering and strict validation into ``core/specs.py``'s dataclasses.

Precedence, lowest first: built-in defaults, the model card beside the model (``<model>.yaml``),
the YAML config file, command-line flags, ``--set section.key=value``.  Relative paths are resolved
against the folder of the file that named them (config file or model card); paths given on the
command line are resolved against the current directory.  Everything is checked before any work
starts; a problem raises :class:`ConfigError` naming the key.
"""
from __future__ import annotations

import copy
import dataclasses
import logging
import math
import os
from typing import Any, Callable, Mapping

import yaml

from ..core.errors import ConfigError, shown
from ..core.specs import (DECODE_MODES, ENGINES, FORMATS, MODES, PILLOW_MAX_PIXELS, RESIZE_METHODS, START_METHODS,
                          TRUTH_FROM, ModelSpec, PreprocessSpec, RunConfig, RunSpec, SessionSpec)
from ..core.yamlfile import YamlLimit, load_yaml, number_problem, parse_yaml
from ..model.files import card_path_for

log = logging.getLogger("compss_infer")


# --------------------------------------------------------------------------- schema

Check = Callable[[str, Any], Any]


def _is_int(v: Any) -> bool:
    return isinstance(v, int) and not isinstance(v, bool)


def _is_num(v: Any) -> bool:
    return isinstance(v, (int, float)) and not isinstance(v, bool)


INT_MAX = 2**31 - 1  # every count in a config fits a C int: bigger is a typo, and would overflow later
MAX_SECONDS = 30 * 24 * 3600.0  # time limits: a month at most (``none`` is the way to say "no limit")


def _finite(key: str, v: Any, hint: str = "") -> float:
    """A YAML number as a float; .nan, .inf and numbers too large for a float are refused."""
    try:
        f = float(v)
    except OverflowError:
        raise ConfigError(f"{key}: {shown(v)} is too large{hint}") from None
    if not math.isfinite(f):
        raise ConfigError(f"{key}: expected a finite number, got {f}{hint}")
    return f


def _int(minimum: int | None = None, auto: bool = False, maximum: int = INT_MAX) -> Check:
    def check(key: str, v: Any) -> Any:
        if v is None or (auto and v == "auto"):
            if auto:
                return None
        if not _is_int(v):
            raise ConfigError(f"{key}: expected an integer{' or auto' if auto else ''}, got {shown(v)}")
        if minimum is not None and v < minimum:
            raise ConfigError(f"{key}: must be >= {minimum}, got {shown(v)}")
        if v > maximum:
            raise ConfigError(f"{key}: must be <= {maximum}, got {shown(v)}")
        return v
    return check


def _float(minimum: float | None = None, maximum: float | None = None, optional: bool = False,
           exclusive_min: bool = False) -> Check:
    def check(key: str, v: Any) -> Any:
        if v is None and optional:
            return None
        if not _is_num(v):
            raise ConfigError(f"{key}: expected a number, got {shown(v)}")
        v = _finite(key, v)
        if minimum is not None and (v <= minimum if exclusive_min else v < minimum):
            raise ConfigError(f"{key}: must be {'>' if exclusive_min else '>='} {minimum}, got {v}")
        if maximum is not None and v > maximum:
            raise ConfigError(f"{key}: must be <= {maximum}, got {v}")
        return v
    return check


def _time_limit(key: str, v: Any) -> Any:
    """run.task_timeout: "auto" (derived from finished chunks), a positive number of seconds, or "none"."""
    if isinstance(v, str) and v.strip().lower() in ("auto", "none"):
        return None if v.strip().lower() == "none" else "auto"
    if isinstance(v, str):
        try:
            v = float(v)
        except ValueError:
            raise ConfigError(f"{key}: expected auto, none or a number of seconds, got {shown(v)}") from None
    if v is None:
        return None
    if not _is_num(v):
        raise ConfigError(f"{key}: expected auto, none or a number of seconds > 0, got {shown(v)}")
    v = _finite(key, v, " (auto, none for no limit, or seconds)")
    if not 0 < v <= MAX_SECONDS:
        raise ConfigError(f"{key}: expected auto, none or a number of seconds > 0 and <= {MAX_SECONDS:g} "
                          f"(none: no limit), got {v:g}")
    return v


def _bool(key: str, v: Any) -> bool:
    if not isinstance(v, bool):
        raise ConfigError(f"{key}: expected true or false, got {shown(v)}")
    return v


def _str(optional: bool = True) -> Check:
    def check(key: str, v: Any) -> Any:
        if v is None and optional:
            return None
        if not isinstance(v, str) or not v:
            raise ConfigError(f"{key}: expected a non-empty string, got {shown(v)}")
        return v
    return check


def _choice(options: tuple[str, ...], optional: bool = False, fold: Callable[[str], str] = str) -> Check:
    def check(key: str, v: Any) -> Any:
        if v is None and optional:
            return None
        if isinstance(v, str) and fold(v) in options:
            return fold(v)
        raise ConfigError(f"{key}: expected one of {', '.join(options)}, got {shown(v)}")
    return check


def _size(key: str, v: Any) -> Any:
    if v is None:
        return None
    if _is_int(v):
        v = [v, v]
    if (isinstance(v, (list, tuple)) and len(v) == 2 and all(_is_int(x) and 0 < x <= MAX_SIDE for x in v)):
        return (int(v[0]), int(v[1]))
    listed = "[" + ", ".join(shown(x) for x in v[:4]) + (", ...]" if len(v) > 4 else "]") \
        if isinstance(v, (list, tuple)) else shown(v)
    raise ConfigError(f"{key}: expected [height, width] of integers from 1 to {MAX_SIDE}, got {listed}")


MAX_SIDE = 65535  # the largest side a JPEG, WebP or PNG decoder gives


def _channel_values(positive: bool) -> Check:
    def check(key: str, v: Any) -> Any:
        values = v if isinstance(v, (list, tuple)) else [v]
        if not values or len(values) not in (1, 3) or not all(_is_num(x) for x in values):
            raise ConfigError(f"{key}: expected a number or a list of 1 or 3 numbers, got {shown(v)}")
        floats = tuple(_finite(key, x) for x in values)
        if positive and any(x <= 0 for x in floats):
            raise ConfigError(f"{key}: values must be > 0, got {shown(v)}")
        return floats
    return check


def _feeds(key: str, v: Any) -> Any:
    if v is None:
        return ()
    if not isinstance(v, Mapping):
        raise ConfigError(f"{key}: expected a mapping of tensor name to value, got {shown(v)}")
    out = []
    for name, value in v.items():
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{key}: tensor names must be strings, got {shown(name)}")
        if not (_is_num(value) or isinstance(value, (bool, str)) or
                (isinstance(value, list) and all(_is_num(x) for x in value))):
            raise ConfigError(f"{key}.{name[:60]}: expected a number, bool, string or list of numbers, got {shown(value)}")
        for x in (value if isinstance(value, list) else [value]):
            if _is_num(x):
                _finite(f"{key}.{name[:60]}", x)
        out.append((name, tuple(value) if isinstance(value, list) else value))  # hashable: keys the cache
    return tuple(sorted(out))


def _opt_level(key: str, v: Any) -> Any:
    if isinstance(v, str) and v.upper() in ("L0", "L1"):
        return v.upper()
    raise ConfigError(f"{key}: expected L0 or L1, got {shown(v)}")


PATH_KEYS = {("model", "path"), ("model", "labels"), ("model", "card"), ("run", "images"),
             ("run", "image_list"), ("run", "output"), ("run", "truth")}

SCHEMA: dict[str, dict[str, Check]] = {
    "model": {
        "path": _str(optional=True),
        "input": _str(),
        "output": _str(),
        "feeds": _feeds,
        "labels": _str(),
        "card": _str(),
        "allow_unsafe_ops": _bool,
        "label_offset": _int(-INT_MAX),
    },
    "preprocess": {
        "size": _size,
        "mode": _choice(MODES, fold=str.upper),
        "resize": _choice(RESIZE_METHODS, fold=str.lower),
        "crop": _float(0.0, 1.0, exclusive_min=True),
        "mean": _channel_values(positive=False),
        "std": _channel_values(positive=True),
        "exif_transpose": _bool,
        "max_pixels": _int(1, maximum=2**53),
        "decode": _choice(DECODE_MODES, fold=str.lower),
    },
    "session": {
        "inter_op_threads": _int(-1, auto=True),
        "intra_op_threads": _int(0, auto=True),
        "opt_level": _opt_level,
        "jit": _bool,
        "device": _choice(("cpu", "gpu"), fold=str.lower),
    },
    "run": {
        "images": _str(),
        "image_list": _str(),
        "shards": _str(),
        "output": _str(),
        "format": _choice(FORMATS, optional=True, fold=str.lower),
        "engine": _choice(ENGINES, fold=str.lower),
        "workers": _int(1, auto=True),
        "batch_size": _int(1, auto=True),
        "chunk_size": _int(1, auto=True),
        "top_k": _int(1),
        "overwrite": _bool,
        "resume": _bool,
        "progress": _bool,
        "max_retries": _int(0),
        "task_timeout": _time_limit,
        "task_timeout_floor": _float(0.0, MAX_SECONDS, exclusive_min=True),
        "truth": _str(),
        "truth_from_folders": _bool,
        "truth_from": _choice(TRUTH_FROM, optional=True, fold=str.lower),
        "start_method": _choice(START_METHODS, fold=str.lower),
        "window": _int(1, auto=True),
        "stage_model": _bool,
        "stage_shards": _bool,
        "report": _bool,
        "shard_rows": _int(1),
    },
}
CARD_SECTIONS = ("model", "preprocess")


# --------------------------------------------------------------------------- layering


def _resolve_paths(tree: dict[str, Any], base: str | None) -> dict[str, Any]:
    """Make path values absolute against ``base`` (the folder of the file that named them)."""
    out = copy.deepcopy(tree)
    for section, key in PATH_KEYS:
        value = out.get(section, {}).get(key) if isinstance(out.get(section), dict) else None
        if isinstance(value, str) and value and not (key == "output" and value == "-"):  # "-": refused later
            value = os.path.expanduser(value)
            keep_slash = (section, key) == ("run", "output") and value.endswith(("/", os.sep))  # DIR/: sharded
            out[section][key] = os.path.normpath(os.path.join(base or os.getcwd(), value)) + (os.sep if keep_slash else "")
    return out


def _check_shape(tree: Any, origin: str, allowed_sections: tuple[str, ...] = tuple(SCHEMA)) -> dict[str, Any]:
    """Refuse unknown sections and keys early, naming where they came from."""
    if tree is None:
        return {}
    if not isinstance(tree, dict):
        raise ConfigError(f"{origin}: expected a mapping with sections {', '.join(allowed_sections)}")
    for section, body in tree.items():
        if section not in allowed_sections:
            raise ConfigError(f"{origin}: unknown section {shown(section)} (expected {', '.join(allowed_sections)})")
        if body is None:
            continue
        if not isinstance(body, dict):
            raise ConfigError(f"{origin}: section {shown(section)} must be a mapping")
        for key in body:
            if key not in SCHEMA[section]:
                raise ConfigError(f"{origin}: unknown key {section}.{str(key)[:60]}")
    return {s: dict(b or {}) for s, b in tree.items()}


def _merge(*layers: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, dict[str, Any]] = {s: {} for s in SCHEMA}
    for layer in layers:
        for section, body in layer.items():
            out[section].update(body)
    return out


def parse_set(items: list[str]) -> dict[str, Any]:
    """``section.key=value`` strings -> nested dict; the value is parsed as YAML."""
    tree: dict[str, dict[str, Any]] = {}
    for item in items:
        if "=" not in item:
            raise ConfigError(f"--set {shown(item)}: expected section.key=value")
        dotted, raw = item.split("=", 1)
        parts = dotted.strip().split(".")
        if len(parts) != 2 or not all(parts):
            raise ConfigError(f"--set {shown(item)}: expected section.key=value (e.g. run.batch_size=64)")
        try:
            value = parse_yaml(raw) if raw.strip() else ""
        except YamlLimit as exc:
            raise ConfigError(f"--set {dotted.strip()[:60]}: value refused, {exc}") from None
        except yaml.YAMLError:
            raise ConfigError(f"--set {dotted.strip()}: value is not valid YAML") from None
        except ValueError as exc:  # an integer of more than 4,300 digits (Python's int() limit)
            raise ConfigError(f"--set {dotted.strip()}: {number_problem(exc)}") from None
        tree.setdefault(parts[0], {})[parts[1]] = value
    return tree


# What only the command line may set: a config file or model card is data (often someone else's), and
# must not relax a safety check.  key -> does this value relax it?
COMMAND_LINE_ONLY: dict[tuple[str, str], Callable[[Any], bool]] = {
    ("model", "allow_unsafe_ops"): lambda v: v is True,
    ("preprocess", "max_pixels"): lambda v: _is_int(v) and v > PILLOW_MAX_PIXELS,
}


def _drop_relaxations(tree: dict[str, Any], origin: str) -> dict[str, Any]:
    """Remove what a file may not set (one warning line each); tightening (a lower max_pixels) is kept."""
    for (section, key), relaxes in COMMAND_LINE_ONLY.items():
        body = tree.get(section)
        if isinstance(body, dict) and key in body and relaxes(body[key]):
            del body[key]
            flag = "--allow-unsafe-ops" if key == "allow_unsafe_ops" else f"--set {section}.{key}=..."
            log.warning("%s sets %s.%s: ignored, a file cannot relax a safety check (on the command line: %s)",
                        origin, section, key, flag)
    return tree


def _load_card(path: str) -> dict[str, Any]:
    data = load_yaml(path, "model card")
    if data is None:
        return {}
    if not isinstance(data, dict):
        raise ConfigError(f"model card {path}: expected a mapping")
    applied = {k: v for k, v in data.items() if k in CARD_SECTIONS}
    tree = _drop_relaxations(_check_shape(applied, f"model card {path}", CARD_SECTIONS), f"model card {path}")
    tree.get("model", {}).pop("path", None)
    return _resolve_paths(tree, os.path.dirname(path))


def _validate(tree: dict[str, dict[str, Any]]) -> RunConfig:
    values: dict[str, dict[str, Any]] = {}
    for section, checks in SCHEMA.items():
        values[section] = {}
        for key, value in tree.get(section, {}).items():
            values[section][key] = checks[key](f"{section}.{key}", value)
    if not values["model"].get("path"):
        raise ConfigError("model.path: no model given (use --model FILE or model.path in the config)")
    return RunConfig(
        model=ModelSpec(**values["model"]),
        preprocess=PreprocessSpec(**values["preprocess"]),
        session=SessionSpec(**values["session"]),
        run=RunSpec(**values["run"]),
    )


def build_config(config_file: str | None = None, flags: dict[str, Any] | None = None,
                 sets: list[str] | None = None) -> RunConfig:
    """Layer defaults < model card < config file < flags < --set, then validate.

    ``flags`` is a nested dict of already-typed values from the command line (paths cwd-relative).
    """
    file_tree: dict[str, Any] = {}
    if config_file:
        origin = os.path.abspath(config_file)
        file_tree = _resolve_paths(_drop_relaxations(_check_shape(load_yaml(origin), f"config {config_file}"),
                                                     f"config {config_file}"), os.path.dirname(origin))
    flag_tree = _resolve_paths(_check_shape(flags or {}, "command line"), None)
    set_tree = _resolve_paths(_check_shape(parse_set(sets or []), "--set"), None)
    user = _merge(file_tree, flag_tree, set_tree)

    model_path = user["model"].get("path")
    card = user["model"].get("card")
    card_tree: dict[str, Any] = {}
    if card:
        card_tree = _load_card(card)
    elif isinstance(model_path, str) and os.path.isfile(card_path_for(model_path)):
        card = card_path_for(model_path)
        card_tree = _load_card(card)
        user["model"]["card"] = card
    merged = _merge(card_tree, user)
    chosen = frozenset(f"{section}.{key}" for section, body in merged.items() for key in body)
    cfg = _validate(merged)
    if cfg.run.shards:  # kept as written (rows name shards so); relative to the file that named it, else the cwd
        named_on_command_line = "shards" in flag_tree.get("run", {}) or "shards" in set_tree.get("run", {})
        base = os.getcwd() if named_on_command_line or not config_file else os.path.dirname(os.path.abspath(config_file))
        cfg = dataclasses.replace(cfg, run=dataclasses.replace(cfg.run, shards=os.path.expanduser(cfg.run.shards),
                                                               shards_base=base))
    return dataclasses.replace(cfg, chosen=chosen)


def config_to_yaml(cfg: RunConfig) -> str:
    """The effective configuration, as a user could write it back to a file."""
    return yaml.safe_dump(cfg.to_dict(), sort_keys=False)
