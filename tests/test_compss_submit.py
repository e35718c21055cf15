"""``compss-infer submit`` / scripts/submit_slurm.sh: golden enqueue_compss command lines, and refusals.

The golden files hold the exact --dry-run output with the machine's paths replaced by <SRC>, <ROOT>
and <TMP>.  Regenerate after an intended change with UPDATE_GOLDEN=1 and review the diff.
"""
import os
import subprocess
import sys

import pytest
import yaml

from compss_support import ROOT, SRC, clean_compss_env, subprocess_env  # noqa: F401 - fixture

from compss_infer.cli import main

GOLDEN = os.path.join(os.path.dirname(os.path.abspath(__file__)), "golden")
CLUSTER = os.path.join(ROOT, "configs", "cluster.yaml")


@pytest.fixture
def config(tmp_path):
    """Factory: a config in tmp_path running the demo model on the demo images, with overrides."""
    def make(name="run.yaml", **sections):
        tree = {"model": {"path": os.path.join(ROOT, "models", "digits_cnn.pb")},
                "run": {"images": os.path.join(ROOT, "images", "digits"), "output": "out.csv"}}
        for section, values in sections.items():
            tree.setdefault(section, {}).update(values)
        path = tmp_path / name
        path.write_text(yaml.safe_dump(tree))
        return str(path)
    return make


def dry_run(capsys, tmp_path, *args, stderr=None):
    capsys.readouterr()
    assert main(["submit", *args, "--dry-run"]) == 0
    out, err = capsys.readouterr()
    if stderr is not None:
        stderr.append(err)
    return out.strip().replace(str(tmp_path), "<TMP>").replace(SRC, "<SRC>").replace(ROOT, "<ROOT>")


def check_golden(name, text):
    path = os.path.join(GOLDEN, name)
    if os.environ.get("UPDATE_GOLDEN"):
        with open(path, "w") as fh:
            fh.write(text + "\n")
    with open(path) as fh:
        assert text == fh.read().rstrip("\n"), f"{name} differs (UPDATE_GOLDEN=1 to accept)"


def test_golden_cpu_cluster(capsys, tmp_path):
    check_golden("enqueue_cpu.txt", dry_run(capsys, tmp_path, CLUSTER, "--nodes", "3", "--time", "30",
                                            "--cpus-per-node", "48", "--sc-cfg", "slurm.cfg"))


def test_golden_gpu_nodes_with_qos_and_env_script(capsys, tmp_path, config):
    cfg = config(session={"device": "gpu"})
    check_golden("enqueue_gpu.txt", dry_run(capsys, tmp_path, cfg, "--nodes", "4", "--time", "60", "--qos", "debug",
                                            "--cpus-per-node", "40", "--gpus-per-node", "2", "--sc-cfg", "site.cfg",
                                            "--compss-flag=--env_script=/apps/compss-infer/env.sh"))


def test_golden_one_node_staged_model_four_threads(capsys, tmp_path, config):
    cfg = config(session={"intra_op_threads": 4}, run={"stage_model": True, "task_timeout": 600})
    check_golden("enqueue_single_node.txt", dry_run(capsys, tmp_path, cfg, "--nodes", "1", "--time", "20",
                                                    "--cpus-per-node", "16", "--sc-cfg", "slurm.cfg",
                                                    "--job-name", "digits", "--compss-flag=-t"))


def test_golden_minimal(capsys, tmp_path, config):
    err = []
    check_golden("enqueue_minimal.txt", dry_run(capsys, tmp_path, config(), "--nodes", "2", "--time", "10", stderr=err))
    assert "no --sc-cfg; enqueue_compss uses its default site cfg" in err[0]


def test_submit_slurm_sh_delegates_to_the_same_builder(capsys, tmp_path):
    args = [CLUSTER, "--nodes", "3", "--time", "30", "--cpus-per-node", "48", "--sc-cfg", "slurm.cfg"]
    proc = subprocess.run([os.path.join(ROOT, "scripts", "submit_slurm.sh"), *args, "--dry-run"],
                          env=subprocess_env(str(tmp_path), COMPSS_INFER_PYTHON=sys.executable),
                          capture_output=True, text=True, check=True)
    assert proc.stdout.strip() == dry_run(capsys, tmp_path, *args).replace("<SRC>", SRC).replace("<ROOT>", ROOT)
    assert "--account" not in proc.stdout and "--worker_in_master_cpus" not in proc.stdout


@pytest.mark.parametrize("args, needle", [
    (["--nodes", "2", "--time", "30", "--compss-flag=--account=abc"], "--account is not an enqueue_compss flag"),
    (["--nodes", "2", "--time", "30", "--compss-flag=--bogus=1"], "not an enqueue_compss/runcompss flag"),
    (["--nodes", "2", "--time", "30", "--compss-flag=--num_nodes=4"], "use --nodes"),
    (["--nodes", "1", "--time", "30"], "give --cpus-per-node"),
    (["--nodes", "0", "--time", "30"], "--nodes must be >= 1"),
])
def test_refusals(capsys, tmp_path, args, needle):
    capsys.readouterr()
    assert main(["submit", CLUSTER, *args, "--dry-run"]) == 2
    assert needle in capsys.readouterr().err


def test_gpu_without_gpus_and_too_many_threads_are_refused(capsys, config):
    assert main(["submit", config(session={"device": "gpu"}), "--nodes", "2", "--time", "5", "--dry-run"]) == 2
    assert "needs --gpus-per-node" in capsys.readouterr().err
    cfg = config(session={"intra_op_threads": 8})
    assert main(["submit", cfg, "--nodes", "2", "--time", "5", "--cpus-per-node", "4", "--dry-run"]) == 2
    assert "COMPSs would never run them" in capsys.readouterr().err
    missing = config(model={"path": "/nonexistent/model.pb"})
    assert main(["submit", missing, "--nodes", "2", "--time", "5", "--dry-run"]) == 2
    assert "model file not found" in capsys.readouterr().err
