"""Recovery policy and the dispatch loop, with real worker processes that really crash."""


import enginetasks as T
from compss_infer.core.specs import ModelSpec, PreprocessSpec, SessionSpec
from compss_infer.core.contracts import WorkerSpec
from compss_infer.engines import make_engine
from compss_infer.run.inputs import make_plan, iter_chunks
from compss_infer.run.journal import Journal
from compss_infer.run.progress import Progress
from compss_infer.run.scheduler import Scheduler, Task, next_attempts


def test_policy_retries_whole_then_splits_down_to_single_images():
    t = Task(0, tuple("abcdefgh"))
    (again,) = next_attempts(t, "WorkerCrashed: x", max_retries=2)
    assert again.paths == t.paths and again.attempts == 1
    left, right = next_attempts(again, "WorkerCrashed: x", max_retries=2)
    assert (left.start, left.paths, right.start, right.paths) == (0, tuple("abcd"), 4, tuple("efgh"))
    assert left.split and left.attempts == 0
    a, b = next_attempts(left, "Timeout: y", max_retries=2)  # split parts split at once
    assert a.paths == tuple("ab") and b.paths == tuple("cd")
    single = Task(3, ("d",), split=True)
    r1 = next_attempts(single, "WorkerCrashed: z", 2)[0]
    r2 = next_attempts(r1, "WorkerCrashed: z", 2)[0]
    assert next_attempts(r2, "WorkerCrashed: z", 2) is None
    assert next_attempts(Task(0, ("x",)), "E: e", max_retries=0) is None


def test_poison_image_costs_only_its_own_row(tmp_path):
    folder = tmp_path / "imgs"
    folder.mkdir()
    names = [f"img{i:02d}.png" for i in range(23)]
    names[13] = "img13_poison.png"
    for n in names:
        (folder / n).write_bytes(b"x")
    journal = Journal(str(tmp_path / "out.csv"))
    journal.create()
    plan = make_plan(str(folder), None, journal.plan_path)
    journal.write_header({})
    engine = make_engine("local", workers=2)
    engine.start(T.init_ok, None)
    engine.preflight()
    spec = WorkerSpec(ModelSpec("m.pb"), PreprocessSpec(), SessionSpec())
    sched = Scheduler(engine, spec, journal, Progress(plan.count, enabled=False), T.fake_classify,
                      max_retries=1, window=4)
    try:
        stats = sched.run(iter_chunks(plan, 8))
    finally:
        engine.close()
    records = list(journal.records_in_order(plan.count))
    rows = [(r.start + j, r.class_ids[j], r.errors.get(j)) for r in records for j in range(r.count)]
    assert [i for i, _, _ in rows] == list(range(23))  # every image exactly once, in order
    failed = [(i, e) for i, _, e in rows if e]
    assert len(failed) == 1 and failed[0][0] == 13
    assert failed[0][1].startswith("TaskFailed: ") and "SIGSEGV" in failed[0][1]
    assert all(cid == len(names[i]) for i, cid, e in rows if not e)
    assert stats.images_given_up == 1 and engine.replaced >= 4
    # every failed attempt but the last (given up) was rerun, each after a crash
    assert dict(stats.retries_by_cause) == {"WorkerCrashed": stats.tasks_failed - 1}
    journal.remove()
