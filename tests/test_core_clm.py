"""What the core gives the CLM layer: membership numbers, graceful departures, CLM messages.

Driven by hand over ``test_core``'s fake link, and across the simulator's faults for
the one property that matters most: every member of a primary computes the same
``PrimaryFormed.initial``.
"""

from __future__ import annotations

import itertools
import random
from importlib import resources
from pathlib import Path
from typing import Any

import attrs
import pytest

from pyclm import wire
from pyclm.config import MembershipConfig
from pyclm.core import MemberReport, Membership, initial_numbers, joined_numbers
from pyclm.errors import UsageError
from pyclm.events import ClmMessage, PrimaryFormed, PrimaryLost, ViewInstalled
from pyclm.ids import Member, View, ViewId
from pyclm.sim import Simulator, load_scenario
from pyclm.sim.engine import SimNode
from pyclm.sim.network import NetworkConditions
from pyclm.voting import QuorumConfig
from test_core import WALL, FakeLink, decoded, make_core

FIVE = QuorumConfig(votes={n: 1 for n in range(1, 6)})
THREE = QuorumConfig(votes={1: 1, 2: 1, 3: 1})
EXAMPLE = Path(str(resources.files("pyclm.scenarios").joinpath("example.toml")))


def formed(link: FakeLink, node_id: int) -> list[PrimaryFormed]:
    return [e for e in link.events[node_id] if isinstance(e, PrimaryFormed)]


def last_formed(link: FakeLink, node_id: int) -> PrimaryFormed:
    events = formed(link, node_id)
    assert events, f"node {node_id} never acted as primary"
    return events[-1]


def initial_of(event: PrimaryFormed) -> dict[int, int]:
    return dict(zip(event.view.node_ids, event.initial, strict=True))


def check_agreement(link: FakeLink) -> None:
    """Every node that announced a primary computed the same numbers for it."""
    seen: dict[tuple[ViewId, int], tuple[int, ...]] = {}
    for events in link.events.values():
        for event in events:
            if isinstance(event, PrimaryFormed):
                key = (event.view.view_id, event.number)
                assert seen.setdefault(key, event.initial) == event.initial, key


def start_all(link: FakeLink, ids: range, quorum: QuorumConfig = FIVE) -> None:
    for node_id in ids:
        link.start(node_id, quorum=quorum)


# ------------------------------------------------------------------ the rule


@pytest.mark.parametrize(
    ("reports", "joined", "number", "initial"),
    [
        ([(0, 0), (0, 0), (0, 0)], (0, 0, 0), 4, (4, 4, 4)),  # the first primary: everyone joins
        ([(3, 7), (3, 7), (0, 0)], (3, 3, 0), 9, (3, 3, 9)),  # a new node joins a running membership
        ([(3, 7), (3, 5), (3, 7)], (3, 0, 3), 9, (3, 9, 3)),  # back from a minority: it left at 7
        ([(3, 5), (3, 5)], (3, 3), 9, (3, 3)),  # no primary since 5 (or none with these nodes)
        ([(0, 7), (2, 7)], (0, 2), 9, (9, 2)),  # a since of 0 with a last is no membership to keep
        ([(5, 5)], (5,), 6, (5,)),  # alone and still primary
    ],
)
def test_the_rule(
    reports: list[tuple[int, int]], joined: tuple[int, ...], number: int, initial: tuple[int, ...]
) -> None:
    # The coordinator applies it to the ACK reports; every member reads the INSTALL.
    assert joined_numbers([MemberReport(since, last, b"") for since, last in reports]) == joined
    assert initial_numbers(joined, number) == initial


def test_the_install_carries_what_the_coordinator_worked_out() -> None:
    link = FakeLink()
    start_all(link, range(1, 4))
    link.run_until(2.0)
    before = last_formed(link, 1)
    link.start(4, quorum=FIVE)
    link.run_until(4.0)
    after = last_formed(link, 4)
    assert after.view.view_id.coordinator == 1
    sent = [m for m, _ in decoded(link.sent[1]) if isinstance(m, wire.Install) and m.view_id == after.view.view_id]
    assert sent
    assert all(m == sent[0] for m in sent)
    joined = tuple(e.joined for e in sent[0].entries)
    assert joined == (before.number, before.number, before.number, 0)  # 0: joins with this primary
    assert after.initial == initial_numbers(joined, after.number)


def test_initial_must_be_aligned_with_the_members() -> None:
    view = View(ViewId(1, 1), (Member(1, 1), Member(2, 1)))
    with pytest.raises(ValueError, match="2 members"):
        PrimaryFormed(view=view, number=1, initial=(1,))


# ------------------------------------------------------------------ over the fake link


@pytest.mark.parametrize("size", [3, 4, 5])
def test_the_first_primary_numbers_everyone_with_its_own_number(size: int) -> None:
    link = FakeLink()
    start_all(link, range(1, size + 1))
    link.run_until(2.0)
    events = [last_formed(link, n) for n in range(1, size + 1)]
    first = events[0]
    assert first.view.node_ids == tuple(range(1, size + 1))
    assert first.initial == (first.number,) * size
    assert all(e == first for e in events)
    check_agreement(link)


def test_a_node_joining_a_running_primary_gets_the_new_number() -> None:
    link = FakeLink()
    start_all(link, range(1, 4))
    link.run_until(2.0)
    before = last_formed(link, 1)
    assert before.view.node_ids == (1, 2, 3)
    link.start(4, quorum=FIVE)
    link.run_until(4.0)
    after = last_formed(link, 4)
    assert after.view.node_ids == (1, 2, 3, 4)
    assert after.number > before.number
    assert after.initial == (before.number, before.number, before.number, after.number)
    assert all(last_formed(link, n) == after for n in (1, 2, 3))
    check_agreement(link)


def test_a_node_back_from_a_minority_gets_the_new_number() -> None:
    link = FakeLink()
    start_all(link, range(1, 6))
    link.run_until(2.0)
    first = last_formed(link, 1)
    for a, b in itertools.product((1, 2, 3), (4, 5)):
        link.cut(a, b)
    link.run_until(4.0)
    majority = last_formed(link, 1)
    assert majority.view.node_ids == (1, 2, 3)
    assert majority.initial == (first.number,) * 3  # still the same members since the first
    assert not link.cores[4].is_primary and not link.cores[5].is_primary
    assert last_formed(link, 4) == first  # nothing since
    link.blocked.clear()
    link.run_until(6.0)
    merged = last_formed(link, 1)
    assert merged.view.node_ids == (1, 2, 3, 4, 5)
    n = merged.number
    assert merged.initial == (first.number, first.number, first.number, n, n)
    assert all(last_formed(link, m) == merged for m in range(2, 6))
    check_agreement(link)


def test_a_node_back_from_a_minority_that_was_primary_on_its_own_side_keeps_its_side() -> None:
    # {1,2,3} is the primary; 3 is cut off from 1 and 2 only for a while.  Then 1 and 2
    # are cut from everyone for good: {3,4,5} forms; 3 was in the membership all along,
    # 4 and 5 were too; nobody is new in it.
    link = FakeLink()
    start_all(link, range(1, 6))
    link.run_until(2.0)
    first = last_formed(link, 3)
    for a, b in itertools.product((1, 2), (3, 4, 5)):
        link.cut(a, b)
    link.run_until(4.0)
    minority = last_formed(link, 3)
    assert minority.view.node_ids == (3, 4, 5)
    assert minority.initial == (first.number,) * 3
    assert not link.cores[1].is_primary
    link.blocked.clear()
    link.run_until(6.0)
    merged = last_formed(link, 1)
    assert merged.view.node_ids == (1, 2, 3, 4, 5)
    n = merged.number
    assert merged.initial == (n, n, first.number, first.number, first.number)
    check_agreement(link)


def test_a_restarted_node_is_a_new_member() -> None:
    link = FakeLink()
    start_all(link, range(1, 4))
    link.run_until(2.0)
    first = last_formed(link, 1)
    old = link.cores[3].me
    link.crash(3)
    restarted = link.start(3, wall=WALL + 5 * 10**9, quorum=FIVE)
    link.run_until(5.0)
    after = last_formed(link, 1)
    assert after.view.members[2] == restarted.me != old
    assert after.number > first.number
    assert after.initial == (first.number, first.number, after.number)
    assert last_formed(link, 3) == after
    check_agreement(link)


def test_a_restarted_node_that_was_missed_for_a_while_is_a_new_member() -> None:
    link = FakeLink()
    start_all(link, range(1, 4), THREE)
    link.run_until(2.0)
    first = last_formed(link, 1)
    link.crash(3)
    link.run_until(4.0)
    pair = last_formed(link, 1)
    assert pair.view.node_ids == (1, 2)
    assert pair.initial == (first.number, first.number)
    link.start(3, wall=WALL + 5 * 10**9, quorum=THREE)
    link.run_until(7.0)
    after = last_formed(link, 1)
    assert after.view.node_ids == (1, 2, 3)
    assert after.initial == (first.number, first.number, after.number)
    check_agreement(link)


def test_own_numbers_ride_on_the_ack() -> None:
    link = FakeLink()
    start_all(link, range(1, 3), THREE)
    link.run_until(2.0)
    first = last_formed(link, 2)
    link.start(3, quorum=THREE)
    link.run_until(4.0)
    acks = [m for m, _ in decoded(link.sent[2]) if isinstance(m, wire.Ack)]
    assert (acks[0].since, acks[0].last) == (0, 0)  # the first view of its life
    assert (acks[-1].since, acks[-1].last) == (first.number, first.number)
    three = [m for m, _ in decoded(link.sent[3]) if isinstance(m, wire.Ack)]
    assert three and all((m.since, m.last) == (0, 0) for m in three)


def test_a_singleton_view_numbers_its_only_member() -> None:
    quorum = QuorumConfig(votes={1: 1})
    link = FakeLink()
    one = link.start(1, quorum=quorum)
    link.run_until(2.0)
    first = last_formed(link, 1)
    assert first.view.node_ids == (1,) and first.initial == (first.number,)
    # A second node without votes joins and is cut off again: 1 stays in the membership.
    link.start(2, quorum=quorum)
    link.run_until(4.0)
    both = last_formed(link, 1)
    assert both.view.node_ids == (1, 2)
    assert both.initial == (first.number, both.number)
    link.cut(1, 2)
    link.run_until(6.0)
    alone = last_formed(link, 1)
    assert alone.view.node_ids == (1,) and one.view == alone.view
    assert alone.number > both.number
    assert alone.initial == (first.number,)
    check_agreement(link)


def test_the_same_view_announced_again_after_a_lease_expiry_gets_the_same_numbers() -> None:
    link = FakeLink()
    start_all(link, range(1, 4))
    link.start(4, quorum=FIVE)
    link.run_until(2.0)
    before = last_formed(link, 4)
    assert before.view.node_ids == (1, 2, 3, 4)
    # 4 hears nobody for longer than its lease, shorter than anyone's suspicion.
    for other in (1, 2, 3):
        link.blocked |= {(other, 4), (4, other)}
    while link.cores[4].is_primary:
        link.run_until(link.now + 0.001)
    assert isinstance(link.events[4][-1], PrimaryLost)
    link.blocked.clear()
    link.run_until(link.now + 0.3)
    again = last_formed(link, 4)
    assert again is not before
    assert (again.view, again.number, again.initial) == (before.view, before.number, before.initial)
    assert link.cores[4].counters["primary_lost_lease_expired"] == 1
    check_agreement(link)


# ------------------------------------------------------------------ departed


def installs(link: FakeLink, node_id: int) -> list[ViewInstalled]:
    return [e for e in link.events[node_id] if isinstance(e, ViewInstalled)]


def test_a_graceful_leave_is_departed() -> None:
    link = FakeLink()
    start_all(link, range(1, 4))
    link.run_until(2.0)
    three = link.cores[3].me
    link.cores[3].leave(link.now)
    link.pump(3)
    link.deliver()
    link.crash(3)
    link.run_until(3.0)
    for node_id in (1, 2):
        event = installs(link, node_id)[-1]
        assert event.view.node_ids == (1, 2)
        assert event.left == (three,)
        assert event.departed == (three,)


def test_a_crash_is_not_departed() -> None:
    link = FakeLink()
    start_all(link, range(1, 4))
    link.run_until(2.0)
    three = link.cores[3].me
    link.crash(3)
    link.run_until(4.0)
    for node_id in (1, 2):
        event = installs(link, node_id)[-1]
        assert event.view.node_ids == (1, 2)
        assert event.left == (three,)
        assert event.departed == ()


def test_a_restart_after_a_leave_departs_the_old_life_only() -> None:
    link = FakeLink()
    start_all(link, range(1, 4))
    link.run_until(2.0)
    old = link.cores[3].me
    link.cores[3].leave(link.now)
    link.pump(3)
    link.deliver()
    link.crash(3)
    link.run_until(3.0)
    new = link.start(3, wall=WALL + 5 * 10**9, quorum=FIVE).me
    link.run_until(5.0)
    back = installs(link, 1)[-1]
    assert back.view.members[2] == new
    assert back.joined == (new,) and back.left == () and back.departed == ()
    left = [e for e in installs(link, 1) if e.left]
    assert [(e.left, e.departed) for e in left] == [((old,), (old,))]


def test_a_restart_without_leave_is_not_departed() -> None:
    link = FakeLink()
    start_all(link, range(1, 3))
    link.run_until(2.0)
    old = link.cores[2].me
    link.crash(2)
    new = link.start(2, wall=WALL + 5 * 10**9, quorum=FIVE).me
    link.run_until(5.0)
    change = next(e for e in installs(link, 1) if new in e.view.members)
    assert (change.joined, change.left, change.departed) == ((new,), (old,), ())


# ------------------------------------------------------------------ CLM messages


def clm_events(link: FakeLink, node_id: int) -> list[ClmMessage]:
    return [e for e in link.events[node_id] if isinstance(e, ClmMessage)]


def send(link: FakeLink, node_id: int, payload: bytes, to: Any) -> None:
    link.cores[node_id].send_clm(payload, to, link.now)
    link.pump(node_id)
    link.deliver()


def test_send_clm_reaches_the_other_members() -> None:
    link = FakeLink()
    start_all(link, range(1, 4))
    link.run_until(2.0)
    view = link.view_of(1)
    assert view is not None
    send(link, 2, b"hello", None)
    expected = ClmMessage(sender=2, view_id=view.view_id, payload=b"hello")
    assert clm_events(link, 1) == [expected]
    assert clm_events(link, 3) == [expected]
    assert clm_events(link, 2) == []  # not to itself
    send(link, 1, b"", [3])  # empty payloads too
    assert clm_events(link, 3)[-1] == ClmMessage(sender=1, view_id=view.view_id, payload=b"")
    assert len(clm_events(link, 2)) == 0
    # Itself, non-members and duplicates are skipped: one datagram per member named.
    sent_before = len(link.sent[1])
    send(link, 1, b"x", iter([1, 2, 2, 99]))
    assert len(link.sent[1]) == sent_before + 1
    assert clm_events(link, 2) == [ClmMessage(sender=1, view_id=view.view_id, payload=b"x")]
    assert len(clm_events(link, 3)) == 2


def test_clm_messages_for_another_view_are_dropped_and_counted() -> None:
    link = FakeLink()
    start_all(link, range(1, 4))
    link.run_until(2.0)
    view = link.view_of(1)
    assert view is not None
    one, two = link.cores[1], link.cores[2]
    stale = wire.encode_clm(2, two.incarnation, ViewId(view.view_id.epoch - 1 or 99, 1), b"old")
    one.receive_datagram(stale, 2, link.now)
    assert one.counters["rx_clm_other_view"] == 1
    # A node outside the view, claiming the view id.
    impostor = wire.encode_clm(7, 1, view.view_id, b"in")
    one.receive_datagram(impostor, 7, link.now)
    assert one.counters["rx_clm_not_member"] == 1
    assert clm_events(link, 1) == [] and one.next_event() is None
    # Before any view is installed everything is for another view.
    fresh = make_core(5)
    fresh.receive_datagram(wire.encode_clm(2, two.incarnation, view.view_id, b"early"), 2, 0.01)
    assert fresh.counters["rx_clm_other_view"] == 1
    assert [e for e in iter(fresh.next_event, None) if isinstance(e, ClmMessage)] == []


def test_send_clm_without_a_view_is_a_usage_error() -> None:
    core = make_core(1)
    with pytest.raises(UsageError, match="no view is installed"):
        core.send_clm(b"x", None, 0.0)


def test_send_clm_after_leaving_is_a_usage_error() -> None:
    link = FakeLink()
    start_all(link, range(1, 3))
    link.run_until(2.0)
    link.cores[1].leave(link.now)
    with pytest.raises(UsageError, match="left"):
        link.cores[1].send_clm(b"x", None, link.now)


@pytest.mark.parametrize(("max_datagram", "limit"), [(65000, wire.MAX_STATE), (512, 512 - wire.CLM_OVERHEAD)])
def test_an_oversize_clm_payload_is_a_usage_error(max_datagram: int, limit: int) -> None:
    core = Membership(
        MembershipConfig(node_id=1, max_datagram=max_datagram),
        QuorumConfig(votes={1: 1}),
        stored={},
        wall_clock_ns=WALL,
        now=0.0,
        rng=random.Random(0),
    )
    t = 0.0
    while core.view is None:
        deadline = core.get_timer()
        assert deadline is not None and deadline < 5.0
        t = deadline
        core.handle_timer(t)
    core.datagrams_to_send()
    with pytest.raises(UsageError, match=f"at most {limit} bytes"):
        core.send_clm(b"x" * (limit + 1), None, t)
    core.send_clm(b"x" * limit, None, t)  # fits (and has nobody to go to)
    assert core.datagrams_to_send() == []


# ------------------------------------------------------------------ across the simulator's faults


class Recording(Simulator):
    """The simulator, keeping every announced primary as (node, member life, view id, number, initial)."""

    announced: list[tuple[int, View, int, tuple[int, ...]]]

    def _on_core_event(self, node: SimNode, event: object) -> None:
        if type(event) is PrimaryFormed:
            self.announced.append((node.node_id, event.view, event.number, event.initial))
        super()._on_core_event(node, event)


@pytest.mark.parametrize("policy", ["majority", "ykd"])
@pytest.mark.parametrize("seed", [1, 2, 3])
def test_every_member_of_a_primary_computes_the_same_numbers(policy: str, seed: int) -> None:
    # The example's partitions, heal, crash, recovery, leave, join and lossy tail, on a
    # network that also loses, duplicates and reorders from the start.
    network = NetworkConditions(latency=0.001, jitter=0.0005, loss=0.05, duplicate=0.02, reorder=0.05)
    scenario = attrs.evolve(load_scenario(EXAMPLE), network=network)
    sim = Recording(scenario, seed=seed, quorum=QuorumConfig(policy=policy).with_default_votes(list(scenario.nodes)))
    sim.announced = []
    result = sim.run()
    assert result.violation is None
    agreed: dict[tuple[ViewId, int], tuple[int, ...]] = {}
    lives: set[tuple[int, Member]] = set()  # (primary number, member life) of every announced primary
    for _, view, number, initial in sim.announced:
        assert agreed.setdefault((view.view_id, number), initial) == initial
        lives.update((number, m) for m in view.members)
    assert len(agreed) >= 3
    for _, view, number, initial in sim.announced:
        for member, joined_at in zip(view.members, initial, strict=True):
            assert joined_at <= number
            # The number a life joined at is a primary that life was a member of.
            assert (joined_at, member) in lives, (member, joined_at, number)
