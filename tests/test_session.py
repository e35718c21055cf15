"""Session options reach TensorFlow's ConfigProto; threads follow COMPSs; GPU requests fail clearly."""
import io

import pytest

from compss_infer.core.specs import SessionSpec
from compss_infer.core.errors import ConfigError
from compss_infer.run.progress import Progress
from compss_infer.model.session import available_cpus, check_device, config_proto, import_tf, resolve_threads

tf = import_tf()


def test_config_proto_fields():
    cfg = config_proto(SessionSpec(opt_level="L0", jit=True), inter=2, intra=3)
    assert cfg.inter_op_parallelism_threads == 2 and cfg.intra_op_parallelism_threads == 3
    opts = cfg.graph_options.optimizer_options
    assert opts.opt_level == tf.compat.v1.OptimizerOptions.L0
    assert opts.global_jit_level == tf.compat.v1.OptimizerOptions.ON_1
    assert cfg.device_count["GPU"] == 0 and cfg.allow_soft_placement
    default = config_proto(SessionSpec(), 1, 1).graph_options.optimizer_options
    assert default.opt_level == tf.compat.v1.OptimizerOptions.L1
    assert default.global_jit_level == tf.compat.v1.OptimizerOptions.OFF
    gpu = config_proto(SessionSpec(device="gpu"), 1, 1)
    assert gpu.gpu_options.allow_growth and "GPU" not in gpu.device_count


def test_threads_config_then_compss_then_share(monkeypatch):
    monkeypatch.delenv("COMPSS_NUM_THREADS", raising=False)
    assert resolve_threads(SessionSpec(), default_intra=3) == (1, 3)
    assert resolve_threads(SessionSpec(), default_intra=None) == (1, available_cpus())
    monkeypatch.setenv("COMPSS_NUM_THREADS", "4")  # a COMPSs task with 4 computing units
    assert resolve_threads(SessionSpec(), default_intra=1) == (1, 4)
    assert resolve_threads(SessionSpec(intra_op_threads=2, inter_op_threads=-1), default_intra=1) == (-1, 2)


def test_gpu_request_without_gpu_is_a_clear_error():
    if tf.config.list_physical_devices("GPU"):
        assert check_device(SessionSpec(device="gpu")).startswith("gpu")
        return
    with pytest.raises(ConfigError, match="session.device=gpu but TensorFlow sees no GPU"):
        check_device(SessionSpec(device="gpu"))
    assert check_device(SessionSpec()) == "cpu"


def test_progress_lines_when_not_a_terminal():
    out = io.StringIO()
    p = Progress(total=10, enabled=True, stream=out, every=0.0)
    p.update(4, failed=1)
    p.update(6)
    p.close()
    lines = out.getvalue().splitlines()
    assert lines[0].startswith("compss-infer: 4/10 images (40.0%)") and "1 failed" in lines[0]
    assert lines[-1].startswith("compss-infer: 10/10 images (100.0%)")
    quiet = io.StringIO()
    q = Progress(total=10, enabled=False, stream=quiet, every=0.0)
    q.update(10)
    q.close()
    assert quiet.getvalue() == ""


def test_inference_import_skips_keras_but_keras_stays_usable():
    import subprocess
    import sys
    code = ("import sys\nfrom compss_infer.model.session import import_tf\ntf = import_tf()\n"
            "assert 'keras.src' not in sys.modules and 'sklearn' not in sys.modules, 'keras imported'\n"
            "assert sys.modules.get('keras', 0) is not None\n"
            "layer = tf.keras.layers.Dense(2)\nprint(type(layer).__name__)\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr[-2000:]
    assert out.stdout.strip() == "Dense"
