"""The README's commands and its Python example stay true."""

from __future__ import annotations

import os
import random
import signal
import subprocess
from pathlib import Path

from _doc_examples import run_example
from _procs import free_udp_port

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


def test_the_real_cluster_commands_run(tmp_path: Path) -> None:
    """The "try a real cluster" block, run by bash: three nodes over loopback multicast, then status.

    Only the paths (to a temporary directory) and the group (a random one, so that parallel
    runs on one machine do not meet) are changed; the three nodes are ended afterwards.
    """
    text = README.read_text(encoding="utf-8")
    section = text.split("## Try a real cluster on one machine", 1)[1]
    block = section.split("```sh\n", 1)[1].split("```", 1)[0]
    rng = random.Random()
    group = f"239.255.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}:{free_udp_port(rng=rng)}"
    assert block.count("--nodes 1-3") == 1 and block.count("/tmp/pyclm-try") >= 4
    script = block.replace("/tmp/pyclm-try", str(tmp_path)).replace("--nodes 1-3", f"--nodes 1-3 --multicast {group}")
    # The nodes are the script's jobs: ended on its way out, also when a command fails.
    script = f"set -e\ntrap 'kill $(jobs -p) 2>/dev/null; wait' EXIT\ncd {README.parent}\n{script}\n"
    proc = subprocess.Popen(
        ["bash", "-c", script], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, start_new_session=True
    )
    try:
        stdout, stderr = proc.communicate(timeout=120)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the session this test started: bash and its nodes
        proc.communicate()
        raise
    assert proc.returncode == 0, stderr
    done = subprocess.CompletedProcess(proc.args, proc.returncode, stdout, stderr)
    lines = done.stdout.splitlines()
    assert lines[0].startswith("wrote ") and "cluster.key" in lines[0]
    lines = lines[1:]  # the status
    assert lines[1].startswith("view ") and "primary #" in lines[1], done.stdout
    assert [line.split()[0] for line in lines[3:6]] == ["1", "2", "3"], done.stdout
    assert "(this node)" in lines[3] and "heard" in lines[4] and "heard" in lines[5]
    assert lines[-1] == "rejected: none"
