"""A stand-in executor process that runs every task through the REAL PyCOMPSs worker code.

Started by the stand-in master (``_standin_runtime``) with the real binding
(``../shared/third_party/compss-3.3/python``) first on its path, so ``import pycompss`` here is the
real package.  It loops over job messages as a piper executor does, and hands each one to
``pycompss.worker.piper.commons.executor.process_task`` as an ``EXECUTE_TASK`` line: the real code
deserializes the arguments, changes to the job sandbox, sets the task environment, arms the
``time_out`` alarm, applies ``on_failure`` and serializes the return.  Nothing here replaces a dead
executor or enforces a time-out: those are the master's (and the real runtime's) rules.
"""
from __future__ import annotations

import json
import logging
import os
import pickle
import signal
import sys

# Run as a script, this folder (which holds the stand-in's own pycompss) would be sys.path[0]; a real
# executor has .../pycompss/worker/piper there instead.
if sys.path and os.path.abspath(sys.path[0] or os.curdir) == os.path.dirname(os.path.abspath(__file__)):
    sys.path.pop(0)


class _Pipe:
    """What process_task writes its ``END_TASK <job> <exit> ...`` report to."""

    output_pipe = "standin"

    def __init__(self) -> None:
        self.last = ""

    def write(self, text: str) -> None:
        self.last = text


def _line(job: dict, args: list, logger: logging.Logger, folder: str) -> tuple[list[str], str]:
    """The EXECUTE_TASK tokens for one job (arguments serialized to files by the real serializer)."""
    from pycompss.util.serialization.serializer import serialize_to_file
    n = job["id"]
    tokens = ["EXECUTE_TASK", str(n), job["sandbox"], job["out"], job["err"], "0", str(n), "true", "null",
              "METHOD", job["module"], job["name"], str(job["time_out"]), "1", "localhost", str(job["cpus"]),
              "false", "null", "1", str(len(args) + 1)]
    for i, (name, value) in enumerate(zip(job["params"], args)):
        if job["directions"].get(name) == "FILE_IN":
            tokens += ["10", "3", "null", name, "null", f"{value}:{os.path.basename(value)}:true:false:{value}"]
            continue
        path = os.path.join(folder, f"job{n}_arg{i}")
        serialize_to_file(value, path, logger)
        tokens += ["10", "3", "null", name, "null", f"{path}:{os.path.basename(path)}:false:false:{path}"]
    ret = os.path.join(folder, f"job{n}_ret")
    tokens += ["10", "3", "#", "$return_0", "null", f"{ret}:d{n}v1_0.IT:false:true:{ret}"]
    gpus = ",".join(map(str, job["gpus"])) or "-"
    tokens += [",".join(map(str, job["cpu_ids"])) if job["bind_cpus"] else "-", gpus, "-"]
    return tokens, ret


def main(cmd_fd: int, reply_fd: int, base: str, log_file: str) -> None:
    from pycompss.util.context import CONTEXT
    CONTEXT.set_worker()  # what piper_worker.py does before it forks its executors
    from pycompss.util.serialization.serializer import deserialize_from_file
    from pycompss.worker.piper.commons.executor import process_task

    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logger = logging.getLogger("standin.executor")
    handler = logging.FileHandler(log_file)
    formatter = logging.Formatter("%(asctime)s %(levelname)s %(message)s")
    handler.setFormatter(formatter)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    with os.fdopen(cmd_fd, "rb") as commands, os.fdopen(reply_fd, "wb", buffering=0) as replies:
        for raw in commands:
            job = json.loads(raw)
            os.makedirs(job["sandbox"], exist_ok=True)
            with open(job["args"], "rb") as fh:
                args = pickle.load(fh)
            tokens, ret = _line(job, args, logger, base)
            pipe = _Pipe()
            process_task(tokens, f"executor-{os.getpid()}", pipe, None, False, logger, "", [handler],
                         logging.INFO, formatter, "null", [], [], None, None, None, False)
            os.chdir(base)
            report = pipe.last.split()
            exit_value = int(report[2]) if len(report) > 2 and report[0] == "END_TASK" else -1
            reply = {"id": job["id"], "ok": exit_value == 0, "exit": exit_value}
            if exit_value == 0:
                value = deserialize_from_file(ret, logger) if os.path.exists(ret) else None
                tmp = job["result"] + ".tmp"
                with open(tmp, "wb") as fh:
                    pickle.dump(value, fh)
                os.replace(tmp, job["result"])
            else:
                reply["error"] = f"TaskFailed: the real worker code ended job {job['id']} with exit value {exit_value}"
            for path in [ret] + [os.path.join(base, f) for f in os.listdir(base) if f.startswith(f"job{job['id']}_arg")]:
                try:
                    os.unlink(path)
                except OSError:
                    pass
            replies.write((json.dumps(reply) + "\n").encode())


if __name__ == "__main__":
    main(int(sys.argv[1]), int(sys.argv[2]), sys.argv[3], sys.argv[4])
