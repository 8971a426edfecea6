"""``pyclm node`` processes in network namespaces on a bridge: partitions, one-way and random loss.

Each node runs in its own namespace of a :class:`netns.Lab` (created and removed by the
test; the bridge lives in the lab's hub namespace, nothing changes in the root namespace),
over UDP multicast with a cluster key.  Needs root; CI runs as root.  Every wait is bounded.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from _procs import NodeProcesses, cluster_args
from netns import Lab

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: network namespaces, veth, a bridge and nftables (CI runs as root)"
)

SUSPECT = 1.0
ALL = [1, 2, 3, 4, 5]


@pytest.fixture
def cluster(tmp_path: Path) -> Iterator[tuple[Lab, NodeProcesses]]:
    port = random.randrange(20000, 60000)  # each namespace has its own ports: no collision with others
    common = cluster_args(tmp_path, nodes="1-5", multicast=f"239.255.66.1:{port}", suspect=SUSPECT)
    with Lab(5) as lab, NodeProcesses(tmp_path, common) as nodes:
        for i in ALL:
            nodes.start(i, "--interface", lab.address(i), prefix=lab.exec_prefix(i))
        nodes.wait_for("one primary view of all five", lambda: nodes.agree(ALL, ALL), 60)
        yield lab, nodes


def _not_primary(nodes: NodeProcesses, node_ids: list[int]) -> bool:
    return all(nodes.nodes[n].state()[2] is None for n in node_ids)


def test_partition_and_heal(cluster: tuple[Lab, NodeProcesses]) -> None:
    lab, nodes = cluster
    lab.partition([[1, 2, 3], [4, 5]])
    nodes.wait_for("the majority's primary view", lambda: nodes.agree([1, 2, 3], [1, 2, 3]), 30)
    nodes.wait_for("the minority without a primary", lambda: _not_primary(nodes, [4, 5]), 30)
    lab.heal()
    nodes.wait_for("all five after the heal", lambda: nodes.agree(ALL, ALL), 30)


def test_a_node_whose_link_goes_down(cluster: tuple[Lab, NodeProcesses]) -> None:
    lab, nodes = cluster
    lab.link_down(2)
    nodes.wait_for("the view without 2", lambda: nodes.agree([1, 3, 4, 5], [1, 3, 4, 5]), 30)
    nodes.wait_for("2 not primary", lambda: _not_primary(nodes, [2]), 30)
    lab.link_up(2)
    nodes.wait_for("all five again", lambda: nodes.agree(ALL, ALL), 30)


def test_one_way_loss_splits_the_pair(cluster: tuple[Lab, NodeProcesses]) -> None:
    """3 stops hearing 1 while 1 still hears 3: a view needs full connectivity, so one of them goes."""
    lab, nodes = cluster
    lab.drop_one_way(1, 3)

    def four_without_1_or_3() -> bool:
        for gone in (1, 3):
            rest = [n for n in ALL if n != gone]
            if nodes.agree(rest, rest) and nodes.nodes[gone].state()[2] is None:
                return True
        return False

    nodes.wait_for("a primary of four without 1 or 3", four_without_1_or_3, 30)
    lab.clear_faults()
    nodes.wait_for("all five again", lambda: nodes.agree(ALL, ALL), 30)


def test_random_loss_keeps_the_view(cluster: tuple[Lab, NodeProcesses]) -> None:
    """10 % loss on the bridge for 5 s: ten heartbeats per suspect timeout, so nobody is suspected."""
    lab, nodes = cluster
    before = {n: len(nodes.nodes[n].records) for n in ALL}
    lab.random_loss(10)
    time.sleep(5)  # the fault's duration, not a wait for a condition
    lab.clear_faults()
    nodes.wait_for("all five", lambda: nodes.agree(ALL, ALL), 30)
    views = sum(1 for n in ALL for r in nodes.nodes[n].records[before[n] :] if r["event"] == "view")
    assert views == 0, f"{views} view changes under 10% loss; {nodes.describe()}"


def test_ipv6_multicast(tmp_path: Path) -> None:
    group = f"[ff15::77:{random.randrange(1, 0xFFFF):x}]:{random.randrange(20000, 60000)}"
    common = cluster_args(tmp_path, nodes="1-3", multicast=group, suspect=1.0)
    with Lab(3) as lab, NodeProcesses(tmp_path, common) as nodes:
        for i in (1, 2, 3):
            nodes.start(i, "--interface", lab.address6(i), prefix=lab.exec_prefix(i))
        nodes.wait_for("one primary view of three over IPv6", lambda: nodes.agree([1, 2, 3], [1, 2, 3]), 60)
