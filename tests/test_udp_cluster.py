"""Five ``pyclm node`` processes over UDP multicast on loopback (no root needed).

Each node sends from its own loopback address (127.0.0.1 to .5), so every datagram's
source names its node; TTL 0 keeps the group on this host.  Every wait is bounded.
"""

from __future__ import annotations

import random
import signal
import subprocess
import time
from pathlib import Path

from _procs import PYCLM, NodeProcesses, cluster_args, free_udp_port
from pyclm.security import Keyring

SUSPECT = 2.0  # seconds: long, so that a graceful leave is clearly faster than detection


def _common(tmp_path: Path, seed: int, *, nodes: str = "1-5", suspect: float = SUSPECT) -> list[str]:
    rng = random.Random(seed)
    port = free_udp_port(rng=rng)
    group = f"239.255.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}"
    return cluster_args(tmp_path, nodes=nodes, multicast=f"{group}:{port}", suspect=suspect, extra=["--ttl", "0"])


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


def test_unicast_peers_any_node_first(tmp_path: Path) -> None:
    """Unicast mode: every node lists all three (its own entry included); node 3 starts first."""
    rng = random.Random(11)
    ports = {i: free_udp_port(rng=rng) for i in (1, 2, 3)}
    peers = ",".join(f"127.0.0.1:{ports[i]}" for i in (1, 2, 3))
    common = cluster_args(tmp_path, nodes="1-3", multicast="239.255.0.1:9", suspect=1.0, extra=["--peers", peers])
    with NodeProcesses(tmp_path, common) as nodes:
        nodes.start(3, "--listen", f"127.0.0.1:{ports[3]}")
        nodes.wait_for("node 3 alone, not primary", lambda: nodes.nodes[3].state()[1] == (3,), 30)
        for i in (1, 2):
            nodes.start(i, "--listen", f"127.0.0.1:{ports[i]}")
        nodes.wait_for("one primary view of three", lambda: nodes.agree([1, 2, 3], [1, 2, 3]), 60)


def test_keys_rotate_without_a_view_change(tmp_path: Path) -> None:
    """Install key 2 everywhere, use it node by node, remove key 1: the view never changes."""
    with NodeProcesses(tmp_path, _common(tmp_path, seed=21, nodes="1-3", suspect=1.0)) as nodes:
        for node_id in (1, 2, 3):  # each with its own copy of the key file, as on separate hosts
            own = tmp_path / f"node{node_id}.key"
            Keyring.load(tmp_path / "cluster.key").save(own)
            nodes.start(node_id, "--interface", f"127.0.0.{node_id}", "--key-file", str(own))
        nodes.wait_for("one primary view of three", lambda: nodes.agree([1, 2, 3], [1, 2, 3]), 60)
        view = nodes.nodes[1].state()[0]
        new_key = tmp_path / "new.key"
        Keyring.generate(1).save(new_key)

        def key(node_id: int, *args: str) -> str:
            done = subprocess.run(
                [*PYCLM, "key", *args, "--state-dir", str(nodes.state_dir(node_id))],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert done.returncode == 0, done.stderr
            return done.stdout

        for node_id in (1, 2, 3):
            assert "keys [1, 2], sending with key 1" in key(node_id, "install", "--id", "2", str(new_key))
        for node_id in (1, 2, 3):
            assert "sending with key 2" in key(node_id, "use", "2")
            time.sleep(0.3)  # a few heartbeats with the nodes on different keys
        for node_id in (1, 2, 3):
            assert "keys [2], sending with key 2" in key(node_id, "remove", "1")
        time.sleep(1.5)  # longer than the suspect timeout: a node nobody could read would be suspected
        assert all(nodes.nodes[n].state()[0] == view for n in (1, 2, 3)), nodes.describe()
        assert all(Keyring.load(tmp_path / f"node{n}.key").ids == (2,) for n in (1, 2, 3))  # the files follow
