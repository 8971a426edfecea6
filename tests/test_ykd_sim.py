"""YKD in the simulator: scenarios from dicts, whole clusters, the checker on every event.

Every run has the simulator's checker on: (a)-(c) always, (e) one primary number acting
at any instant whenever the lease is on (the default).  A test that scripts a failure
also says what must come of it: who is primary, and who must not be.  Small clusters and
short runs: the file takes a few seconds.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

import attrs
import pytest

from pyclm.config import MembershipConfig
from pyclm.sim import ScenarioEvent, SimulationResult, Simulator, parse_scenario
from pyclm.storage import MembershipRecord
from pyclm.voting import VotingState


def simulator(data: dict[str, Any]) -> Simulator:
    """A simulator of ``data`` (a scenario table) with ``quorum.policy = "ykd"``."""
    table = dict(data)
    table["quorum"] = {"policy": "ykd", **table.get("quorum", {})}
    return Simulator(parse_scenario(table))


def run(data: dict[str, Any]) -> SimulationResult:
    result = simulator(data).run()
    assert result.violation is None, str(result.violation)
    return result


def primaries(result: SimulationResult) -> list[tuple[float, int, tuple[int, ...], int]]:
    """(t, node, members, number) of every primary announced."""
    return [(r["t"], r["node"], tuple(r["members"]), r["number"]) for r in result.records if r["event"] == "primary"]


def settled(result: SimulationResult) -> dict[int, tuple[tuple[int, ...], bool]]:
    """Each running node's final view members and whether it is primary."""
    return {int(n): (tuple(v["members"]), v["primary"]) for n, v in result.records[-1]["views"].items()}


def overlaps(records: list[dict[str, Any]]) -> int:
    """How many times a node began acting as primary while another acted for another number."""
    acting: dict[int, int] = {}
    count = 0
    for record in records:
        event = record["event"]
        if event == "primary":
            if any(node != record["node"] and number != record["number"] for node, number in acting.items()):
                count += 1
            acting[record["node"]] = record["number"]
        elif event in ("primary_lost", "view"):
            acting.pop(record["node"], None)
        elif event in ("crash", "leave"):
            for node in record["nodes"]:
                acting.pop(node, None)
    return count


def stored_state(sim: Simulator, node: int) -> VotingState | None:
    return VotingState.decode(sim.nodes[node].storage.records["quorum"])


class Driver:
    """Step a simulator by hand: apply events now, run until a condition holds."""

    def __init__(self, sim: Simulator) -> None:
        self.sim = sim

    def apply(self, action: str, **fields: Any) -> None:
        self.sim.apply(ScenarioEvent(at=self.sim.now, action=action, **fields))

    def run_for(self, dt: float) -> None:
        result = self.sim.run(until=self.sim.now + dt)
        assert result.violation is None, str(result.violation)

    def run_until(self, condition: Callable[[], bool], *, limit: float = 3.0, step: float = 0.0001) -> None:
        end = self.sim.now + limit
        while not condition():
            assert self.sim.now < end, "the condition never held"
            self.run_for(step)

    def view(self, node: int) -> tuple[int, ...] | None:
        view = self.sim.nodes[node].view
        return view.node_ids if view is not None else None

    def epoch(self, node: int) -> int:
        view = self.sim.nodes[node].view
        return view.view_id.epoch if view is not None else 0

    def accepted_epoch(self, node: int) -> int:
        """The highest view epoch ``node`` proposed or acknowledged (its durable record)."""
        record = MembershipRecord.decode(self.sim.nodes[node].storage.records["membership"])
        assert record is not None
        return record.max_epoch


# ---------------------------------------------------------------------- partitions


@pytest.mark.parametrize("connectivity", ["heartbeat", "oracle"])
def test_a_partition_keeps_the_majority_primary_and_healing_reunites_everyone(connectivity: str) -> None:
    result = run(
        {
            "nodes": 5,
            "duration": 8.0,
            "connectivity": connectivity,
            "event": [{"at": 2.0, "partition": [[1, 2, 3], [4, 5]]}, {"at": 5.0, "heal": True}],
        }
    )
    during = [p for p in primaries(result) if 2.0 < p[0] < 5.0]
    assert {p[2] for p in during} == {(1, 2, 3)}
    assert {p[1] for p in during} == {1, 2, 3}
    after = [p for p in primaries(result) if p[0] > 5.0]
    assert {p[2] for p in after} == {(1, 2, 3, 4, 5)}
    assert settled(result) == {n: ((1, 2, 3, 4, 5), True) for n in range(1, 6)}
    numbers = [p[3] for p in primaries(result)]
    assert numbers == sorted(numbers)  # primary numbers grow along the chain


def test_dynamic_voting_shrinks_the_quorum_step_by_step() -> None:
    # 5 -> {1,2,3} -> {1,2}: each a majority of the one before, not of the universe.
    result = run(
        {
            "nodes": 5,
            "duration": 8.0,
            "event": [
                {"at": 2.0, "partition": [[1, 2, 3], [4, 5]]},
                {"at": 4.0, "partition": [[1, 2], [3], [4, 5]]},
            ],
        }
    )
    assert [p[2] for p in primaries(result) if p[1] == 1] == [(1, 2, 3, 4, 5), (1, 2, 3), (1, 2)]
    final = settled(result)
    assert final[1] == final[2] == ((1, 2), True)
    assert not final[3][1] and not final[4][1] and not final[5][1]


@pytest.mark.parametrize(("tie_breaker", "winner"), [("lowest", (1, 2)), ("highest", (3, 4)), (3, (3, 4))])
def test_an_exact_half_split_forms_only_on_the_designated_side(tie_breaker: str | int, winner: tuple[int, ...]) -> None:
    result = run(
        {
            "nodes": 4,
            "duration": 5.0,
            "quorum": {"tie_breaker": tie_breaker},
            "event": [{"at": 2.0, "partition": [[1, 2], [3, 4]]}],
        }
    )
    assert {p[2] for p in primaries(result) if p[0] > 2.0} == {winner}
    final = settled(result)
    assert {n for n, (_, primary) in final.items() if primary} == set(winner)


@pytest.mark.parametrize("wait_for_all", [False, True])
def test_cold_start_in_disjoint_groups(wait_for_all: bool) -> None:
    quorum = {"wait_for_all": True} if wait_for_all else {}
    result = run(
        {
            "nodes": 5,
            "duration": 6.0,
            "quorum": quorum,
            "event": [{"at": 0.0, "partition": [[1, 2], [3, 4, 5]]}, {"at": 3.0, "heal": True}],
        }
    )
    before = {p[2] for p in primaries(result) if p[0] < 3.0}
    # Without wait_for_all the majority of the configured universe forms; with it, nobody
    # until the whole universe has been together once.
    assert before == (set() if wait_for_all else {(3, 4, 5)})
    assert settled(result) == {n: ((1, 2, 3, 4, 5), True) for n in range(1, 6)}


# ---------------------------------------------------------------------- crashes and storage


def test_a_crash_and_recovery_keeps_the_voting_state() -> None:
    sim = simulator(
        {"nodes": 5, "duration": 8.0, "event": [{"at": 2.0, "crash": [4, 5]}, {"at": 5.0, "recover": [4, 5]}]}
    )
    result = sim.run()
    assert result.violation is None, str(result.violation)
    assert {p[2] for p in primaries(result) if 2.0 < p[0] < 5.0} == {(1, 2, 3)}
    assert settled(result) == {n: ((1, 2, 3, 4, 5), True) for n in range(1, 6)}
    for node in (4, 5):
        state = stored_state(sim, node)
        assert state is not None and not state.amnesiac
        assert state.last_primary.members == (1, 2, 3, 4, 5)


def test_a_node_whose_quorum_record_is_destroyed_comes_back_amnesiac(caplog: pytest.LogCaptureFixture) -> None:
    drive = Driver(simulator({"nodes": 5, "duration": 1e6}))
    drive.run_for(2.0)
    drive.apply("crash", nodes=(5,))
    drive.run_for(1.0)  # {1,2,3,4} forms meanwhile
    drive.sim.nodes[5].storage.records["quorum"] = b""  # the disk lost it while 5 was down
    with caplog.at_level(logging.WARNING, logger="pyclm.voting.ykd"):
        drive.apply("recover", nodes=(5,))
    assert "node 5: voting state unreadable after being a member: amnesiac" in caplog.text
    assert drive.sim.nodes[5].core is not None and drive.sim.nodes[5].core.policy.describe()["amnesiac"]
    drive.run_for(3.0)
    # The others form a primary with 5 in it without counting on it, and then 5 knows.
    for n in range(1, 6):
        assert drive.view(n) == (1, 2, 3, 4, 5) and drive.sim.nodes[n].primary is not None, n
    state = stored_state(drive.sim, 5)
    assert state is not None and not state.amnesiac
    assert state.last_primary.members == (1, 2, 3, 4, 5)


def amnesia_story(lose: str) -> Driver:
    """3 nodes; {2,3} becomes primary without 1, then {2} alone (half of {2,3}, with the
    designated 2).  3 crashes; its storage loses ``lose`` ("quorum": the voting record,
    "all": everything); it comes back next to 1, which knows only the first primary."""
    drive = Driver(simulator({"nodes": 3, "duration": 1e6}))
    drive.run_for(1.0)
    drive.apply("partition", groups=((1,), (2, 3)))
    drive.run_for(2.0)
    drive.apply("crash", nodes=(3,))
    drive.run_for(1.0)
    records = drive.sim.nodes[3].storage.records
    if lose == "all":
        records.clear()
    else:
        records[lose] = b""
    drive.apply("partition", groups=((1, 3), (2,)))
    drive.apply("recover", nodes=(3,))
    return drive


def test_an_amnesiac_does_not_count_so_a_stale_minority_cannot_split_the_brain() -> None:
    drive = amnesia_story("quorum")
    drive.run_for(4.0)
    # 1 knows only #1 {1,2,3}; with 3 counted, {1,3} would hold 2/3 of it and split from
    # {2}.  3 is amnesiac, so {1,3} holds 1/3: not primary.
    assert drive.view(1) == drive.view(3) == (1, 3)
    assert drive.sim.nodes[1].primary is None and drive.sim.nodes[3].primary is None
    assert drive.sim.nodes[2].primary is not None
    drive.apply("heal")
    drive.run_for(3.0)
    for n in (1, 2, 3):
        assert drive.view(n) == (1, 2, 3) and drive.sim.nodes[n].primary is not None
    state = stored_state(drive.sim, 3)
    assert state is not None and not state.amnesiac


def test_losing_every_record_makes_a_new_node_and_that_can_break_safety() -> None:
    # The limit of amnesia detection: with no membership record either, a node cannot
    # tell it was ever a member (docs: lose_state "all").  The checker catches the result.
    drive = amnesia_story("all")
    result = drive.sim.run(until=drive.sim.now + 4.0)
    assert result.violation is not None


# ---------------------------------------------------------------------- the lease


SPLITS: list[list[dict[str, Any]]] = [
    [{"at": 2.0, "partition": [[1, 2], [3, 4, 5]]}, {"at": 4.0, "heal": True}],
    [{"at": 2.0, "partition": [[1, 2, 3], [4, 5]]}, {"at": 3.0, "partition": [[1], [2, 3, 4, 5]]}],
    [{"at": 2.0, "partition": [[1, 4], [2, 3, 5]]}, {"at": 2.6, "partition": [[1, 2, 4], [3, 5]]}],
]


@pytest.mark.parametrize("events", SPLITS)
@pytest.mark.parametrize("seed", range(4))
def test_with_the_lease_one_primary_number_acts_at_any_instant(events: list[dict[str, Any]], seed: int) -> None:
    sim = simulator({"nodes": 5, "seed": seed, "duration": 6.0, "event": events})
    assert sim.checker is not None and sim.checker.lease  # invariant (e) checked on every event
    result = sim.run()
    assert result.violation is None, str(result.violation)
    assert overlaps(result.records) == 0
    assert len({p[3] for p in primaries(result)}) >= 2  # a new primary did form


def test_without_the_lease_an_old_minority_primary_overlaps_the_new_one() -> None:
    # The minority {1,2} notices the partition on its own clock; the majority may form
    # its primary first.  Safety (c) still holds (the chain is fine); only (e) breaks.
    seeds = range(20)
    counts = []
    for seed in seeds:
        sim = simulator({"nodes": 5, "seed": seed, "duration": 4.0, "timing": {"lease": 0}, "event": SPLITS[0][:1]})
        assert sim.checker is not None and not sim.checker.lease
        result = sim.run()
        assert result.violation is None, str(result.violation)
        counts.append(overlaps(result.records))
    assert sum(1 for c in counts if c) >= 1, counts


# ---------------------------------------------------------------------- regressions (both fixed in 50aaa54)


@pytest.mark.parametrize("seed", range(5))
def test_attempts_lost_to_message_loss_are_recovered_once_the_loss_stops(seed: int) -> None:
    # Lossy links while the first view forms: some member misses another's attempt.
    # Its retries ask for it again ("please send"), also of members that formed already;
    # once the loss stops, every member of the (unchanged) view must end up primary.
    result = run(
        {
            "nodes": 3,
            "seed": seed,
            "duration": 6.0,
            "connectivity": "oracle",
            "network": {"loss": 0.3},
            "event": [{"at": 3.0, "loss": 0.0}],
        }
    )
    final = settled(result)
    assert len({members for members, _ in final.values()}) == 1
    assert all(primary for _, primary in final.values()), final


def test_a_member_that_reported_for_a_newer_view_does_not_form_the_old_session() -> None:
    """The report rides on the ack, sent while the old view is current.  Here node 1
    proposes V2 (its report: S = #2 {1,2,3} ambiguous) while it still misses 3's attempt
    of S, which its retry then fetches before V2 is installed.  Forming S on it would
    make the report stale: V2 sees every member of S report it ambiguous and settles it
    ("all members present, none formed"); V2 forms nowhere (4 crashes); {3,4,5}, with no
    subquorum of S, then forms.  The checker (c) would see #2 {1,2,3} followed by
    {3,4,5}.  The policy's ack_state now ends the session."""
    drive = Driver(simulator({"nodes": 5, "duration": 1e6}))
    sim = drive.sim
    assert sim.checker is not None
    drive.run_for(1.0)  # #1 {1..5}
    drive.apply("partition", groups=((1, 2, 3), (4, 5)))
    drive.run_until(lambda: drive.view(1) == (1, 2, 3))  # V1: 1 installed it and sent its attempt
    v1 = drive.epoch(1)
    drive.apply("heal")  # V2 {1..5} will be proposed in some 20 ms
    # While 2 and 3 install V1 and send their attempts: 1 misses 3's, 2 misses 3's, 3
    # misses 2's.  Nobody forms S yet; each retries after 0.1 s.
    for src, dst in ((2, 3), (3, 1), (3, 2)):
        drive.apply("link", src=src, dst=dst, up=False)
    drive.run_for(0.004)
    drive.apply("link", src=3, dst=1, up=True)
    drive.run_until(lambda: drive.accepted_epoch(1) > v1)  # 1 proposed V2: its report is out
    assert (1, 2, 3) not in sim.checker.primaries.values()  # S formed nowhere so far
    drive.apply("link", src=5, dst=1, up=False)  # 5's ack is lost: V2 waits for its retry ...
    drive.run_for(0.15)  # ... while 1's retry fetches 3's attempt of S (2 and 3 still miss one)
    assert drive.epoch(1) == v1
    drive.apply("link", src=5, dst=1, up=True)
    drive.run_until(lambda: drive.epoch(1) > v1)  # 1 installs V2 ...
    drive.apply("crash", nodes=(4,))  # ... and 4 crashes before it does: V2 forms nowhere
    drive.run_until(lambda: all(drive.epoch(n) > v1 for n in (2, 3, 5)))
    drive.apply("partition", groups=((1, 2), (3, 4, 5)))
    drive.run_for(2.0)
    drive.apply("recover", nodes=(4,))
    drive.run_for(4.0)  # the checker judges {3,4,5} against every primary formed
    assert (1, 2, 3) not in sim.checker.primaries.values()
    assert all(sim.nodes[n].primary is not None for n in (3, 4, 5))  # S never formed: {3,4,5} may


# ---------------------------------------------------------------------- one Ethernet frame


class _FrameSimulator(Simulator):
    """Every core's ``max_datagram`` is one IPv6 Ethernet payload less an authentication envelope."""

    MAX_DATAGRAM = 1452 - 64

    def _config(self, node_id: int) -> MembershipConfig:
        return attrs.evolve(super()._config(node_id), max_datagram=self.MAX_DATAGRAM)


def test_a_64_node_cluster_forms_and_re_forms_within_one_ethernet_frame() -> None:
    """Each INSTALL carries every member's report: it fits 1388 bytes because the reports
    name their sessions' members as bitmaps over the view and the INSTALL sends each
    distinct report once (wire version 3; version 2 fit 14 nodes)."""
    nodes = list(range(1, 65))
    big, small = nodes[:40], nodes[40:]
    table = {
        "nodes": 64,
        "seed": 7,
        "duration": 8.0,
        "quorum": {"policy": "ykd"},
        "event": [
            {"at": 2.0, "crash": [1]},  # the coordinator
            {"at": 3.5, "recover": [1]},
            {"at": 5.0, "partition": [big, small]},
            {"at": 6.5, "heal": True},
        ],
    }
    result = _FrameSimulator(parse_scenario(table)).run()
    assert result.violation is None, str(result.violation)
    assert "tx_dropped_oversize" not in result.counters
    formed = primaries(result)

    def formed_by(members: list[int], start: float, end: float) -> set[int]:
        return {p[1] for p in formed if start < p[0] < end and p[2] == tuple(members)}

    assert formed_by(nodes, 0.0, 2.0) == set(nodes)
    assert formed_by(nodes[1:], 2.0, 3.5) == set(nodes[1:])  # without its coordinator
    assert formed_by(nodes, 3.5, 5.0) == set(nodes)  # with it again
    assert formed_by(big, 5.0, 6.5) == set(big)
    assert not [p for p in formed if 5.0 < p[0] < 6.5 and set(p[2]) <= set(small)]
    assert settled(result) == {n: (tuple(nodes), True) for n in nodes}
