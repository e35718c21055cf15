"""The package's floors: imports run downward only, and no module is part of an import circle.

Floors, top first: the commands (package API, CLI, ``commands/``, the COMPSs entry points) -> ``run/``
-> ``engines/`` -> ``worker`` -> ``model/`` -> ``images/`` -> ``core/`` (and ``_version``).  A module may
import its own floor or any lower one.  Imports are read with ``ast``, including the ones inside
functions (a lazy import is still a dependency).
"""
from __future__ import annotations

import ast
import os

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SRC = os.path.join(ROOT, "src")
PKG = "compss_infer"
FLOORS = [  # lowest first: (name, module prefixes)
    ("core", ["compss_infer.core", "compss_infer._version"]),
    ("images", ["compss_infer.images"]),
    ("model", ["compss_infer.model"]),
    ("worker", ["compss_infer.worker"]),
    ("engines", ["compss_infer.engines"]),
    ("run", ["compss_infer.run"]),
    ("commands", ["compss_infer", "compss_infer.__main__", "compss_infer.cli", "compss_infer.commands",
                  "compss_infer.compss_app", "compss_infer.launch"]),
]
ROOT_MODULES = {"__init__", "__main__", "_version", "cli", "worker", "compss_app", "launch"}


def floor_of(module: str) -> int:
    best, level = -1, None
    for i, (_, prefixes) in enumerate(FLOORS):
        for p in prefixes:
            if (module == p or module.startswith(p + ".")) and len(p) > best:
                best, level = len(p), i
    assert level is not None, f"{module} is on no floor: add its folder to FLOORS"
    return level


def module_files(top: str, package: str) -> dict[str, str]:
    out = {}
    for folder, dirs, files in os.walk(os.path.join(top, package)):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for f in files:
            if f.endswith(".py"):
                rel = os.path.relpath(os.path.join(folder, f), top)[:-3].replace(os.sep, ".")
                out[rel[: -len(".__init__")] if rel.endswith(".__init__") else rel] = os.path.join(folder, f)
    return out


def imports(module: str, path: str, known: set[str], package: str) -> set[str]:
    """Modules of ``package`` that ``module`` imports (a ``from X import name`` of a submodule counts
    as importing X.name)."""
    is_pkg = path.endswith("__init__.py")
    tree = ast.parse(open(path, encoding="utf-8").read(), path)
    found = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(a.name for a in node.names if a.name.split(".")[0] == package)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = module.split(".") if is_pkg else module.split(".")[:-1]
                base = base[: len(base) - (node.level - 1)]
                target = ".".join(base + ([node.module] if node.module else []))
            else:
                target = node.module or ""
            if target.split(".")[0] != package:
                continue
            subs = [f"{target}.{a.name}" for a in node.names if f"{target}.{a.name}" in known]
            found.update(subs)
            if len(subs) < len(node.names):
                found.add(target)
    return found


def graph(top: str, package: str) -> dict[str, set[str]]:
    files = module_files(top, package)
    return {m: imports(m, p, set(files), package) - {m} for m, p in files.items()}


def cycles(g: dict[str, set[str]]) -> list[list[str]]:
    """Strongly connected components with more than one module (Tarjan)."""
    index, low, stack, on, out, n = {}, {}, [], set(), [], [0]

    def visit(v: str) -> None:
        index[v] = low[v] = n[0]
        n[0] += 1
        stack.append(v)
        on.add(v)
        for w in g.get(v, ()):
            if w not in g:
                continue
            if w not in index:
                visit(w)
                low[v] = min(low[v], low[w])
            elif w in on:
                low[v] = min(low[v], index[w])
        if low[v] == index[v]:
            comp = []
            while True:
                w = stack.pop()
                on.discard(w)
                comp.append(w)
                if w == v:
                    break
            if len(comp) > 1:
                out.append(sorted(comp))

    for v in sorted(g):
        if v not in index:
            visit(v)
    return out


def upward(g: dict[str, set[str]]) -> list[str]:
    bad = []
    for m, deps in sorted(g.items()):
        for d in sorted(deps):
            if d == PKG and m != PKG:
                bad.append(f"{m} imports the package's __init__ (import the module that defines the name)")
            elif floor_of(d) > floor_of(m):
                bad.append(f"{m} ({FLOORS[floor_of(m)][0]}) imports {d} ({FLOORS[floor_of(d)][0]})")
    return bad


def test_imports_run_downward_only():
    assert upward(graph(SRC, PKG)) == []


def test_no_import_circles_in_the_package_or_the_benchmarks():
    assert cycles(graph(SRC, PKG)) == []
    assert cycles(graph(ROOT, "benchmarks")) == []


def test_the_package_root_keeps_only_the_api_the_cli_and_the_worker():
    root = {f[:-3] for f in os.listdir(os.path.join(SRC, PKG)) if f.endswith(".py")}
    assert root == ROOT_MODULES


def test_every_folder_says_what_lives_there_and_what_it_may_import():
    for folder in ("core", "images", "model", "engines", "run", "commands"):
        doc = ast.get_docstring(ast.parse(open(os.path.join(SRC, PKG, folder, "__init__.py")).read())) or ""
        assert "May import" in doc, folder


@pytest.mark.parametrize("case, expected", [
    ({"compss_infer.model.graph": {"compss_infer.run.config"}}, ["compss_infer.model.graph (model) imports "
                                                                  "compss_infer.run.config (run)"]),
    ({"compss_infer.run.report": {"compss_infer"}}, ["compss_infer.run.report imports the package's __init__ "
                                                     "(import the module that defines the name)"]),
    ({"compss_infer.run.runner": {"compss_infer.engines", "compss_infer.core.errors"}}, []),
])
def test_the_checker_itself_catches_an_upward_import(case, expected):
    assert upward(case) == expected


def test_the_checker_itself_catches_a_circle():
    g = {"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}
    assert cycles(g) == [["a", "b", "c"]]
