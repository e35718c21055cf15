"""The stand-in ``runcompss``: check the flags like the real one, then run the app in master mode.

Only ``--flag=value`` forms of the flags in pycompss-notes.md are accepted (plus the ``-d``, ``-t``,
``-g`` switches); anything else is "Bad argument", as with the real launcher.  ``--project`` and
``--resources`` are parsed: one ComputeNode, its CPU and GPU computing units, WorkingDir and
LimitOfTasks.  Without them: localhost with 4 CPU computing units (the real default).

Like the real launcher (see the notes), the exit status is 0 when the application ended with
``sys.exit(N)`` for any N: only an uncaught exception or a task FAILED under RETRY/FAIL gives 1.
Callers must judge the application by its own output.
"""
from __future__ import annotations

import os
import re
import runpy
import shutil
import subprocess
import sys
import tempfile
import traceback
import uuid
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field

from . import _standin_runtime as rt

VALUE_FLAGS = ("lang", "pythonpath", "python_interpreter", "log_level", "project", "resources", "master_name",
               "log_dir", "cpu_affinity", "gpu_affinity", "env_script", "tracing", "graph")  # --summary: bare only
SWITCHES = {"-d": ("log_level", "debug"), "-t": ("tracing", "true"), "-g": ("graph", "true"),
            "--tracing": ("tracing", "true"), "--graph": ("graph", "true"), "--summary": ("summary", "true")}
LOG_LEVELS = ("off", "info", "api", "debug", "trace")
BOOLS = ("true", "false")


class BadArgument(Exception):
    pass


@dataclass
class Options:
    flags: dict[str, str] = field(default_factory=dict)
    app: str = ""
    app_args: list[str] = field(default_factory=list)


def parse(argv: list[str]) -> Options:
    opts = Options()
    i = 0
    while i < len(argv):
        arg = argv[i]
        if not arg.startswith("-"):
            break
        if arg in SWITCHES:
            name, value = SWITCHES[arg]
        else:
            m = re.fullmatch(r"--([a-z_]+)=(.*)", arg, re.S)
            if not m or m.group(1) not in VALUE_FLAGS:
                raise BadArgument(arg)
            name, value = m.group(1), m.group(2)
        if name in opts.flags:
            raise BadArgument(f"{arg} (given twice)")
        opts.flags[name] = value
        i += 1
    if i >= len(argv):
        raise BadArgument("no application given")
    opts.app, opts.app_args = argv[i], argv[i + 1:]
    return opts


def _check_values(opts: Options) -> None:
    f = opts.flags
    if f.get("lang", "python") != "python":
        raise BadArgument(f"--lang={f['lang']} (the stand-in runs Python applications)")
    if f.get("log_level", "off") not in LOG_LEVELS:
        raise BadArgument(f"--log_level={f['log_level']} (expected one of {', '.join(LOG_LEVELS)})")
    for name in ("tracing", "graph"):
        if f.get(name, "false") not in BOOLS:
            raise BadArgument(f"--{name}={f[name]} (expected true or false)")
    for name in ("project", "resources", "env_script"):
        if name in f and not os.path.isfile(f[name]):
            raise BadArgument(f"--{name}={f[name]} (no such file)")
    if not opts.app.endswith(".py") or not os.path.isfile(opts.app):
        raise BadArgument(f"{opts.app} (not a Python application file)")


@dataclass
class Node:
    cpus: int = 4
    gpus: int = 0
    working_dir: str = field(default_factory=lambda: os.path.join(tempfile.gettempdir(), "COMPSsWorker"))
    limit_of_tasks: int | None = None


def _int(element: ET.Element | None, what: str) -> int | None:
    if element is None or element.text is None:
        return None
    try:
        return int(element.text.strip())
    except ValueError:
        raise BadArgument(f"{what}: {element.text!r} is not an integer") from None


def read_node(project: str | None, resources: str | None) -> Node:
    """The one simulated node, from the XML files (validated the way runcompss would refuse them)."""
    node = Node()
    names = {"localhost"}
    if resources:
        root = ET.parse(resources).getroot()
        if root.tag != "ResourcesList":
            raise BadArgument(f"--resources={resources} (root element must be ResourcesList)")
        computes = root.findall("ComputeNode")
        if len(computes) != 1:
            raise BadArgument(f"--resources={resources} (the stand-in simulates exactly one ComputeNode)")
        names = {computes[0].get("Name")}
        node.cpus = node.gpus = 0
        for proc in computes[0].findall("Processor"):
            units = _int(proc.find("ComputingUnits"), "ComputingUnits") or 0
            kind = (proc.findtext("Type") or "CPU").strip()
            if kind == "GPU":
                node.gpus += units
            elif kind == "CPU":
                node.cpus += units
        if node.cpus < 1:
            raise BadArgument(f"--resources={resources} (no CPU computing units)")
    if project:
        root = ET.parse(project).getroot()
        if root.tag != "Project" or root.find("MasterNode") is None:
            raise BadArgument(f"--project={project} (needs a Project root with a MasterNode)")
        computes = root.findall("ComputeNode")
        if len(computes) != 1 or computes[0].get("Name") not in names:
            raise BadArgument(f"--project={project} (its one ComputeNode must be one of the resources: {sorted(names)})")
        working = computes[0].findtext("WorkingDir")
        if not working or not os.path.isabs(working.strip()):
            raise BadArgument(f"--project={project} (ComputeNode needs an absolute WorkingDir)")
        node.working_dir = working.strip()
        node.limit_of_tasks = _int(computes[0].find("LimitOfTasks"), "LimitOfTasks")
    return node


def _source_env_script(path: str) -> None:
    out = subprocess.run(["bash", "-c", 'set -a; . "$1" >/dev/null; env -0', "_", path],
                         check=True, capture_output=True).stdout
    for item in out.split(b"\0"):
        if b"=" in item:
            key, value = item.split(b"=", 1)
            os.environ[os.fsdecode(key)] = os.fsdecode(value)


def _log_dir(base: str, app: str) -> str:
    root = os.path.join(base, ".COMPSs")
    name = os.path.splitext(os.path.basename(app))[0]
    for n in range(1, 1000):
        path = os.path.join(root, f"{name}.py_{n:02d}")
        try:
            os.makedirs(path)
            return path
        except FileExistsError:
            continue
    raise BadArgument(f"too many log folders in {root}")


def main(argv: list[str]) -> int:
    try:
        opts = parse(argv)
        _check_values(opts)
        node = read_node(opts.flags.get("project"), opts.flags.get("resources"))
    except (BadArgument, ET.ParseError) as exc:
        print(f"[ERROR] Bad argument: {exc}", file=sys.stderr)
        print("Usage: runcompss [options] application_name application_arguments", file=sys.stderr)
        return 1
    f = opts.flags
    if "env_script" in f:
        _source_env_script(f["env_script"])
    app = os.path.abspath(opts.app)
    app_dir = os.path.dirname(app)
    pythonpath = tuple(os.path.abspath(p) for p in f.get("pythonpath", "").split(":") if p)
    interpreter = f.get("python_interpreter", sys.executable)
    log_dir = _log_dir(f.get("log_dir", os.path.expanduser("~")), app)
    working_dir = os.path.join(node.working_dir, f"{os.path.basename(log_dir)}_{uuid.uuid4().hex[:8]}")
    print(f"[stand-in runcompss] {app}: master on localhost, {node.cpus} CPU / {node.gpus} GPU computing units; "
          f"logs in {log_dir}", flush=True)
    runtime = rt.enter_master(cpus=node.cpus, gpus=node.gpus, working_dir=working_dir, log_dir=log_dir,
                              pythonpath=pythonpath, interpreter=interpreter,
                              optimize=f.get("log_level", "off") not in ("debug", "trace"),
                              limit_of_tasks=node.limit_of_tasks)
    sys.argv = [app, *opts.app_args]
    sys.path[0:0] = [app_dir, *pythonpath]  # like `python app.py` (the app's folder first), then --pythonpath
    status = 0
    try:
        runpy.run_path(app, run_name="__main__")
    except SystemExit as exc:
        code = exc.code
        if code is not None and not isinstance(code, int):
            print(code, file=sys.stderr)
        print(f"[stand-in runcompss] the application exited with {code!r}; runcompss reports 0 all the same",
              flush=True)
    except BaseException:  # noqa: BLE001 - an uncaught application error ends the run with 1
        traceback.print_exc()
        status = 1
    finally:
        runtime.stop(wait=status == 0)
        shutil.rmtree(working_dir, ignore_errors=True)  # the worker's sandboxes and transfers; logs stay
    print(f"[stand-in runcompss] execution finished ({runtime.started_executors} executor(s) started)", flush=True)
    return status
