"""COMPSs executor processes a test starts itself: every task goes through the REAL PyCOMPSs 3.3
``process_task`` (../shared/third_party/compss-3.3/python), with the job message the Java worker
would send, so the test chooses what the runtime would: which executor runs a task, its GPU token
(``- 0 -``: the real code sets CUDA_VISIBLE_DEVICES from it), and when the executor is killed.

As in the real runtime the job's sandbox is deleted after each job, and the executor is a plain
process that never runs this project's atexit handlers (it leaves with ``os._exit``, as a forked
piper executor does).  Objects go as serialized files (the real serializer), floats inline as
DOUBLE, a ``FILE_IN`` path as a link in the sandbox to a renamed copy (what Java's stage-in makes).

Run as a script, this is the executor; imported, :class:`Executor` drives one.
"""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
import time
from multiprocessing.connection import Connection, wait
from typing import Any

from pycompss_real import REAL_PYCOMPSS

TASKS = "compss_infer.engines.compss_tasks"


def _tokens(job: dict, folder: str, sandbox: str, logger: Any) -> tuple[list[str], str]:
    from pycompss.util.serialization.serializer import serialize_to_file
    n = str(job["id"])
    params = []
    for i, (name, value, kind) in enumerate(job["args"]):
        if kind == "float":
            params += ["7", "3", "null", name, "null", repr(float(value))]
        elif kind == "file":  # FILE_IN: Java copies it under a new name and links it into the sandbox
            copy = os.path.join(folder, f"d{n}v1_{int(time.time() * 1000)}.IT")
            shutil.copyfile(value, copy)
            seen = os.path.join(sandbox, os.path.basename(value))
            os.symlink(copy, seen)
            params += ["10", "3", "null", name, "FILE", f"{value}:{os.path.basename(copy)}:true:false:{seen}"]
        else:
            path = os.path.join(folder, f"d{n}v1_arg{i}.IT")
            serialize_to_file(value, path, logger)
            params += ["10", "3", "null", name, "null", f"{path}:{os.path.basename(path)}:false:true:{path}"]
    ret = os.path.join(folder, f"d{n}v1_ret.IT")
    params += ["10", "3", "#", "$return_0", "null", f"{ret}:{os.path.basename(ret)}:false:true:{ret}"]
    head = ["EXECUTE_TASK", n, sandbox, job["out"], job["err"], "0", n, "true", "null", "METHOD", job["module"],
            job["function"], str(job.get("time_out", 0)), "1", "localhost", str(job.get("cpus", 1)), "false",
            "null", "1", str(len(job["args"]) + 1)]
    return head + params + ["-", job.get("gpu") or "-", "-"], ret


def main(cmd_fd: int, reply_fd: int, folder: str) -> None:
    import logging

    from pycompss.util.context import CONTEXT
    CONTEXT.set_worker()  # what piper_worker.py does before it forks its executors
    from pycompss.util.serialization.serializer import deserialize_from_file
    from pycompss.worker.piper.commons.executor import process_task

    class Pipe:
        output_pipe = "test"
        last = ""

        def write(self, text: str) -> None:
            Pipe.last = text

    logger = logging.getLogger("real_executor")
    handler = logging.FileHandler(os.path.join(folder, "executor.log"))
    formatter = logging.Formatter("%(asctime)s %(message)s")
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    commands, replies = Connection(cmd_fd), Connection(reply_fd)
    replies.send("ready")  # imports done: the test's clock starts at the first task, as a runtime's would
    while True:
        try:
            job = commands.recv()
        except EOFError:
            os._exit(0)
        sandbox = os.path.join(folder, f"sandbox-job{job['id']}")
        os.makedirs(sandbox)
        tokens, ret = _tokens(job, folder, sandbox, logger)
        process_task(tokens, f"executor-{os.getpid()}", Pipe(), None, False, logger, "", [handler], logging.INFO,
                     formatter, "null", [], [], None, None, None, False)
        os.chdir(folder)
        shutil.rmtree(sandbox)  # the runtime deletes the job's sandbox after the job
        report = Pipe.last.split()
        code = int(report[2]) if len(report) > 2 and report[0] == "END_TASK" else -1
        value = deserialize_from_file(ret, logger) if code == 0 and os.path.exists(ret) else None
        replies.send((job["id"], code, value))


class Executor:
    """One executor process; ``submit`` a task (the decorated function's name and its arguments)."""

    def __init__(self, folder: str, optimize: bool = True, env: dict[str, str] | None = None, src: str | None = None):
        self.folder = folder
        os.makedirs(folder, exist_ok=True)
        cmd_r, cmd_w = os.pipe()
        reply_r, reply_w = os.pipe()
        environ = dict(env if env is not None else os.environ)
        tests = os.path.dirname(os.path.abspath(__file__))
        src = src or os.path.join(os.path.dirname(tests), "src")  # another checkout's sources: a benchmark's baseline
        environ["PYTHONPATH"] = os.pathsep.join([REAL_PYCOMPSS, src, tests] + [
            p for p in environ.get("PYTHONPATH", "").split(os.pathsep) if p])
        argv = [sys.executable] + (["-O"] if optimize else []) + [os.path.abspath(__file__), str(cmd_r),
                                                                 str(reply_w), folder]
        log = open(os.path.join(folder, "executor.out"), "ab")
        self.proc = subprocess.Popen(argv, env=environ, cwd=folder, pass_fds=(cmd_r, reply_w),
                                     stdin=subprocess.DEVNULL, stdout=log, stderr=log)
        log.close()
        os.close(cmd_r)
        os.close(reply_w)
        self.commands, self.replies = Connection(cmd_w), Connection(reply_r)
        self.pid = self.proc.pid
        self.jobs = 0
        if not wait([self.replies], 120) or self.replies.recv() != "ready":
            raise AssertionError(f"executor {self.pid} did not start (see {folder}/executor.out)")

    def submit(self, function: str, *args: Any, gpu: str | None = None, cpus: int = 1, time_out: int = 0,
               files: tuple[int, ...] = ()) -> int:
        """Send one task; ``args`` floats go inline, objects as files, positions in ``files`` as FILE_IN."""
        self.jobs += 1
        names = {"_classify_task": ("spec", "paths", "limit", "load"), "_classify_task_gpu": ("spec", "paths", "limit", "load"),
                 "_classify_task_staged": ("spec", "paths", "model", "limit", "load")}[function]
        kinds = ["file" if i in files else "float" if isinstance(a, float) else "object" for i, a in enumerate(args)]
        job = {"id": self.jobs, "module": TASKS, "function": function, "args": list(zip(names, args, kinds)),
               "gpu": gpu, "cpus": cpus, "time_out": time_out,
               "out": os.path.join(self.folder, f"job{self.jobs}.out"), "err": os.path.join(self.folder, f"job{self.jobs}.err")}
        self.commands.send(job)
        return self.jobs

    def result(self, timeout: float = 120) -> Any:
        """The task's return value (None: the real worker code reported a failure); waits ``timeout`` at most."""
        if not wait([self.replies], timeout):  # EOF too: the executor died
            raise AssertionError(f"executor {self.pid}: no answer within {timeout:g}s")
        try:
            _, code, value = self.replies.recv()
        except EOFError:
            raise AssertionError(f"executor {self.pid} died ({self.proc.wait()})") from None
        return value if code == 0 else None

    def run(self, function: str, *args: Any, timeout: float = 120, **kw: Any) -> Any:
        self.submit(function, *args, **kw)
        return self.result(timeout)

    def close(self) -> None:
        """End of the run: the executor leaves (EOF on its command pipe), or is killed if busy."""
        self.commands.close()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        self.replies.close()


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3])
