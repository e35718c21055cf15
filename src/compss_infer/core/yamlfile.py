"""The one YAML reader for configs and model cards: any problem is one ConfigError line naming the file."""
from __future__ import annotations

from typing import Any

import yaml

from .errors import ConfigError


def load_yaml(path: str, what: str = "config") -> Any:
    """Read a YAML file; any problem is a one-line ConfigError naming the file."""
    try:
        with open(path, encoding="utf-8") as fh:
            return yaml.safe_load(fh)
    except FileNotFoundError:
        raise ConfigError(f"{what} file not found: {path}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {path}: {exc.strerror}") from None
    except UnicodeDecodeError:
        raise ConfigError(f"{what} file {path} is not text (not UTF-8): give a YAML file") from None
    except ValueError as exc:  # PyYAML's int() of a number over Python's digit limit
        raise ConfigError(f"{what} file {path}: {number_problem(exc)}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{what} file {path}{where}: invalid YAML ({problem})") from None


def number_problem(exc: ValueError) -> str:
    """What a ValueError out of YAML's number parsing means, in words (Python refuses ints over 4,300 digits)."""
    if "digits" in str(exc):
        return "a number has more than 4,300 digits (far out of range for any setting)"
    return f"a value cannot be read ({' '.join(str(exc).split())[:120]})"
