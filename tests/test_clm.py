"""The CLM layer (pyclm.clm): core events in, SA Forum membership and track buffers out.

Most tests feed hand-built event sequences, in the order a core produces them (a view
change on a member: PrimaryLost, ViewInstalled, PrimaryFormed).  The last one drives
three real cores over a FIFO link and checks that their CLM layers agree.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable, Iterable, Mapping

import attrs
import pytest

from pyclm.clm import (
    Change,
    ClusterMembership,
    ClusterNode,
    MembershipChange,
    NotificationBuffer,
    TrackMode,
    track_changes,
    track_current,
)
from pyclm.config import MembershipConfig, TimingConfig
from pyclm.core import GROUP, Membership
from pyclm.errors import ConfigError
from pyclm.events import ClmMessage, Event, PrimaryFormed, PrimaryLost, Stopped, ViewInstalled
from pyclm.ids import Member, View, ViewId
from pyclm.storage import MemoryStorage
from pyclm.voting import QuorumConfig

WALL = 1_767_225_600 * 10**9  # ns: the wall clock at the first start of every node here
TIMEOUT = 2.0


def life(node_id: int, restarts: int = 0) -> Member:
    """A life of ``node_id``: the incarnation is the wall clock at its start (ns)."""
    return Member(node_id, WALL + node_id * 1_000 + restarts * 10**9)


def view(epoch: int, *lives: Member) -> View:
    return View(ViewId(epoch, min(m.node_id for m in lives)), lives)


def installed(new: View, before: View | None = None, departed: Iterable[Member] = ()) -> ViewInstalled:
    old = set(before.members) if before else set()
    return ViewInstalled(
        view=new,
        joined=tuple(sorted(set(new.members) - old)) if before else (),
        left=tuple(sorted(old - set(new.members))),
        departed=tuple(departed),
    )


def formed(v: View, number: int, initial: Mapping[int, int] | None = None) -> PrimaryFormed:
    """PrimaryFormed; ``initial`` maps node id -> initial number (default: everyone joins now)."""
    numbers = initial or {}
    return PrimaryFormed(view=v, number=number, initial=tuple(numbers.get(n, number) for n in v.node_ids))


def feed(clm: ClusterMembership, events: Iterable[Event], now: float = 0.0) -> list[MembershipChange]:
    for event in events:
        clm.handle_event(event, now)
    return drain(clm)


def drain(clm: ClusterMembership) -> list[MembershipChange]:
    changes = []
    while (change := clm.next_change()) is not None:
        changes.append(change)
    return changes


def ids(nodes: Iterable[ClusterNode]) -> list[int]:
    return [n.node_id for n in nodes]


def entries(buffer: NotificationBuffer | None) -> list[tuple[int, Change, bool]]:
    assert buffer is not None
    return [(e.node.node_id, e.change, e.node.member) for e in buffer.notifications]


A, B, C, D = life(1), life(2), life(3), life(4)
V1 = view(1, A, B, C)


def member_of_first_primary(address_of: Callable[[int], str | None] | None = None) -> ClusterMembership:
    """A CLM layer on node 1 that saw the first primary (number 1) of {1, 2, 3}."""
    clm = ClusterMembership(1, address_of=address_of, settle_timeout=TIMEOUT)
    feed(clm, [installed(V1), formed(V1, 1)])
    return clm


# ---------------------------------------------------------------------------- the membership


def test_nothing_before_the_first_primary() -> None:
    clm = ClusterMembership(1, incarnation=A.incarnation)
    assert feed(clm, [installed(view(1, A))]) == []  # a view of its own, not primary
    assert (clm.view_number, clm.is_member, clm.members(), clm.get_timer()) == (0, False, (), None)
    assert clm.node(2) is None
    local = clm.node(1)
    assert local is not None and (local.member, local.initial_view_number) == (False, 0)


def test_the_first_primary_reports_every_member_joined() -> None:
    clm = ClusterMembership(2, names={1: "alpha", 2: "beta"}, address_of=lambda n: f"10.0.0.{n}")
    (change,) = feed(clm, [installed(V1), formed(V1, 7)])
    assert change.view_number == clm.view_number == 7
    assert ids(change.members) == ids(change.joined) == ids(clm.members()) == [1, 2, 3]
    assert change.local_member and clm.is_member
    assert (change.left, change.shutdown, change.reconfigured) == ((), (), ())
    beta = clm.node(2)
    assert beta == change.local
    assert beta == ClusterNode(
        node_id=2,
        name="beta",
        address="10.0.0.2",
        member=True,
        boot_timestamp=B.incarnation,
        initial_view_number=7,
        incarnation=B.incarnation,
    )
    node3 = clm.node(3)
    assert node3 is not None and (node3.name, node3.life) == ("node3", C)  # the default name
    assert clm.node(4) is None


def test_a_view_change_is_one_change_not_a_leave_and_a_join() -> None:
    clm = member_of_first_primary()
    v2 = view(2, A, B)
    assert feed(clm, [PrimaryLost(view_id=V1.view_id)], now=10.0) == []
    assert clm.pending and clm.is_member and clm.get_timer() == 10.0 + TIMEOUT
    assert feed(clm, [installed(v2, V1)], now=10.1) == []
    assert clm.get_timer() == 10.0 + TIMEOUT  # measured from the loss of the primary
    (change,) = feed(clm, [formed(v2, 2, {1: 1, 2: 1})], now=10.2)
    assert (change.view_number, ids(change.members), change.joined) == (2, [1, 2], ())
    assert [(n.node_id, n.member) for n in change.left] == [(3, False)]
    assert not clm.pending and clm.get_timer() is None
    clm.handle_timer(10.0 + TIMEOUT)  # a stale timer of the runtime does nothing
    assert drain(clm) == [] and clm.is_member


def test_a_new_view_without_primary_lost_first_is_pending_too() -> None:
    clm = member_of_first_primary()
    assert feed(clm, [installed(view(2, A, B), V1)], now=3.0) == []
    assert clm.pending and clm.get_timer() == 3.0 + TIMEOUT


def test_a_graceful_leave_is_shutdown_a_crash_is_left() -> None:
    clm = member_of_first_primary()
    v2, v3 = view(2, A, B), view(3, A)
    feed(clm, [PrimaryLost(view_id=V1.view_id), installed(v2, V1, departed=[C])])
    (change,) = feed(clm, [formed(v2, 2, {1: 1, 2: 1})])
    assert ([n.life for n in change.shutdown], change.left) == ([C], ())
    # Seen departed in an earlier view change does not make a later crash a shutdown.
    feed(clm, [PrimaryLost(view_id=v2.view_id), installed(v3, v2)])
    (change,) = feed(clm, [formed(v3, 3, {1: 1})])
    assert ([n.life for n in change.left], change.shutdown) == ([B], ())


def test_a_departure_seen_during_a_longer_view_change_still_counts() -> None:
    clm = member_of_first_primary()
    v2, v3 = view(2, A, B), view(3, A, B, D)
    events: list[Event] = [PrimaryLost(view_id=V1.view_id), installed(v2, V1, departed=[C]), installed(v3, v2)]
    (change,) = feed(clm, [*events, formed(v3, 2, {1: 1, 2: 1})])
    assert [n.life for n in change.shutdown] == [C] and ids(change.joined) == [4]


def test_a_restarted_node_is_its_old_life_left_and_its_new_life_joined() -> None:
    clm = member_of_first_primary()
    c2 = life(3, restarts=1)
    v2 = view(2, A, B, c2)
    (change,) = feed(clm, [PrimaryLost(view_id=V1.view_id), installed(v2, V1), formed(v2, 2, {1: 1, 2: 1})])
    assert [n.life for n in change.left] == [C] and [n.life for n in change.joined] == [c2]
    new = clm.node(3)
    assert new is not None and (new.boot_timestamp, new.initial_view_number) == (c2.incarnation, 2)
    for mode in TrackMode:  # the old life comes first, so a reader can apply them in order
        buffer = track_changes(change, mode)
        assert buffer is not None
        node3 = [(e.node.incarnation, e.change) for e in buffer.notifications if e.node.node_id == 3]
        assert node3 == [(C.incarnation, Change.LEFT), (c2.incarnation, Change.JOINED)]


def test_the_same_primary_again_after_a_lost_lease_reports_nothing() -> None:
    clm = member_of_first_primary()
    assert feed(clm, [PrimaryLost(view_id=V1.view_id), formed(V1, 1)]) == []
    assert clm.is_member and not clm.pending


def test_a_new_number_with_the_same_members_is_a_change() -> None:
    clm = member_of_first_primary()
    v2 = view(2, A, B, C)
    (change,) = feed(clm, [PrimaryLost(view_id=V1.view_id), installed(v2, V1), formed(v2, 2, {1: 1, 2: 1, 3: 1})])
    assert change.view_number == 2
    assert (change.joined, change.left, change.reconfigured, change.shutdown) == ((), (), (), ())


def test_a_new_address_is_reconfigured() -> None:
    addresses = {1: "a", 2: "b", 3: "c"}
    clm = member_of_first_primary(address_of=addresses.get)
    addresses[2] = "b2"
    v2 = view(2, A, B, C)
    (change,) = feed(clm, [installed(v2, V1), formed(v2, 2, {1: 1, 2: 1, 3: 1})])
    assert [(n.node_id, n.address) for n in change.reconfigured] == [(2, "b2")]
    assert entries(track_changes(change, TrackMode.CHANGES_ONLY)) == [(2, Change.RECONFIGURED, True)]


# ---------------------------------------------------------------------------- out of the membership


def cut_off(clm: ClusterMembership, now: float = 10.0) -> MembershipChange:
    """Node 1 loses the primary of V1 and ends up alone in a view that never becomes primary."""
    feed(clm, [PrimaryLost(view_id=V1.view_id), installed(view(2, A), V1)], now=now)
    clm.handle_timer(now + TIMEOUT - 0.001)
    assert drain(clm) == [] and clm.is_member  # not yet
    clm.handle_timer(now + TIMEOUT)
    (change,) = drain(clm)
    return change


def test_without_a_primary_for_the_settle_timeout_the_local_node_is_reported_left() -> None:
    clm = member_of_first_primary()
    change = cut_off(clm)
    assert (change.view_number, change.members, change.joined, change.shutdown) == (1, (), (), ())
    assert [(n.node_id, n.member) for n in change.left] == [(1, False)]  # only itself: it knows no more
    assert (clm.view_number, clm.is_member, clm.members(), clm.pending) == (1, False, (), False)
    local = clm.node(1)
    assert local is not None and (local.member, local.initial_view_number) == (False, 1)
    assert clm.node(2) is None
    assert entries(track_changes(change, TrackMode.CHANGES)) == [(1, Change.LEFT, False)]
    assert entries(track_changes(change, TrackMode.CHANGES_ONLY)) == [(1, Change.LEFT, False)]
    assert entries(track_changes(change, TrackMode.CHANGES, local=True)) == [(1, Change.LEFT, False)]
    # Nothing more while out: more views without a primary report nothing.
    assert feed(clm, [installed(view(3, A, D), view(2, A))]) == [] and clm.get_timer() is None


def test_coming_back_reports_the_local_node_joined_and_what_changed_meanwhile() -> None:
    clm = member_of_first_primary()
    cut_off(clm)
    # Meanwhile {2, 3, 4} formed primary 2 and 3 crashed; then 1 rejoins at 3.
    v3 = view(3, A, B, D)
    (change,) = feed(clm, [installed(v3, view(2, A)), formed(v3, 3, {2: 1, 4: 2})])
    assert change.view_number == 3 and change.local_member
    assert ids(change.joined) == [1]  # 4 joined at 2, not at 3: for the cluster it is no change
    assert [n.life for n in change.left] == [C]
    assert entries(track_changes(change, TrackMode.CHANGES)) == [
        (1, Change.JOINED, True),
        (2, Change.NO_CHANGE, True),
        (3, Change.LEFT, False),
        (4, Change.NO_CHANGE, True),
    ]


def test_a_node_reported_out_too_early_is_joined_again_with_its_old_number() -> None:
    clm = member_of_first_primary()
    cut_off(clm)
    v3 = view(3, A, B, C)
    (change,) = feed(clm, [installed(v3, view(2, A)), formed(v3, 2, {1: 1, 2: 1, 3: 1})])
    assert [(n.node_id, n.initial_view_number) for n in change.joined] == [(1, 1)]
    assert entries(track_changes(change, TrackMode.CHANGES_ONLY)) == [(1, Change.JOINED, True)]


def test_a_graceful_leave_of_the_local_node_is_shutdown_at_once() -> None:
    clm = member_of_first_primary()
    clm.handle_event(PrimaryLost(view_id=V1.view_id), 5.0)  # the core may drop primary first
    (change,) = feed(clm, [Stopped()])
    assert [(n.node_id, n.member) for n in change.shutdown] == [(1, False)] and change.left == ()
    assert (clm.is_member, clm.get_timer()) == (False, None)
    assert feed(clm, [installed(V1), formed(V1, 9), Stopped()]) == []  # the core says nothing more


def test_stopping_when_already_out_reports_nothing() -> None:
    clm = member_of_first_primary()
    cut_off(clm)
    assert feed(clm, [Stopped()]) == []


def test_clm_messages_change_nothing_and_other_objects_are_refused() -> None:
    clm = member_of_first_primary()
    assert feed(clm, [ClmMessage(sender=2, view_id=V1.view_id, payload=b"x")]) == []
    with pytest.raises(TypeError, match="core's events"):
        clm.handle_event("ViewInstalled", 0.0)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="settle_timeout"):
        ClusterMembership(1, settle_timeout=0)


# ---------------------------------------------------------------------------- track buffers


def test_track_current_on_a_member_and_on_a_non_member() -> None:
    clm = member_of_first_primary()
    current = track_current(clm)
    assert (current.view_number, current.number_of_members) == (1, 3)
    assert entries(current) == [(n, Change.NO_CHANGE, True) for n in (1, 2, 3)]
    assert entries(track_current(clm, local=True)) == [(1, Change.NO_CHANGE, True)]
    cut_off(clm)
    for local in (False, True):  # only itself, LEFT, as OpenSAF's server answers
        out = track_current(clm, local=local)
        assert (out.view_number, out.number_of_members, entries(out)) == (1, 0, [(1, Change.LEFT, False)])
    # A node whose life is not known yet has nothing to say.
    assert track_current(ClusterMembership(1)).notifications == ()


def test_changes_lists_every_member_changes_only_the_changes() -> None:
    clm = member_of_first_primary()
    v2 = view(2, A, C, D)
    (change,) = feed(clm, [installed(v2, V1), formed(v2, 2, {1: 1, 3: 1})])
    changes = track_changes(change, TrackMode.CHANGES)
    assert changes is not None and (changes.view_number, changes.number_of_members) == (2, 3)
    assert entries(changes) == [
        (1, Change.NO_CHANGE, True),
        (2, Change.LEFT, False),
        (3, Change.NO_CHANGE, True),
        (4, Change.JOINED, True),
    ]
    only = track_changes(change, TrackMode.CHANGES_ONLY)
    assert entries(only) == [(2, Change.LEFT, False), (4, Change.JOINED, True)]
    assert track_changes(change, TrackMode.CHANGES, local=True) is None  # not about this node


def test_a_view_number_only_change_has_no_entries_for_changes_only() -> None:
    clm = member_of_first_primary()
    v2 = view(2, A, B, C)
    (change,) = feed(clm, [installed(v2, V1), formed(v2, 2, {1: 1, 2: 1, 3: 1})])
    only = track_changes(change, TrackMode.CHANGES_ONLY)
    assert only is not None and (only.view_number, only.notifications, only.number_of_members) == (2, (), 3)
    assert entries(track_changes(change, TrackMode.CHANGES)) == [(n, Change.NO_CHANGE, True) for n in (1, 2, 3)]
    assert track_changes(change, TrackMode.CHANGES_ONLY, local=True) is None


def test_local_tracking_reports_the_local_node_when_it_changes() -> None:
    clm = ClusterMembership(4, settle_timeout=TIMEOUT)
    v2 = view(2, A, B, C, D)
    (change,) = feed(clm, [installed(v2), formed(v2, 2, {1: 1, 2: 1, 3: 1})])
    for mode in TrackMode:
        buffer = track_changes(change, mode, local=True)
        assert entries(buffer) == [(4, Change.JOINED, True)]
        assert buffer is not None and buffer.number_of_members == 4


class Subscriber:
    """One track subscriber: the buffers it received, by view number."""

    def __init__(self, mode: TrackMode) -> None:
        self.mode = mode
        self.received: dict[int, list[NotificationBuffer]] = {}

    def deliver(self, change: MembershipChange) -> None:
        buffer = track_changes(change, self.mode)
        if buffer is not None:
            self.received.setdefault(buffer.view_number, []).append(buffer)


def test_subscribers_with_the_same_flags_get_the_same_buffers_whenever_they_started() -> None:
    clm = member_of_first_primary()
    early = [Subscriber(TrackMode.CHANGES_ONLY), Subscriber(TrackMode.CHANGES)]
    late: list[Subscriber] = []
    script: list[tuple[list[Event], float | None]] = [
        ([PrimaryLost(view_id=V1.view_id), installed(view(2, A, B), V1, departed=[C])], None),
        ([formed(view(2, A, B), 2, {1: 1, 2: 1})], None),
        ([PrimaryLost(view_id=ViewId(2, 1)), installed(view(3, A), view(2, A, B))], 20.0),  # reported out
        ([installed(view(4, A, B, D), view(3, A)), formed(view(4, A, B, D), 4, {2: 1, 4: 3})], None),
    ]
    for step, (events, timer) in enumerate(script):
        if step == 3:  # subscribers that start while this node is out of the membership
            late = [Subscriber(TrackMode.CHANGES_ONLY), Subscriber(TrackMode.CHANGES)]
        for event in events:
            clm.handle_event(event, 10.0)
        if timer is not None:
            clm.handle_timer(timer)
        for change in drain(clm):
            for subscriber in early + late:
                subscriber.deliver(change)
    assert sorted(early[0].received) == [2, 4] and early[0].received[2] != early[1].received[2]
    for first, second in zip(early, late, strict=True):
        assert second.received[4] == first.received[4]
    assert entries(early[0].received[4][0]) == [(1, Change.JOINED, True)]  # 4 joined at 3, 2 stayed


# ---------------------------------------------------------------------------- over real cores

FAST = TimingConfig(heartbeat_interval=0.1, suspect_timeout=0.5, settle_delay=0.005)


def test_three_real_cores_report_the_same_membership_and_a_graceful_leave_as_shutdown() -> None:
    """The docs/core.md driver with a CLM layer on each node: node 3 leaves at t = 1 s."""
    quorum = QuorumConfig(votes={1: 1, 2: 1, 3: 1})
    storage = {n: MemoryStorage() for n in (1, 2, 3)}
    cores = {
        n: Membership(
            MembershipConfig(node_id=n, timing=FAST),
            quorum,
            stored=storage[n].load(),
            wall_clock_ns=WALL,
            now=0.0,
            rng=random.Random(n),
        )
        for n in (1, 2, 3)
    }
    clms = {n: ClusterMembership(n, incarnation=core.incarnation) for n, core in cores.items()}
    changes: dict[int, list[MembershipChange]] = {n: [] for n in cores}
    in_flight: list[tuple[float, int, int, bytes, int]] = []
    seq = 0

    def pump(node_id: int, now: float) -> None:
        nonlocal seq
        core = cores[node_id]
        for write in core.writes_to_persist():
            storage[node_id].write(write.key, write.data)
        for data, dest in core.datagrams_to_send():
            for dst in [n for n in cores if n != node_id] if dest is GROUP else [dest]:
                seq += 1
                heapq.heappush(in_flight, (now + 0.001, seq, dst, data, node_id))
        while (event := core.next_event()) is not None:
            clms[node_id].handle_event(event, now)
        changes[node_id] += drain(clms[node_id])

    now = 0.0
    for n in cores:
        pump(n, now)
    left = False
    while now < 2.0:
        if now >= 1.0 and not left:
            cores[3].leave(now)
            pump(3, now)
            left = True
        timers = [(t, n) for n, core in cores.items() if (t := core.get_timer()) is not None]
        timers += [(t, -n) for n, clm in clms.items() if (t := clm.get_timer()) is not None]
        deadline, n = min(timers)
        if in_flight and in_flight[0][0] <= deadline:
            now, _, dst, data, src = heapq.heappop(in_flight)
            cores[dst].receive_datagram(data, src, now)
            pump(dst, now)
        elif n < 0:  # a CLM layer's settle timer
            now = deadline
            clms[-n].handle_timer(now)
            changes[-n] += drain(clms[-n])
        else:
            now = deadline
            cores[n].handle_timer(now)
            pump(n, now)

    def story(node_id: int) -> list[tuple[int, list[tuple[int, int]], list[int], list[int], list[int]]]:
        return [
            (
                c.view_number,
                [(m.node_id, m.initial_view_number) for m in c.members],
                ids(c.joined),
                ids(c.left),
                ids(c.shutdown),
            )
            for c in changes[node_id]
        ]

    first, second = story(1)
    assert first[1:3] == ([(1, first[0]), (2, first[0]), (3, first[0])], [1, 2, 3])
    assert second[1:] == ([(1, first[0]), (2, first[0])], [], [], [3])
    assert story(2) == story(1)
    assert [(c.view_number, ids(c.shutdown), c.members) for c in changes[3]][-1] == (first[0], [3], ())
    assert clms[1].members() == clms[2].members() and clms[3].node(3) == attrs.evolve(
        changes[1][0].members[2], member=False
    )
