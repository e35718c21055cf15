"""The PyCOMPSs stand-in itself: it must catch the misuse it exists for, and behave as documented."""
import os
import signal
import subprocess
import sys
import textwrap
import time

import pytest

from compss_support import RUNCOMPSS, clean_compss_env, master, subprocess_env  # noqa: F401 - fixtures

from pycompss import _standin_runtime as rt  # noqa: E402 - compss_support put the stand-in on sys.path
from pycompss.api.api import compss_barrier, compss_wait_on  # noqa: E402
from pycompss.api.constraint import constraint  # noqa: E402
from pycompss.api.parameter import FILE_IN, IN  # noqa: E402
from pycompss.api.task import task  # noqa: E402

import standin_tasks as T  # noqa: E402


# ----------------------------------------------------------------------------- misuse it catches

def test_a_future_used_before_compss_wait_on_raises(master):
    master(cpus=1)
    fut = T.add(2, 3)
    uses = [lambda: bool(fut), lambda: list(fut), lambda: fut.class_ids, lambda: fut + 1, lambda: 1 + fut,
            lambda: fut == 5, lambda: f"{fut}", lambda: len(fut), lambda: fut[0]]
    for use in uses:
        with pytest.raises(rt.FutureUsedError, match="before compss_wait_on"):
            use()
    assert compss_wait_on(fut) == 5
    assert compss_wait_on([T.add(1, 1), T.add(2, 2)]) == [2, 4]


def test_a_relative_path_breaks_in_the_sandbox_cwd(master, tmp_path, monkeypatch):
    master(cpus=1)
    monkeypatch.chdir(tmp_path)
    (tmp_path / "data.txt").write_text("hello")
    assert compss_wait_on(T.read_text("data.txt")) is None  # FileNotFoundError in the sandbox: IGNORE'd
    assert compss_wait_on(T.read_text(str(tmp_path / "data.txt"))) == "hello"
    info = compss_wait_on(T.where())
    assert info["cwd"] != str(tmp_path) and "sandbox" in info["cwd"]


def plain(x):
    return x


def test_unknown_or_misplaced_decorator_keywords_are_refused():
    with pytest.raises(rt.StandinError, match="unknown keyword 'timeout'"):
        task(returns=1, timeout=10)(plain)
    with pytest.raises(rt.StandinError, match="unknown keyword 'y'"):
        task(returns=1, y=IN)(plain)
    with pytest.raises(rt.StandinError, match="on_failure must be one of"):
        task(returns=1, on_failure="SKIP")(plain)
    with pytest.raises(rt.StandinError, match="unknown keyword 'cores'"):
        constraint(cores="2")
    with pytest.raises(rt.StandinError, match="camelCase"):
        constraint(processors=[{"processor_type": "GPU", "computing_units": "1"}])
    with pytest.raises(rt.StandinError, match="above @task"):
        constraint(computing_units="1")(plain)
    with pytest.raises(TypeError, match="keyword arguments only"):
        task(plain)


def test_task_functions_must_be_module_level_in_an_importable_module(master):
    def outer():
        @task(returns=1)
        def inner():
            return 1
        return inner
    with pytest.raises(rt.StandinError, match="module-level"):
        outer()
    master(cpus=1)
    main = type(sys)("__main__")
    code = "from pycompss.api.task import task\n@task(returns=1)\ndef f():\n    return 1\n"
    exec(compile(code, "app.py", "exec"), main.__dict__)
    with pytest.raises(rt.StandinError, match="not importable by name"):
        main.__dict__["f"]()


# ----------------------------------------------------------------------------- documented behaviour

def test_executors_persist_and_tasks_get_threads_sandbox_and_clean_env(master, monkeypatch):
    monkeypatch.setenv("STANDIN_TEST_CU", "2")
    runtime = master(cpus=2)
    first, second = compss_wait_on(T.where()), compss_wait_on(T.where())
    assert first["pid"] == second["pid"] and (first["calls"], second["calls"]) == (1, 2)  # globals persist
    assert first["cwd"] != second["cwd"]  # a fresh sandbox per task
    assert first["threads"] == first["omp"] == "1" and first["debug"] is False  # python -O, like workers
    assert compss_wait_on(T.threads_from_env()) == "2"  # "$STANDIN_TEST_CU" read from the master's env
    assert runtime.registered["standin_tasks.threads_from_env"].cpus == 2
    assert compss_wait_on(T.env_left()) == "1"  # per-task variables are the running task's own
    assert first["pid"] != os.getpid()


def test_unset_constraint_variable_warns_and_gives_one(master, monkeypatch, capfd):
    monkeypatch.delenv("STANDIN_TEST_CU", raising=False)
    runtime = master(cpus=1)
    assert compss_wait_on(T.threads_from_env()) == "1"
    assert runtime.registered["standin_tasks.threads_from_env"].cpus == 1
    assert "STANDIN_TEST_CU is not set" in capfd.readouterr().err


def test_gpu_tasks_get_a_gpu_or_are_refused_as_blocked(master):
    master(cpus=2, gpus=0)
    with pytest.raises(rt.StandinError, match="Blocked forever"):
        T.gpu_task()
    rt.current().stop(wait=False)
    master(cpus=2, gpus=1)
    assert compss_wait_on(T.gpu_task()) == "0"


def test_ignore_gives_none_or_the_on_failure_default(master):
    master(cpus=1)
    assert compss_wait_on(T.boom("bad")) is None
    assert compss_wait_on(T.boom_with_default()) == "fallback"


def test_time_out_is_the_real_alarm_and_the_executor_lives_on(master):
    """The real worker code arms signal.alarm: a task sleeping in Python is interrupted, IGNORE gives
    None, and the same executor (nothing was killed) runs the next task."""
    runtime = master(cpus=1)
    before = compss_wait_on(T.where())["pid"]
    t0 = time.monotonic()
    assert compss_wait_on(T.sleep_ignored(30)) is None
    assert time.monotonic() - t0 < 10
    assert compss_wait_on(T.where())["pid"] == before
    assert runtime.started_executors == 1


def test_executors_start_up_front_one_per_computing_unit(master):
    runtime = master(cpus=3)
    assert runtime.started_executors == 3 and len(runtime.executor_pids()) == 3


def test_a_dead_executor_is_not_replaced_and_its_slot_fails_every_later_task(master):
    runtime = master(cpus=1)
    fut = T.sleep(30)
    deadline = time.monotonic() + 10
    while not runtime.executor_pids(busy=True) and time.monotonic() < deadline:
        time.sleep(0.05)
    victim = runtime.executor_pids(busy=True)[0]
    time.sleep(0.2)
    os.kill(victim, signal.SIGKILL)
    assert compss_wait_on(fut) is None
    t0 = time.monotonic()
    assert compss_wait_on([T.add(1, 2) for _ in range(3)]) == [None, None, None]  # "Cannot write in pipe"
    assert time.monotonic() - t0 < 5 and runtime.started_executors == 1


def test_constraint_variables_come_from_the_environment_the_runtime_started_with(master, monkeypatch):
    monkeypatch.setenv("STANDIN_TEST_CU", "1")
    runtime = master(cpus=2)
    monkeypatch.setenv("STANDIN_TEST_CU", "2")  # too late: the JVM read its environment at start-up
    assert compss_wait_on(T.threads_from_env()) == "1"
    assert runtime.registered["standin_tasks.threads_from_env"].cpus == 1


def test_file_in_arguments_are_copied_and_renamed(master, tmp_path):
    master(cpus=1)
    src = tmp_path / "model.pbtxt"
    src.write_text("graph")
    name, text = compss_wait_on(T.read_staged(str(src)))
    assert text == "graph" and name != "model.pbtxt" and name.endswith(".IT")
    compss_barrier()


def test_without_a_runtime_tasks_run_in_the_caller():
    assert rt.current() is None
    assert T.add(2, 3) == 5 and compss_wait_on(7) == 7
    with pytest.raises(ValueError):
        T.boom("raised in the caller")


# ----------------------------------------------------------------------------- runcompss shim

def _app(tmp_path, body):
    app = tmp_path / "app.py"
    app.write_text(textwrap.dedent(body))
    return str(app)


def test_retry_retries_twice_then_shuts_the_run_down(tmp_path):
    attempts = tmp_path / "attempts"
    app = _app(tmp_path, """
        from pycompss.api.api import compss_wait_on
        import standin_tasks as T
        print("result", compss_wait_on(T.fail_counting()))
        print("not reached")
    """)
    proc = subprocess.run([RUNCOMPSS, "--lang=python", app], env=subprocess_env(str(tmp_path), STANDIN_ATTEMPTS_FILE=str(attempts)),
                          capture_output=True, text=True, timeout=60)
    assert proc.returncode == 1, proc.stderr
    assert attempts.read_text() == "xxx"  # 1 + 2 retries
    assert "not reached" not in proc.stdout and "FAILED after 3 attempt(s) under on_failure=RETRY" in proc.stderr


def test_runcompss_rejects_unknown_flags_and_reports_zero_for_a_failed_app(tmp_path):
    app = _app(tmp_path, """
        import sys
        print("app ran")
        sys.exit(3)
    """)
    env = subprocess_env(str(tmp_path))
    for bad in (["--account=abc"], ["--worker_in_master_cpus=4"], ["--lang", "python"], ["--lang=java"],
                ["--log_level=loud"], ["--project=/nonexistent.xml"]):
        proc = subprocess.run([RUNCOMPSS, *bad, app], env=env, capture_output=True, text=True, timeout=30)
        assert proc.returncode == 1 and "Bad argument" in proc.stderr and "app ran" not in proc.stdout, bad
    proc = subprocess.run([RUNCOMPSS, "--lang=python", "--log_level=off", "-t", app], env=env, capture_output=True,
                          text=True, timeout=30)
    assert proc.returncode == 0 and "app ran" in proc.stdout  # the app exited 3; runcompss says 0
    assert (tmp_path / ".COMPSs" / "app.py_01").is_dir()


def test_file_in_must_name_an_existing_file(master, tmp_path):
    master(cpus=1)

    with pytest.raises(rt.StandinError, match="FILE_IN parameter path"):
        T.read_staged(str(tmp_path / "missing"))
    assert FILE_IN.key == "FILE_IN"
