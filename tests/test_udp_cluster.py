"""Five ``pyclm node`` processes over UDP multicast on loopback (no root needed).

Each node sends from its own loopback address (127.0.0.1 to .5), so every datagram's
source names its node; TTL 0 keeps the group on this host.  Every wait is bounded.
"""

from __future__ import annotations

import random
import signal
import time
from pathlib import Path

from _procs import NodeProcesses, cluster_args, free_udp_port

SUSPECT = 2.0  # seconds: long, so that a graceful leave is clearly faster than detection


def _common(tmp_path: Path, seed: int) -> list[str]:
    rng = random.Random(seed)
    port = free_udp_port(rng=rng)
    group = f"239.255.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}"
    return cluster_args(tmp_path, nodes="1-5", multicast=f"{group}:{port}", suspect=SUSPECT, extra=["--ttl", "0"])


def _start(nodes: NodeProcesses, node_id: int) -> None:
    nodes.start(node_id, "--interface", f"127.0.0.{node_id}")


def test_five_processes_crash_leave_and_rejoin(tmp_path: Path) -> None:
    with NodeProcesses(tmp_path, _common(tmp_path, seed=int(time.time()))) as nodes:
        for node_id in range(1, 6):
            _start(nodes, node_id)
        nodes.wait_for("one primary view of all five", lambda: nodes.agree([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]), 60)

        # A crash: the others detect it (one suspect timeout) and install a new primary view.
        nodes.nodes[5].signal(signal.SIGKILL)
        crashed = nodes.wait_for("the primary view without 5", lambda: nodes.agree([1, 2, 3, 4], [1, 2, 3, 4]), 30)
        assert crashed >= SUSPECT * 0.9  # it took the failure detector

        # A graceful leave is seen well before the suspect timeout.
        nodes.nodes[4].signal(signal.SIGTERM)
        left = nodes.wait_for("the primary view without 4", lambda: nodes.agree([1, 2, 3], [1, 2, 3]), 30)
        assert left < SUSPECT / 2, f"the leave took {left:.2f}s"
        assert nodes.nodes[4].wait(20) == 0

        # Both come back (same state dirs: new incarnations) and rejoin.
        _start(nodes, 4)
        _start(nodes, 5)
        nodes.wait_for("all five again", lambda: nodes.agree([1, 2, 3, 4, 5], [1, 2, 3, 4, 5]), 60)
        primaries = {nodes.nodes[n].state()[2] for n in range(1, 6)}
        assert len(primaries) == 1 and primaries.pop() is not None
