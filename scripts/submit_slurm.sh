#!/usr/bin/env bash
# Submit compss-infer to SLURM through enqueue_compss (docs/cluster.md).
#
#   scripts/submit_slurm.sh CONFIG --nodes N --time MIN [--qos Q] [--cpus-per-node C]
#                           [--gpus-per-node G] [--sc-cfg FILE] [--compss-flag=--name=value]... [--dry-run]
#
# A thin wrapper over `compss-infer submit` (one command builder); --dry-run prints the exact
# enqueue_compss command line.  COMPSS_INFER_PYTHON picks the interpreter (default: .venv/bin/python or python3).
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
if [ -n "${COMPSS_INFER_PYTHON:-}" ]; then PY=$COMPSS_INFER_PYTHON
elif [ -x "$ROOT/.venv/bin/python" ]; then PY=$ROOT/.venv/bin/python
else PY=python3; fi
PYTHONPATH="$ROOT/src${PYTHONPATH:+:$PYTHONPATH}" exec "$PY" -m compss_infer submit "$@"
