"""Self-test of the namespace lab (``tests/netns.py``): multicast works, each fault does what it says.

Every check runs one *probe*: a small Python process in each namespace joins a multicast group,
and once all have joined, each sends ``COUNT`` datagrams tagged with its node number and counts
what it hears from the others.  The result is a matrix ``heard[(src, dst)]``.  Needs root; CI is root.
"""

from __future__ import annotations

import ipaddress
import json
import os
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from netns import Lab

pytestmark = pytest.mark.skipif(
    os.geteuid() != 0, reason="needs root: network namespaces, veth, a bridge and nftables (CI runs as root)"
)

COUNT = 20
GROUP4 = "239.77.0.1"
GROUP6 = "ff12::7701"  # link-local scope: needs the interface in sendto, like real link-scope use
PORT = 47701  # every namespace has its own port space, so a fixed port cannot collide

# Run as `python -c PROBE node family group port count`.  Prints "ready" after joining the group,
# waits for "go" on stdin, sends, then listens until quiet; prints {"src": count} as JSON.
PROBE = r"""
import json, select, socket, struct, sys, time
node, family, group, port, count = int(sys.argv[1]), sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
if family == "4":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("", port))
    # INADDR_ANY as interface: the lab's 224.0.0.0/4 route picks eth0.
    s.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, socket.inet_aton(group) + socket.inet_aton("0.0.0.0"))
    s.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 1)
    dest = (group, port)
else:
    ifindex = socket.if_nametoindex("eth0")
    s = socket.socket(socket.AF_INET6, socket.SOCK_DGRAM)
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind(("::", port))
    mreq = socket.inet_pton(socket.AF_INET6, group) + struct.pack("@I", ifindex)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, ifindex)
    s.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, 1)
    dest = (group, port, 0, ifindex)
print("ready", flush=True)
if sys.stdin.readline().strip() != "go":
    sys.exit(2)
heard = {}
def drain(until):
    while (left := until - time.monotonic()) > 0:
        if not select.select([s], [], [], left)[0]:
            return
        data = s.recv(64)
        src = int(data.split(b":")[0])
        if src != node:  # multicast loops back to the sender; not counted
            heard[src] = heard.get(src, 0) + 1
for k in range(count):
    s.sendto(b"%d:%d" % (node, k), dest)
    drain(time.monotonic() + 0.001)
end = time.monotonic() + 3.0
while time.monotonic() < end:  # listen until 0.3 s of silence, at most 3 s
    before = sum(heard.values())
    drain(min(end, time.monotonic() + 0.3))
    if sum(heard.values()) == before:
        break
print(json.dumps(heard), flush=True)
"""


def probe(lab: Lab, family: str = "4") -> dict[tuple[int, int], int]:
    """``heard[(src, dst)]``: how many of ``src``'s ``COUNT`` datagrams ``dst`` received."""
    group = GROUP4 if family == "4" else GROUP6
    procs = {
        i: subprocess.Popen(
            [*lab.exec_prefix(i), sys.executable, "-c", PROBE, str(i), family, group, str(PORT), str(COUNT)],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in lab.nodes
    }

    # Bounds every blocking read below: a killed probe closes its pipes.
    def kill_all() -> None:
        for p in procs.values():
            p.kill()

    watchdog = threading.Timer(20.0, kill_all)
    watchdog.start()
    try:
        for i, p in procs.items():
            assert p.stdout is not None
            line = p.stdout.readline()  # "ready", or EOF if the probe died (or the watchdog killed it)
            assert line.strip() == "ready", (
                f"probe in node {i} did not start: {line!r} {p.stderr.read() if p.stderr else ''}"
            )
        for p in procs.values():
            assert p.stdin is not None
            p.stdin.write("go\n")
            p.stdin.flush()
        heard: dict[tuple[int, int], int] = {}
        for dst, p in procs.items():
            out, err = p.communicate(timeout=15)
            assert p.returncode == 0, f"probe in node {dst} failed: {err}"
            for src, n in json.loads(out).items():
                heard[int(src), dst] = n
        return {(src, dst): heard.get((src, dst), 0) for src in lab.nodes for dst in lab.nodes if src != dst}
    finally:
        watchdog.cancel()
        for p in procs.values():
            if p.poll() is None:
                p.kill()
                p.wait()


def connected(lab: Lab, *, cut: set[tuple[int, int]]) -> dict[tuple[int, int], int]:
    """The matrix a probe should see when exactly the ``cut`` directions lose everything."""
    return {(s, d): 0 if (s, d) in cut else COUNT for s in lab.nodes for d in lab.nodes if s != d}


def both_ways(pairs: set[tuple[int, int]]) -> set[tuple[int, int]]:
    return pairs | {(d, s) for s, d in pairs}


@pytest.fixture(scope="module")
def shared_lab() -> Iterator[Lab]:
    with Lab(3) as lab:
        yield lab


@pytest.fixture
def lab(shared_lab: Lab) -> Iterator[Lab]:
    yield shared_lab
    shared_lab.clear_faults()


def test_multicast_reaches_every_other_node_over_ipv4_and_ipv6(lab: Lab) -> None:
    assert probe(lab, "4") == connected(lab, cut=set())
    assert probe(lab, "6") == connected(lab, cut=set())


def test_link_down_isolates_one_node_and_link_up_restores_it(lab: Lab) -> None:
    lab.link_down(2)
    assert probe(lab) == connected(lab, cut=both_ways({(2, 1), (2, 3)}))
    lab.link_up(2)
    assert probe(lab) == connected(lab, cut=set())
    assert probe(lab, "6") == connected(lab, cut=set())  # link-down kept the IPv6 addresses usable


def test_partition_splits_and_heal_restores(lab: Lab) -> None:
    lab.partition([[1, 2], [3]])
    assert probe(lab) == connected(lab, cut=both_ways({(1, 3), (2, 3)}))
    lab.heal()
    assert probe(lab) == connected(lab, cut=set())


def test_a_node_in_no_group_is_cut_off_from_everyone(lab: Lab) -> None:
    lab.partition([[1, 3]])
    assert probe(lab) == connected(lab, cut=both_ways({(2, 1), (2, 3)}))


def test_one_way_drop_is_one_way(lab: Lab) -> None:
    lab.drop_one_way(1, 3)
    assert probe(lab, "4") == connected(lab, cut={(1, 3)})
    assert probe(lab, "6") == connected(lab, cut={(1, 3)})


def test_random_loss_of_100_percent_drops_everything_and_0_nothing(lab: Lab) -> None:
    lab.random_loss(100)
    assert probe(lab) == connected(lab, cut=both_ways({(1, 2), (1, 3), (2, 3)}))
    lab.random_loss(0)
    assert probe(lab) == connected(lab, cut=set())


def test_clear_faults_removes_every_kind_of_fault(lab: Lab) -> None:
    lab.link_down(1)
    lab.partition([[1], [2, 3]])
    lab.drop_one_way(2, 3)
    lab.random_loss(50)
    lab.clear_faults()
    assert probe(lab) == connected(lab, cut=set())


def _exists(namespaces: list[str]) -> list[str]:
    return [ns for ns in namespaces if Path("/run/netns", ns).exists()]


def test_every_namespace_is_gone_after_the_lab_closes() -> None:
    with Lab(2) as lab:
        names = lab.namespaces()
        assert _exists(names) == names
    assert _exists(names) == []


class _Boom(Exception):
    pass


def test_every_namespace_is_gone_when_the_body_raises() -> None:
    names: list[str] = []
    with pytest.raises(_Boom), Lab(2) as lab:
        names = lab.namespaces()
        lab.partition([[1], [2]])
        raise _Boom
    assert names
    assert _exists(names) == []


def test_names_and_addresses_are_unique_per_lab() -> None:
    a, b = Lab(4), Lab(4)  # not started: naming needs no root
    assert a.prefix != b.prefix
    assert len({a.address(i) for i in a.nodes}) == 4
    assert a.subnet.subnet_of(ipaddress.IPv4Network("10.64.0.0/10"))
    assert a.exec_prefix(2)[-1] == a.namespace(2) == f"{a.prefix}-n2"
    with pytest.raises(ValueError, match="not in this lab"):
        a.address(5)


def test_lab_setup_is_fast() -> None:
    start = time.monotonic()
    with Lab(8):
        pass
    assert time.monotonic() - start < 5
