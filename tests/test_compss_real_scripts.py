"""What compss-infer writes for COMPSs, checked against the real COMPSs 3.3 scripts and schemas.

Every flag the project can put on a ``runcompss`` or ``enqueue_compss`` line must be one the real
launchers' parsers (``../shared/third_party/compss-3.3/scripts``) accept, in the same form (bare or
``=value``); the rendered ``project.xml``/``resources.xml`` must validate against the real XSDs.
"""
import os
import re

import pytest

from pycompss_real import COMPSS_33, requires_real

from compss_infer.run.config import build_config
from compss_infer.run.launch import (EXTRA_FLAGS, EXTRA_SWITCHES, SubmitOptions, enqueue_command,
                                     render_templates)

pytestmark = requires_real
SCRIPTS = os.path.join(COMPSS_33, "scripts")
ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
CASE = re.compile(r"^\s*([a-z_]+(?:=\*)?(?:\s*\|\s*[a-z_]+(?:=\*)?)*)\)\s*$")


def accepted(*scripts):
    """(value flags, bare flags, one-letter switches) the getopts/case parsers of these scripts take."""
    values, bare, letters = set(), set(), set()
    for rel in scripts:
        with open(os.path.join(SCRIPTS, rel), encoding="utf-8") as fh:
            text = fh.read()
        for line in text.splitlines():
            m = CASE.match(line)
            if m:
                for label in re.split(r"\s*\|\s*", m.group(1)):
                    (values.add(label[:-2]) if label.endswith("=*") else bare.add(label))
        for spec in re.findall(r"getopts :?([a-z]*)-:", text):
            letters |= set(spec)
    return values, bare, letters


RUNCOMPSS = ("user/runcompss",)
ENQUEUE = ("queues/commons/common.sh", "queues/commons/job_submission.sh", "queues/commons/submit.sh",
           "user/launch_compss", "user/runcompss")


def check(flag, parsers):
    values, bare, letters = parsers
    if re.fullmatch(r"-[a-z]", flag):
        assert flag[1] in letters, f"{flag}: not a switch of the real scripts"
    elif "=" in flag:
        name = flag[2:].split("=", 1)[0]
        assert name in values, f"{flag}: the real scripts take no --{name}=VALUE"
    else:
        assert flag[2:] in bare, f"{flag}: not a bare flag of the real scripts"


def test_every_flag_compss_infer_emits_is_one_the_real_scripts_parse(tmp_path):
    with open(os.path.join(ROOT, "scripts", "launch_runcompss.sh"), encoding="utf-8") as fh:
        script = fh.read()
    emitted = set(re.findall(r"(--[a-z_]+=)", script.split('"$RUNCOMPSS"', 1)[1].split("compss_app.py", 1)[0]))
    emitted |= set(re.findall(r"AFFINITY=\((--[a-z_]+=)", script))
    assert {"--lang=", "--pythonpath=", "--project=", "--resources=", "--cpu_affinity="} <= emitted
    runcompss = accepted(*RUNCOMPSS)
    for flag in emitted:
        check(flag + "x", runcompss)
    for switch in EXTRA_SWITCHES:
        check(switch, runcompss)
    assert "--summary" in EXTRA_SWITCHES and "summary" not in EXTRA_FLAGS  # a bare flag of runcompss
    enqueue = accepted(*ENQUEUE)
    for name in EXTRA_FLAGS:
        check(f"--{name}=x", enqueue)
    images = tmp_path / "imgs"
    images.mkdir()
    model = tmp_path / "m.pb"
    model.write_bytes(b"")
    for session, opts in [({}, SubmitOptions(nodes=3, time=30, cpus_per_node=48, sc_cfg="slurm.cfg", qos="debug")),
                          ({"device": "gpu"}, SubmitOptions(nodes=2, time=10, cpus_per_node=40, gpus_per_node=2)),
                          ({}, SubmitOptions(nodes=1, time=10, cpus_per_node=16,
                                             compss_flags=("--summary", "--log_level=debug", "--queue=q")))]:
        cfg = build_config(None, {"model": {"path": str(model)}, "session": session,
                                  "run": {"images": str(images), "engine": "compss"}}, [])
        env, argv = enqueue_command(cfg, str(tmp_path / "run.yaml"), opts, {})
        assert argv[0] == "enqueue_compss" and "--cpu_affinity=disabled" in argv
        for flag in argv[1:argv.index(next(a for a in argv if a.endswith("compss_app.py")))]:
            check(flag, enqueue)


@pytest.mark.parametrize("gpus", [0, 2])
def test_rendered_project_and_resources_validate_against_the_real_schemas(tmp_path, gpus):
    """libxml2's XSD validator (the one xmllint runs), through lxml from the dev extra: no system package."""
    from lxml import etree
    project, resources = render_templates(os.path.join(ROOT, "configs", "compss"), str(tmp_path), cpus=4, gpus=gpus,
                                          working_dir=str(tmp_path / "w"), install_dir="/opt/COMPSs/")
    for path, schema in ((project, "project_schema.xsd"), (resources, "resources_schema.xsd")):
        validator = etree.XMLSchema(etree.parse(os.path.join(COMPSS_33, "xml", schema)))
        ok = validator.validate(etree.parse(path))
        assert ok, f"{os.path.basename(path)}: {validator.error_log}"
