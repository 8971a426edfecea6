"""``pyclm node`` with ``transport = "tipc"`` in its config file: three daemons on three TIPC hosts.

Runs in the TIPC guest (scripts/tipc-tests.sh).  Each daemon is a process in its own
network namespace (a TIPC host with an eth bearer); they form one primary view over
TIPC, and a SIGTERM makes each leave and exit 0.  Python starts slowly under emulation,
so the waits are long, but bounded.
"""

from __future__ import annotations

import signal
from pathlib import Path

import pytest

from _procs import NodeProcesses
from pyclm.security import Keyring

from .test_tipc_cluster import tipc_lab

pytestmark = pytest.mark.anyio


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"


async def test_three_daemons_over_tipc(tmp_path: Path) -> None:
    key = tmp_path / "cluster.key"
    Keyring.generate(1).save(key)
    config = tmp_path / "node.toml"
    config.write_text(
        'transport = "tipc"\n'
        "nodes = [1, 2, 3]\n"
        f'key_file = "{key}"\n'
        "heartbeat_interval = 0.2\n"
        "suspect_timeout = 3.0\n"
        "lease = 0.5\n"
        'log_level = "warning"\n'
    )
    async with tipc_lab() as lab:
        with NodeProcesses(tmp_path, ["--config", str(config)]) as nodes:
            for i in lab.nodes:
                nodes.start(i, prefix=lab.exec_prefix(i))
            nodes.wait_for("one primary view of three over TIPC", lambda: nodes.agree([1, 2, 3], [1, 2, 3]), 240)
            for i in lab.nodes:
                nodes.nodes[i].signal(signal.SIGTERM)
            for i in lab.nodes:
                assert nodes.nodes[i].wait(120) == 0, nodes.nodes[i].stderr_text()
