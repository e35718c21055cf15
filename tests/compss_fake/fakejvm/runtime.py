"""The master side of the fake JVM: core elements, tasks, their data, scheduling and failures.

It is what the real ``compss`` C extension reaches in the master JVM.  Everything the binding calls
arrives here from ``compss.py``.  Rules and where each was read (java-reference unless said):

* ``$VAR`` in constraints is expanded with the environment as it was at start-up, when the core
  element is registered (``EnvironmentLoader.java``; ``System.getenv`` is read once);
* a task waits for the producers of the versions it reads (RAW dependencies through futures and
  files: inferred from how the binding passes them, pycompss-notes.md);
* a ready task runs when the node has its CPU and GPU units free (and fewer than LimitOfTasks run):
  the master never sends a worker more than it has (inferred: the TaskScheduler is not in
  java-reference); a task no resource can ever run stays Blocked (pycompss-notes.md);
* ``on_failure`` (ExecutionAction/ErrorManager are not in java-reference; the rule is the one
  pycompss-notes.md read in the manual, "resubmitted once on the same worker, then once on
  another"): RETRY resubmits a failed job once on the same node, and with no other node to
  reschedule on the task is FAILED; a FAILED task under RETRY or FAIL ends the whole run at once
  with exit code 1 (the JVM's ``System.exit`` inside the Python process: nothing of Python's own
  shutdown runs); IGNORE and CANCEL_SUCCESSORS give the task's outputs no value (``open_file``
  answers a ``null`` file, and ``compss_wait_on`` returns None), CANCEL_SUCCESSORS also cancels the
  tasks that read them;
* ``cancel_application_tasks`` (the binding calls it when the app ends with a non-zero code)
  cancels the pending tasks and sends the running ones SIGUSR2 through the piper worker;
* ``stop_runtime`` waits for every task, then stops the node; with ``--summary`` it prints a task
  summary (the Java runtime's summary format is not in java-reference: this one is the fake's).
"""
from __future__ import annotations

import itertools
import json
import os
import shutil
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any

from .config import Requirements, parse_constraints
from .data import DataRegistry, Version
from .node import Job, Node

RETRY_SAME_NODE = 2  # attempts on the one node before the task is FAILED (see the module docstring)


@dataclass
class CoreElement:
    signature: str
    module: str
    function: str
    constraints: str
    requirements: Requirements


@dataclass(eq=False)
class Param:
    value: Any
    name: str
    type: int
    direction: int  # 0 IN, 1 OUT, 2 INOUT, ... (pycompss/api/parameter.py DIRECTION)
    stream: int
    prefix: str
    content_type: str
    keep_rename: bool
    version: Version | None = None
    worker_value: str = ""


@dataclass(eq=False)
class Task:
    id: int
    ce: CoreElement
    on_failure: str
    time_out: int
    priority: bool
    has_target: bool
    num_returns: int
    params: list[Param]
    state: str = "waiting"  # waiting | ready | running | done | failed | cancelled
    depends: set = field(default_factory=set)
    successors: list = field(default_factory=list)
    attempts: int = 0
    jobs: list[Job] = field(default_factory=list)
    blocked_warned: bool = False

    @property
    def finished(self) -> bool:
        return self.state in ("done", "failed", "cancelled")


class Runtime:
    """One application's master JVM and its one worker node."""

    def __init__(self, *, app_name: str, log_dir: str, master_dir: str, worker_dir: str, node: dict[str, Any],
                 summary: bool, environ: dict[str, str]):
        self.app_name = app_name
        self.log_dir = log_dir.rstrip("/") + "/"
        self.master_dir = master_dir
        self.environ = environ  # the environment the JVM started with (System.getenv)
        self.summary = summary
        self.lock = threading.Condition()
        self.ces: dict[str, CoreElement] = {}
        self.tasks: list[Task] = []
        self.jobs: list[Job] = []
        self._task_ids = itertools.count(1)
        self._job_ids = itertools.count(1)
        self._ready: list[Task] = []
        self.stopping = False
        self.on_fatal = self._exit_like_the_jvm
        os.makedirs(self.log_dir, exist_ok=True)
        os.makedirs(master_dir, exist_ok=True)
        self._trace = open(os.path.join(self.log_dir, "fake_compss.jsonl"), "a", buffering=1)
        self.data = DataRegistry(master_dir, worker_dir)
        started = time.monotonic()
        self.node = Node(self, working_dir=worker_dir, log_dir=self.log_dir, environ=environ, log=self.log, **node)
        self.log(event="started", executors=self.executor_pids(), seconds=round(time.monotonic() - started, 3))

    def log(self, **event: Any) -> None:
        """One JSON line in <log dir>/fake_compss.jsonl (what the tests read back)."""
        self._trace.write(json.dumps({"t": round(time.time(), 3), **event}) + "\n")

    def warn(self, message: str) -> None:
        print(message, file=sys.stderr, flush=True)

    # ------------------------------------------------------------------ registration and submission
    def register(self, signature: str, constraints: str, type_args: list[str]) -> None:
        module, function = (list(type_args) + ["", ""])[:2]
        if not module:
            module, _, function = signature.rpartition(".")
        with self.lock:
            req = parse_constraints(constraints, self.environ, self.warn)
            self.ces[signature] = CoreElement(signature, module, function, constraints, req)
            self.log(event="registered", signature=signature, constraints=constraints, cpus=req.cpus, gpus=req.gpus)

    def submit(self, signature: str, on_failure: str, time_out: int, priority: bool, has_target: bool,
               num_returns: int, params: list[Param]) -> None:
        with self.lock:
            ce = self.ces.get(signature)
            if ce is None:
                raise RuntimeError(f"fake COMPSs: task {signature} was never registered")
            task = Task(next(self._task_ids), ce, on_failure, int(time_out or 0), bool(priority), bool(has_target),
                        int(num_returns), params)
            for p in params:
                if p.type != 10:
                    continue
                if p.direction == 0:
                    p.version = self.data.read(p.value)
                    producer = p.version.producer
                    if producer is not None and not producer.finished:
                        task.depends.add(producer)
                        producer.successors.append(task)
                    elif p.version.state == "null" and getattr(producer, "on_failure", "") == "CANCEL_SUCCESSORS":
                        task.state = "cancelled"
                elif p.direction == 1:
                    p.version = self.data.write(p.value, task)
                else:
                    raise RuntimeError(f"fake COMPSs: direction {p.direction} of {p.name} is not modelled")
            self.tasks.append(task)
            self.log(event="task", task=task.id, signature=signature, depends=sorted(t.id for t in task.depends))
            if task.state == "cancelled":
                self._finish(task, "cancelled")
            elif not task.depends:
                self._make_ready(task)
            self._schedule()

    def _make_ready(self, task: Task) -> None:
        task.state = "ready"
        if task.priority:
            self._ready.insert(sum(t.priority for t in self._ready), task)
        else:
            self._ready.append(task)

    def _schedule(self) -> None:
        """Start every ready task the node has room for, in order (lock held)."""
        if self.stopping:
            return
        node = self.node
        for task in list(self._ready):
            req = task.ce.requirements
            if not node.fits(req.cpus, req.gpus):
                if not task.blocked_warned:
                    task.blocked_warned = True
                    self.warn(f"[fake COMPSs] WARNING: task {task.id} ({task.ce.signature}) needs {req.cpus} CPU and "
                              f"{req.gpus} GPU computing units; no resource has them: it stays Blocked")
                    self.log(event="blocked", task=task.id)
                continue
            if not node.has_room(req.cpus, req.gpus):
                continue
            self._ready.remove(task)
            task.state = "running"
            task.attempts += 1
            job = Job(next(self._job_ids), task, "NEW" if task.attempts == 1 else "RESUBMITTED")
            task.jobs.append(job)
            self.jobs.append(job)
            node.start_job(job)

    def stage_to_worker(self, version: Version) -> str:
        with self.lock:
            return self.data.stage_to_worker(version)

    # ------------------------------------------------------------------ job ends
    def job_ended(self, job: Job, error: str | None, slot_returns: Any) -> None:
        with self.lock:
            slot_returns()
            task = job.task
            self.log(event="job", job=job.id, task=task.id, signature=task.ce.signature, history=job.history,
                     executor=job.slot.index, pid=job.slot.pid, cpus=job.cpus, gpus=job.gpus, sandbox=job.sandbox,
                     error=error, cancelled=job.cancelled, seconds=round(job.ended - job.started, 3))
            if job.cancelled:
                self._finish(task, "cancelled")
            elif error is None:
                self._finish(task, "done")
            else:
                self.warn(f"[fake COMPSs] {error} (task {task.id} {task.ce.signature}, on_failure={task.on_failure})")
                if task.on_failure == "RETRY" and task.attempts < RETRY_SAME_NODE:
                    self.warn(f"[fake COMPSs] WARNING: resubmitting job of task {task.id} to the same worker")
                    task.state = "ready"
                    self._ready.insert(0, task)
                elif task.on_failure in ("RETRY", "FAIL"):
                    task.state = "failed"
                    self.on_fatal(task, error)
                    return
                else:
                    self._finish(task, "failed")
            self._schedule()

    def _finish(self, task: Task, state: str) -> None:
        """A task is over (lock held): its outputs get a value or none; its readers are released."""
        task.state = state
        for p in task.params:
            if p.version is None:
                continue
            if p.direction == 1:
                p.version.state = "available" if state == "done" else "null"
                if state != "done" and p.version.worker_path and not os.path.exists(p.version.worker_path):
                    try:  # Executor.java: a failed task's outputs are created empty (producesEmptyResultsOnFailure)
                        open(p.version.worker_path, "wb").close()
                    except OSError:
                        pass
            if p.direction == 0:
                self.data.release(p.version)
            else:
                self.data.collect(p.version)
        if task in self._ready:
            self._ready.remove(task)
        for succ in task.successors:
            succ.depends.discard(task)
            if succ.finished:
                continue
            if state != "done" and task.on_failure == "CANCEL_SUCCESSORS" or state == "cancelled":
                self._finish(succ, "cancelled")
            elif not succ.depends and succ.state == "waiting":
                self._make_ready(succ)
        self.lock.notify_all()

    def _exit_like_the_jvm(self, task: Task, error: str) -> None:
        """ErrorManager.fatal -> System.exit(1): the whole process ends now (lock held)."""
        self.warn(f"[ERRMGR]  -  FATAL ERROR: Task {task.id} ({task.ce.signature}) has FAILED after {task.attempts} "
                  f"attempt(s) under on_failure={task.on_failure}: {error}")
        self.warn("[ERRMGR]  -  Shutting down COMPSs...")
        self.log(event="fatal", task=task.id, error=error)
        self.stopping = True
        self.node.kill()
        import multiprocessing
        for child in multiprocessing.active_children():  # launch.py's Manager (a JVM exit would orphan it)
            child.kill()
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)

    # ------------------------------------------------------------------ what the binding waits on
    def _wait(self, predicate: Any) -> None:
        with self.lock:
            while not predicate():
                self.lock.wait(0.5)

    def open_file(self, key: str) -> str:
        """The path of the last version at the master, waiting for its producer ("<dir>/null": no value)."""
        with self.lock:
            datum = self.data.get(key)
            if datum is None:
                return key
            version = datum.last
        self._wait(lambda: version.state != "pending")
        with self.lock:
            if version.state == "null":
                return os.path.join(self.master_dir, "null")
            return self.data.fetch_to_master(version)

    def get_file(self, key: str) -> None:
        path = self.open_file(key)
        if os.path.basename(path) != "null" and os.path.abspath(path) != os.path.abspath(key):
            shutil.copyfile(path, key)

    def delete_file(self, key: str, wait: bool) -> bool:
        if wait:
            with self.lock:
                datum = self.data.get(key)
                version = datum.last if datum else None
            if version is not None:
                self._wait(lambda: version.state != "pending")
        with self.lock:
            return self.data.delete(key)

    def accessed(self, key: str) -> bool:
        with self.lock:
            return self.data.get(key) is not None

    def barrier(self) -> None:
        self._wait(lambda: all(t.finished or t.blocked_warned for t in self.tasks))

    def cancel_all(self) -> None:
        with self.lock:
            for task in self.tasks:
                if task.state in ("waiting", "ready"):
                    self._finish(task, "cancelled")
                elif task.state == "running":
                    self.node.cancel(task.jobs[-1])
            self.log(event="cancel application tasks")

    def stop(self, code: int) -> None:
        """stop_runtime: wait for every task (Blocked ones forever, as the JVM would), stop the node."""
        self._wait(lambda: all(t.finished for t in self.tasks))
        with self.lock:
            self.stopping = True
        started = time.monotonic()
        self.node.stop()
        self.log(event="stopped", code=code, left_behind=self.node.left_behind,
                 seconds=round(time.monotonic() - started, 3))
        if self.summary:
            self.print_summary()
        self._trace.close()

    def print_summary(self) -> None:
        print("[fake COMPSs] Task summary (runcompss --summary):", flush=True)
        for sig in self.ces:
            tasks = [t for t in self.tasks if t.ce.signature == sig]
            jobs = [j for t in tasks for j in t.jobs]
            mean = sum(j.ended - j.started for j in jobs) / len(jobs) if jobs else 0.0
            counts = {s: sum(t.state == s for t in tasks) for s in ("done", "failed", "cancelled")}
            print(f"[fake COMPSs]   {sig}: {len(tasks)} tasks, {counts['done']} done, {counts['failed']} failed, "
                  f"{counts['cancelled']} cancelled; {len(jobs)} jobs, mean {mean:.2f} s", flush=True)

    # ------------------------------------------------------------------ for tests
    def executor_pids(self) -> list[int]:
        return [slot.pid for slot in self.node.slots]


