"""The anyio runtime: real clusters of Nodes in one process over a MemoryNetwork.

Every event every node publishes goes through the simulator's invariant checker, so each
test also checks view agreement, view order and primary safety.  Tests wait for
conditions (bounded by ``anyio.fail_after``); they never assert on exact timing.
"""

from __future__ import annotations

import contextlib
import time
from collections.abc import AsyncIterator, Callable, Iterable, Mapping
from contextlib import AsyncExitStack, asynccontextmanager
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import pytest

from pyclm import (
    GROUP,
    Member,
    MembershipConfig,
    Node,
    PrimaryFormed,
    QuorumConfig,
    Stopped,
    TimingConfig,
    UsageError,
    ViewInstalled,
    wire,
)
from pyclm.runtime import EventsLost
from pyclm.sim.checker import InvariantChecker
from pyclm.sim.network import NetworkConditions
from pyclm.storage import FileStorage, MembershipRecord, MemoryStorage, Storage
from pyclm.transports import MemoryNetwork, MemoryTransport

pytestmark = pytest.mark.anyio

FAST = TimingConfig(heartbeat_interval=0.02, suspect_timeout=0.1)
QUICK = NetworkConditions(latency=0.001, jitter=0.0002)
LIMIT = 3.0  # seconds any one condition may take: generous, it only bounds a hang


def majority(node_ids: Iterable[int]) -> QuorumConfig:
    return QuorumConfig(policy="majority", votes={n: 1 for n in node_ids})


async def until_primary(node: Node) -> None:
    await node.wait_for(lambda: node.is_primary, timeout=LIMIT)


def members(node: Node) -> tuple[Member, ...]:
    return node.view.members if node.view is not None else ()


async def poll_until(
    condition: Callable[[], bool], what: str, nodes: Iterable[Node] = (), *, limit: float = LIMIT
) -> None:
    """Poll ``condition`` every 5 ms until it holds; after ``limit`` seconds fail, naming ``what`` and the nodes."""
    try:
        with anyio.fail_after(limit):
            while not condition():
                await anyio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"timed out waiting until {what}: {list(nodes)}") from None


class Cluster:
    """Nodes on one network; a watcher per node feeds its events to the invariant checker."""

    def __init__(
        self,
        net: MemoryNetwork,
        quorum: QuorumConfig,
        timing: TimingConfig,
        tasks: anyio.abc.TaskGroup,
        stack: AsyncExitStack,
    ) -> None:
        self.net = net
        self.quorum = quorum
        self.timing = timing
        self.checker = InvariantChecker(quorum)
        self.nodes: dict[int, Node] = {}
        self.storages: dict[int, Storage] = {}
        self._tasks = tasks
        self._stack = stack

    async def start(self, node_id: int, storage: Storage | None = None, transport: Any = None) -> Node:
        storage = storage if storage is not None else self.storages.get(node_id, MemoryStorage())
        self.storages[node_id] = storage
        config = MembershipConfig(node_id=node_id, timing=self.timing)
        node = Node(config, self.quorum, transport or self.net.endpoint(node_id), storage)
        self._tasks.start_soon(self._watch, node, node.events())
        self.nodes[node_id] = await self._stack.enter_async_context(node)
        return node

    async def _watch(self, node: Node, events: AsyncIterator[object]) -> None:
        async for event in events:
            now = anyio.current_time()
            if isinstance(event, ViewInstalled):
                self.checker.view_installed(now, node.node_id, event.view)
            elif isinstance(event, PrimaryFormed):
                self.checker.primary_formed(now, node.node_id, event.view, event.number)
            assert not isinstance(event, EventsLost), "the watcher fell behind"

    def settled(self, node_ids: Iterable[int], *, primary: bool) -> bool:
        """These nodes all installed the same view, of exactly them, and are all (non-)primary."""
        nodes = [self.nodes[n] for n in node_ids]
        views = {node.view for node in nodes}
        if len(views) != 1:
            return False
        view = views.pop()
        if view is None or view.node_ids != tuple(sorted(node.node_id for node in nodes)):
            return False
        if {node.primary_number for node in nodes} == {None}:
            return not primary
        return primary and len({node.primary_number for node in nodes}) == 1

    async def wait_until(self, condition: Callable[[], bool], what: str) -> None:
        await poll_until(condition, what, self.nodes.values())


@asynccontextmanager
async def cluster(
    node_ids: Iterable[int], *, timing: TimingConfig = FAST, start: bool = True, seed: int = 1
) -> AsyncIterator[Cluster]:
    """A cluster of ``node_ids`` with a static majority of one vote each; ``start=False``: start none yet."""
    node_ids = list(node_ids)
    async with (
        MemoryNetwork(QUICK, seed=seed) as net,
        anyio.create_task_group() as tasks,
        AsyncExitStack() as stack,
    ):
        group = Cluster(net, majority(node_ids), timing, tasks, stack)
        for node_id in node_ids if start else ():
            await group.start(node_id)
        yield group


# ---------------------------------------------------------------------- forming, partitions, merges


@pytest.mark.parametrize("size", [3, 5])
async def test_cluster_forms_one_view_and_one_primary(size: int) -> None:
    ids = list(range(1, size + 1))
    async with cluster(ids) as c:
        await c.wait_until(lambda: c.settled(ids, primary=True), f"{ids} form a primary")
        view = c.nodes[1].view
        assert view is not None
        assert view.members == tuple(sorted(Member(n.node_id, n.incarnation or 0) for n in c.nodes.values()))
        assert len(c.checker.primaries) >= 1


async def test_partition_3_2_has_a_primary_on_the_majority_side_only_and_heal_merges() -> None:
    ids = [1, 2, 3, 4, 5]
    async with cluster(ids) as c:
        await c.wait_until(lambda: c.settled(ids, primary=True), "all five form a primary")
        before = c.nodes[1].primary_number
        assert before is not None

        c.net.partition([[1, 2, 3], [4, 5]])
        await c.wait_until(
            lambda: c.settled([1, 2, 3], primary=True) and c.settled([4, 5], primary=False),
            "{1,2,3} is primary and {4,5} is not",
        )
        number = c.nodes[1].primary_number
        assert number is not None and number > before
        assert not c.nodes[4].is_primary and not c.nodes[5].is_primary

        c.net.heal()
        await c.wait_until(lambda: c.settled(ids, primary=True), "the healed five merge into one primary")
        merged = c.nodes[5].primary_number
        assert merged is not None and merged > number


# ---------------------------------------------------------------------- leaving and restarting


async def test_graceful_leave_is_seen_without_waiting_for_suspicion() -> None:
    # A longer suspect timeout than elsewhere, so that a slow test machine never suspects anyone.
    timing = TimingConfig(heartbeat_interval=0.02, suspect_timeout=0.3)
    ids = [1, 2, 3, 4]
    async with cluster(ids, timing=timing) as c:
        await c.wait_until(lambda: c.settled(ids, primary=True), "all four form a primary")
        leaver = c.nodes[4]
        member = Member(4, leaver.incarnation or 0)
        suspected = {n: c.nodes[n].counters.get("suspected", 0) for n in (1, 2, 3)}
        with c.nodes[1].events() as events:
            await leaver.leave()
            assert leaver.stopped and leaver.view is None and not leaver.is_primary
            await c.wait_until(lambda: c.settled([1, 2, 3], primary=True), "the other three continue as primary")
            with anyio.fail_after(LIMIT):
                async for event in events:
                    if isinstance(event, ViewInstalled) and 4 not in event.view:
                        assert event.left == (member,)
                        break
        # Removed by the leave message, not by the failure detectors.
        assert {n: c.nodes[n].counters.get("suspected", 0) for n in (1, 2, 3)} == suspected


async def test_restarted_node_gets_a_higher_incarnation_and_rejoins() -> None:
    ids = [1, 2, 3]
    async with cluster(ids) as c:
        await c.wait_until(lambda: c.settled(ids, primary=True), "all three form a primary")
        old = c.nodes[3]
        old_incarnation = old.incarnation
        assert old_incarnation is not None
        old.abort()  # a crash: no leave message
        await old.wait_for(lambda: old.stopped, timeout=LIMIT)

        new = await c.start(3)  # same MemoryStorage
        assert new.incarnation is not None and new.incarnation > old_incarnation
        stored = MembershipRecord.decode(c.storages[3].load()["membership"])
        assert stored is not None and stored.incarnation == new.incarnation
        await c.wait_until(
            lambda: c.settled(ids, primary=True) and Member(3, new.incarnation or 0) in members(c.nodes[1]),
            "the new life of node 3 is back in the primary",
        )


async def test_leaving_the_block_normally_sends_a_leave_and_an_exception_does_not() -> None:
    async with MemoryNetwork(QUICK) as net:
        for fail in (False, True):
            transport = RecordingTransport(net.endpoint(1), [])
            node = Node(MembershipConfig(node_id=1, timing=FAST), majority([1]), transport)
            with pytest.raises(KeyError) if fail else contextlib.nullcontext():
                async with node:
                    await until_primary(node)
                    if fail:
                        raise KeyError("the body's own error comes out unwrapped")
            assert node.stopped and transport.inner.closed
            kinds = [type(wire.decode(data)) for data, _ in transport.sent]
            assert (wire.Leave in kinds) is not fail


# ---------------------------------------------------------------------- durability before output


class RecordingStorage:
    """A Storage that logs when each write starts and ends; slow enough to show an overlap."""

    def __init__(self, log: list[tuple[str, Any]]) -> None:
        self.inner = MemoryStorage()
        self.log = log

    def load(self) -> Mapping[str, bytes]:
        return self.inner.load()

    def write(self, key: str, data: bytes) -> None:
        self.log.append(("write_start", (key, data)))
        time.sleep(0.002)  # runs in a worker thread: the event loop goes on meanwhile
        self.inner.write(key, data)
        self.log.append(("write_end", (key, data)))


class RecordingTransport:
    """A transport that logs every datagram it sends."""

    def __init__(self, inner: MemoryTransport, log: list[tuple[str, Any]]) -> None:
        self.inner = inner
        self.max_datagram = inner.max_datagram
        self.log = log
        self.sent: list[tuple[bytes, Any]] = []

    async def send(self, data: bytes, dest: Any) -> None:
        self.log.append(("send", data))
        self.sent.append((data, dest))
        await self.inner.send(data, dest)

    async def receive(self) -> tuple[bytes, Any]:
        return await self.inner.receive()

    async def aclose(self) -> None:
        await self.inner.aclose()


def check_durable_before_sent(log: list[tuple[str, Any]]) -> int:
    """No send while a write is in progress; nothing sent before the incarnation is durable;
    no proposal or ack for epoch E before a membership record with epoch >= E is durable.
    Returns how many proposals and acks were checked."""
    writing = False
    durable_epoch = -1
    checked = 0
    for what, payload in log:
        if what == "write_start":
            assert not writing
            writing = True
        elif what == "write_end":
            writing = False
            key, data = payload
            if key == "membership":
                record = MembershipRecord.decode(data)
                assert record is not None
                durable_epoch = max(durable_epoch, record.max_epoch)
        else:
            assert not writing, "a datagram was sent while a write was still in progress"
            assert durable_epoch >= 0, "a datagram was sent before the incarnation was durable"
            message = wire.decode(payload)
            if isinstance(message, wire.Propose | wire.Ack):
                assert message.view_id.epoch <= durable_epoch, f"{message} sent before its epoch was durable"
                checked += 1
    return checked


async def test_storage_writes_are_durable_before_later_datagrams() -> None:
    ids = [1, 2, 3]
    logs: dict[int, list[tuple[str, Any]]] = {n: [] for n in ids}
    async with cluster(ids, start=False) as c:
        for n in ids:
            await c.start(n, RecordingStorage(logs[n]), RecordingTransport(c.net.endpoint(n), logs[n]))
        await c.wait_until(lambda: c.settled(ids, primary=True), "all three form a primary")
        c.net.partition([[1, 2], [3]])  # one more round of proposals and acks
        await c.wait_until(lambda: c.settled([1, 2], primary=True), "{1,2} form a primary")
    checked = sum(check_durable_before_sent(logs[n]) for n in ids)
    assert checked >= 3  # at least: node 1 proposed twice, and acks came back


async def test_file_storage_runs_and_a_restart_reads_it(tmp_path: Path) -> None:
    incarnations = []
    async with MemoryNetwork(QUICK) as net:
        for _ in range(2):
            node = Node(MembershipConfig(node_id=1, timing=FAST), majority([1]), net.endpoint(1), FileStorage(tmp_path))
            async with node:
                await until_primary(node)
                incarnations.append(node.incarnation)
    assert incarnations[0] is not None and incarnations[1] is not None
    assert incarnations[1] > incarnations[0]
    record = MembershipRecord.decode(FileStorage(tmp_path).load()["membership"])
    assert record is not None and record.incarnation == incarnations[1]


# ---------------------------------------------------------------------- events and the API


async def test_events_arrive_in_order_and_end_after_stopped() -> None:
    async with MemoryNetwork(QUICK) as net:
        node = Node(MembershipConfig(node_id=1, timing=FAST), majority([1]), net.endpoint(1))
        events = node.events()  # subscribing before the start sees the first view
        async with node:
            await until_primary(node)
            await node.leave()
        with anyio.fail_after(LIMIT):
            seen = [event async for event in events]
    assert [type(e) for e in seen] == [ViewInstalled, PrimaryFormed, Stopped]
    first = seen[0]
    assert isinstance(first, ViewInstalled) and first.joined == () and first.left == ()


async def test_a_slow_subscriber_gets_an_events_lost_marker() -> None:
    async with cluster([1, 2, 3]) as c:
        with c.nodes[1].events(buffer=1) as events:
            await c.wait_until(lambda: c.settled([1, 2, 3], primary=True), "all three form a primary")
            with anyio.fail_after(LIMIT):
                marker = await anext(events)
                latest = await anext(events)
        assert isinstance(marker, EventsLost) and marker.count >= 1
        assert isinstance(latest, PrimaryFormed)


async def test_wait_for_times_out_and_fails_once_stopped() -> None:
    async with MemoryNetwork(QUICK) as net:
        node = Node(MembershipConfig(node_id=1, timing=FAST), majority([1, 2]), net.endpoint(1))
        async with node:
            with pytest.raises(TimeoutError):
                await node.wait_for(lambda: node.is_primary, timeout=0.05)  # one vote of two: never
            async with anyio.create_task_group() as tg:
                tg.start_soon(node.leave)
                with pytest.raises(UsageError, match="stopped"):
                    await until_primary(node)


async def test_a_transport_closed_under_the_node_stops_it() -> None:
    async with MemoryNetwork(QUICK) as net:
        endpoint = net.endpoint(1)
        async with Node(MembershipConfig(node_id=1, timing=FAST), majority([1]), endpoint) as node:
            await endpoint.aclose()
            await node.wait_for(lambda: node.stopped, timeout=LIMIT)
            await node.leave()  # nothing left to do: returns at once


async def test_misuse_is_reported() -> None:
    async with MemoryNetwork(QUICK, max_datagram=1400) as net:
        node = Node(MembershipConfig(node_id=1, timing=FAST), majority([1]), net.endpoint(1))
        assert node.config.max_datagram == 1400  # the transport's limit wins
        with pytest.raises(UsageError, match="async with"):
            await node.leave()
        with pytest.raises(UsageError, match="async with"):
            node.abort()
        async with node:
            pass
        with pytest.raises(UsageError, match="runs once"):
            async with node:
                pass
        with pytest.raises(UsageError, match="stopped"):
            await node.set_reachable(2, True)
        with pytest.raises(TypeError, match="Transport"):
            Node(node.config, node.quorum, object())  # type: ignore[arg-type]


async def test_group_constant_reaches_the_runtime_unchanged() -> None:
    # The core multicasts to GROUP; the runtime must hand that very object to the transport.
    async with MemoryNetwork(QUICK) as net:
        transport = RecordingTransport(net.endpoint(1), [])
        async with Node(MembershipConfig(node_id=1, timing=FAST), majority([1]), transport):
            pass
        assert any(dest is GROUP for _, dest in transport.sent)
