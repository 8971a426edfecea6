"""The sans-IO core, driven by hand: a few ``Membership`` cores over a fake link, no simulator.

Like h11's tests, the link is a few lines in this file: datagrams go into a FIFO and are
delivered at the current (manual) ``now``; a blocked direction drops them.  After every
input the driver drains the core in the documented order (writes, datagrams, events,
timer), as the runtime and the simulator do.
"""

from __future__ import annotations

import itertools
import random
from collections import deque
from collections.abc import Mapping
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyclm import wire
from pyclm.config import ConnectivitySource, MembershipConfig, TimingConfig
from pyclm.core import GROUP, Membership
from pyclm.errors import UsageError
from pyclm.events import Event, PrimaryFormed, Stopped, ViewInstalled
from pyclm.ids import Member, View, ViewId
from pyclm.storage import MembershipRecord, MemoryStorage, StorageWrite
from pyclm.voting import FormPrimary, QuorumConfig, QuorumPolicy, register_policy

TIMING = TimingConfig(heartbeat_interval=0.1, suspect_timeout=0.5, settle_delay=0.005)
WALL = 1_767_225_600 * 10**9  # the wall clock (ns) of the first start in these tests
QUORUM = QuorumConfig(votes={1: 1, 2: 1, 3: 1})


def make_core(
    node_id: int,
    *,
    now: float = 0.0,
    wall: int = WALL,
    stored: dict[str, bytes] | None = None,
    external: bool = False,
    seed: int = 0,
) -> Membership:
    source = ConnectivitySource.EXTERNAL if external else ConnectivitySource.HEARTBEAT
    return Membership(
        MembershipConfig(node_id=node_id, timing=TIMING, connectivity=source),
        QUORUM,
        stored=stored or {},
        wall_clock_ns=wall,
        now=now,
        rng=random.Random(seed),
    )


class FakeLink:
    """Cores addressed by node id; zero latency; FIFO; per-direction blocking."""

    def __init__(self) -> None:
        self.now = 0.0
        self.cores: dict[int, Membership] = {}
        self.storage: dict[int, MemoryStorage] = {}
        self.events: dict[int, list[Event]] = {}
        self.sent: dict[int, list[tuple[bytes, Any]]] = {}
        self.in_flight: deque[tuple[int, int, bytes]] = deque()
        self.blocked: set[tuple[int, int]] = set()
        self.last_delivered: dict[tuple[int, int], float] = {}
        #: (node, what the datagram claims, what storage held when it was sent), for the durability test.
        self.sent_against_storage: list[tuple[int, tuple[int, int], MembershipRecord | None]] = []

    def start(
        self, node_id: int, *, wall: int = WALL, external: bool = False, quorum: QuorumConfig = QUORUM
    ) -> Membership:
        storage = self.storage.setdefault(node_id, MemoryStorage())
        core = Membership(
            MembershipConfig(
                node_id=node_id,
                timing=TIMING,
                connectivity=ConnectivitySource.EXTERNAL if external else ConnectivitySource.HEARTBEAT,
            ),
            quorum,
            stored=storage.load(),
            wall_clock_ns=wall,
            now=self.now,
            rng=random.Random(node_id),
        )
        self.cores[node_id] = core
        self.events[node_id] = []
        self.sent.setdefault(node_id, [])
        self.pump(node_id)
        return core

    def crash(self, node_id: int) -> None:
        del self.cores[node_id]

    def pump(self, node_id: int) -> None:
        core = self.cores[node_id]
        for write in core.writes_to_persist():
            self.storage[node_id].write(write.key, write.data)
        durable = MembershipRecord.decode(self.storage[node_id].records.get("membership", b""))
        for data, addr in core.datagrams_to_send():
            self.sent[node_id].append((data, addr))
            message = wire.decode(data)
            if isinstance(message, (wire.Propose, wire.Ack)):
                claim = (message.header.incarnation, message.view_id.epoch)
                self.sent_against_storage.append((node_id, claim, durable))
            targets = [n for n in sorted(self.cores) if n != node_id] if addr is GROUP else [addr]
            for dst in targets:
                if (node_id, dst) not in self.blocked:
                    self.in_flight.append((node_id, dst, data))
        while (event := core.next_event()) is not None:
            self.events[node_id].append(event)

    def deliver(self) -> None:
        budget = 100_000
        while self.in_flight:
            budget -= 1
            assert budget, "the cores keep talking at one instant"
            src, dst, data = self.in_flight.popleft()
            core = self.cores.get(dst)
            if core is None:
                continue
            core.receive_datagram(data, src, self.now)
            self.last_delivered[(src, dst)] = self.now
            self.pump(dst)

    def run_until(self, end: float) -> None:
        """Fire every timer due up to ``end``, earliest first, delivering all traffic at once."""
        self.deliver()
        while True:
            due = [(t, n) for n, core in self.cores.items() if (t := core.get_timer()) is not None]
            if not due:
                break
            deadline, node_id = min(due)
            if deadline > end:
                break
            self.now = max(self.now, deadline)
            self.cores[node_id].handle_timer(self.now)
            self.pump(node_id)
            self.deliver()
        self.now = max(self.now, end)

    def cut(self, a: int, b: int) -> None:
        self.blocked |= {(a, b), (b, a)}

    def views(self, node_id: int) -> list[View]:
        return [e.view for e in self.events[node_id] if isinstance(e, ViewInstalled)]

    def view_of(self, node_id: int) -> View | None:
        return self.cores[node_id].view


def converged(*ids: int) -> FakeLink:
    link = FakeLink()
    for node_id in ids:
        link.start(node_id)
    link.run_until(2.0)
    return link


def decoded(datagrams: list[tuple[bytes, Any]]) -> list[tuple[wire.Message | wire.Dropped, Any]]:
    return [(wire.decode(data), addr) for data, addr in datagrams]


# ------------------------------------------------------------------ start-up


def test_first_incarnation_is_the_wall_clock() -> None:
    assert make_core(1, wall=WALL).incarnation == WALL


@pytest.mark.parametrize(
    ("stored_incarnation", "wall", "expected"),
    [
        (WALL - 5, WALL, WALL),  # the clock moved on: take it
        (WALL, WALL, WALL + 1),  # same nanosecond: stored + 1
        (WALL + 10**12, WALL, WALL + 10**12 + 1),  # the clock stepped back: stored + 1
        (5, 0, 6),  # no wall clock at all
    ],
)
def test_incarnation_is_max_of_stored_plus_one_and_wall_clock(
    stored_incarnation: int, wall: int, expected: int
) -> None:
    stored = {"membership": MembershipRecord(stored_incarnation, 0, 0).encode()}
    core = make_core(1, wall=wall, stored=stored)
    assert core.incarnation == expected
    assert core.me == Member(1, expected)


def test_a_restart_with_a_clock_stepped_back_is_still_a_new_life() -> None:
    link = FakeLink()
    first = link.start(1, wall=WALL)
    link.crash(1)
    second = link.start(1, wall=WALL - 3_600 * 10**9)  # an hour earlier
    assert second.incarnation == first.incarnation + 1
    link.crash(1)
    third = link.start(1, wall=WALL - 7_200 * 10**9)
    assert third.incarnation == first.incarnation + 2


def test_the_membership_write_comes_out_before_the_first_datagram() -> None:
    core = make_core(1)
    writes = core.writes_to_persist()
    assert [w.key for w in writes] == ["membership"]
    record = MembershipRecord.decode(writes[0].data)
    assert record == MembershipRecord(core.incarnation, 0, 0)
    datagrams = core.datagrams_to_send()
    assert len(datagrams) == 1  # the first heartbeat, already waiting behind the write
    message, addr = decoded(datagrams)[0]
    assert isinstance(message, wire.Heartbeat)
    assert addr is GROUP
    assert message.header.incarnation == core.incarnation
    # No row yet: during the start-up grace the row is not published (version 0).
    assert message.row is None and message.row_version == 0
    assert core.writes_to_persist() == []  # drained


def test_incarnation_and_epochs_are_durable_before_proposals_and_acks_go_out() -> None:
    link = converged(1, 2, 3)
    link.cut(1, 3)
    link.cut(2, 3)
    link.run_until(4.0)
    link.blocked.clear()
    link.run_until(6.0)
    sent = link.sent_against_storage
    assert len({node for node, _, _ in sent}) == 3  # everyone proposed or acked something
    for node_id, (incarnation, epoch), durable in sent:
        assert durable is not None, node_id
        assert durable.incarnation == incarnation
        assert durable.max_epoch >= epoch


def test_stored_epoch_is_restored_and_never_reused() -> None:
    stored = {"membership": MembershipRecord(WALL - 1, 7, 1).encode()}
    core = make_core(1, stored=stored)
    core.writes_to_persist()
    core.datagrams_to_send()
    t = 0.0
    while core.view is None:
        deadline = core.get_timer()
        assert deadline is not None and deadline < 5.0
        t = deadline
        core.handle_timer(t)
    assert core.view == View(ViewId(8, 1), (core.me,))
    # the epoch was made durable with (before) the install
    writes = core.writes_to_persist()
    assert StorageWrite("membership", MembershipRecord(core.incarnation, 8, 1).encode()) in writes


def test_a_corrupt_membership_record_starts_from_scratch() -> None:
    core = make_core(1, stored={"membership": b"garbage"})
    assert core.incarnation == WALL


# ------------------------------------------------------------------ heartbeats and suspicion


def heartbeats(datagrams: list[tuple[bytes, Any]]) -> list[wire.Heartbeat]:
    return [m for m, _ in decoded(datagrams) if isinstance(m, wire.Heartbeat)]


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_heartbeat_timing(seed: int) -> None:
    core = make_core(1, now=10.0, seed=seed)
    core.writes_to_persist()
    core.datagrams_to_send()
    first = core.get_timer()
    assert first is not None
    assert 10.05 <= first <= 10.1  # the first tick is jittered into the second half of an interval
    early = first - 0.01
    core.handle_timer(early)  # too early: nothing happens
    assert core.datagrams_to_send() == []
    assert core.get_timer() == first
    ticks = []
    t = first
    while t < 10.45:  # stay clear of the settle deadline at 10.5
        core.handle_timer(t)
        assert len(heartbeats(core.datagrams_to_send())) == 1
        ticks.append(t)
        deadline = core.get_timer()
        assert deadline is not None
        t = deadline
    gaps = [b - a for a, b in itertools.pairwise(ticks)]
    assert gaps and all(g == pytest.approx(0.1) for g in gaps)


def test_a_late_timer_does_not_burst() -> None:
    core = make_core(1, seed=3)
    core.datagrams_to_send()
    first = core.get_timer()
    assert first is not None
    core.handle_timer(first + 0.35)  # three intervals late
    assert len(heartbeats(core.datagrams_to_send())) == 1
    deadline = core.get_timer()
    assert deadline is not None
    assert deadline == pytest.approx(first + 0.35 + 0.05)  # half an interval later, not at once


def test_two_cores_agree_on_a_view() -> None:
    link = converged(1, 2)
    view = link.view_of(1)
    assert view is not None
    assert view.node_ids == (1, 2)
    assert link.view_of(2) == view
    assert view.view_id == ViewId(1, 1)
    for node_id in (1, 2):
        assert link.cores[node_id].trusted() == [3 - node_id]
        assert PrimaryFormed(view=view, number=1, initial=(1, 1)) in link.events[node_id]
        assert link.cores[node_id].is_primary
    # every node's accepted epoch is durable
    for node_id in (1, 2):
        record = MembershipRecord.decode(link.storage[node_id].records["membership"])
        assert record is not None
        assert (record.max_epoch, record.max_coordinator) == (1, 1)


def test_suspicion_after_suspect_timeout_of_silence() -> None:
    link = converged(1, 2)
    link.cut(1, 2)
    last = link.last_delivered[(2, 1)]
    core = link.cores[1]
    suspected_at = None
    while suspected_at is None:
        deadline = core.get_timer()
        assert deadline is not None and deadline < 10.0
        link.now = deadline
        core.handle_timer(deadline)
        link.pump(1)
        link.deliver()
        if 2 not in core.trusted():
            suspected_at = deadline
    # Exactly suspect_timeout after the last datagram from it (the detector keeps deadlines).
    assert suspected_at == pytest.approx(last + TIMING.suspect_timeout)
    assert core.counters["suspected"] == 1
    # and the node moves on to a view of its own
    link.run_until(link.now + 1.0)
    view = link.view_of(1)
    assert view is not None and view.node_ids == (1,)
    assert view.view_id.epoch == 2


def test_no_suspicion_while_heartbeats_flow() -> None:
    link = converged(1, 2)
    link.run_until(10.0)
    assert link.cores[1].counters.get("suspected", 0) == 0
    assert link.views(1) == link.views(2)
    assert len(link.views(1)) == 1


def test_three_cores_partition_and_merge() -> None:
    link = converged(1, 2, 3)
    assert link.view_of(1) is not None and link.view_of(1).node_ids == (1, 2, 3)  # type: ignore[union-attr]
    link.cut(1, 3)
    link.cut(2, 3)
    link.run_until(4.0)
    one, three = link.view_of(1), link.view_of(3)
    assert one is not None and three is not None
    assert one.node_ids == (1, 2) and link.view_of(2) == one
    assert three.node_ids == (3,)
    assert link.cores[1].is_primary and not link.cores[3].is_primary
    link.blocked.clear()
    link.run_until(6.0)
    merged = link.view_of(1)
    assert merged is not None and merged.node_ids == (1, 2, 3)
    assert link.view_of(2) == merged == link.view_of(3)
    assert merged.view_id.epoch > max(one.view_id.epoch, three.view_id.epoch)


def test_a_restarted_node_shows_up_as_left_and_joined() -> None:
    link = converged(1, 2)
    old = link.cores[2].me
    link.crash(2)
    new = link.start(2, wall=WALL + 5 * 10**9).me
    assert new.incarnation > old.incarnation
    link.run_until(5.0)
    last = link.views(1)[-1]
    assert last.members == (link.cores[1].me, new)
    changes = [e for e in link.events[1] if isinstance(e, ViewInstalled) and new in e.view.members]
    assert changes[0].joined == (new,)
    assert changes[0].left == (old,)


# ------------------------------------------------------------------ proposals


def member_core() -> tuple[Membership, Member]:
    """Node 2 that has heard node 1 (incarnation 50) once: its component is {1, 2}."""
    core = make_core(2)
    core.writes_to_persist()
    core.datagrams_to_send()
    core.receive_datagram(wire.encode_heartbeat(1, 50, None, 0, 0, None), 1, 0.01)
    core.writes_to_persist()
    core.datagrams_to_send()
    return core, Member(1, 50)


def test_a_proposal_that_does_not_match_is_not_acked() -> None:
    core, one = member_core()
    stranger = Member(3, 9)
    core.receive_datagram(wire.encode_propose(1, 50, ViewId(1, 1), (one, core.me, stranger)), 1, 0.02)
    out = decoded(core.datagrams_to_send())
    assert not [m for m, _ in out if isinstance(m, wire.Ack)]
    assert core.counters["proposal_mismatch"] == 1
    assert core.writes_to_persist() == []  # nothing accepted
    # The matching proposal, same epoch, is acked: the mismatch did not burn it.
    core.receive_datagram(wire.encode_propose(1, 50, ViewId(1, 1), (one, core.me)), 1, 0.03)
    writes = core.writes_to_persist()
    assert writes == [StorageWrite("membership", MembershipRecord(core.incarnation, 1, 1, (1,)).encode())]
    acks = [(m, addr) for m, addr in decoded(core.datagrams_to_send()) if isinstance(m, wire.Ack)]
    assert len(acks) == 1
    ack, addr = acks[0]
    assert addr == 1
    assert ack.view_id == ViewId(1, 1)
    assert ack.header.sender == 2


def test_a_proposal_naming_an_old_life_is_not_acked() -> None:
    core, one = member_core()
    old_me = Member(2, core.incarnation - 1)
    core.receive_datagram(wire.encode_propose(1, 50, ViewId(1, 1), (one, old_me)), 1, 0.02)
    assert not [m for m, _ in decoded(core.datagrams_to_send()) if isinstance(m, wire.Ack)]
    assert core.counters["proposal_mismatch"] == 1


def test_a_stale_epoch_proposal_gets_a_nack() -> None:
    stored = {"membership": MembershipRecord(WALL - 1, 7, 1, (1, 3)).encode()}
    core = make_core(2, stored=stored)
    core.writes_to_persist()
    core.datagrams_to_send()
    core.receive_datagram(wire.encode_heartbeat(1, 50, None, 0, 0, None), 1, 0.01)
    core.datagrams_to_send()
    members = (Member(1, 50), core.me)
    core.receive_datagram(wire.encode_propose(1, 50, ViewId(3, 1), members), 1, 0.02)
    out = decoded(core.datagrams_to_send())
    nacks = [(m, a) for m, a in out if isinstance(m, wire.Nack)]
    assert len(nacks) == 1
    nack, addr = nacks[0]
    assert (nack.view_id, nack.max_epoch, addr) == (ViewId(3, 1), 7, 1)
    assert core.counters["proposal_stale"] == 1
    assert not [m for m, _ in out if isinstance(m, wire.Ack)]
    # A higher epoch is acked, once the lease's restart hold is over: this node was in a
    # view with node 3 before, so it may have vouched for 3 just before it stopped, and
    # this view lacks 3.
    core.receive_datagram(wire.encode_propose(1, 50, ViewId(8, 1), members), 1, 0.03)
    assert not decoded(core.datagrams_to_send())
    assert core.counters["ack_held_by_lease"] == 1
    hold_end = TIMING.lease_duration * (1 + TIMING.max_drift)
    core.handle_timer(hold_end - 0.001)
    assert not [m for m, _ in decoded(core.datagrams_to_send()) if not isinstance(m, wire.Heartbeat)]
    core.handle_timer(hold_end)
    assert [type(m) for m, _ in decoded(core.datagrams_to_send()) if not isinstance(m, wire.Heartbeat)] == [wire.Ack]
    # Then an equal epoch from another coordinator is stale too (the very id accepted is a retransmission).
    core.receive_datagram(wire.encode_propose(0, 50, ViewId(8, 0), (Member(0, 50), core.me)), 0, hold_end + 0.01)
    out = [(m, a) for m, a in decoded(core.datagrams_to_send()) if not isinstance(m, wire.Heartbeat)]
    assert len(out) == 1
    again, addr = out[0]
    assert isinstance(again, wire.Nack)
    assert (again.view_id, again.max_epoch, addr) == (ViewId(8, 0), 8, 0)
    assert core.counters["proposal_stale"] == 2


def test_coordinator_retries_above_a_nack() -> None:
    link = FakeLink()
    link.start(1)
    link.storage[2] = MemoryStorage()
    link.storage[2].write("membership", MembershipRecord(WALL - 1, 9, 1).encode())
    link.start(2)
    link.run_until(2.0)
    view = link.view_of(1)
    assert view is not None and view.node_ids == (1, 2)
    assert view.view_id.epoch == 10  # above the epoch node 2 had accepted before
    assert link.view_of(2) == view


# ------------------------------------------------------------------ hostile input


GARBAGE = [
    (b"", "rx_dropped_truncated"),
    (b"\x00" * 40, "rx_dropped_bad_magic"),
    (b"\xc1\x4d\x02" + b"\x00" * 13, "rx_dropped_bad_version"),  # a version-2 node
    (b"\xc1\x4d\x03\x63" + b"\x00" * 12, "rx_dropped_bad_type"),
    (wire.encode_leave(5, 1) + b"!", "rx_dropped_trailing_bytes"),
]


def test_garbage_is_counted_and_never_raises() -> None:
    core = make_core(1)
    core.datagrams_to_send()
    for data, counter in GARBAGE:
        core.receive_datagram(data, ("10.0.0.9", 4000), 0.01)
        assert core.counters[counter] == 1, counter
    assert core.datagrams_to_send() == []
    assert core.trusted() == []
    assert "rx" not in core.counters


def test_own_datagrams_and_impostors_are_counted() -> None:
    core = make_core(1)
    (own, _), *_ = core.datagrams_to_send()
    core.receive_datagram(own, "me", 0.01)  # multicast loopback
    assert core.counters["rx_own"] == 1
    core.receive_datagram(wire.encode_heartbeat(1, 12345, None, 0, 0, None), "other", 0.01)
    assert core.counters["rx_dropped_same_id"] == 1
    assert core.trusted() == []


def test_an_older_life_of_a_peer_is_dropped() -> None:
    core = make_core(1)
    core.receive_datagram(wire.encode_heartbeat(2, 100, None, 0, 0, None), 2, 0.01)
    core.receive_datagram(wire.encode_heartbeat(2, 99, None, 0, 0, None), 2, 0.02)
    assert core.counters["rx_dropped_stale_incarnation"] == 1
    assert core.trusted() == [2]


@st.composite
def hostile(draw: st.DrawFn) -> bytes:
    """Arbitrary bytes, or well-formed messages with arbitrary contents from nodes 1..4."""
    if draw(st.booleans()):
        return draw(st.binary(max_size=64))
    sender = draw(st.integers(1, 4))
    inc = draw(st.integers(0, 3))
    view_id = ViewId(draw(st.integers(1, 4)), draw(st.integers(1, 4)))
    members = tuple(sorted({Member(n, draw(st.integers(0, 3))) for n in draw(st.sets(st.integers(1, 4)))}))
    kind = draw(st.integers(0, 9))
    if kind == 0:
        row = wire.Row(sender, inc, draw(st.integers(0, 3)), members) if draw(st.booleans()) else None
        version = row.version if row else draw(st.integers(0, 3))
        return wire.encode_heartbeat(sender, inc, view_id, version, draw(st.integers(0, 3)), row)
    if kind == 1:
        lead = (Member(sender, inc), *(m for m in members if m.node_id > sender))
        return wire.encode_propose(sender, inc, ViewId(view_id.epoch, sender), lead)
    if kind == 2:
        since, last = draw(st.integers(0, 5)), draw(st.integers(0, 5))
        return wire.encode_ack(sender, inc, view_id, since, last, draw(st.binary(max_size=4)))
    if kind == 3:
        return wire.encode_nack(sender, inc, view_id, draw(st.integers(0, 9)))
    if kind == 4:
        entries = tuple(wire.InstallEntry(m.node_id, draw(st.integers(0, 5)), b"") for m in members)
        return wire.encode_install(sender, inc, view_id, entries)
    if kind == 5:
        return wire.encode_leave(sender, inc)
    if kind == 6:
        versions = tuple((m.node_id, m.incarnation, draw(st.integers(0, 3))) for m in members)
        return wire.encode_pull(sender, inc, draw(st.booleans()), versions)
    if kind == 7:
        rows = tuple(wire.Row(m.node_id, m.incarnation, draw(st.integers(0, 3)), members) for m in members)
        return wire.encode_rows(sender, inc, rows)
    if kind == 8:
        return wire.encode_clm(sender, inc, view_id, draw(st.binary(max_size=4)))
    return wire.encode_quorum(sender, inc, view_id, draw(st.binary(max_size=4)))


@settings(max_examples=60, derandomize=True, database=None, deadline=None)
@given(st.lists(st.tuples(hostile(), st.floats(0.0, 0.3)), max_size=25))
def test_hostile_traffic_never_raises(traffic: list[tuple[bytes, float]]) -> None:
    core = make_core(2, wall=2)  # incarnation 2: the fuzzer's incarnations 0..3 hit old, same and new lives
    now = 0.0
    for data, step in traffic:
        now += step
        core.receive_datagram(data, data[4:8] if len(data) >= 8 else b"?", now)
        deadline = core.get_timer()
        if deadline is not None and deadline <= now:
            core.handle_timer(now)
        core.writes_to_persist()
        for _, addr in core.datagrams_to_send():
            assert addr is GROUP or isinstance(addr, bytes)
        while core.next_event() is not None:
            pass
    for deadline_step in range(20):  # and the timers keep working afterwards
        deadline = core.get_timer()
        assert deadline is not None
        core.handle_timer(max(deadline, now + deadline_step * 0.1))
    view = core.view
    assert view is not None and core.me in view.members


# ------------------------------------------------------------------ leaving


def test_leave_makes_peers_drop_the_node_at_once() -> None:
    link = converged(1, 2, 3)
    epoch = link.view_of(1).view_id.epoch  # type: ignore[union-attr]
    core = link.cores[3]
    core.leave(link.now)
    out = decoded(core.datagrams_to_send())
    assert [type(m) for m, _ in out] == [wire.Leave, wire.Leave]
    assert all(addr is GROUP for _, addr in out)
    assert core.next_event() == Stopped()
    assert core.stopped and core.get_timer() is None
    with pytest.raises(UsageError, match="new incarnation"):
        core.leave(link.now)
    # Deliver the goodbye by hand.
    leave = wire.encode_leave(3, core.incarnation)
    for node_id in (1, 2):
        link.cores[node_id].receive_datagram(leave, 3, link.now)
        link.pump(node_id)
        assert link.cores[node_id].trusted() == [3 - node_id]
    left_at = link.now
    link.run_until(left_at + TIMING.suspect_timeout / 2)  # well before any timeout could fire
    view = link.view_of(1)
    assert view is not None and view.node_ids == (1, 2)
    assert view.view_id.epoch == epoch + 1
    assert link.view_of(2) == view
    assert link.cores[1].counters.get("suspected", 0) == 0
    # A stopped core ignores everything.
    core.receive_datagram(wire.encode_heartbeat(1, 1, None, 0, 0, None), 1, link.now)
    core.handle_timer(link.now + 10)
    assert core.datagrams_to_send() == [] and core.next_event() is None


def test_datagrams_from_a_departed_life_are_dropped() -> None:
    core = make_core(1)
    core.receive_datagram(wire.encode_heartbeat(2, 100, None, 0, 0, None), 2, 0.01)
    core.receive_datagram(wire.encode_leave(2, 100), 2, 0.02)
    assert core.trusted() == []
    core.receive_datagram(wire.encode_heartbeat(2, 100, None, 0, 0, None), 2, 0.03)  # delayed, after the leave
    assert core.counters["rx_dropped_departed"] == 1
    assert core.trusted() == []
    core.receive_datagram(wire.encode_heartbeat(2, 101, None, 0, 0, None), 2, 0.04)  # it came back
    assert core.trusted() == [2]


# ------------------------------------------------------------------ external connectivity


def test_set_reachable_in_external_mode() -> None:
    link = FakeLink()
    one = link.start(1, external=True)
    two = link.start(2, external=True)
    link.deliver()
    assert one.peer_address(2) == 2  # heard (2 started after 1 and greeted it) ...
    assert one.trusted() == []  # ... but nobody said 2 is reachable
    one.set_reachable(2, True, link.now)
    link.pump(1)
    link.deliver()
    assert one.trusted() == [2]
    assert two.trusted() == []
    two.set_reachable(1, True, link.now)
    link.pump(2)
    link.run_until(link.now + 0.05)  # the introductions and row changes go out within settle_delay
    assert one.trusted() == [2] and two.trusted() == [1]
    link.run_until(1.0)
    view = link.view_of(1)
    assert view is not None and view.node_ids == (1, 2)
    assert link.view_of(2) == view
    # Heartbeat silence means nothing in external mode.
    link.cut(1, 2)
    link.run_until(5.0)
    assert one.trusted() == [2]
    assert link.view_of(1) == view
    # The outside world decides.
    one.set_reachable(2, False, link.now)
    link.pump(1)
    assert one.trusted() == []
    link.run_until(6.0)
    alone = link.view_of(1)
    assert alone is not None and alone.node_ids == (1,)


@register_policy
class BareMajority(QuorumPolicy):
    """A third-party policy as written from the docs' minimum: it forms primary in a
    majority view and overrides nothing else, ``contributes`` included."""

    name = "test_bare_majority"

    def view_installed(self, view: View, states: Mapping[int, bytes], now: float) -> None:
        if 2 * self.config.votes_of(view.node_ids) > self.config.total_votes:
            self.actions.append(FormPrimary(view.view_id.epoch))


@pytest.mark.parametrize("joins_at", [1.007, 1.025, 1.05, 1.075])
def test_a_policy_that_does_not_say_whether_it_contributes_is_lease_protected(joins_at: float) -> None:
    # 2 and 3 form {2,3}; 1 joins, and {1,2,3} (coordinator 1) is installed.  1 acts as
    # primary once 2 and 3 speak in the view: their word confirms it from the time the
    # view was agreed, later than the arrival of the probe of 1 they last echoed.  That
    # is safe only if installing the view granted 1 a lease at 2 and 3.  Right then 1 is
    # cut off, and 2 and 3 learn it at once.  Before they can form {2,3}, 1 must have
    # stopped acting as primary.  (With a default of False, 1 acts on until its own
    # lease runs out, after 2 and 3 formed #3, at each of these join times.)
    quorum = QuorumConfig(policy="test_bare_majority", votes={1: 1, 2: 1, 3: 1})
    link = FakeLink()
    two = link.start(2, quorum=quorum)
    three = link.start(3, quorum=quorum)
    link.run_until(joins_at)
    assert two.is_primary and three.is_primary
    one = link.start(1, quorum=quorum)
    step = 0.001
    for _ in range(1000):
        link.run_until(link.now + step)
        if one.is_primary:
            break
    assert one.is_primary and one.view is not None and one.view.node_ids == (1, 2, 3)
    lost_at = None
    link.cut(1, 2)
    link.cut(1, 3)
    for a, b in ((2, 1), (3, 1)):  # 1 only notices by silence
        link.cores[a].set_reachable(b, False, link.now)
        link.pump(a)
    for _ in range(2000):
        link.run_until(link.now + step)
        if lost_at is None and not one.is_primary:
            lost_at = link.now
        if one.is_primary:
            # Two numbers acting at once is what the lease exists to prevent.
            for other in (two, three):
                assert other.primary_number in (None, one.primary_number), link.now
        if two.is_primary and three.is_primary and two.view is not None and two.view.node_ids == (2, 3):
            break
    assert two.is_primary and three.is_primary
    assert lost_at is not None
    held = two.counters.get("proposal_held_by_lease", 0) + three.counters.get("ack_held_by_lease", 0)
    assert held > 0


def test_set_reachable_before_the_node_was_heard() -> None:
    core = make_core(1, external=True)
    core.set_reachable(2, True, 0.0)
    assert core.trusted() == []  # its incarnation and address are still unknown
    core.receive_datagram(wire.encode_heartbeat(2, 7, None, 0, 0, None), "addr-2", 0.01)
    assert core.trusted() == [2]
    assert core.peer_address(2) == "addr-2"
    core.set_reachable(1, False, 0.02)  # about itself: ignored
    core.set_reachable(3, False, 0.02)  # unknown and unreachable: nothing to do
    assert core.trusted() == [2]


def test_set_reachable_in_heartbeat_mode() -> None:
    core = make_core(1)
    core.receive_datagram(wire.encode_heartbeat(2, 7, None, 0, 0, None), 2, 0.01)
    assert core.trusted() == [2]
    core.set_reachable(2, False, 0.02)  # unreachable: suspected at once
    assert core.trusted() == []
    core.receive_datagram(wire.encode_heartbeat(2, 7, None, 0, 0, None), 2, 0.03)
    assert core.trusted() == []  # still marked unreachable
    core.set_reachable(2, True, 0.04)  # back to the detector, which trusts the next datagram
    core.receive_datagram(wire.encode_heartbeat(2, 7, None, 0, 0, None), 2, 0.05)
    assert core.trusted() == [2]
