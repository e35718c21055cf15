"""The worker side of the fake JVM: one node (localhost) with the real piper worker and its executors.

What runs for real: ``pycompss/worker/piper/piper_worker.py`` (through ``piper_shim.py``), which
forks one executor process per CPU computing unit, and each executor's loop and ``process_task``.
What this module plays is the Java worker around them, each rule from the file named:

* the worker command line and its environment (``PythonMirror.java``: ``getLaunchWorkerCommand``,
  ``getEnvironment``, ``-O`` unless debug, and its PYTHONPATH with the missing ``:`` after AppDir);
* one Java executor thread per executor process, each owning that process's pipe pair for good
  (``Executor.java``: ``pyPipes`` is registered once and kept); an idle thread takes the next job,
  the one idle longest first (the platform's request queue; ExecutionPlatform is not in
  java-reference, so the order is inferred: rotation);
* per job: CPU ids and GPU ids bound lowest-free-first (``Executor.obtainExecutionResources``;
  the ResourceManager's choice is not in java-reference: inferred), the ``sandBox/job_<id>``
  folder, FILE parameters that keep no rename linked into it under their original names
  (``Executor.stageIn``/``bindOriginalFilenameToRenames``), and, only when the job succeeded, the
  links removed and the sandbox deleted (``Executor.sandBoxWrapperAndRun``: a failed job's sandbox
  stays);
* the EXECUTE_TASK line (format checked against ``worker/piper/commons/executor.py`` and
  ``worker/commons/worker.py``), sent over the executor's pipe; a write that fails (its process is
  gone) fails the job at once, "Cannot write in pipe" (``PipedInvoker.invokeExternalMethod``,
  ``PipePair.sendCommand``: 3 tries, 50 ms apart);
* END_TASK with a non-zero exit value fails the job (``PipedInvoker``); COMPSS_EXCEPTION too;
* every 5 s the monitor checks the executor processes; a dead one's pipes are closed, its running
  job fails, and its Java thread keeps taking jobs that all fail at once: the dead slot is never
  replaced (``MirrorMonitor.java`` MONITORING_PERIOD, ``PipePair.noLongerExists``, ``Executor.java``);
* cancelling a running job sends ``CANCEL_TASK <executor pipe>`` on the control pipe, and the real
  piper worker sends SIGUSR2 to the executor (``PipedInvoker.cancelMethod``, ``piper_worker.py``);
* stop: QUIT to every executor, then to the control pipe; the worker's working dir is removed.

Fake-only hygiene, not Java behaviour (said where it happens): the piper worker is started in its
own session so that the whole tree can be killed with killpg, and what is still in that process
group after the worker quit is logged as "left behind" and killed.
"""
from __future__ import annotations

import collections
import os
import select
import shutil
import signal
import subprocess
import sys
import threading
import time
from dataclasses import dataclass, field
from typing import Any, Callable

HERE = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # tests/compss_fake
SHIM = os.path.join(HERE, "piper_shim.py")
MONITORING_PERIOD = 5.0  # MirrorMonitor.java
WRITE_RETRIES, WRITE_RETRY_WAIT = 3, 0.05  # PipePair.java MAX_WRITE_PIPE_RETRIES, PIPE_ERROR_WAIT_TIME


class JobFailed(Exception):
    """The Java side's JobExecutionException: the job failed (the task's on_failure decides what next)."""


@dataclass(eq=False)
class Job:
    id: int
    task: Any
    history: str  # NEW | RESUBMITTED
    cpus: list[int] = field(default_factory=list)
    gpus: list[int] = field(default_factory=list)
    slot: "Slot | None" = None
    sandbox: str = ""
    cancelled: bool = False
    started: float = 0.0
    ended: float = 0.0


def _fifo(path: str) -> str:
    if not os.path.exists(path):
        os.mkfifo(path)
    return path


class Slot:
    """One Java executor thread and the pipe pair of its Python executor process."""

    def __init__(self, node: "Node", index: int):
        self.node = node
        self.index = index
        base = os.path.join(node.pipes_dir, f"executor{index}")
        self.to_python = _fifo(base + ".outbound")  # Java writes, the executor reads
        self.from_python = _fifo(base + ".inbound")
        self.pid: int | None = None
        self.closed = False
        self.job: Job | None = None
        self._write_fd: int | None = None
        self._read_fd = os.open(self.from_python, os.O_RDWR | os.O_NONBLOCK)
        self._buffer = b""
        self._wake = threading.Condition()
        self._next: Job | None = None
        self.thread = threading.Thread(target=self._loop, name=f"fake-compss-executor-{index}", daemon=True)

    # ------------------------------------------------------------------ pipes
    def open_writer(self, deadline: float) -> None:
        """Open the command pipe once its executor has opened it for reading."""
        while True:
            try:
                self._write_fd = os.open(self.to_python, os.O_WRONLY | os.O_NONBLOCK)
                os.set_blocking(self._write_fd, True)
                return
            except OSError:
                if time.monotonic() > deadline or not self.node.piper_alive():
                    raise
                time.sleep(0.02)

    def send(self, line: str) -> bool:
        if self.closed or self._write_fd is None:
            return False
        data = (line + "\n").encode()
        for _ in range(WRITE_RETRIES):
            try:
                os.write(self._write_fd, data)
                return True
            except OSError:
                time.sleep(WRITE_RETRY_WAIT)
        return False

    def read_line(self) -> str | None:
        """The next non-empty line from the executor; None once the pipes were closed (dead executor)."""
        while True:
            if b"\n" in self._buffer:
                line, self._buffer = self._buffer.split(b"\n", 1)
                if line.strip():
                    return line.decode().strip()
                continue
            if self.closed:
                return None
            ready, _, _ = select.select([self._read_fd], [], [], 0.2)
            if ready:
                try:
                    self._buffer += os.read(self._read_fd, 65536)
                except BlockingIOError:
                    pass

    def close(self) -> None:
        for fd in (self._write_fd, self._read_fd):
            if fd is not None:
                try:
                    os.close(fd)
                except OSError:
                    pass
        self._write_fd = None

    # ------------------------------------------------------------------ the Java thread
    def give(self, job: Job) -> None:
        with self._wake:
            self._next = job
            self._wake.notify()

    def _loop(self) -> None:
        while True:
            with self._wake:
                while self._next is None:
                    self._wake.wait()
                job, self._next = self._next, None
            if job is STOP:
                return
            self.job = job
            error = None
            try:
                self.node.run_job(self, job)
            except JobFailed as exc:
                error = str(exc)
            except Exception as exc:  # noqa: BLE001 - a bug in the fake must fail the job, not hang the run
                error = f"fake COMPSs error: {type(exc).__name__}: {exc}"
            self.job = None
            self.node.job_ended(self, job, error)


STOP = Job(-1, None, "STOP")


class Node:
    """localhost as a COMPSs worker: the piper worker process, its executors, their Java threads."""

    def __init__(self, runtime: Any, *, cpus: int, gpus: int, working_dir: str, log_dir: str, debug: bool,
                 interpreter: str, pycompss_home: list[str], pythonpath: str, app_dir: str,
                 environ: dict[str, str], cpu_affinity: str, gpu_affinity: str, limit_of_tasks: int | None,
                 hide: list[str], log: Callable[..., None]):
        self.runtime = runtime
        self.cpus, self.gpus = cpus, gpus
        self.limit = limit_of_tasks or cpus
        self.working_dir = working_dir.rstrip("/") + "/"
        self.log_dir = log_dir
        self.debug = debug
        self.bind_cpus = cpu_affinity != "disabled"
        self.bind_gpus = gpu_affinity != "disabled"
        self.log = log
        self.pipes_dir = os.path.join(self.working_dir, "pipes")
        self.jobs_dir = os.path.join(log_dir, "jobs")
        for folder in (self.working_dir, self.pipes_dir, os.path.join(self.working_dir, "sandBox"), self.jobs_dir):
            os.makedirs(folder, exist_ok=True)
        self.free_cpus = list(range(cpus))  # ids handed to tasks (ResourceManager: lowest free first, inferred)
        self.free_gpus = list(range(gpus))
        self.used_cpus = self.used_gpus = self.running = 0
        self.idle: collections.deque[Slot] = collections.deque()
        self.left_behind: list[str] = []
        self._lock = threading.Lock()
        self.control_in = _fifo(os.path.join(self.pipes_dir, "control.outbound"))  # Java -> piper worker
        self.control_out = _fifo(os.path.join(self.pipes_dir, "control.inbound"))
        self._control_w = os.open(self.control_in, os.O_RDWR)
        self._control_r = os.open(self.control_out, os.O_RDWR | os.O_NONBLOCK)
        self._control_buffer = b""
        self.slots = [Slot(self, i) for i in range(cpus)]  # one executor per CPU computing unit
        self.proc = self._start_piper(interpreter, pycompss_home, pythonpath, app_dir, environ, hide)
        self._stopped = threading.Event()
        try:
            deadline = time.monotonic() + 120
            for slot in self.slots:
                slot.pid = self._query_pid(slot, deadline)
                slot.open_writer(deadline)
        except Exception:
            self.kill()
            raise
        for slot in self.slots:
            self.idle.append(slot)
            slot.thread.start()
        self.monitor = threading.Thread(target=self._monitor, name="fake-compss-monitor", daemon=True)
        self.monitor.start()

    # ------------------------------------------------------------------ start
    def _start_piper(self, interpreter: str, pycompss_home: list[str], pythonpath: str, app_dir: str,
                     environ: dict[str, str], hide: list[str]) -> subprocess.Popen:
        """PythonMirror.getLaunchWorkerCommand / getEnvironment."""
        n = len(self.slots)
        argv = [interpreter, "-u"] + ([] if self.debug else ["-O"]) + [SHIM]
        argv += [self.working_dir, self.log_dir, self.log_dir, "false", str(self.debug).lower(), "false", "null",
                 "NONE", "null", "null", "false", "false", "false", str(n)]
        argv += [str(i) for i in range(n)]
        argv += [s.to_python for s in self.slots] + [s.from_python for s in self.slots]
        argv += [self.control_in, self.control_out]
        env = dict(environ)
        home = ":".join(pycompss_home)
        env["PYCOMPSS_HOME"] = home
        old = environ.get("PYTHONPATH")
        # PythonMirror.getEnvironment: home:pythonpath:appDir, and "+ pythonPath" with no ":" before it.
        env["PYTHONPATH"] = f"{home}:{pythonpath}:{app_dir}" + (old if old is not None else "")
        if hide:  # a test hook: this worker does not see the given folders (no shared disk): its own mount
            # namespace, with an empty tmpfs over each; not root: in a user namespace of its own as well
            mounts = " && ".join(f"mount -t tmpfs -o size=1m fake-compss-hidden {_q(d)}" for d in hide)
            userns = ["--map-root-user"] if os.geteuid() != 0 else []
            argv = ["unshare", "--mount", *userns, "--propagation", "private", "sh", "-c",
                    f'{mounts} && exec "$@"', "sh"] + argv
        out = open(os.path.join(self.log_dir, "worker.out"), "ab")
        err = open(os.path.join(self.log_dir, "worker.err"), "ab")
        try:
            return subprocess.Popen(argv, env=env, cwd=self.working_dir, stdin=subprocess.DEVNULL, stdout=out,
                                    stderr=err, start_new_session=True)  # fake hygiene: killpg reaches all
        finally:
            out.close()
            err.close()

    def _control(self, line: str) -> None:
        os.write(self._control_w, (line + "\n").encode())

    def _control_reply(self, deadline: float) -> str:
        while b"\n" not in self._control_buffer:
            if time.monotonic() > deadline:
                raise RuntimeError("the piper worker did not answer on its control pipe")
            if not self.piper_alive():
                raise RuntimeError(f"the piper worker exited with {self.proc.returncode}; "
                                   f"see {self.log_dir}/worker.err")
            ready, _, _ = select.select([self._control_r], [], [], 0.2)
            if ready:
                self._control_buffer += os.read(self._control_r, 65536)
        line, self._control_buffer = self._control_buffer.split(b"\n", 1)
        return line.decode().strip() or self._control_reply(deadline)

    def _query_pid(self, slot: Slot, deadline: float) -> int:
        """QUERY_EXECUTOR_ID -> REPLY_EXECUTOR_ID <out> <in> <pid> (piper_worker.py)."""
        self._control(f"QUERY_EXECUTOR_ID {slot.to_python} {slot.from_python}")
        reply = self._control_reply(deadline).split()
        if reply[0] != "REPLY_EXECUTOR_ID":
            raise RuntimeError(f"unexpected control reply {reply}")
        return int(reply[-1])

    def piper_alive(self) -> bool:
        return self.proc.poll() is None

    # ------------------------------------------------------------------ scheduling (the master asks)
    def fits(self, cpus: int, gpus: int) -> bool:
        return cpus <= self.cpus and gpus <= self.gpus

    def has_room(self, cpus: int, gpus: int) -> bool:
        return (self.running < self.limit and self.used_cpus + cpus <= self.cpus and
                self.used_gpus + gpus <= self.gpus and bool(self.idle))

    def start_job(self, job: Job) -> None:
        """Reserve the task's units and give the job to the executor thread idle longest."""
        req = job.task.ce.requirements
        self.used_cpus += req.cpus
        self.used_gpus += req.gpus
        self.running += 1
        slot = self.idle.popleft()
        job.slot = slot
        slot.give(job)

    def cancel(self, job: Job) -> None:
        job.cancelled = True
        if job.slot is not None and job.slot.job is job and not job.slot.closed:
            self._control(f"CANCEL_TASK {job.slot.to_python}")

    def job_ended(self, slot: Slot, job: Job, error: str | None) -> None:
        self.runtime.job_ended(job, error, slot_returns=lambda: self._return_slot(slot, job))

    def _return_slot(self, slot: Slot, job: Job) -> None:
        """Called by the runtime under its lock: the thread is idle again, at the back of the queue."""
        req = job.task.ce.requirements
        self.used_cpus -= req.cpus
        self.used_gpus -= req.gpus
        self.running -= 1
        self.idle.append(slot)

    # ------------------------------------------------------------------ one job (the Java executor thread)
    def run_job(self, slot: Slot, job: Job) -> None:
        task = job.task
        req = task.ce.requirements
        with self._lock:  # Executor.obtainExecutionResources
            job.cpus = [self.free_cpus.pop(0) for _ in range(req.cpus)]
            job.gpus = [self.free_gpus.pop(0) for _ in range(req.gpus)]
        job.started = time.monotonic()
        try:
            self._sandboxed(slot, job)
        finally:
            job.ended = time.monotonic()
            with self._lock:
                self.free_cpus = sorted(self.free_cpus + job.cpus)
                self.free_gpus = sorted(self.free_gpus + job.gpus)

    def _sandboxed(self, slot: Slot, job: Job) -> None:
        job.sandbox = os.path.join(self.working_dir, "sandBox", f"job_{job.id}")
        os.makedirs(job.sandbox, exist_ok=True)
        links = self._stage_in(job)
        reply = self._invoke(slot, job)
        if reply[0] == "COMPSS_EXCEPTION":
            raise JobFailed(f"Job {job.id} raised a COMPSsException: {' '.join(reply[2:])}")
        if reply[0] != "END_TASK" or len(reply) < 3:
            raise JobFailed(f"Job {job.id} has failed: the executor answered {' '.join(reply)[:200]!r}")
        if int(reply[2]) != 0:
            raise JobFailed(f"Job {job.id} exit with value {reply[2]}")
        for link in links:  # Executor.stageOut: the links go; then the sandbox (success only)
            os.unlink(link)
        for param in job.task.params:
            if param.direction == 1 and not os.path.exists(param.version.worker_path):
                raise JobFailed(f"ERROR: One or more OUT files have not been created by task {job.task.id}")
        shutil.rmtree(job.sandbox, ignore_errors=True)

    def _stage_in(self, job: Job) -> list[str]:
        links = []
        for param in job.task.params:
            if param.version is None:
                continue
            if param.direction == 1:  # written by the task straight under its renamed name (keep_rename)
                if not param.keep_rename:
                    raise JobFailed("fake COMPSs: OUT files that keep no rename are not modelled")
                param.worker_value = param.version.worker_path
                continue
            renamed = self.runtime.stage_to_worker(param.version)
            if not param.keep_rename:  # Executor.bindOriginalFilenameToRenames: <sandbox>/<original name>
                link = os.path.join(job.sandbox, os.path.basename(param.value))
                os.symlink(renamed, link)
                links.append(link)
                param.worker_value = link
            else:
                param.worker_value = renamed
        return links

    def _invoke(self, slot: Slot, job: Job) -> list[str]:
        if not slot.send(self.execute_task_line(job)):
            raise JobFailed(f"Job {job.id} has failed. Cannot write in pipe")
        while True:
            line = slot.read_line()
            if line is None:
                raise JobFailed(f"Job {job.id} has failed. Notification pipe closed (executor process "
                                f"{slot.pid} died)")
            tokens = line.split()
            if tokens[0] == "QUIT":
                raise JobFailed(f"Job {job.id} has failed: executor process {slot.pid} left its loop (QUIT)")
            if tokens[0] in ("END_TASK", "COMPSS_EXCEPTION") and tokens[1:2] == [str(job.id)]:
                return tokens

    def execute_task_line(self, job: Job) -> str:
        """EXECUTE_TASK as worker/piper/commons/executor.py and worker/commons/worker.py parse it."""
        task = job.task
        out = os.path.join(self.jobs_dir, f"job{job.id}_{job.history}")
        module, function = task.ce.module, task.ce.function
        tokens = ["EXECUTE_TASK", str(job.id), job.sandbox, out + ".out", out + ".err", "false", str(task.id),
                  "false", "null", "METHOD", module, function, str(task.time_out), "1", "localhost",
                  str(task.ce.requirements.cpus), str(task.has_target).lower(), "null", str(task.num_returns),
                  str(len(task.params))]
        for p in task.params:
            tokens += [str(p.type), str(p.stream), p.prefix, p.name or "null", p.content_type or "null"]
            tokens += _value_tokens(p)
        tokens += [",".join(map(str, job.cpus)) if self.bind_cpus and job.cpus else "-",
                   ",".join(map(str, job.gpus)) if self.bind_gpus and job.gpus else "-", "-"]
        return " ".join(tokens)

    # ------------------------------------------------------------------ monitor (MirrorMonitor.java)
    def _monitor(self) -> None:
        while not self._stopped.wait(MONITORING_PERIOD):
            piper_dead = not self.piper_alive()
            for slot in self.slots:
                if not slot.closed and (piper_dead or not _alive(slot.pid)):
                    slot.closed = True  # PipePair.noLongerExists: the running job fails, later sends fail
                    print(f"Piped mirrors monitor has detected that executor process {slot.pid} has died.",
                          file=sys.stderr, flush=True)
                    self.log(event="executor died", executor=slot.index, pid=slot.pid)
            if piper_dead:
                return

    # ------------------------------------------------------------------ stop
    def stop(self) -> None:
        """QUIT every executor and the control pipe; wait for the worker; remove the working dir."""
        self._stopped.set()
        for slot in self.slots:
            slot.send("QUIT")
            slot.give(STOP)
        if self.piper_alive():
            try:
                self._control("QUIT")
            except OSError:
                pass
        try:
            self.proc.wait(30)
        except subprocess.TimeoutExpired:
            pass
        self.kill()

    def kill(self) -> None:
        """Fake hygiene: whatever is left in the worker's process group is logged, then SIGKILLed."""
        deadline = time.monotonic() + (1.0 if self.proc.poll() is not None else 0.0)
        while True:  # what exits on its own within a second of the worker is not "left behind"
            left = [p for p in _group(self.proc.pid)]
            if not left or time.monotonic() >= deadline:
                break
            time.sleep(0.1)
        for pid, text in left:
            self.left_behind.append(f"{pid} {text}")
            self.log(event="left behind", pid=pid, cmdline=text)
        try:
            os.killpg(self.proc.pid, signal.SIGKILL)
        except (ProcessLookupError, PermissionError):
            pass
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            pass
        for slot in self.slots:
            slot.close()
        for fd in (self._control_w, self._control_r):
            try:
                os.close(fd)
            except OSError:
                pass
        shutil.rmtree(self.working_dir, ignore_errors=True)


def _value_tokens(p: Any) -> list[str]:
    """One parameter's value as the Java side writes it into the pipe message."""
    if p.type == 10:  # FILE: <original name>:<renamed name>:<preserve source>:<write final>:<path the task sees>
        original = os.path.basename(p.value) if not p.keep_rename else "null"
        final = "true" if p.direction == 1 else "false"
        return [f"{original}:{p.version.renamed}:{str(not p.keep_rename).lower()}:{final}:{p.worker_value}"]
    if p.type == 9:  # STRING_64: the worker reads <number of words> <words>; base64 has no spaces
        return ["1", str(p.value)]
    if p.type == 8:
        words = str(p.value).split(" ")
        return [str(len(words)), *words]
    if p.type == 0:
        return ["true" if p.value in (True, "true", "True") else "false"]
    return [str(p.value)]


def _alive(pid: int | None) -> bool:
    """Whether the process exists and is not a zombie (/proc/<pid>/stat state)."""
    if pid is None:
        return False
    try:
        with open(f"/proc/{pid}/stat", encoding="ascii", errors="replace") as fh:
            return fh.read().rsplit(")", 1)[1].split()[0] not in ("Z", "X")
    except OSError:
        return False


def _group(pgid: int) -> list[tuple[int, str]]:
    """Live (not zombie) processes of a process group, with their command lines."""
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            if os.getpgid(int(name)) != pgid or not _alive(int(name)):
                continue
            with open(f"/proc/{name}/cmdline", "rb") as fh:
                found.append((int(name), fh.read().replace(b"\0", b" ").decode(errors="replace")[:200]))
        except OSError:
            continue
    return found


def _q(text: str) -> str:
    import shlex
    return shlex.quote(text)

