"""The fake COMPSs runtime's own rules, each through the real binding (master and piper worker).

Each test is one ``tests/compss_fake/runcompss`` run of a small app (``fake_tasks.py`` holds its
tasks); the fake's event log (``fake_compss.jsonl``) says which executor ran which job.  The rules
and the Java files they were read from are in ``tests/compss_fake/fakejvm/``.
"""
import json
import os
import re
import subprocess
import textwrap
import time
import warnings

import pytest

from compss_support import (REAL_PYCOMPSS, RUNCOMPSS, assert_no_strays, clean_compss_env,  # noqa: F401
                            requires_real, run_log_dir, subprocess_env, trace)

import affinity  # tests/compss_fake (compss_support put it on sys.path)

pytestmark = requires_real
RESOURCES = """<ResourcesList><ComputeNode Name="localhost">
<Processor Name="MainProcessor"><ComputingUnits>2</ComputingUnits></Processor>
<Processor Name="GPU"><Type>GPU</Type><ComputingUnits>1</ComputingUnits></Processor>
</ComputeNode></ResourcesList>"""


def runcompss(tmp_path, body, *flags, prelude="", timeout=120, **env):
    """Run ``body`` as app.py's main under runcompss on a 2-CPU, 1-GPU node; (process, RESULT dict, events).

    The body goes in ``main()`` under ``if __name__ == "__main__"``: launch.py runs an app's top-level
    code twice, once when it preloads the module before the runtime starts, then as ``__main__``."""
    app = ("import json, os, sys, time\nfrom pycompss.api.api import compss_wait_on\nimport fake_tasks as T\n"
           + textwrap.dedent(prelude) + "\n\ndef main():\n" + textwrap.indent(textwrap.dedent(body), "    ")
           + "\n\nif __name__ == '__main__':\n    main()\n")
    (tmp_path / "app.py").write_text(app)
    (tmp_path / "resources.xml").write_text(RESOURCES)
    proc = subprocess.run([RUNCOMPSS, "--lang=python", f"--resources={tmp_path / 'resources.xml'}", *flags, "app.py"],
                          cwd=tmp_path, env=subprocess_env(str(tmp_path), **env), capture_output=True, text=True,
                          timeout=timeout)
    result = next((json.loads(line[7:]) for line in proc.stdout.splitlines() if line.startswith("RESULT ")), None)
    assert_no_strays(str(tmp_path))
    return proc, result, trace(run_log_dir(str(tmp_path), "app.py"))


def jobs_of(events, name):
    """The jobs of one task function, in submission order (the log is in completion order)."""
    return sorted((e for e in events if e["event"] == "job" and e["signature"] == f"fake_tasks.{name}"),
                  key=lambda e: e["job"])


def test_rotation_sandboxes_var_snapshot_pinning_gpus_file_in_and_exit_code(tmp_path):
    (tmp_path / "model.txt").write_text("weights")
    marker = tmp_path / "atexit-ran"
    proc, out, events = runcompss(tmp_path, f"""
        os.environ["FAKE_TEST_CU"] = "1"  # too late: the JVM read its environment when it started
        out = {{"seq": [compss_wait_on(T.where()) for _ in range(4)]}}  # one at a time
        out["bad"] = compss_wait_on(T.take(Local(1)))
        out["after"] = compss_wait_on(T.where(*[f["cwd"] for f in out["seq"]], "model.txt"))
        out["sandboxes"] = sorted(os.listdir(os.path.dirname(out["after"]["cwd"])))
        out["cu"] = compss_wait_on(T.where_cu())
        out["gpu"] = compss_wait_on(T.where_gpu())
        out["after_gpu"] = compss_wait_on(T.where())
        out["staged"] = compss_wait_on(T.read_staged({str(tmp_path / "model.txt")!r}))
        out["chain"] = compss_wait_on(T.plus(T.plus(1, 2), 10))  # a future passed on: a dependency
        out["atexit"] = compss_wait_on(T.leave_atexit({str(marker)!r}))
        print("RESULT " + json.dumps(out))
        sys.exit(3)
    """, "--summary", "--cpu_affinity=automatic", FAKE_TEST_CU="2", prelude="""
        from dataclasses import dataclass

        @dataclass
        class Local:  # defined in the app's main file: a worker cannot unpickle it
            x: int
    """)
    assert proc.returncode == 3, proc.stdout + proc.stderr  # the app's exit code is runcompss's
    assert "User program ended with exitcode" in proc.stdout and "Error running application" in proc.stderr
    assert "[fake COMPSs]   fake_tasks.where: 6 tasks, 6 done" in proc.stdout  # --summary
    seq = out["seq"]
    # Rotation: an executor that finished goes to the back of the idle queue.
    assert [f["pid"] for f in seq] == [seq[0]["pid"], seq[1]["pid"]] * 2 and seq[0]["pid"] != seq[1]["pid"]
    # "$FAKE_TEST_CU" was 2 when runcompss started: two CPU units.
    assert out["cu"]["COMPSS_NUM_THREADS"] == "2"
    # Pinning (--cpu_affinity=automatic): the executor binds itself to the job's CPU ids with the
    # process_affinity extension, built from the 3.3 source with g++; without it, the real binding
    # warns and runs unpinned.
    if affinity.ensure(REAL_PYCOMPSS) is None:
        warnings.warn(f"process_affinity cannot be built here ({affinity.LAST_ERROR}): pinning is not checked")
        worker_out = open(os.path.join(run_log_dir(str(tmp_path), "app.py"), "worker.out")).read()
        assert "CPU AFFINITY NOT SUPPORTED" in worker_out and out["cu"]["COMPSS_BINDED_CPUS"] is None
    else:
        for facts, job in zip(seq, jobs_of(events, "where")):
            assert facts["affinity"] == job["cpus"] == [int(facts["COMPSS_BINDED_CPUS"])]
        assert out["cu"]["affinity"] == [0, 1] and out["cu"]["COMPSS_BINDED_CPUS"] == "0,1"
    # Sandboxes of finished jobs are gone; a failed job's stays (Executor.java cleans on success only).
    assert out["after"]["exist"] == [False] * 5  # the last: model.txt is in the app's folder, not the sandbox
    (bad,) = jobs_of(events, "take")
    assert out["bad"] is None and bad["error"].endswith("exit with value 1")
    assert out["sandboxes"] == [f"job_{bad['job']}"]  # listed by the master after the later job ended
    # GPU slot: the "- 0 -" token; the variables are gone for the next task.
    assert out["gpu"]["CUDA_VISIBLE_DEVICES"] == "0" and out["after_gpu"]["CUDA_VISIBLE_DEVICES"] is None
    # FILE_IN: a link named as the file, in the job's sandbox, to the renamed copy.
    link, real, text = out["staged"]
    assert text == "weights" and link == os.path.join(os.path.dirname(link), "model.txt")
    assert re.fullmatch(r"d\d+v1_\d+\.IT", os.path.basename(real)) and "sandBox/job_" in link
    # A future passed to a task: it waits for the producer and reads its renamed result.
    first, second = [e for e in events if e["event"] == "task" and e["signature"] == "fake_tasks.plus"]
    assert out["chain"] == 13 and second["depends"] == [first["task"]]
    # Executors are forked children of the piper worker: their atexit handlers never run.
    assert isinstance(out["atexit"], int) and not marker.exists()


def test_a_dead_executor_is_not_replaced_and_its_slot_fails_the_jobs_it_takes(tmp_path):
    proc, out, events = runcompss(tmp_path, """
        pids = [compss_wait_on(T.where())["pid"] for _ in range(2)]
        t0 = time.monotonic()
        dead = compss_wait_on(T.die())
        took = time.monotonic() - t0
        later = compss_wait_on([T.where() for _ in range(6)])
        print("RESULT " + json.dumps({"pids": pids, "dead": dead, "took": took, "later": later}))
    """, "--cpu_affinity=disabled")
    assert proc.returncode == 0, proc.stdout + proc.stderr
    (died,) = [e for e in events if e["event"] == "executor died"]
    live = [p for p in out["pids"] if p != died["pid"]]
    assert out["dead"] is None and out["took"] < 30  # the monitor looks every 5 s (a loaded machine: more)
    assert "monitor has detected that executor process" in proc.stderr
    later = jobs_of(events, "where")[2:]
    on_dead = [j for j in later if j["pid"] == died["pid"]]
    assert on_dead and all(j["error"].endswith("Cannot write in pipe") for j in on_dead)
    assert [f and f["pid"] for f in out["later"]] == [None if j["pid"] == died["pid"] else live[0] for j in later]
    started = next(e for e in events if e["event"] == "started")
    assert sorted(out["pids"]) == sorted(started["executors"])  # never replaced
    ok = [f for f in out["later"] if f]
    assert ok and all(f["COMPSS_BINDED_CPUS"] is None and len(f["affinity"]) == os.cpu_count() for f in ok)


def test_retry_resubmits_once_then_ends_the_run_with_exit_code_1(tmp_path):
    attempts = tmp_path / "attempts"
    proc, _, events = runcompss(tmp_path, f"""
        compss_wait_on(T.fail_counting({str(attempts)!r}))
        print("not reached")
    """)
    assert proc.returncode == 1 and "not reached" not in proc.stdout
    assert attempts.read_text() == "xx"  # once, then once more on the same (only) node
    assert [j["history"] for j in jobs_of(events, "fail_counting")] == ["NEW", "RESUBMITTED"]
    assert "[ERRMGR]" in proc.stderr and "FAILED after 2 attempt(s) under on_failure=RETRY" in proc.stderr


def test_an_app_exiting_with_tasks_running_cancels_them_with_sigusr2(tmp_path):
    t0 = time.monotonic()
    proc, _, events = runcompss(tmp_path, """
        running = T.sleep(120)
        time.sleep(2)
        sys.exit(5)
    """, "--summary")
    assert proc.returncode == 5, proc.stdout + proc.stderr
    assert time.monotonic() - t0 < 60  # not the task's 120 s
    (job,) = jobs_of(events, "sleep")
    assert job["cancelled"] and "1 cancelled" in proc.stdout


def test_runcompss_takes_the_real_parsers_flags_only(tmp_path):
    (tmp_path / "app.py").write_text("print('app ran')\n")
    env = subprocess_env(str(tmp_path))
    for bad in (["--account=abc"], ["--worker_in_master_cpus=4"], ["--summary=true"], ["--lang", "python"]):
        proc = subprocess.run([RUNCOMPSS, *bad, "app.py"], cwd=tmp_path, env=env, capture_output=True, text=True,
                              timeout=30)
        assert proc.returncode == 1 and "Bad argument" in proc.stderr and "app ran" not in proc.stdout, bad


@pytest.mark.parametrize("text, env, expected", [
    ("computing_units:$CU;", {"CU": "3"}, (3, 0)),
    ("computing_units:${CU};", {"CU": "2"}, (2, 0)),
    ("computing_units:$CU;", {}, (1, 0)),  # unset: a warning, the empty string, the default
    ("processors:[{processorType: CPU, computingUnits: 1}, {processorType: GPU, computingUnits: $G}];",
     {"G": "2"}, (1, 2)),
    ("", {}, (1, 0)),
])
def test_constraints_expand_variables_as_environment_loader_does(text, env, expected):
    from fakejvm.config import load_from_environment, parse_constraints
    warnings = []
    req = parse_constraints(text, env, warnings.append)
    assert (req.cpus, req.gpus) == expected
    assert bool(warnings) == (not env and "$" in text)
    assert load_from_environment("$HOME/x/$NOPE", {"HOME": "/h"}, warnings.append) == "/h/x/"
    assert load_from_environment("cost \\$5", {}, warnings.append) == "cost $5"
