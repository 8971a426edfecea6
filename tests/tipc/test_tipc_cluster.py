"""Three pyclm nodes over TIPC: three TIPC hosts, one Python process.

Each TIPC host is a network namespace of a :class:`netns.Lab` (a bridge in a hub
namespace, ``eth0`` in each node's), with its own TIPC identity and an Ethernet bearer
on ``eth0``.  All three :class:`pyclm.Node` objects run in this process: each transport
makes its sockets with the thread switched into its node's namespace (``setns``), and a
socket stays in the namespace it was made in.  One Python start instead of three matters
in the qemu guest, where Python runs ~15x slower.

What is checked: the three form one primary view over TIPC; garbage on the sockets
changes no view; when node 3's bearer is disabled, or node 3 crashes, TIPC's topology
service tells the others at once, and they install a view without it sooner than the
failure detector's suspect timeout would allow.  Every wait is bounded, and the lab's
namespaces are deleted at the end whatever happens.
"""

from __future__ import annotations

import contextlib
import random
import socket
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from typing import Any

import anyio
import pytest

from netns import Lab, in_namespace
from pyclm import MembershipConfig, Node, QuorumConfig, TimingConfig
from pyclm.transports import Transport
from pyclm.transports.tipc import TipcPortId, TipcTransport

HEARTBEAT = 0.1
SUSPECT = 1.5
# The new view cannot come before the lease hold of the lost node's probes runs out
# (pyclm.lease): a short lease lets the topology input show; the default is 0.8 x SUSPECT.
LEASE = 0.4
# The failure detector suspects a node a suspect timeout after its last heartbeat, which
# left at most one interval before the fault: no new view can come sooner without TIPC.
DETECTOR_AT_THE_EARLIEST = SUSPECT - HEARTBEAT
TIMING = TimingConfig(heartbeat_interval=HEARTBEAT, suspect_timeout=SUSPECT, lease=LEASE)
QUORUM = QuorumConfig(policy="ykd", votes={1: 1, 2: 1, 3: 1})
FORM_LIMIT = 60.0  # seconds to form a view in the slow guest: it only bounds a hang
CHANGE_LIMIT = 20.0
CLUSTER_ID = 4711
SERVICE_TYPE = 0x50434C4E  # not the default, so that nothing else on the host is in the group


@pytest.fixture
def anyio_backend() -> str:
    return "asyncio"  # one loop is enough here; the transport tests cover trio


async def tipc(lab: Lab, i: int, *args: str) -> None:
    """Run ``tipc ARGS`` in node ``i``'s namespace, without blocking the event loop."""
    with anyio.fail_after(30):
        await anyio.run_process([*lab.exec_prefix(i), "tipc", *args])


@contextlib.asynccontextmanager
async def primed(lab: Lab, i: int, *args: str) -> AsyncIterator[Callable[[], Awaitable[float]]]:
    """``tipc ARGS`` in node ``i``'s namespace, started but held back until the yielded
    function fires it; that returns the seconds the command took from then.

    Starting a process costs up to half a second in the guest; starting it first and then
    only exec'ing ``tipc`` makes the fault happen within milliseconds of the trigger.
    """
    script = 'read go && exec tipc "$@"'
    process = await anyio.open_process([*lab.exec_prefix(i), "sh", "-c", script, "sh", *args])
    try:

        async def fire() -> float:
            assert process.stdin is not None
            started = time.monotonic()
            await process.stdin.send(b"go\n")
            with anyio.fail_after(30):
                code = await process.wait()
            assert code == 0, f"tipc {' '.join(args)} failed ({code})"
            return time.monotonic() - started

        yield fire
    finally:
        if process.returncode is None:
            process.kill()
        await process.aclose()


def wait_for_address(lab: Lab, i: int, limit: float = 10.0) -> int:
    """Node ``i``'s TIPC node address, once TIPC has set it (~1 s after its first bearer)."""
    with in_namespace(lab.namespace(i)):
        probe = socket.socket(socket.AF_TIPC, socket.SOCK_RDM)
    with probe:
        deadline = time.monotonic() + limit
        while True:
            own = TipcPortId.from_sockaddr(probe.getsockname())
            if own is not None and own.node:
                return own.node
            if time.monotonic() > deadline:
                raise AssertionError(f"node {i} has no TIPC address after {limit} s")
            time.sleep(0.05)


@contextlib.asynccontextmanager
async def tipc_lab() -> AsyncIterator[Lab]:
    """Three TIPC hosts on one bridge, every one with its own identity and an eth bearer."""
    with Lab(3) as lab:
        for i in lab.nodes:
            await tipc(lab, i, "node", "set", "clusterid", str(CLUSTER_ID))  # before the identity
            await tipc(lab, i, "node", "set", "identity", f"{lab.prefix}n{i}")
            await tipc(lab, i, "bearer", "enable", "media", "eth", "device", "eth0")
        for i in lab.nodes:
            wait_for_address(lab, i)
        yield lab


async def until(condition: Callable[[], bool], what: str, nodes: list[Node], limit: float) -> float:
    """Poll ``condition`` every 5 ms; return how long it took; fail after ``limit`` seconds."""
    started = time.monotonic()
    try:
        with anyio.fail_after(limit):
            while not condition():
                await anyio.sleep(0.005)
    except TimeoutError:
        states = [(n.node_id, n.view, n.is_primary) for n in nodes]
        raise AssertionError(f"timed out after {limit} s waiting until {what}: {states}") from None
    return time.monotonic() - started


def primary_of(nodes: list[Node], members: set[int]) -> Callable[[], bool]:
    """True once every node in ``nodes`` is in one primary view of exactly ``members``."""

    def check() -> bool:
        views = {n.view for n in nodes}
        if len(views) != 1 or not all(n.is_primary for n in nodes):
            return False
        view = views.pop()
        return view is not None and {m.node_id for m in view.members} == members

    return check


def dropped(node: Node) -> int:
    return sum(count for name, count in node.counters.items() if name.startswith("rx_dropped_"))


class WithoutTopology:
    """A TIPC transport without ``reachability()``: its Node has only its failure detector."""

    def __init__(self, inner: TipcTransport) -> None:
        self.inner = inner
        self.max_datagram = inner.max_datagram
        self.address = inner.address

    async def send(self, data: bytes, dest: Any) -> None:
        await self.inner.send(data, dest)

    async def receive(self) -> tuple[bytes, Any]:
        return await self.inner.receive()

    async def aclose(self) -> None:
        await self.inner.aclose()


async def start_cluster(
    lab: Lab, stack: contextlib.AsyncExitStack, *, topology: bool = True
) -> tuple[dict[int, TipcTransport], dict[int, Node]]:
    """One entered transport and Node per lab node, the transport made in the node's namespace."""
    transports: dict[int, TipcTransport] = {}
    nodes: dict[int, Node] = {}
    for i in lab.nodes:
        with in_namespace(lab.namespace(i)):  # open() makes its sockets before it awaits
            transport = await TipcTransport.open(i, service_type=SERVICE_TYPE)
        transports[i] = await stack.enter_async_context(transport)
        config = MembershipConfig(node_id=i, timing=TIMING)
        carrier: Transport = transport if topology else WithoutTopology(transport)
        nodes[i] = await stack.enter_async_context(Node(config, QUORUM, carrier))
    everyone = list(nodes.values())
    took = await until(primary_of(everyone, {1, 2, 3}), "one primary view of 1, 2, 3", everyone, FORM_LIMIT)
    print(f"\nformed over TIPC in {took:.2f} s")
    return transports, nodes


@pytest.mark.anyio
async def test_three_tipc_hosts_form_a_view_and_lose_a_node_fast() -> None:
    async with tipc_lab() as lab, contextlib.AsyncExitStack() as stack:
        transports, nodes = await start_cluster(lab, stack)
        everyone = list(nodes.values())
        assert len({t.address.node for t in transports.values()}) == 3  # three TIPC hosts
        assert all(t.reachable_nodes == [j for j in lab.nodes if j != i] for i, t in transports.items())

        # Garbage, unicast to every node and multicast to the group, changes no view.
        view = nodes[1].view
        rng = random.Random(3)
        before = {i: (t.counters()["datagrams_in"], dropped(nodes[i])) for i, t in transports.items()}
        with in_namespace(lab.namespace(1)):
            stranger = socket.socket(socket.AF_TIPC, socket.SOCK_RDM)
        with stranger:
            for _ in range(20):
                for t in transports.values():
                    stranger.sendto(rng.randbytes(rng.randrange(1, 600)), t.address.sockaddr)
                stranger.sendto(rng.randbytes(rng.randrange(1, 600)), (1, SERVICE_TYPE, 0, 0xFFFFFFFF, 2))
            await anyio.sleep(2 * SUSPECT)
        assert all(n.view == view and n.is_primary for n in everyone)
        for i, t in transports.items():
            assert t.counters()["datagrams_in"] >= before[i][0] + 40
            assert dropped(nodes[i]) >= before[i][1] + 40

        # Node 3's bearer goes: TIPC tells 1 and 2 at once (its bindings are withdrawn).
        pair = [nodes[1], nodes[2]]
        withdrawn = transports[1].counters()["topology_withdrawn"]
        async with primed(lab, 3, "bearer", "disable", "media", "eth", "device", "eth0") as disable:
            await anyio.sleep(0.5)  # the shell is waiting for the trigger
            started = time.monotonic()
            command = await disable()
            await until(primary_of(pair, {1, 2}), "a primary view of 1 and 2", everyone, CHANGE_LIMIT)
            took = time.monotonic() - started
        print(f"bearer disable -> new primary view in {took:.3f} s (the command took {command:.3f} s)")
        assert took < DETECTOR_AT_THE_EARLIEST, f"the view change took {took:.3f} s: not faster than the detector"
        assert transports[1].counters()["topology_withdrawn"] > withdrawn
        assert transports[1].reachable_nodes == [2]
        assert transports[1].counters()["topology_node_down"] >= 1
        assert transports[3].reachable_nodes == []  # and node 3 knows it is alone
        await until(lambda: not nodes[3].is_primary, "node 3 not primary", everyone, CHANGE_LIMIT)

        # Back: the bearer returns, the bindings are published again, the three merge.
        await tipc(lab, 3, "bearer", "enable", "media", "eth", "device", "eth0")
        took = await until(primary_of(everyone, {1, 2, 3}), "1, 2, 3 again", everyone, FORM_LIMIT)
        print(f"bearer enable -> merged view in {took:.2f} s")

        # Node 3 crashes (no leave message): its sockets close, its binding goes at once.
        started = time.monotonic()
        nodes[3].abort()
        await until(primary_of(pair, {1, 2}), "a primary view of 1 and 2", pair, CHANGE_LIMIT)
        took = time.monotonic() - started
        print(f"crash of node 3 -> new primary view in {took:.3f} s")
        assert took < DETECTOR_AT_THE_EARLIEST, f"the view change took {took:.3f} s: not faster than the detector"
        counters = transports[1].counters()
        print("node 1's transport:", {k: v for k, v in counters.items() if v})
        assert counters["topology_node_up"] >= 3  # 2 and 3 at the start, 3 again
        assert counters["receive_error"] == counters["topology_error"] == 0


@pytest.mark.anyio
async def test_without_the_topology_input_a_crash_takes_the_suspect_timeout() -> None:
    """The control: the same crash, the Nodes blind to TIPC's topology events."""
    async with tipc_lab() as lab, contextlib.AsyncExitStack() as stack:
        _, nodes = await start_cluster(lab, stack, topology=False)
        pair = [nodes[1], nodes[2]]
        started = time.monotonic()
        nodes[3].abort()
        await until(primary_of(pair, {1, 2}), "a primary view of 1 and 2", pair, CHANGE_LIMIT)
        took = time.monotonic() - started
        print(f"crash of node 3, failure detector only -> new primary view in {took:.3f} s")
        assert took >= DETECTOR_AT_THE_EARLIEST
