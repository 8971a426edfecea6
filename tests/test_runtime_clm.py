"""The Node's cluster membership API (its CLM layer) on real clusters over a MemoryNetwork.

Every test runs on asyncio and trio.  Waits are bounded by ``anyio.fail_after``; the
conditions are the node's own (``wait_for``, the next tracked change), not sleeps.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable, Iterable
from contextlib import AsyncExitStack, ExitStack, asynccontextmanager
from pathlib import Path

import anyio
import anyio.to_thread
import pytest

from _doc_examples import run_example
from pyclm import (
    ChangesLost,
    ClusterNode,
    ConfigError,
    Member,
    MembershipChange,
    MembershipConfig,
    MembershipSnapshot,
    MembershipTrack,
    Node,
    TimingConfig,
)
from pyclm.clm import DEFAULT_SETTLE_TIMEOUT, track_current
from pyclm.runtime import address_text
from pyclm.transports import MemoryNetwork
from test_runtime import FAST, LIMIT, QUICK, majority

README = Path(__file__).resolve().parent.parent / "README.md"
SETTLE = 0.5  # the settle timeout of the partition tests: well above a view change at FAST timing


def names(node_ids: Iterable[int]) -> dict[int, str]:
    return {n: f"n{n}" for n in node_ids}


class Cluster:
    """Nodes with names and a settle timeout, on one network, each with its own exit."""

    def __init__(self, net: MemoryNetwork, node_ids: list[int], timing: TimingConfig, settle: float | None) -> None:
        self.net = net
        self.ids = node_ids
        self.timing = timing
        self.settle = settle
        self.nodes: dict[int, Node] = {}
        self.stacks: dict[int, AsyncExitStack] = {}

    async def start(self, node_id: int) -> Node:
        config = MembershipConfig(node_id=node_id, timing=self.timing)
        node = Node(
            config, majority(self.ids), self.net.endpoint(node_id), names=names(self.ids), settle_timeout=self.settle
        )
        stack = self.stacks[node_id] = AsyncExitStack()
        self.nodes[node_id] = await stack.enter_async_context(node)
        return node

    async def stop_all(self) -> None:
        for stack in reversed(list(self.stacks.values())):
            await stack.aclose()


@asynccontextmanager
async def cluster(
    node_ids: Iterable[int], *, timing: TimingConfig = FAST, settle: float | None = SETTLE, start: bool = True
) -> AsyncIterator[Cluster]:
    ids = list(node_ids)
    async with MemoryNetwork(QUICK, seed=1) as net:
        group = Cluster(net, ids, timing, settle)
        try:
            for node_id in ids if start else ():
                await group.start(node_id)
            yield group
        finally:
            await group.stop_all()


async def until_members(node: Node, count: int) -> None:
    await node.wait_for(lambda: node.is_member and len(node.cluster_members()) == count, timeout=LIMIT)


async def next_item(track: MembershipTrack) -> MembershipSnapshot | MembershipChange | ChangesLost:
    with anyio.fail_after(LIMIT):
        return await anext(track)


async def next_change(track: MembershipTrack) -> MembershipChange:
    item = await next_item(track)
    assert isinstance(item, MembershipChange), item
    return item


async def changes_until(track: MembershipTrack, done: Callable[[MembershipChange], bool]) -> list[MembershipChange]:
    """The changes up to and including the first for which ``done`` holds."""
    changes = [await next_change(track)]
    while not done(changes[-1]):
        changes.append(await next_change(track))
    return changes


def lives(nodes: Iterable[ClusterNode]) -> set[Member]:
    return {n.life for n in nodes}


def ids_of(nodes: Iterable[ClusterNode]) -> list[int]:
    return [n.node_id for n in nodes]


def life_of(node: Node) -> Member:
    assert node.incarnation is not None
    return Member(node.node_id, node.incarnation)


# ---------------------------------------------------------------------- agreement


@pytest.mark.anyio
@pytest.mark.parametrize("size", [3, 5])
async def test_members_report_the_same_view_number_members_and_initial_numbers(size: int) -> None:
    ids = list(range(1, size + 1))
    async with cluster(ids) as c:
        for node in c.nodes.values():
            await until_members(node, size)
        snapshots = {}
        for node_id, node in c.nodes.items():
            with node.track() as track:
                snapshot = await next_item(track)
            assert isinstance(snapshot, MembershipSnapshot)
            assert snapshot == node.membership_snapshot()
            assert (snapshot.view_number, snapshot.members, snapshot.local) == (
                node.view_number,
                node.cluster_members(),
                node.local_node(),
            )
            assert snapshot.local is not None and snapshot.local.member and snapshot.local.node_id == node_id
            snapshots[node_id] = snapshot
        first = snapshots[1]
        assert all(s.view_number == first.view_number for s in snapshots.values())
        assert all(s.members == first.members for s in snapshots.values())  # initial numbers included
        assert first.view_number == c.nodes[1].primary_number
        assert lives(first.members) == {life_of(node) for node in c.nodes.values()}
        for member in first.members:
            assert member.member and member.name == f"n{member.node_id}"
            assert member.address == str(member.node_id)  # the memory transport's address, as text
            assert member.boot_timestamp == member.incarnation
            assert 1 <= member.initial_view_number <= first.view_number
        # The same values from a thread that is not the event loop's.
        node = c.nodes[size]
        assert await anyio.to_thread.run_sync(node.cluster_members) == first.members
        assert await anyio.to_thread.run_sync(node.cluster_node, 1) == first.node(1)
        assert track_current(node.membership_snapshot()).number_of_members == size


# ---------------------------------------------------------------------- partition and heal


@pytest.mark.anyio
async def test_partition_reports_the_minority_out_after_the_settle_timeout_and_heal_joins_it() -> None:
    ids = [1, 2, 3, 4, 5]
    async with cluster(ids) as c:
        for node in c.nodes.values():
            await until_members(node, 5)
        with ExitStack() as stack:
            tracks = {n: stack.enter_context(node.track()) for n, node in c.nodes.items()}
            for track in tracks.values():
                first = await next_item(track)
                assert isinstance(first, MembershipSnapshot) and len(first.members) == 5
            before = c.nodes[1].view_number
            lost = {life_of(c.nodes[4]), life_of(c.nodes[5])}

            cut_at = anyio.current_time()
            c.net.partition([[1, 2, 3], [4, 5]])
            for n in (1, 2, 3):
                changes = await changes_until(tracks[n], lambda ch: ids_of(ch.members) == [1, 2, 3])
                assert all(ch.local.member for ch in changes), "a majority node reported itself out"
                assert set().union(*(lives(ch.left) for ch in changes)) == lost
                assert all(ch.view_number > before and not ch.joined and not ch.shutdown for ch in changes)
            after = c.nodes[1].view_number
            for n in (4, 5):
                node = c.nodes[n]
                change = await next_change(tracks[n])
                assert anyio.current_time() - cut_at >= SETTLE
                assert change.view_number == before
                assert change.members == () and not change.joined and not change.shutdown
                assert change.left == (change.local,) and change.local.life == life_of(node)
                assert not change.local.member
                assert not node.is_member and node.cluster_members() == () and node.view_number == before
                assert node.running and not node.is_primary

            c.net.heal()
            for n in ids:
                changes = await changes_until(tracks[n], lambda ch: len(ch.members) == 5)
                assert all(ch.view_number > after and ch.local.member and not ch.left for ch in changes)
                assert set().union(*(lives(ch.joined) for ch in changes)) == lost
            assert len({node.view_number for node in c.nodes.values()}) == 1


@pytest.mark.anyio
async def test_get_node_for_a_member_a_non_member_and_an_unknown_id() -> None:
    async with cluster([1, 2, 3]) as c:
        for node in c.nodes.values():
            await until_members(node, 3)
        one, three = c.nodes[1], c.nodes[3]
        with three.track() as track:
            await next_item(track)  # the snapshot
            c.net.partition([[1, 2], [3]])
            await until_members(one, 2)
            out = await next_change(track)  # node 3 reported out
        got = await one.get_node(2)
        assert got is not None and got.member and got == one.cluster_node(2) and got.life == life_of(c.nodes[2])
        assert await one.get_node(3) is None  # not a member (any more)
        assert await one.get_node(99) is None  # never heard of
        assert await three.get_node(3) == out.local and out.local is not None and not out.local.member
        assert await three.get_node(1) is None  # a node outside the membership knows only itself
        assert three.local_node() == out.local


# ---------------------------------------------------------------------- leaving and stopping


@pytest.mark.anyio
async def test_graceful_leave_is_shutdown_at_the_others_and_ends_the_leavers_tracker() -> None:
    timing = TimingConfig(heartbeat_interval=0.02, suspect_timeout=0.3)  # nobody is suspected on a slow machine
    ids = [1, 2, 3, 4]
    async with cluster(ids, timing=timing, settle=None) as c:
        for node in c.nodes.values():
            await until_members(node, 4)
        leaver = c.nodes[4]
        gone = life_of(leaver)
        with ExitStack() as stack:
            tracks = {n: stack.enter_context(node.track()) for n, node in c.nodes.items()}
            for track in tracks.values():
                assert isinstance(await next_item(track), MembershipSnapshot)
            await leaver.leave()
            last = await next_change(tracks[4])
            assert last.shutdown == (last.local,) and last.local.life == gone and not last.local.member
            assert last.members == () and not last.left
            with anyio.fail_after(LIMIT):
                assert [item async for item in tracks[4]] == []  # ended with the node
            assert not leaver.is_member and leaver.cluster_members() == ()
            for n in (1, 2, 3):
                change = await next_change(tracks[n])
                assert lives(change.shutdown) == {gone} and not change.left and not change.joined
                assert ids_of(change.members) == [1, 2, 3]
                assert all(not node.member for node in change.shutdown)


@pytest.mark.anyio
async def test_an_aborted_node_reports_itself_left_then_its_trackers_end() -> None:
    async with cluster([1, 2, 3]) as c:
        for node in c.nodes.values():
            await until_members(node, 3)
        node = c.nodes[3]
        track = node.track()
        # What a listener sees of the node at the last change: no longer running, not yet
        # stopped (a thread that sees ``stopped`` knows every listener has had that change).
        at_listeners: list[tuple[bool, bool]] = []
        node.add_membership_listener(lambda change: at_listeners.append((node.running, node.stopped)))
        node.abort()
        with anyio.fail_after(LIMIT):
            items = [item async for item in track]
        assert at_listeners == [(False, False)]
        assert len(items) == 2
        snapshot, change = items
        assert isinstance(snapshot, MembershipSnapshot) and snapshot.is_member
        assert isinstance(change, MembershipChange) and change.left == (change.local,) and not change.local.member
        assert node.stopped and not node.is_member and node.view_number == snapshot.view_number
        # Tracking a stopped node: its last state, then the end.
        with anyio.fail_after(LIMIT):
            assert [item async for item in node.track()] == [node.membership_snapshot()]


# ---------------------------------------------------------------------- slow trackers and listeners


@pytest.mark.anyio
async def test_a_slow_tracker_gets_changes_lost_with_the_count_then_the_latest_change() -> None:
    async with cluster([1, 2, 3], start=False) as c:
        one = await c.start(1)
        seen: list[MembershipChange] = []
        one.add_membership_listener(seen.append)
        with one.track(buffer=1) as track:
            await c.start(2)
            await until_members(one, 2)
            await c.start(3)
            await until_members(one, 3)
            snapshot = await next_item(track)
            marker = await next_item(track)
            latest = await next_item(track)
        assert len(seen) >= 2
        assert isinstance(snapshot, MembershipSnapshot) and snapshot.view_number == 0 and snapshot.members == ()
        assert snapshot.local is not None and snapshot.local.node_id == 1 and not snapshot.local.member
        assert marker == ChangesLost(count=len(seen) - 1)
        assert latest == seen[-1] and len(latest.members) == 3


@pytest.mark.anyio
async def test_listeners_run_in_order_after_the_accessors_and_a_raising_one_does_not_stop_the_node(
    caplog: pytest.LogCaptureFixture,
) -> None:
    async with cluster([1, 2, 3], start=False) as c:
        one = await c.start(1)
        calls: list[MembershipChange] = []
        seen: list[tuple[MembershipChange, MembershipSnapshot, int | None]] = []

        def broken(change: MembershipChange) -> None:
            calls.append(change)
            raise RuntimeError("listener bug")

        def record(change: MembershipChange) -> None:
            seen.append((change, one.membership_snapshot(), one.primary_number))

        remove_broken = one.add_membership_listener(broken)
        one.add_membership_listener(record)
        with caplog.at_level(logging.ERROR, logger="pyclm.runtime"):
            await c.start(2)
            await c.start(3)
            await until_members(one, 3)
        assert calls and calls == [change for change, _, _ in seen]
        assert "membership listener" in caplog.text and "listener bug" in caplog.text
        for change, snapshot, primary_number in seen:
            assert snapshot == MembershipSnapshot.after(change)  # the accessors already show the change
            assert primary_number == change.view_number  # the event came before the change
        assert [change.view_number for change, _, _ in seen] == sorted({ch.view_number for ch, _, _ in seen})

        remove_broken()
        await anyio.to_thread.run_sync(remove_broken)  # idempotent, from another thread too
        count = len(calls)
        c.net.partition([[1, 2], [3]])
        await until_members(one, 2)
        assert len(calls) == count
        assert ids_of(seen[-1][0].members) == [1, 2] and one.running


# ---------------------------------------------------------------------- configuration and small parts


@pytest.mark.anyio
async def test_settle_timeout_default_validation_and_the_state_before_start() -> None:
    async with MemoryNetwork(QUICK) as net:
        endpoint = net.endpoint(1)
        node = Node(MembershipConfig(node_id=1, timing=FAST), majority([1]), endpoint)
        assert node.settle_timeout == 4 * FAST.suspect_timeout
        assert Node(MembershipConfig(node_id=1), majority([1]), endpoint).settle_timeout == DEFAULT_SETTLE_TIMEOUT
        for bad in (0, -1.0, float("inf"), True):
            with pytest.raises(ConfigError, match="settle_timeout"):
                Node(MembershipConfig(node_id=1), majority([1]), endpoint, settle_timeout=bad)
        with pytest.raises(ValueError, match="buffer"):
            node.track(buffer=0)
        assert (node.view_number, node.is_member, node.cluster_members(), node.local_node()) == (0, False, (), None)
        assert await node.get_node(1) is None


def test_addresses_are_reported_as_text() -> None:
    assert address_text(None) is None
    assert address_text(7) == "7"
    assert address_text(("192.0.2.1", 5405)) == "192.0.2.1:5405"
    assert address_text(("2001:db8::1", 5405, 0, 0)) == "[2001:db8::1]:5405"


def test_the_readme_tracking_example_runs(tmp_path: Path) -> None:
    lines = run_example(README, "## Tracking the membership", tmp_path)
    assert lines[0] == "0 []"
    assert lines[-2].endswith("['alpha', 'beta', 'gamma']")
    assert lines[-1].endswith("True beta")
