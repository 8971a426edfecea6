#!/usr/bin/env bash
# The whole test suite: ruff, mypy --strict, pytest (creates .venv on first use), and last the
# TIPC tests inside a qemu guest whose kernel has TIPC (scripts/tipc-tests.sh).
# pytest's exit code 5 ("no tests collected") is a failure here, like any other non-zero code.
#
# The TIPC step runs when we are root on Linux x86-64 (it may apt-get install qemu and needs
# network namespaces in the guest) and PYCLM_SKIP_TIPC_VM is empty or unset; set
# PYCLM_SKIP_TIPC_VM=1 to leave it out (it adds ~35 s, ~45 s with the first download).  The
# plain pytest run skips tests/tipc ("runs in the TIPC guest"): the host kernel has no TIPC.
# Arguments go to the plain pytest run only.
set -euo pipefail
# shellcheck source=scripts/venv.sh  # (paths relative to the repository, where shellcheck runs)
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
if [ "$code" = 5 ]; then echo "pytest collected no tests: failing" >&2; code=1; fi

# Why the TIPC guest cannot run here, or nothing when it can.
tipc_guest_unavailable() {
    if [ -n "${PYCLM_SKIP_TIPC_VM:-}" ]; then echo "PYCLM_SKIP_TIPC_VM is set"
    elif [ "$(uname -s)-$(uname -m)" != Linux-x86_64 ]; then echo "needs Linux x86-64, this is $(uname -s) $(uname -m)"
    elif [ "$(id -u)" != 0 ]; then echo "needs root (installs qemu, makes network namespaces in the guest)"
    fi
}
echo "== TIPC tests in a qemu guest (scripts/tipc-tests.sh)"
reason="$(tipc_guest_unavailable)"
tipc_code=0
if [ -n "$reason" ]; then
    echo "TIPC suite NOT run: $reason (tests/tipc were only skipped above)"
else
    started=$SECONDS
    bash scripts/tipc-tests.sh || tipc_code=$?
    took="$((SECONDS - started)) s"
    if [ "$tipc_code" = 0 ]; then echo "TIPC suite: ran in the guest and passed ($took)"
    else
        case "$tipc_code" in
            124) why="the guest ran out of time" ;;
            125) why="the guest could not be set up or booted" ;;
            *) why="exit status $tipc_code" ;;
        esac
        echo "TIPC suite: FAILED in the guest ($why, $took)"
    fi
fi
[ "$code" != 0 ] && exit "$code"
exit "$tipc_code"
