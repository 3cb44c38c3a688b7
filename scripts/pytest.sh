#!/usr/bin/env bash
# Run the test suite. Exit code 5 means pytest collected nothing, which only a narrow -k/-m selection
# can cause here: say so plainly instead of failing the run.
set -uo pipefail
cd "$(dirname "$0")/.."
# The slowest tests are listed at the end: the suite's time budget is watched where it is spent.
.venv/bin/pytest --durations=20 "$@"
status=$?
if [ "$status" -eq 5 ]; then
  echo "pytest: no tests matched the selection" >&2
  exit 0
fi
exit "$status"
