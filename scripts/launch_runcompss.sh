#!/usr/bin/env bash
# Run compss-infer under runcompss on this node (COMPSs installed; docs/cluster.md).
#
#   scripts/launch_runcompss.sh CONFIG [runcompss flags...] [-- compss-infer run flags...]
#   e.g. scripts/launch_runcompss.sh configs/cluster.yaml --log_level=info -- --output /tmp/r.csv
#
# The node is described from templates (configs/compss/project.xml, resources.xml) with
# COMPSS_INFER_CPUS CPU computing units (default: all cores) and COMPSS_INFER_GPUS GPUs (default:
# nvidia-smi's count when session.device is gpu, else 0).  The task environment
# (COMPSS_INFER_CU, COMPSS_INFER_TIME_OUT) is derived from the config and exported first.
# runcompss can exit 0 when the application failed, so this script exits with the status the
# application itself printed ("compss-infer: exit status N").
# Other knobs: RUNCOMPSS (default runcompss), COMPSS_INFER_PYTHON (default: .venv/bin/python or python3).
set -euo pipefail

usage() { sed -n '2,15p' "$0" | sed 's/^# \{0,1\}//'; exit 2; }
[ $# -ge 1 ] || usage
case "$1" in -h|--help) usage ;; esac
CONFIG=$1; shift
RC_FLAGS=(); APP_FLAGS=()
while [ $# -gt 0 ]; do
    if [ "$1" = "--" ]; then shift; APP_FLAGS=("$@"); break; fi
    RC_FLAGS+=("$1"); shift
done

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
SRC=$ROOT/src
if [ -n "${COMPSS_INFER_PYTHON:-}" ]; then PY=$COMPSS_INFER_PYTHON
elif [ -x "$ROOT/.venv/bin/python" ]; then PY=$ROOT/.venv/bin/python
else PY=python3; fi
export PYTHONPATH="$SRC${PYTHONPATH:+:$PYTHONPATH}"
RUNCOMPSS=${RUNCOMPSS:-runcompss}
command -v "$RUNCOMPSS" >/dev/null 2>&1 || {
    echo "launch_runcompss: $RUNCOMPSS not found: install or load COMPSs (docs/cluster.md)" >&2; exit 2; }

CPUS=${COMPSS_INFER_CPUS:-$(nproc)}
if [ -n "${COMPSS_INFER_GPUS:-}" ]; then GPUS=$COMPSS_INFER_GPUS
elif grep -Eqi '^[[:space:]]*device:[[:space:]]*gpu' "$CONFIG" 2>/dev/null && command -v nvidia-smi >/dev/null 2>&1; then
    GPUS=$(nvidia-smi -L 2>/dev/null | grep -c '^GPU' || true)
else GPUS=0; fi

WORK=$(mktemp -d "${TMPDIR:-/tmp}/compss-infer.XXXXXX")
# Checks the config for this node, writes project.xml/resources.xml, prints the exports.
"$PY" -m compss_infer.launch prepare --templates "$ROOT/configs/compss" --out "$WORK" \
    --cpus "$CPUS" --gpus "$GPUS" "$CONFIG" ${APP_FLAGS[@]+"${APP_FLAGS[@]}"} > "$WORK/env.sh" || {
    status=$?; rm -rf "$WORK"; exit "$status"; }
# shellcheck disable=SC1091
. "$WORK/env.sh"
echo "launch_runcompss: $CPUS CPU / $GPUS GPU computing units, COMPSS_INFER_CU=$COMPSS_INFER_CU," \
     "COMPSS_INFER_TIME_OUT=$COMPSS_INFER_TIME_OUT; generated files in $WORK" >&2

# CPU pinning off unless asked for (docs/cluster.md): each task's child would keep the CPUs of its first task.
AFFINITY=(--cpu_affinity=disabled)
for f in ${RC_FLAGS[@]+"${RC_FLAGS[@]}"}; do case "$f" in --cpu_affinity=*) AFFINITY=() ;; esac; done

set +e
"$RUNCOMPSS" --lang=python ${AFFINITY[@]+"${AFFINITY[@]}"} --pythonpath="$SRC" --project="$WORK/project.xml" --resources="$WORK/resources.xml" \
    ${RC_FLAGS[@]+"${RC_FLAGS[@]}"} "$SRC/compss_infer/compss_app.py" "$CONFIG" \
    ${APP_FLAGS[@]+"${APP_FLAGS[@]}"} 2>&1 | tee "$WORK/app.log"
rc=${PIPESTATUS[0]}
set -e
status=$(sed -n 's/^compss-infer: exit status \([0-9][0-9]*\).*/\1/p' "$WORK/app.log" | tail -n 1)
if [ -z "$status" ]; then
    [ "$rc" -ne 0 ] && status=$rc || status=3
    echo "launch_runcompss: the application reported no exit status (runcompss exit $rc): treating the run" \
         "as failed ($status); see $WORK/app.log and the COMPSs logs" >&2
    exit "$status"
fi
[ "$status" -eq 0 ] && rm -rf "$WORK"
exit "$status"
