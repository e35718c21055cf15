"""What the fake "JVM" reads at start: the options file runcompss writes, project/resources XML, constraints.

The real ``runcompss`` writes the master JVM's options to a file named by ``$JVM_OPTIONS_FILE``
(``scripts/system/runtime/compss_setup.sh``, ``check_compss_setup``) and the ``compss`` C extension
starts the JVM with it.  The fake reads the same kind of file: ``-Dcompss.<name>=<value>`` lines.  Of
the names, ``compss.appName``, ``compss.uuid``, ``compss.master.workingDir`` are the ones
compss_setup.sh writes; the others (``compss.fake.*`` included) are this fake's own.
"""
from __future__ import annotations

import os
import re
import sys
import tempfile
import xml.etree.ElementTree as ET
from dataclasses import dataclass, field
from typing import Callable, Mapping

DEFAULT_CPUS = 4  # runcompss without --project/--resources: localhost with 4 computing units (pycompss-notes.md)


class FakeConfigError(Exception):
    """A configuration the fake cannot run (runcompss would refuse it, or the fake does not model it)."""


def read_options(path: str) -> dict[str, str]:
    """``-Dkey=value`` lines of a JVM options file (other JVM flags are ignored)."""
    options = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            m = re.match(r"-D([^=\s]+)=(.*)$", line.rstrip("\n"))
            if m:
                options[m.group(1)] = m.group(2)
    return options


def write_options(path: str, options: Mapping[str, object]) -> str:
    with open(path, "w", encoding="utf-8") as fh:
        for key, value in options.items():
            fh.write(f"-D{key}={value}\n")
    return path


# --------------------------------------------------------------------------- the node

@dataclass
class NodeConfig:
    """The one worker node (localhost) the fake simulates."""

    cpus: int = DEFAULT_CPUS
    gpus: int = 0
    working_dir: str = field(default_factory=lambda: os.path.join(tempfile.gettempdir(), "COMPSsWorker"))
    limit_of_tasks: int | None = None
    pythonpath: str | None = None  # <Application><Pythonpath> of project.xml
    app_dir: str | None = None  # <Application><AppDir>


def _int(element: ET.Element | None, what: str) -> int | None:
    if element is None or element.text is None:
        return None
    try:
        return int(element.text.strip())
    except ValueError:
        raise FakeConfigError(f"{what}: {element.text!r} is not an integer") from None


def read_node(project: str | None, resources: str | None) -> NodeConfig:
    """One ComputeNode from project.xml/resources.xml: its CPU and GPU units, WorkingDir, LimitOfTasks."""
    node = NodeConfig()
    if resources:
        computes = ET.parse(resources).getroot().findall("ComputeNode")
        if len(computes) != 1:
            raise FakeConfigError(f"{resources}: the fake simulates exactly one ComputeNode")
        node.cpus = node.gpus = 0
        for proc in computes[0].findall("Processor"):
            units = _int(proc.find("ComputingUnits"), "ComputingUnits") or 0
            kind = (proc.findtext("Type") or "CPU").strip()
            if kind == "GPU":
                node.gpus += units
            elif kind == "CPU":
                node.cpus += units
    if project:
        computes = ET.parse(project).getroot().findall("ComputeNode")
        if len(computes) != 1:
            raise FakeConfigError(f"{project}: the fake simulates exactly one ComputeNode")
        working = (computes[0].findtext("WorkingDir") or "").strip()
        if working:
            node.working_dir = working
        node.limit_of_tasks = _int(computes[0].find("LimitOfTasks"), "LimitOfTasks")
        node.pythonpath = (computes[0].findtext("Application/Pythonpath") or "").strip() or None
        node.app_dir = (computes[0].findtext("Application/AppDir") or "").strip() or None
    if node.cpus < 1:
        raise FakeConfigError("the node declares no CPU computing units")
    return node


# --------------------------------------------------------------------------- $VAR expansion

def load_from_environment(expression: str, environ: Mapping[str, str],
                          warn: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> str:
    """EnvironmentLoader.loadFromEnvironment, line by line (java-reference/EnvironmentLoader.java).

    ``environ`` is the environment as the JVM saw it at start-up (``System.getenv`` is read once).
    Kept as Java does it: the token runs from ``$`` to the next ``/`` or the end (its ``{`` test
    compares against ``"}"``, so ``${VAR}`` takes that branch too, and the braces are stripped from the
    name afterwards); ``\\$`` escapes; an unset variable warns and becomes the empty string.
    """
    value = expression
    begin = value.find("$", 0)
    while begin >= 0:
        if begin >= 1 and value[begin - 1] == "\\":
            value = value[:begin - 1] + value[begin:]
        else:
            end = value.find(os.sep, begin) if begin + 1 < len(value) else len(value)
            end = len(value) if end == -1 else end
            full = value[begin:end]
            name = full.replace("$", "").replace("{", "").replace("}", "")
            found = environ.get(name)
            if found is not None:
                value = value.replace(full, found)
            else:
                warn(f"[WARNING] Null value obtained while loading {full} from environment")
                value = value.replace(full, "")
        begin = value.find("$", begin)
    return value


# --------------------------------------------------------------------------- constraints

@dataclass(frozen=True)
class Requirements:
    """What one task of a core element holds on the node while it runs."""

    cpus: int = 1
    gpus: int = 0


_PROCESSOR = re.compile(r"\{([^}]*)\}")


def _units(text: str | None, what: str, warn: Callable[[str], None]) -> int:
    """A computing-units value after $VAR expansion; empty (an unset variable) is the default 1."""
    text = (text or "").strip().strip("'\"")
    if not text:
        return 1
    try:
        return max(1, int(text))
    except ValueError:
        warn(f"[WARNING] {what}={text!r} is not a number of computing units: using 1")
        return 1


def parse_constraints(text: str, environ: Mapping[str, str],
                      warn: Callable[[str], None] = lambda m: print(m, file=sys.stderr)) -> Requirements:
    """The binding's constraint string, e.g. ``computing_units:$CU;`` or
    ``processors:[{processorType: CPU, computingUnits: 1}, {processorType: GPU, computingUnits: 1}];``.

    Each value goes through EnvironmentLoader with the start-up environment, as the master JVM does
    when it registers the core element (MethodResourceDescription is not in java-reference: the mapping of
    the keys to CPU and GPU units is inferred from the binding's keys and pycompss-notes.md).
    """
    cpus, gpus, processors = None, 0, None
    for item in filter(None, (part.strip() for part in re.split(r";(?![^\[]*\])", text or ""))):
        key, _, value = item.partition(":")
        key = key.strip()
        if key == "processors":
            processors = _PROCESSOR.findall(value)
        elif key in ("computing_units", "computingUnits"):
            cpus = _units(load_from_environment(value.strip(), environ, warn), key, warn)
    if processors is not None:
        cpus = 0
        for proc in processors:
            fields = dict(kv.split(":", 1) for kv in proc.split(",") if ":" in kv)
            fields = {k.strip(): load_from_environment(v.strip().strip("'\""), environ, warn)
                      for k, v in fields.items()}
            units = _units(fields.get("computingUnits"), "computingUnits", warn)
            kind = fields.get("processorType", "CPU")
            if kind == "GPU":
                gpus += units
            elif kind == "CPU":
                cpus += units
            else:
                raise FakeConfigError(f"processorType {kind}: the fake models CPU and GPU processors only")
        cpus = max(cpus, 1)
    return Requirements(cpus=cpus or 1, gpus=gpus)
