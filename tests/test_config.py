import os

import pytest
import yaml

from compss_infer.run.config import build_config, parse_set
from compss_infer.core.errors import ConfigError


def write(path, data):
    path.write_text(yaml.safe_dump(data))
    return str(path)


def test_precedence_defaults_card_file_flags_set(tmp_path):
    (tmp_path / "m.pb").write_bytes(b"x")
    write(tmp_path / "m.yaml", {"model": {"input": "card_in:0", "output": "card_out:0"},
                                "preprocess": {"size": [10, 10], "mode": "L", "std": 255}})
    cfg_file = write(tmp_path / "c.yaml", {"model": {"path": "m.pb", "output": "file_out:0"},
                                           "preprocess": {"size": [20, 20]}, "run": {"batch_size": 4}})
    cfg = build_config(cfg_file, {"run": {"batch_size": 8}}, ["preprocess.size=[30, 40]"])
    assert cfg.model.input == "card_in:0"          # card only
    assert cfg.model.output == "file_out:0"        # file beats card
    assert cfg.preprocess.std == (255.0,)          # card
    assert cfg.preprocess.size == (30, 40)         # --set beats file
    assert cfg.run.batch_size == 8                 # flag beats file
    assert cfg.preprocess.mode == "L"
    assert cfg.session.opt_level == "L1"           # default
    assert cfg.model.card == str(tmp_path / "m.yaml")


def test_paths_resolve_against_their_source(tmp_path, monkeypatch):
    sub = tmp_path / "conf"
    sub.mkdir()
    cfg_file = write(sub / "c.yaml", {"model": {"path": "../m.pb"}, "run": {"images": "imgs"}})
    monkeypatch.chdir(tmp_path)
    cfg = build_config(cfg_file, {"run": {"output": "out.csv"}})
    assert cfg.model.path == str(tmp_path / "m.pb")
    assert cfg.run.images == str(sub / "imgs")
    assert cfg.run.output == str(tmp_path / "out.csv")


@pytest.mark.parametrize("data, needle", [
    ({"model": {"path": "m.pb"}, "run": {"bogus": 1}}, "unknown key run.bogus"),
    ({"model": {"path": "m.pb"}, "extra": {}}, "unknown section 'extra'"),
    ({"model": {"path": "m.pb"}, "run": {"workers": "many"}}, "run.workers"),
    ({"model": {"path": "m.pb"}, "run": {"workers": 0}}, "run.workers: must be >= 1"),
    ({"model": {"path": "m.pb"}, "run": {"overwrite": "yes please"}}, "run.overwrite"),
    ({"model": {"path": "m.pb"}, "preprocess": {"size": [1, 2, 3]}}, "preprocess.size"),
    ({"model": {"path": "m.pb"}, "preprocess": {"mode": "CMYK"}}, "preprocess.mode"),
    ({"model": {"path": "m.pb"}, "preprocess": {"std": 0}}, "preprocess.std"),
    ({"model": {"path": "m.pb"}, "preprocess": {"crop": 1.5}}, "preprocess.crop"),
    ({"model": {"path": "m.pb"}, "session": {"opt_level": "L2"}}, "session.opt_level"),
    ({"model": {"path": "m.pb"}, "session": {"device": "tpu"}}, "session.device"),
    ({"model": {"path": "m.pb", "feeds": [1, 2]}}, "model.feeds"),
    ({"run": {"images": "x"}}, "model.path"),
])
def test_bad_config_is_one_clear_line(tmp_path, data, needle):
    with pytest.raises(ConfigError) as err:
        build_config(write(tmp_path / "c.yaml", data))
    line = err.value.one_line()
    assert needle in line and "\n" not in line


def test_set_values_are_yaml():
    tree = parse_set(["preprocess.size=[224,224]", "preprocess.mean=127.5", "run.engine=sequential",
                      "session.jit=true", "model.feeds={keep_prob:0: 1.0}"])
    assert tree["preprocess"] == {"size": [224, 224], "mean": 127.5}
    assert tree["session"]["jit"] is True
    assert tree["model"]["feeds"] == {"keep_prob:0": 1.0}
    with pytest.raises(ConfigError, match="section.key=value"):
        parse_set(["runbatch=3"])


def test_auto_values_and_channel_lists(tmp_path):
    cfg = build_config(None, {"model": {"path": "m.pb"}, "run": {"workers": "auto", "batch_size": "auto"},
                              "preprocess": {"mean": [1, 2, 3], "std": 2, "mode": "bgr"}})
    assert cfg.run.workers is None and cfg.run.batch_size is None
    assert cfg.preprocess.mean == (1.0, 2.0, 3.0) and cfg.preprocess.std == (2.0,)
    assert cfg.preprocess.mode == "BGR"


def test_missing_and_invalid_config_files(tmp_path):
    with pytest.raises(ConfigError, match="config file not found"):
        build_config(str(tmp_path / "nope.yaml"))
    bad = tmp_path / "bad.yaml"
    bad.write_text("model: [unclosed\n")
    with pytest.raises(ConfigError, match="invalid YAML"):
        build_config(str(bad))


def test_shipped_configs_are_valid():
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    for name in sorted(os.listdir(os.path.join(root, "configs"))):
        if name.endswith(".yaml"):
            cfg = build_config(os.path.join(root, "configs", name))
            assert os.path.isfile(cfg.model.path), name
