"""The simulator's crash modifiers: crashes in the middle of persisting, and lost storage.

Small scenarios (three nodes, seeded) driven step by step: ``Simulator.run(until=...)``,
``Simulator.crash`` and ``Simulator.apply``.
"""

from __future__ import annotations

from typing import Any

import pytest

from pyclm.core import Membership
from pyclm.sim import Scenario, ScenarioEvent, Simulator, parse_scenario, simulate
from pyclm.sim.engine import SimNode, WriteCrash
from pyclm.storage import MembershipRecord, StorageWrite
from pyclm.voting import VotingState


def scenario(policy: str = "majority", connectivity: str = "heartbeat", seed: int = 1, **extra: Any) -> Scenario:
    """Three nodes, votes 1 each; ``extra`` adds top-level fields (e.g. ``event=[...]``)."""
    doc = {"nodes": 3, "seed": seed, "duration": 20.0, "connectivity": connectivity, "quorum": {"policy": policy}}
    return parse_scenario(doc | extra)


class SendLog(Simulator):
    """A simulator that notes when each node hands datagrams to the network."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.sent: list[tuple[float, int]] = []

    def _send(self, src: int, datagrams: list[tuple[bytes, Any]]) -> None:
        self.sent.append((self.now, src))
        super()._send(src, datagrams)


def settled(sim: Simulator, until: float) -> None:
    result = sim.run(until=until)
    assert result.violation is None, result.violation
    views = {sim.nodes[n].view for n in sim.running()}
    assert len(views) == 1 and None not in views, views


def split_off_node_1(sim: Simulator) -> None:
    """Nodes 2 and 3 lose node 1: they agree on a new view, so node 3 persists (accepts it)."""
    sim.apply(ScenarioEvent(at=sim.now, action="partition", groups=((1,), (2, 3))))


# ------------------------------------------------------------------ during_write


@pytest.mark.parametrize("seed", range(8))
def test_a_during_write_crash_strikes_at_the_next_batch_and_sends_nothing_from_it(seed: int) -> None:
    sim = SendLog(scenario(seed=seed))
    settled(sim, 2.0)
    node = sim.nodes[3]
    sim.crash(3, during_write=True)
    assert node.core is not None  # armed, still running
    before = dict(node.storage.records)
    writes_before = node.storage.writes
    sim.run(until=3.0)
    assert node.core is not None  # no view change, no write: it keeps running
    assert node.storage.records == before
    split_off_node_1(sim)
    result = sim.run(until=6.0)
    assert result.violation is None, result.violation
    crash = node.write_crash
    assert isinstance(crash, WriteCrash)
    assert node.core is None and crash.at > 3.0
    assert 0 <= crash.steps_done <= 2 * len(crash.writes)
    # It sent heartbeats until then, and nothing at or after the step that crashed it.
    assert any(3.0 < t < crash.at for t, src in sim.sent if src == 3)
    assert not [t for t, src in sim.sent if src == 3 and t >= crash.at]
    # Exactly the first `applied` writes are durable; every other record is the old one.
    expected = dict(before)
    for write in crash.writes[: crash.applied]:
        expected[write.key] = write.data
    assert node.storage.records == expected
    assert node.storage.writes == writes_before + crash.applied
    # The others go on without it.
    assert sim.running() == [1, 2]


def test_during_write_crashes_cut_a_batch_at_every_step() -> None:
    """Over a few seeds the crash lands before, between and after the two steps of a write."""
    seen: set[tuple[int, int]] = set()
    for seed in range(12):
        sim = Simulator(scenario(seed=seed))
        settled(sim, 2.0)
        sim.crash(3, during_write=True)
        split_off_node_1(sim)
        sim.run(until=6.0)
        crash = sim.nodes[3].write_crash
        assert crash is not None
        seen.add((crash.steps_done, 2 * len(crash.writes)))
    assert {done for done, _ in seen} == {0, 1, 2}, seen


class BatchLog(Simulator):
    """A simulator that notes every storage batch: (time, node, writes)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.batches: list[tuple[float, int, tuple[StorageWrite, ...]]] = []

    def _pump(self, node: SimNode, core: Membership) -> None:
        writes = tuple(core._writes)  # what writes_to_persist() is about to hand out
        if writes:
            self.batches.append((self.now, node.node_id, writes))
        super()._pump(node, core)


def test_a_crash_in_the_middle_of_a_batch_applies_a_prefix_of_it() -> None:
    """YKD writes two records in one step after a heal: the crash can fall between them."""
    events = [{"at": 2.0, "partition": [[1], [2, 3]]}, {"at": 3.5, "heal": True}]
    cuts = set()
    for seed in range(10):
        reference = BatchLog(scenario("ykd", seed=seed, event=events))
        assert reference.run(until=6.0).violation is None
        t, node_id, writes = next((t, n, w) for t, n, w in reference.batches if t > 1.0 and len(w) > 1)
        # The same run, with that node's crash armed just before that batch.
        sim = Simulator(scenario("ykd", seed=seed, event=events))
        sim.run(until=t - 1e-9)
        node = sim.nodes[node_id]
        old = dict(node.storage.records)
        sim.crash(node_id, during_write=True)
        assert sim.run(until=6.0).violation is None
        crash = node.write_crash
        assert crash is not None and (crash.at, crash.writes) == (t, writes)
        expected = dict(old)
        for write in writes[: crash.applied]:
            expected[write.key] = write.data
        assert node.storage.records == expected
        for key, data in node.storage.records.items():  # each record whole: decodable
            assert VotingState.decode(data) if key == "quorum" else MembershipRecord.decode(data)
        cuts.add(crash.steps_done)
    assert cuts & {1, 2, 3}, cuts  # some crash fell inside the batch, not at its ends


def test_the_oracle_notices_a_node_that_crashed_mid_write() -> None:
    sim = Simulator(scenario(connectivity="oracle"))
    settled(sim, 2.0)
    sim.crash(3, during_write=True)
    split_off_node_1(sim)
    sim.run(until=3.0)
    assert sim.nodes[3].write_crash is not None
    sim.apply(ScenarioEvent(at=sim.now, action="heal"))
    settled(sim, 5.0)
    assert sim.running() == [1, 2]
    view = sim.nodes[1].view
    assert view is not None and view.node_ids == (1, 2)


def test_a_recover_before_the_next_write_makes_the_crash_strike_then() -> None:
    sim = Simulator(scenario())
    settled(sim, 2.0)
    old_life = sim.nodes[3].core
    assert old_life is not None
    sim.crash(3, during_write=True, lose_state="all")
    sim.apply(ScenarioEvent(at=sim.now, action="recover", nodes=(3,)))
    node = sim.nodes[3]
    assert node.core is not None and node.core is not old_life
    assert node.core.incarnation > old_life.incarnation
    assert node.write_crash is None  # it struck before any write
    assert not node.crash_at_write
    assert MembershipRecord.decode(node.storage.records["membership"]) == MembershipRecord(
        node.core.incarnation, 0, 0, ()
    )  # storage wiped at the crash: it came back as new
    settled(sim, 5.0)


def test_a_node_that_leaves_with_a_crash_pending_just_leaves() -> None:
    sim = Simulator(scenario())
    settled(sim, 2.0)
    sim.crash(3, during_write=True)
    sim.apply(ScenarioEvent(at=sim.now, action="leave", nodes=(3,)))
    assert sim.nodes[3].core is None and not sim.nodes[3].crash_at_write
    sim.apply(ScenarioEvent(at=sim.now + 1.0, action="join", nodes=(3,)))
    settled(sim, 5.0)
    assert sim.nodes[3].write_crash is None


def test_crash_misuse_is_refused() -> None:
    sim = Simulator(scenario())
    sim.start()
    with pytest.raises(ValueError, match="lose_state"):
        sim.crash(1, lose_state="disk")
    sim.crash(1)
    with pytest.raises(ValueError, match="node 1 is not running"):
        sim.crash(1)
    with pytest.raises(ValueError, match="node 9 is not running"):
        sim.crash(9)


# ------------------------------------------------------------------ lose_state


def test_lose_state_quorum_makes_a_ykd_node_amnesiac(caplog: pytest.LogCaptureFixture) -> None:
    sim = Simulator(scenario("ykd"))
    settled(sim, 2.0)
    node = sim.nodes[3]
    membership = node.storage.records["membership"]
    sim.apply(ScenarioEvent(at=sim.now, action="crash", nodes=(3,), lose_state="quorum"))
    assert node.storage.records == {"membership": membership, "quorum": b""}
    sim.run(until=3.0)
    sim.apply(ScenarioEvent(at=sim.now, action="recover", nodes=(3,)))
    assert node.core is not None
    assert node.core.policy.state.amnesiac  # type: ignore[attr-defined]
    assert "node 3: voting state unreadable after being a member: amnesiac" in caplog.text
    settled(sim, 6.0)


def test_lose_state_all_brings_the_node_back_as_new(caplog: pytest.LogCaptureFixture) -> None:
    sim = Simulator(scenario("ykd"))
    settled(sim, 2.0)
    node = sim.nodes[3]
    before = MembershipRecord.decode(node.storage.records["membership"])
    assert before is not None and before.max_epoch > 0
    sim.apply(ScenarioEvent(at=sim.now, action="crash", nodes=(3,), lose_state="all"))
    assert node.storage.records == {}
    sim.run(until=3.0)
    sim.apply(ScenarioEvent(at=sim.now, action="recover", nodes=(3,)))
    assert node.core is not None
    assert not node.core.policy.state.amnesiac  # type: ignore[attr-defined]
    assert "amnesiac" not in caplog.text and "unreadable" not in caplog.text
    after = MembershipRecord.decode(node.storage.records["membership"])
    assert after is not None and after.max_epoch == 0  # nothing says it was ever a member
    settled(sim, 6.0)


def test_lose_state_quorum_without_a_quorum_record_changes_nothing() -> None:
    sim = Simulator(scenario("majority"))
    settled(sim, 2.0)
    records = dict(sim.nodes[3].storage.records)
    assert "quorum" not in records
    sim.crash(3, lose_state="quorum")
    assert sim.nodes[3].storage.records == records


# ------------------------------------------------------------------ from a scenario file


def test_crash_modifiers_from_a_scenario_are_recorded_and_replay_exactly() -> None:
    events = [
        {"at": 2.0, "crash": [3], "during_write": True, "lose_state": "quorum"},
        {"at": 3.0, "partition": [[1], [2, 3]]},
        {"at": 5.0, "heal": True},
        {"at": 6.0, "recover": [3]},
        {"at": 8.0, "crash": [2]},
    ]
    first = simulate(scenario("ykd", event=events))
    assert first.violation is None, first.violation
    crashes = [r for r in first.records if r["event"] == "crash"]
    assert crashes == [
        {"t": 2.0, "event": "crash", "nodes": [3], "during_write": True, "lose_state": "quorum"},
        {"t": 8.0, "event": "crash", "nodes": [2]},
    ]
    write_crash = first.nodes[3].write_crash
    assert write_crash is not None and 3.0 < write_crash.at < 5.0
    assert all(isinstance(w, StorageWrite) for w in write_crash.writes)
    again = simulate(scenario("ykd", event=events))
    assert again.records == first.records
    assert again.nodes[3].write_crash == write_crash
