#!/usr/bin/env bash
# The whole test suite: the linter (ruff check, config in pyproject.toml), firmware host
# tests (CTest, plain and ASan/UBSan), then pytest
# (unit, MiniCluster and integration tests; integration tests start their own stack on
# free ports). Exit status is non-zero if any part fails.
set -uo pipefail
cd "$(dirname "$0")/.."
status=0
echo "== ruff check"
.venv/bin/ruff check . || status=1
if [[ -f esp32/test.sh ]]; then
  echo "== firmware host tests (esp32/test.sh)"
  bash esp32/test.sh || status=1
fi
echo "== pytest"
.venv/bin/python -m pytest -q --timeout=900 --durations=50 "$@"
rc=$?
# pytest exits 5 when it collected no test: that is a failure here, not a pass
[[ $rc -ne 0 ]] && status=1
exit $status
