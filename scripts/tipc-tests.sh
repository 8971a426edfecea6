#!/usr/bin/env bash
# The TIPC tests (tests/tipc/), run where they can run: inside a qemu guest whose kernel has
# TIPC (scripts/tipc-vm/run.sh; the host kernel has none).  One guest boot for all of them:
# the boot costs ~3 s and every Python start ~1 s there, so they share one pytest process.
#
# PYCLM_REQUIRE_TIPC=1 turns every skip in tests/tipc into a failure in the guest
# (tests/tipc/conftest.py): this run must never pass by skipping.
# Extra arguments go to pytest (e.g. -k NAME, -x).  Knobs of the guest: scripts/tipc-vm/run.sh.
# Exit status: pytest's (a run that collects nothing fails too); 124 when the guest ran out of
# time (PYCLM_TIPC_TIMEOUT, default 900 s); 125 when the guest could not be set up or booted.
set -euo pipefail
# shellcheck source=scripts/venv.sh  # (paths relative to the repository, where shellcheck runs)
source "$(dirname "$0")/venv.sh"
cd "$here"

# Compile on the host what the guest would otherwise compile on every run, ~15x slower under
# emulation: pyclm's bytecode, and the assertion-rewritten bytecode pytest makes of the test
# modules, conftests and plugins (pytest rewrites every module of hypothesis, anyio and
# pytest-asyncio).  Collecting the tests imports all of that and leaves the caches in the usual
# __pycache__ directories (ignored by git), even where PYTHONDONTWRITEBYTECODE is set, as it is
# on our CI machines; the guest then only reads them.  Costs ~1.5 s here, saves ~20 s there.
echo "compiling bytecode for the guest" >&2
env -u PYTHONDONTWRITEBYTECODE "$venv/bin/python" -m compileall -q src
env -u PYTHONDONTWRITEBYTECODE "$venv/bin/python" -m pytest -q -p no:cacheprovider --collect-only tests/tipc/ \
    >/dev/null || true # a collection error shows up again, with its message, in the guest

# -p no:cacheprovider: nothing to remember between guest runs.
set +e
PYCLM_REQUIRE_TIPC=1 bash scripts/tipc-vm/run.sh \
    "$venv/bin/python" -m pytest -q -p no:cacheprovider tests/tipc/ "$@"
code=$?
set -e
if [ "$code" = 5 ]; then echo "pytest collected no TIPC tests: failing" >&2; exit 1; fi
exit "$code"
