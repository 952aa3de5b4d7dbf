#!/usr/bin/env bash
# Run every benchmark and print its markdown tables (paste the output into bench/README.md).
# Each script measures its own baseline in the same run. Budget: < 10 minutes on 2 cores.
#
#   bash bench/run_all.sh [> bench/latest.md]
set -euo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-.venv/bin/python}
start=$(date +%s)

echo "## Machine"
echo
echo "- date: $(date -u +%Y-%m-%d)"
echo "- cores (nproc): $(nproc)"
echo "- CPU: $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//' || echo unknown)"
echo "- edgepack $(git rev-parse --short HEAD 2>/dev/null || echo '?'), $($PY --version 2>&1), Vela $($PY -c 'import ethosu.vela as v; print(v.__version__)' 2>/dev/null || echo '?')"
echo

run() {  # run one script if it exists: a helper's script that has not landed is reported, not fatal
  local script=$1; shift
  echo "## ${script}"
  echo
  if [[ -f "$script" ]]; then
    local t0=$(date +%s)
    "$PY" "$script" "$@"
    echo
    echo "_${script}: $(( $(date +%s) - t0 )) s_"
  else
    echo "_${script} is not in this tree._"
  fi
  echo
}

run bench/weight_bytes.py
run bench/runtime_kernels.py
run bench/build_time.py
run bench/fold_time.py
run bench/accuracy.py
run bench/mobilenet.py
run bench/cosim.py --repeat 1

echo "_all benchmarks: $(( $(date +%s) - start )) s_"
