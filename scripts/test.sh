#!/usr/bin/env bash
# The whole test suite: ruff, mypy --strict, then pytest (creates .venv on first use).
# pytest's exit code 5 ("no tests collected") is a failure here, like any other non-zero code.
set -euo pipefail
source "$(dirname "$0")/venv.sh"
cd "$here"
echo "== ruff"
"$venv/bin/ruff" check src tests benchmarks
"$venv/bin/ruff" format --check src tests benchmarks
echo "== mypy --strict"
"$venv/bin/mypy"
echo "== pytest"
set +e
"$venv/bin/python" -m pytest "$@"
code=$?
set -e
if [ "$code" = 5 ]; then echo "pytest collected no tests: failing" >&2; exit 1; fi
exit "$code"
