# Sourced by the other scripts: make sure .venv exists with pyclm and its test tools installed.
# Works on a fresh Debian machine with python3 (3.11+); installs python3-venv if it is missing.
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
venv="$here/.venv"
stamp="$venv/.pyclm-installed"
if [ ! -x "$venv/bin/python" ]; then
    if ! python3 -m venv --help >/dev/null 2>&1 || ! python3 -c "import ensurepip" >/dev/null 2>&1; then
        echo "python3-venv is missing; installing it with apt-get" >&2
        if [ "$(id -u)" = 0 ]; then apt-get update -qq && apt-get install -y -qq python3-venv >&2
        else sudo apt-get update -qq && sudo apt-get install -y -qq python3-venv >&2; fi
    fi
    python3 -m venv "$venv"
fi
if [ ! -f "$stamp" ] || [ "$here/pyproject.toml" -nt "$stamp" ]; then
    echo "installing pyclm and its test tools into .venv (log: .venv/install.log)" >&2
    if ! { "$venv/bin/python" -m pip install --upgrade pip && "$venv/bin/python" -m pip install -e "$here[test]"; } \
        >"$venv/install.log" 2>&1; then
        tail -n 30 "$venv/install.log" >&2
        echo "installing into .venv failed (whole log: $venv/install.log)" >&2
        exit 1
    fi
    touch "$stamp"
fi
