"""The README's commands and its Python example stay true."""

from __future__ import annotations

from pathlib import Path

from _doc_examples import run_example

README = Path(__file__).resolve().parent.parent / "README.md"


def test_the_readme_opens_with_the_two_commands() -> None:
    first = README.read_text(encoding="utf-8").split("```")[1]
    commands = [line.split("#")[0].strip() for line in first.splitlines()[1:] if line.strip()]
    assert commands == ["bash scripts/demo.sh", "bash scripts/test.sh"]
    assert "scripts/test.sh" in (README.parent / ".ci" / "run").read_text(encoding="utf-8")


def test_the_python_example_runs(tmp_path: Path) -> None:
    assert any("ViewId(epoch=" in line for line in run_example(README, "", tmp_path))


def test_the_saf_example_runs(tmp_path: Path) -> None:
    lines = run_example(README, "## The SA Forum CLM API", tmp_path)
    # The view numbers depend on how the cluster happened to form (two nodes first, or three).
    assert [line.split(": ")[1] for line in lines] == [
        "node 1 SA_CLM_NODE_NO_CHANGE",
        "node 2 SA_CLM_NODE_NO_CHANGE",
        "node 3 SA_CLM_NODE_NO_CHANGE",
        "node 3 SA_CLM_NODE_SHUTDOWN",
    ]
    first, last = (int(line.split(":")[0].split()[1]) for line in (lines[0], lines[-1]))
    assert last > first
