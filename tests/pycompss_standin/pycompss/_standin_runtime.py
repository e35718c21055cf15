"""The stand-in COMPSs runtime: strict, small, and for tests only.

It enforces the facts in /work/shared/pycompss-notes.md that compss-infer is written against, so
that breaking one of them fails a test instead of a cluster job:

* decorators go on module-level functions of importable modules, with documented keywords only;
* a task call in the master returns a Future that raises when used (bool, iteration, attribute,
  arithmetic, formatting) before ``compss_wait_on``;
* executors are persistent processes, one per CPU computing unit of the node, all started up front;
  any idle one may take the next task; each runs every task through the REAL PyCOMPSs worker code
  (``standin_executor.py`` -> ``pycompss.worker.piper.commons.executor.process_task`` from
  ``../shared/third_party/compss-3.3/python``): real argument and return files, the job sandbox,
  the per-task environment, the ``time_out`` alarm (not a kill) and ``on_failure``; executors run
  ``python -O`` unless the log level is debug, like real workers;
* a dead executor (segfault, OOM kill) is NOT replaced: its slot fails every later task sent to it
  at once ("Cannot write in pipe"), as the real Java side does with its cached pipes;
* a ``FILE_IN`` argument is copied to a renamed file in the worker's working directory, and the
  task gets that copy's path;
* ``"$VAR"`` constraint values are expanded from the environment as it was when the runtime
  started (the JVM caches it), never from later changes to ``os.environ``; unset: warning and 1;
* ``IGNORE`` gives ``None`` (or the ``@on_failure`` default); ``RETRY`` retries twice, then the
  whole run is shut down with exit code 1, as is a ``FAIL`` task at its first failure;
* a task whose constraints no resource can ever meet raises at once (the real runtime would leave
  it "Blocked" forever).

Modes, as in PyCOMPSs: with no runtime (plain ``python app.py``) tasks run in the caller and
``compss_wait_on`` returns its argument; ``enter_master`` (the ``runcompss`` shim, or a test)
makes this process the master.  Only one node (localhost) is simulated.
"""
from __future__ import annotations

import atexit
import inspect
import itertools
import json
import os
import pickle
import re
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from collections import deque
from dataclasses import dataclass, field
from typing import Any, Callable

from compss_infer.engines.base import describe_exit as _exit_text  # the local engine's wording

STANDIN_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # holds the pycompss package
EXECUTOR_SCRIPT = os.path.join(STANDIN_ROOT, "standin_executor.py")
# The real PyCOMPSs 3.3 binding beside the project (../shared); STANDIN_REAL_PYCOMPSS overrides.
REAL_PYCOMPSS = os.environ.get("STANDIN_REAL_PYCOMPSS") or os.path.normpath(
    os.path.join(STANDIN_ROOT, "..", "..", "..", "shared", "third_party", "compss-3.3", "python"))

TASK_KEYWORDS = ("returns", "time_out", "priority", "on_failure")
POLICIES = ("RETRY", "IGNORE", "CANCEL_SUCCESSORS", "FAIL")
RETRIES = 2  # RETRY: once more on the same worker, once on another; then the task is FAILED
CONSTRAINT_KEYWORDS = frozenset({
    "computing_units", "processors", "processor_name", "processor_speed", "processor_architecture",
    "processor_type", "processor_property_name", "processor_property_value",
    "processor_internal_memory_size", "memory_size", "memory_type", "storage_size", "storage_type",
    "storage_bw", "operating_system_type", "operating_system_distribution", "operating_system_version",
    "wall_clock_limit", "host_queues", "app_software",
})
PROCESSOR_KEYS = frozenset({"processorType", "computingUnits", "processorName", "processorSpeed",
                            "processorArchitecture", "processorInternalMemorySize",
                            "processorPropertyName", "processorPropertyValue"})
SUPPORTED_DIRECTIONS = ("IN", "FILE_IN")
PER_TASK_ENV = ("COMPSS_NUM_THREADS", "OMP_NUM_THREADS", "COMPSS_BINDED_CPUS", "COMPSS_NUM_CPUS",
                "COMPSS_NUM_NODES", "COMPSS_HOSTNAMES", "COMPSS_BINDED_GPUS", "CUDA_VISIBLE_DEVICES",
                "GPU_DEVICE_ORDINAL")
_VAR = re.compile(r"^\$(?:\{(\w+)\}|(\w+))$")

_RUNTIME: "Runtime | None" = None  # set in the master by enter_master
_IN_WORKER = False  # set in executor processes


class StandinError(RuntimeError):
    """A documented rule of the PyCOMPSs API was broken (the real runtime would fail or misbehave)."""


class FutureUsedError(StandinError):
    """A task's result was used before ``compss_wait_on``."""


def warn(message: str) -> None:
    print(f"[stand-in] WARNING: {message}", file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- decorators

class Direction:
    """A parameter direction (``IN``, ``FILE_IN``, ...), as in ``pycompss.api.parameter``."""

    def __init__(self, key: str):
        self.key = key

    def __repr__(self) -> str:
        return self.key


@dataclass
class TaskDef:
    """What the decorators say about one task function."""

    function: Callable[..., Any]
    returns: Any = False
    time_out: float = 0
    priority: bool = False
    on_failure: str = "RETRY"
    on_failure_given: bool = False
    failure_default: Any = None
    params: dict[str, str] = field(default_factory=dict)  # parameter name -> direction key
    constraints: dict[str, Any] | None = None

    @property
    def module(self) -> str:
        return self.function.__module__

    @property
    def name(self) -> str:
        return self.function.__name__

    @property
    def label(self) -> str:
        return f"{self.module}.{self.name}"


def _check_function(fn: Any, decorator: str) -> None:
    if not inspect.isfunction(fn):
        raise StandinError(f"{decorator} decorates functions only, got {fn!r}")
    if fn.__qualname__ != fn.__name__:
        raise StandinError(f"{decorator} on {fn.__module__}.{fn.__qualname__}: task functions must be "
                           f"module-level functions (workers import the module and look the function up by name)")


def _task_of(fn: Any, decorator: str) -> TaskDef:
    tdef = getattr(fn, "__standin_task__", None)
    if not isinstance(tdef, TaskDef):
        raise StandinError(f"{decorator} must be placed above @task (on {getattr(fn, '__qualname__', fn)!r})")
    return tdef


def task_decorator(kwargs: dict[str, Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``@task(**kwargs)``: validate the keywords now, and wrap the function."""
    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        if isinstance(getattr(fn, "__standin_task__", None), TaskDef):
            raise StandinError(f"@task applied twice to {fn.__qualname__}")
        _check_function(fn, "@task")
        tdef = TaskDef(function=fn)
        names = list(inspect.signature(fn).parameters)
        for key, value in kwargs.items():
            if key in TASK_KEYWORDS:
                _set_task_keyword(tdef, key, value)
            elif key in names:
                if not isinstance(value, Direction):
                    raise StandinError(f"@task on {fn.__qualname__}: parameter {key}={value!r} is not a direction "
                                       f"from pycompss.api.parameter")
                if value.key not in SUPPORTED_DIRECTIONS:
                    raise StandinError(f"@task on {fn.__qualname__}: the stand-in supports {', '.join(SUPPORTED_DIRECTIONS)} "
                                       f"parameters only, got {key}={value.key}")
                tdef.params[key] = value.key
            else:
                raise StandinError(f"@task on {fn.__qualname__}: unknown keyword {key!r} (documented: "
                                   f"{', '.join(TASK_KEYWORDS)}, or a parameter name with a direction)")

        def wrapper(*args: Any, **kw: Any) -> Any:
            return _call(tdef, wrapper, args, kw)
        wrapper.__module__ = fn.__module__
        wrapper.__name__ = fn.__name__
        wrapper.__qualname__ = fn.__qualname__
        wrapper.__doc__ = fn.__doc__
        wrapper.__wrapped__ = fn  # type: ignore[attr-defined]
        wrapper.__standin_task__ = tdef  # type: ignore[attr-defined]
        return wrapper
    return decorate


def _set_task_keyword(tdef: TaskDef, key: str, value: Any) -> None:
    where = f"@task on {tdef.function.__qualname__}"
    if key == "returns":
        if isinstance(value, bool) and not value:
            return
        if (isinstance(value, int) and not isinstance(value, bool) and value == 1) or isinstance(value, type):
            tdef.returns = value
            return
        raise StandinError(f"{where}: returns={value!r}: the stand-in supports one return value (returns=1 or a type)")
    if key == "time_out":
        if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
            raise StandinError(f"{where}: time_out must be a number of seconds >= 0, got {value!r}")
        tdef.time_out = value
    elif key == "priority":
        if not isinstance(value, bool):
            raise StandinError(f"{where}: priority must be True or False, got {value!r}")
        tdef.priority = value
    elif key == "on_failure":
        if value not in POLICIES:
            raise StandinError(f"{where}: on_failure must be one of {', '.join(POLICIES)}, got {value!r}")
        tdef.on_failure, tdef.on_failure_given = value, True


def constraint_decorator(kwargs: dict[str, Any]) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``@constraint(**kwargs)`` above ``@task``: keywords checked now, ``$VAR`` expanded at registration."""
    for key, value in kwargs.items():
        if key not in CONSTRAINT_KEYWORDS:
            raise StandinError(f"@constraint: unknown keyword {key!r}")
        if key == "processors":
            _check_processors(value)
        elif key == "computing_units":
            if not isinstance(value, (str, int)) or isinstance(value, bool):
                raise StandinError(f"@constraint: computing_units must be a string (or int), got {value!r}")
        elif not isinstance(value, str):
            raise StandinError(f"@constraint: {key} must be a string, got {value!r}")
    if "processors" in kwargs and ("computing_units" in kwargs or "processor_type" in kwargs):
        raise StandinError("@constraint: give processors=[...] or computing_units/processor_type, not both")

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        tdef = _task_of(fn, "@constraint")
        if tdef.constraints is not None:
            raise StandinError(f"@constraint applied twice to {tdef.label}")
        tdef.constraints = dict(kwargs)
        return fn
    return decorate


def _check_processors(value: Any) -> None:
    if not isinstance(value, list) or not value:
        raise StandinError(f"@constraint: processors must be a non-empty list of dicts, got {value!r}")
    for proc in value:
        if not isinstance(proc, dict) or not set(proc) <= PROCESSOR_KEYS:
            raise StandinError(f"@constraint: processors entries take the keys {sorted(PROCESSOR_KEYS)} "
                               f"(camelCase), got {proc!r}")
        if proc.get("processorType", "CPU") not in ("CPU", "GPU", "FPGA"):
            raise StandinError(f"@constraint: processorType must be CPU, GPU or FPGA, got {proc!r}")
        if not all(isinstance(v, str) for v in proc.values()):
            raise StandinError(f"@constraint: processors values must be strings, got {proc!r}")


def on_failure_decorator(management: Any = None, **defaults: Any) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """``@on_failure(management=..., returns=default)`` above ``@task``."""
    if management not in POLICIES:
        raise StandinError(f"@on_failure: management must be one of {', '.join(POLICIES)}, got {management!r}")
    if set(defaults) - {"returns"}:
        raise StandinError(f"@on_failure: the stand-in supports only a returns= default, got {sorted(defaults)}")

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        tdef = _task_of(fn, "@on_failure")
        if tdef.on_failure_given:
            raise StandinError(f"{tdef.label}: on_failure given twice (@task and @on_failure)")
        tdef.on_failure, tdef.on_failure_given = management, True
        tdef.failure_default = defaults.get("returns")
        return fn
    return decorate


def _call(tdef: TaskDef, wrapper: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
    if _RUNTIME is None or _IN_WORKER:  # no runtime, or a task calling a task: run it here
        return tdef.function(*args, **kwargs)
    return _RUNTIME.submit(tdef, wrapper, args, kwargs)


# --------------------------------------------------------------------------- futures

class Future:
    """A task's result in the master; any use before ``compss_wait_on`` raises FutureUsedError."""

    __slots__ = ("_job",)

    def __init__(self, job: "Job"):
        object.__setattr__(self, "_job", job)

    def _misuse(self, what: str) -> FutureUsedError:
        job = object.__getattribute__(self, "_job")
        return FutureUsedError(f"the result of task {job.label} (job {job.id}) was used ({what}) before "
                               f"compss_wait_on: in PyCOMPSs it is a future object, not the value")

    def __repr__(self) -> str:
        job = object.__getattribute__(self, "_job")
        return f"<stand-in Future of {job.label} job {job.id}>"

    def __getattr__(self, name: str) -> Any:
        raise self._misuse(f"attribute {name!r}")

    def __setattr__(self, name: str, value: Any) -> None:
        raise self._misuse(f"setting attribute {name!r}")

    def __reduce__(self) -> Any:
        raise self._misuse("passed to another task or pickled (the stand-in has no data dependencies)")

    def __bool__(self) -> bool:
        raise self._misuse("truth value")

    def __iter__(self) -> Any:
        raise self._misuse("iteration")

    def __len__(self) -> int:
        raise self._misuse("len()")

    def __getitem__(self, key: Any) -> Any:
        raise self._misuse("indexing")

    def __contains__(self, item: Any) -> bool:
        raise self._misuse("'in'")

    def __str__(self) -> str:
        raise self._misuse("str()")

    def __format__(self, spec: str) -> str:
        raise self._misuse("formatting")

    def __int__(self) -> int:
        raise self._misuse("int()")

    def __float__(self) -> float:
        raise self._misuse("float()")

    def __index__(self) -> int:
        raise self._misuse("as an index")

    def __call__(self, *a: Any, **k: Any) -> Any:
        raise self._misuse("call")

    def __hash__(self) -> int:
        return id(self)


def _refuse(name: str) -> Callable[..., Any]:
    def method(self: Future, *_: Any) -> Any:
        raise self._misuse(name.strip("_"))
    method.__name__ = name
    return method


for _op in ("add", "sub", "mul", "truediv", "floordiv", "mod", "pow", "matmul", "and", "or", "xor",
            "lshift", "rshift"):
    for _name in (f"__{_op}__", f"__r{_op}__", f"__i{_op}__"):
        setattr(Future, _name, _refuse(_name))
for _name in ("__eq__", "__ne__", "__lt__", "__le__", "__gt__", "__ge__", "__neg__", "__pos__", "__abs__",
              "__invert__"):
    setattr(Future, _name, _refuse(_name))


def wait_on(obj: Any) -> Any:
    """``compss_wait_on``: a Future's value (None for a failed IGNORE task); lists element by element."""
    if isinstance(obj, list):
        return [wait_on(x) for x in obj]
    if isinstance(obj, tuple):
        return tuple(wait_on(x) for x in obj)
    if type(obj) is Future:
        job = object.__getattribute__(obj, "_job")
        return job.runtime.wait(job)
    return obj


def barrier() -> None:
    """``compss_barrier``: wait for every submitted task."""
    if _RUNTIME is not None and not _IN_WORKER:
        _RUNTIME.barrier()


# --------------------------------------------------------------------------- the master

@dataclass
class Registered:
    """A task type as registered in this run: constraints expanded, resources it needs."""

    constraints: dict[str, Any]
    cpus: int
    gpus: int


@dataclass
class Job:
    """One task call and its fate."""

    id: int
    runtime: "Runtime"
    tdef: TaskDef
    reg: Registered
    args_file: str
    label: str
    state: str = "pending"  # pending | running | done | failed
    attempts: int = 0
    failures: list[str] = field(default_factory=list)
    value: Any = None
    loaded: bool = False
    cpu_ids: list[int] = field(default_factory=list)
    gpu_ids: list[int] = field(default_factory=list)


@dataclass
class Executor:
    """A persistent executor process and its pipes."""

    number: int
    proc: subprocess.Popen
    cmd_fd: int
    reply_fd: int
    job: Job | None = None
    alive: bool = True  # False once its process died: never replaced, its slot fails every later job
    jobs_run: int = 0
    closed: set[str] = field(default_factory=set)

    def close(self, which: str) -> None:
        """Close the command or reply pipe once (a second close could hit a reused descriptor)."""
        if which not in self.closed:
            self.closed.add(which)
            try:
                os.close(self.cmd_fd if which == "cmd" else self.reply_fd)
            except OSError:
                pass


@dataclass
class RuntimeConfig:
    """One simulated node and where things go."""

    cpus: int = 4
    gpus: int = 0
    working_dir: str = "/tmp/COMPSsWorker"
    log_dir: str = ""
    pythonpath: tuple[str, ...] = ()
    interpreter: str = sys.executable
    optimize: bool = True  # python -O on executors, as on real workers (not with --log_level=debug)
    limit_of_tasks: int | None = None
    on_abort: Callable[[str], None] | None = None




class Runtime:
    """The master side: task registration, resource accounting, executors, failure policies."""

    def __init__(self, config: RuntimeConfig):
        self.config = config
        self.cpus, self.gpus = config.cpus, config.gpus
        self.slots = min(self.cpus, config.limit_of_tasks or self.cpus)
        os.makedirs(config.working_dir, exist_ok=True)
        self.log_dir = config.log_dir or os.path.join(config.working_dir, "logs")
        os.makedirs(os.path.join(self.log_dir, "jobs"), exist_ok=True)
        self.registered: dict[str, Registered] = {}
        self.history: list[tuple[str, int, dict[str, str]]] = []  # (task, job, env) of every attempt started
        self.executors: list[Executor] = []
        self.started_executors = 0
        self._cond = threading.Condition()
        self._pending: deque[Job] = deque()
        self._jobs = itertools.count(1)
        self._free_cpus = list(range(self.cpus))
        self._free_gpus = list(range(self.gpus))
        self._running = 0
        self._transfers: dict[tuple[str, int, int], str] = {}
        self._stopping = False
        self._threads: list[threading.Thread] = []
        self._aborted: str | None = None
        self._log = open(os.path.join(self.log_dir, "standin.log"), "a", buffering=1)
        self.environ = dict(os.environ)  # the JVM reads its environment once, at start-up
        if not os.path.isfile(os.path.join(REAL_PYCOMPSS, "pycompss", "worker", "piper", "commons", "executor.py")):
            raise StandinError(f"the real PyCOMPSs worker code is not at {REAL_PYCOMPSS} (../shared/third_party/"
                               f"compss-3.3/python; set STANDIN_REAL_PYCOMPSS)")
        for _ in range(self.cpus):  # one executor per CPU computing unit, all at start
            self._spawn()

    # ------------------------------------------------------------------ registration
    def _register(self, tdef: TaskDef, wrapper: Callable[..., Any]) -> Registered:
        reg = self.registered.get(tdef.label)
        if reg is not None:
            return reg
        module = sys.modules.get(tdef.module)
        if tdef.module == "__main__" or module is None or getattr(module, "__spec__", None) is None:
            raise StandinError(f"task {tdef.label}: its module is not importable by name, so workers could not "
                               f"load it (put tasks in a module, not in the main script)")
        if getattr(module, tdef.name, None) is not wrapper:
            raise StandinError(f"task {tdef.label}: not reachable as {tdef.module}.{tdef.name} (workers look the "
                               f"function up by its module-level name)")
        constraints = {k: _expand(v, self.environ) for k, v in (tdef.constraints or {}).items()}
        cpus, gpus = _needs(tdef.label, constraints)
        reg = Registered(constraints, cpus, gpus)
        self.registered[tdef.label] = reg
        self._log.write(f"registered {tdef.label}: {constraints} -> {cpus} CPU, {gpus} GPU\n")
        return reg

    # ------------------------------------------------------------------ submission
    def submit(self, tdef: TaskDef, wrapper: Callable[..., Any], args: tuple, kwargs: dict) -> Any:
        if self._aborted:
            raise StandinError(f"the run was shut down: {self._aborted}")
        reg = self._register(tdef, wrapper)
        if reg.cpus > self.cpus or reg.gpus > self.gpus:
            raise StandinError(f"task {tdef.label} needs {reg.cpus} CPU and {reg.gpus} GPU computing units but the "
                               f"node has {self.cpus} CPU and {self.gpus} GPU: the real runtime would leave it "
                               f"Blocked forever")
        bound = inspect.signature(tdef.function).bind(*args, **kwargs)
        for name, value in bound.arguments.items():
            if type(value) is Future:
                raise StandinError(f"task {tdef.label}: argument {name} is a future; the stand-in has no data "
                                   f"dependencies (wait on it first)")
            if tdef.params.get(name) == "FILE_IN":
                bound.arguments[name] = self._transfer(tdef, name, value)
        number = next(self._jobs)
        args_file = os.path.join(self.config.working_dir, f"job{number}.args")
        if bound.kwargs:
            raise StandinError(f"task {tdef.label}: **kwargs are not supported by the stand-in")
        with open(args_file, "wb") as fh:
            pickle.dump(list(bound.args), fh)
        job = Job(id=number, runtime=self, tdef=tdef, reg=reg, args_file=args_file, label=tdef.label)
        self._log.write(f"job {number} {tdef.label} submitted\n")
        with self._cond:
            (self._pending.appendleft if tdef.priority else self._pending.append)(job)
            self._dispatch()
        return Future(job) if tdef.returns else None

    def _transfer(self, tdef: TaskDef, name: str, value: Any) -> str:
        """A FILE_IN argument: copy it into the worker's working dir under a new name, once per version."""
        if not isinstance(value, str):
            raise StandinError(f"task {tdef.label}: FILE_IN parameter {name} must be a path string, got {value!r}")
        path = os.path.abspath(value)
        try:
            st = os.stat(path)
        except OSError as exc:
            raise StandinError(f"task {tdef.label}: FILE_IN parameter {name}: cannot read {path}: {exc.strerror}") from None
        key = (path, st.st_size, st.st_mtime_ns)
        if key not in self._transfers:
            folder = os.path.join(self.config.working_dir, "transfers")
            os.makedirs(folder, exist_ok=True)
            dest = os.path.join(folder, f"d{len(self._transfers) + 1}v1_{int(time.time() * 1000)}.IT")
            shutil.copyfile(path, dest)
            self._transfers[key] = dest
        return self._transfers[key]

    # ------------------------------------------------------------------ scheduling
    def _dispatch(self) -> None:
        """Start every pending job whose resources are free (called with the lock held)."""
        if self._stopping or self._aborted:
            return
        for job in list(self._pending):
            if self._running >= self.slots:
                return
            if len(self._free_cpus) < job.reg.cpus or len(self._free_gpus) < job.reg.gpus:
                continue
            # any idle executor, dead ones included: the real runtime keeps a dead executor's slot
            executor = next((e for e in self.executors if e.job is None), None)
            if executor is None:
                return
            self._pending.remove(job)
            job.cpu_ids = [self._free_cpus.pop(0) for _ in range(job.reg.cpus)]
            job.gpu_ids = [self._free_gpus.pop(0) for _ in range(job.reg.gpus)]
            job.state, executor.job = "running", job
            job.attempts += 1
            self._running += 1
            thread = threading.Thread(target=self._run_job, args=(executor, job), daemon=True,
                                      name=f"standin-job{job.id}")
            self._threads = [t for t in self._threads if t.is_alive()] + [thread]
            thread.start()

    def _spawn(self) -> Executor:
        self.started_executors += 1
        number = self.started_executors
        cmd_r, cmd_w = os.pipe()
        reply_r, reply_w = os.pipe()
        base = os.path.join(self.config.working_dir, f"executor{number}")
        os.makedirs(base, exist_ok=True)
        argv = [self.config.interpreter] + (["-O"] if self.config.optimize else []) + [
            EXECUTOR_SCRIPT, str(cmd_r), str(reply_w), base, os.path.join(self.log_dir, f"executor{number}.worker.log")]
        log = open(os.path.join(self.log_dir, f"executor{number}.log"), "ab")
        proc = subprocess.Popen(argv, env=self._executor_env(), cwd=base, pass_fds=(cmd_r, reply_w),
                                stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        os.close(cmd_r)
        os.close(reply_w)
        executor = Executor(number=number, proc=proc, cmd_fd=cmd_w, reply_fd=reply_r)
        self.executors.append(executor)
        self._log.write(f"executor {number} started: pid {proc.pid}\n")
        return executor

    def _executor_env(self) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in PER_TASK_ENV}
        path = [REAL_PYCOMPSS, *self.config.pythonpath]  # the real binding; --pythonpath (not the app's folder)
        if env.get("PYTHONPATH"):
            path += [p for p in env["PYTHONPATH"].split(os.pathsep) if os.path.abspath(p) != STANDIN_ROOT]
        env["PYTHONPATH"] = os.pathsep.join(path)
        return env

    def _task_env(self, job: Job) -> dict[str, str]:
        n = str(job.reg.cpus)
        env = {"COMPSS_NUM_THREADS": n, "OMP_NUM_THREADS": n, "COMPSS_NUM_CPUS": n,
               "COMPSS_BINDED_CPUS": ",".join(map(str, job.cpu_ids)),
               "COMPSS_NUM_NODES": "1", "COMPSS_HOSTNAMES": "localhost"}
        if job.gpu_ids:
            gpus = ",".join(map(str, job.gpu_ids))
            env.update(COMPSS_BINDED_GPUS=gpus, CUDA_VISIBLE_DEVICES=gpus, GPU_DEVICE_ORDINAL=gpus)
        return env

    def _run_job(self, executor: Executor, job: Job) -> None:
        """In a helper thread: send one job to an executor and wait for its end, death or time_out."""
        result_file = os.path.join(self.config.working_dir, f"job{job.id}_{job.attempts}.result")
        out = os.path.join(self.log_dir, "jobs", f"job{job.id}_{'NEW' if job.attempts == 1 else 'RESUBMITTED'}")
        params = list(inspect.signature(job.tdef.function).parameters)
        message = {"id": job.id, "module": job.tdef.module, "name": job.tdef.name, "args": job.args_file,
                   "result": result_file, "env": self._task_env(job), "out": out + ".out", "err": out + ".err",
                   "sandbox": os.path.join(self.config.working_dir, "sandbox", f"job{job.id}_{job.attempts}"),
                   "params": params, "directions": job.tdef.params, "time_out": int(job.tdef.time_out or 0),
                   "cpus": job.reg.cpus, "cpu_ids": job.cpu_ids, "gpus": job.gpu_ids, "bind_cpus": False}
        self.history.append((job.label, job.id, message["env"]))
        self._log.write(f"job {job.id} attempt {job.attempts} on executor {executor.number} "
                        f"(pid {executor.proc.pid}) with {message['env']}\n")
        reply, failure = None, None
        try:
            with self._cond:
                if not executor.alive or executor.proc.poll() is not None or "cmd" in executor.closed:
                    raise OSError("executor gone")
                os.write(executor.cmd_fd, (json.dumps(message) + "\n").encode())
        except OSError:  # the real PipedInvoker: "Cannot write in pipe"; the slot is not replaced
            self._finish(executor, job, f"Cannot write in pipe: executor {executor.number} (pid "
                                        f"{executor.proc.pid}) {_exit_text(executor.proc.poll())}", result_file)
            return
        buf = b""
        while failure is None and reply is None:  # no deadline: time_out is the real alarm in the executor
            select.select([executor.reply_fd], [], [])
            chunk = os.read(executor.reply_fd, 65536)
            if not chunk:
                code = executor.proc.wait()
                failure = f"executor {executor.number} (pid {executor.proc.pid}) {_exit_text(code)}"
                break
            buf += chunk
            if b"\n" in buf:
                reply = json.loads(buf.split(b"\n", 1)[0])
        if reply is not None and not reply["ok"]:
            failure = reply["error"]
        self._finish(executor, job, failure, result_file)

    def _finish(self, executor: Executor, job: Job, failure: str | None, result_file: str) -> None:
        with self._cond:
            self._running -= 1
            self._free_cpus.extend(job.cpu_ids)
            self._free_gpus.extend(job.gpu_ids)
            self._free_cpus.sort()
            self._free_gpus.sort()
            executor.job = None
            executor.jobs_run += 1
            if failure is not None and executor.proc.poll() is not None and executor.alive:
                self._retire(executor)
            if failure is None:
                job.state = "done"
                job.value = result_file
                self._log.write(f"job {job.id} done\n")
            else:
                self._failed(job, failure)
            if job.state in ("done", "failed"):
                try:
                    os.unlink(job.args_file)
                except OSError:
                    pass
            self._cond.notify_all()
            self._dispatch()

    def _retire(self, executor: Executor) -> None:
        """A dead executor keeps its slot (the real runtime keeps its pipes): later jobs on it fail at once."""
        executor.alive = False
        executor.close("cmd")
        executor.close("reply")
        self._log.write(f"executor {executor.number} died; it is not replaced\n")

    def _failed(self, job: Job, failure: str) -> None:
        """Apply the task's on_failure policy (called with the lock held)."""
        job.failures.append(failure)
        policy = job.tdef.on_failure
        if self._stopping:  # the application has ended: nobody waits for it any more
            job.state, job.value, job.loaded = "failed", None, True
            return
        self._log.write(f"job {job.id} attempt {job.attempts} failed: {failure}\n")
        if policy == "RETRY" and job.attempts <= RETRIES:
            warn(f"task {job.label} job {job.id} failed ({failure}); resubmitting it (on_failure=RETRY)")
            job.state = "pending"
            self._pending.appendleft(job)
            return
        if policy in ("RETRY", "FAIL"):
            self._abort(f"task {job.label} job {job.id} FAILED after {job.attempts} attempt(s) under "
                        f"on_failure={policy}: {failure}")
            return
        warn(f"task {job.label} job {job.id} failed ({failure}); on_failure={policy}: "
             f"compss_wait_on gives {job.tdef.failure_default!r}")
        job.state, job.value, job.loaded = "failed", job.tdef.failure_default, True

    def _abort(self, reason: str) -> None:
        """A FAILED task under RETRY or FAIL shuts the whole run down with exit code 1."""
        self._aborted = reason
        print(f"[stand-in] ERROR: {reason}. Shutting down the COMPSs run (exit code 1).", file=sys.stderr, flush=True)
        self._log.write(f"ABORT: {reason}\n")
        for executor in list(self.executors):
            self._kill(executor)
        if self.config.on_abort is not None:
            self.config.on_abort(reason)
            return
        sys.stdout.flush()
        os._exit(1)

    @staticmethod
    def _kill(executor: Executor) -> None:
        try:
            executor.proc.kill()
        except OSError:
            pass
        executor.proc.wait()

    # ------------------------------------------------------------------ synchronisation
    def wait(self, job: Job) -> Any:
        with self._cond:
            while job.state not in ("done", "failed"):
                if self._aborted:
                    raise StandinError(f"the run was shut down: {self._aborted}")
                self._cond.wait(1.0)
            if job.loaded:
                return job.value
            result_file = job.value
        with open(result_file, "rb") as fh:
            value = pickle.load(fh)
        os.unlink(result_file)
        job.value, job.loaded = value, True
        return value

    def barrier(self) -> None:
        with self._cond:
            while (self._pending or self._running) and not self._aborted:
                self._cond.wait(1.0)

    def stop(self, wait: bool = True) -> None:
        """End of the application: wait for the tasks (unless told not to), then end the executors."""
        global _RUNTIME
        if wait:
            self.barrier()
        with self._cond:
            self._stopping = True
            self._pending.clear()
            executors, threads = list(self.executors), list(self._threads)
        for executor in executors:
            with self._cond:
                executor.close("cmd")  # EOF: an idle executor exits
            if executor.job is not None:  # only reached with wait=False: do not wait for running tasks
                self._kill(executor)
        for thread in threads:  # a killed executor ends its job thread at once
            thread.join(10)
        for executor in executors:
            try:
                executor.proc.wait(10)
            except subprocess.TimeoutExpired:
                self._kill(executor)
            executor.close("reply")
        self.executors.clear()
        self._log.close()
        if _RUNTIME is self:
            _RUNTIME = None

    # ------------------------------------------------------------------ for tests
    def executor_pids(self, busy: bool | None = None) -> list[int]:
        with self._cond:
            return [e.proc.pid for e in self.executors
                    if e.alive and (busy is None or (e.job is not None) == busy)]


def _expand(value: Any, environ: dict[str, str]) -> Any:
    """A ``$VAR``/``${VAR}`` constraint value from the runtime's start-up environment (unset: warning and 1)."""
    if isinstance(value, list):
        return [{k: _expand(v, environ) for k, v in d.items()} for d in value]
    if isinstance(value, str):
        m = _VAR.match(value.strip())
        if m:
            name = m.group(1) or m.group(2)
            if name not in environ:
                warn(f"constraint value {value!r}: environment variable {name} is not set in the master; using 1")
                return "1"
            return environ[name]
    return value


def _units(label: str, key: str, value: Any) -> int:
    try:
        n = int(str(value).strip())
    except ValueError:
        n = 0
    if n < 1:
        raise StandinError(f"task {label}: {key}={value!r} is not a positive number of computing units")
    return n


def _needs(label: str, constraints: dict[str, Any]) -> tuple[int, int]:
    """(CPU, GPU) computing units a task of this type holds while it runs."""
    if "processors" in constraints:
        cpus = gpus = 0
        for proc in constraints["processors"]:
            n = _units(label, "computingUnits", proc.get("computingUnits", "1"))
            if proc.get("processorType", "CPU") == "GPU":
                gpus += n
            elif proc.get("processorType", "CPU") == "CPU":
                cpus += n
            else:
                raise StandinError(f"task {label}: the stand-in simulates CPUs and GPUs only")
        return max(cpus, 1), gpus  # a GPU task still takes one CPU unit
    if constraints.get("processor_type", "CPU") != "CPU":
        raise StandinError(f"task {label}: use processors=[...] for GPU tasks")
    return _units(label, "computing_units", constraints.get("computing_units", "1")), 0


def enter_master(**config: Any) -> Runtime:
    """Make this process the COMPSs master (the runcompss shim does this before running the app)."""
    global _RUNTIME
    if _RUNTIME is not None:
        raise StandinError("a stand-in master runtime is already active in this process")
    _RUNTIME = Runtime(RuntimeConfig(**config))
    atexit.register(_stop_at_exit, _RUNTIME)
    return _RUNTIME


def current() -> Runtime | None:
    return _RUNTIME


def _stop_at_exit(runtime: Runtime) -> None:
    if _RUNTIME is runtime:
        runtime.stop(wait=False)
