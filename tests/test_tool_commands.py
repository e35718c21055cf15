"""The model-tool subcommands are wired into the CLI without importing TensorFlow or matplotlib."""
import subprocess
import sys

from compss_infer.cli import COMMANDS, build_parser


def test_subcommands_registered():
    assert {"freeze", "inspect", "optimize", "report"} <= set(COMMANDS)
    parser = build_parser()
    args = parser.parse_args(["freeze", "m.keras", "--output", "m.pb", "--batch", "4"])
    assert (args.src, args.output, args.batch, args.input_name, args.output_name) == ("m.keras", "m.pb", "4", None, None)  # Keras: images/probs
    assert parser.parse_args(["run", "--report"]).__dict__["run.report"] is True


def test_help_and_imports_stay_light():
    code = ("import sys\nfrom compss_infer import cli\n"
            "for cmd in ('freeze', 'inspect', 'optimize', 'report'):\n"
            "    try:\n        cli.main([cmd, '--help'])\n    except SystemExit: pass\n"
            "import compss_infer.model.freeze, compss_infer.model.inspection, compss_infer.model.optimize, compss_infer.run.report, compss_infer.model.verify\n"
            "assert 'tensorflow' not in sys.modules, 'tensorflow imported'\n"
            "assert 'matplotlib' not in sys.modules, 'matplotlib imported'\n")
    subprocess.run([sys.executable, "-c", code], check=True, capture_output=True)
