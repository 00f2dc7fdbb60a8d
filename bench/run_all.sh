#!/usr/bin/env bash
# Every benchmark of the project, one after the other; results go to bench/results/*.json.
# These are the figures of the README's table, never timed tests. The machine has 2 cores and is
# noisy: compare ratios measured within one run, not numbers across runs.
set -euo pipefail
cd "$(dirname "$0")/.."
PY=.venv/bin/python
run() { echo "== $*"; "$@"; }
run $PY bench/bridge_bench.py --start-stack --count 20000
run $PY bench/window_job_bench.py --sql-events 1000000 --python-events 60000
run $PY bench/dlq_format_bench.py --events 1000000 --rounds 2
run $PY bench/fuzz_contract.py --count 100000 --seed 1
run $PY bench/bearing_calibrate.py --confirm --write
run $PY bench/mqtt_durability_bench.py
for b in recovery_bench sink_guarantee_bench checkpoint_bench; do
  [[ -f bench/$b.py ]] && run $PY bench/$b.py
done
[[ -f bench/firmware/run.sh ]] && run bash bench/firmware/run.sh
echo "results in bench/results/"
