#!/usr/bin/env bash
# Run the 5-node simulated demo (creates .venv on first use).
set -euo pipefail
source "$(dirname "$0")/venv.sh"
exec "$venv/bin/pyclm" demo "$@"
