"""The one YAML reader for configs, model cards and YAML values on the command line.

Configs and cards are data someone else may have written, so they are read with limits: a
regular file (a FIFO or ``/dev/zero`` never hangs or fills memory) of at most ``MAX_BYTES``, at
most ``MAX_ALIASES`` aliases, ``MAX_DEPTH`` levels of nesting and ``MAX_NODES`` nodes once aliases
are expanded (a 490-byte "billion laughs" file would be ~10^9).  Any problem is one ConfigError line
naming the file; no message formats the value itself.
"""
from __future__ import annotations

from typing import Any

import yaml

from .errors import ConfigError
from .smallfile import SmallFileError, read_small_file

MAX_BYTES = 1 << 20  # a config or card is a few hundred bytes
MAX_ALIASES = 100
MAX_DEPTH = 64
MAX_NODES = 100_000


class YamlLimit(yaml.YAMLError):
    """A limit of the reader was reached (the message says which)."""


class _LimitedLoader(yaml.SafeLoader):
    """SafeLoader whose composer counts aliases, nesting depth and the expanded node count."""

    def __init__(self, stream: Any) -> None:
        super().__init__(stream)
        self._aliases = 0
        self._depth = 0
        self._weight = 0  # nodes composed so far, every alias counting as its whole anchored tree
        self._weights: dict[int, int] = {}  # id(node) -> its expanded size

    def compose_node(self, parent: Any, index: Any) -> Any:
        if self.check_event(yaml.AliasEvent):
            self._aliases += 1
            if self._aliases > MAX_ALIASES:
                raise YamlLimit(f"more than {MAX_ALIASES} aliases (*name)")
            node = super().compose_node(parent, index)
            self._add(self._weights.get(id(node), 1))
            return node
        self._depth += 1
        if self._depth > MAX_DEPTH:
            raise YamlLimit(f"nested deeper than {MAX_DEPTH} levels")
        before = self._weight
        try:
            node = super().compose_node(parent, index)
        finally:
            self._depth -= 1
        self._add(1)
        if not isinstance(node, yaml.ScalarNode):
            self._weights[id(node)] = self._weight - before
        return node

    def _add(self, n: int) -> None:
        self._weight += n
        if self._weight > MAX_NODES:
            raise YamlLimit(f"more than {MAX_NODES} values once aliases are expanded")


def parse_yaml(text: str | bytes) -> Any:
    """``yaml.safe_load`` with the limits above (raises yaml.YAMLError, YamlLimit included)."""
    loader = _LimitedLoader(text)
    try:
        return loader.get_single_data()
    finally:
        loader.dispose()


def load_yaml(path: str, what: str = "config") -> Any:
    """Read a YAML file; any problem is a one-line ConfigError naming the file."""
    try:
        data = read_small_file(path, MAX_BYTES)
    except FileNotFoundError:
        raise ConfigError(f"{what} file not found: {path}") from None
    except SmallFileError as exc:
        raise ConfigError(f"{what} file {path} {exc}") from None
    except OSError as exc:
        raise ConfigError(f"cannot read {what} file {path}: {exc.strerror}") from None
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError:
        raise ConfigError(f"{what} file {path} is not text (not UTF-8): give a YAML file") from None
    try:
        return parse_yaml(text)
    except YamlLimit as exc:
        raise ConfigError(f"{what} file {path}: refused, {exc}") from None
    except ValueError as exc:  # PyYAML's int() of a number over Python's digit limit
        raise ConfigError(f"{what} file {path}: {number_problem(exc)}") from None
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        problem = getattr(exc, "problem", None) or str(exc).splitlines()[0]
        raise ConfigError(f"{what} file {path}{where}: invalid YAML ({problem[:120]})") from None


def number_problem(exc: ValueError) -> str:
    """What a ValueError out of YAML's number parsing means, in words (Python refuses ints over 4,300 digits)."""
    if "digits" in str(exc):
        return "a number has more than 4,300 digits (far out of range for any setting)"
    return f"a value cannot be read ({' '.join(str(exc).split())[:120]})"
