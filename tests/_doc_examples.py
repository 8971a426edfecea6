"""Run a Python example from the docs the way a reader would: as a script of its own."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path


def run_example(doc: Path, heading: str, tmp_path: Path) -> list[str]:
    """Run the first ```python block after ``heading`` (a regex; "" = the first block in
    ``doc``) as a script, assert it exits 0, and return its stdout lines."""
    match = re.search(heading + r".*?```python\n(.*?)```", doc.read_text(encoding="utf-8"), re.S)
    assert match is not None, f"no python block after {heading!r} in {doc.name}"
    script = tmp_path / "example.py"
    script.write_text(match.group(1), encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.splitlines()
