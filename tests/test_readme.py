"""The README's commands and its Python example stay true."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_opens_with_the_two_commands() -> None:
    first = README.read_text(encoding="utf-8").split("```")[1]
    commands = [line.split("#")[0].strip() for line in first.splitlines()[1:] if line.strip()]
    assert commands == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    assert "scripts/test.sh" in (README.parent / ".ci" / "run").read_text(encoding="utf-8")


def test_the_python_example_runs(tmp_path: Path) -> None:
    match = re.search(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), re.S)
    assert match is not None
    script = tmp_path / "example.py"
    script.write_text(match.group(1), encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    assert "ViewId(epoch=" in done.stdout


def test_the_saf_example_runs(tmp_path: Path) -> None:
    text = README.read_text(encoding="utf-8")
    match = re.search(r"## The SA Forum CLM API.*?```python\n(.*?)```", text, re.S)
    assert match is not None
    script = tmp_path / "saf_example.py"
    script.write_text(match.group(1), encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    # The view numbers depend on how the cluster happened to form (two nodes first, or three).
    assert [line.split(": ")[1] for line in lines] == [
        "node 1 SA_CLM_NODE_NO_CHANGE",
        "node 2 SA_CLM_NODE_NO_CHANGE",
        "node 3 SA_CLM_NODE_NO_CHANGE",
        "node 3 SA_CLM_NODE_SHUTDOWN",
    ]
    first, last = (int(line.split(":")[0].split()[1]) for line in (lines[0], lines[-1]))
    assert last > first
