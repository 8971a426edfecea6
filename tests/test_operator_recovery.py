"""Operator recovery: declaring nodes permanently removed, when it rescues and what misuse costs."""

from __future__ import annotations

import logging
from typing import Any

import pytest

from pyclm.errors import ConfigError, UsageError
from pyclm.sim.engine import Simulator
from pyclm.sim.scenario import parse_scenario
from pyclm.voting import YKD, QuorumConfig


def scenario(events: list[dict[str, Any]], *, policy: str = "ykd", duration: float = 12.0) -> Any:
    return parse_scenario({"nodes": 5, "seed": 3, "duration": duration, "quorum": {"policy": policy}, "event": events})


def primaries(sim: Simulator) -> dict[int, int | None]:
    return {n: sim.nodes[n].primary for n in sim.running()}


def test_losing_a_quorum_for_good_blocks_ykd_until_an_operator_removes_the_dead() -> None:
    sim = Simulator(scenario([{"at": 2.0, "crash": [3, 4, 5]}]))
    result = sim.run(until=6.0)
    assert result.violation is None
    # {1, 2} holds 2 of the 5 of the last primary: YKD blocks, correctly.
    assert primaries(sim) == {1: None, 2: None}
    assert sim.final_views()["1"]["members"] == [1, 2]

    sim.remove_nodes(1, [3, 4, 5], reason="rack 2 destroyed")
    result = sim.run(until=8.0)
    assert result.violation is None
    numbers = primaries(sim)
    assert numbers[1] is not None and numbers[1] == numbers[2]
    core = sim.nodes[1].core
    assert core is not None
    (entry,) = core.audit_log()
    assert entry["action"] == "remove_nodes" and entry["nodes"] == [3, 4, 5] and entry["by"] == 1
    assert entry["reason"] == "rack 2 destroyed"
    # The declaration reached node 2 with the state reports.
    policy = sim.nodes[2].core.policy  # type: ignore[union-attr]
    assert isinstance(policy, YKD)
    assert {n for n, _ in policy.state.removed} == {3, 4, 5}


def test_the_removal_is_an_audited_scenario_event(caplog: pytest.LogCaptureFixture) -> None:
    events = [{"at": 2.0, "crash": [3, 4, 5]}, {"at": 6.0, "remove": [3, 4, 5], "by": 2, "reason": "fire"}]
    with caplog.at_level(logging.WARNING, logger="pyclm.core"):
        result = Simulator(scenario(events)).run()
    assert result.violation is None
    assert {"t": 6.0, "event": "remove", "nodes": [3, 4, 5], "by": 2, "reason": "fire"} in result.records
    assert [r for r in result.records if r.get("event") == "primary" and r["t"] > 6.0]
    assert any("AUDIT" in r.getMessage() and "fire" in r.getMessage() for r in caplog.records)


def test_a_removed_node_that_comes_back_with_its_old_state_is_amnesiac_then_rejoins() -> None:
    events = [
        {"at": 2.0, "crash": [3, 4, 5]},
        {"at": 6.0, "remove": [3, 4, 5], "by": 1},
        {"at": 8.0, "recover": [5]},
    ]
    sim = Simulator(scenario(events))
    result = sim.run(until=8.0 + 0.2)
    assert result.violation is None
    policy = sim.nodes[5].core.policy  # type: ignore[union-attr]
    assert isinstance(policy, YKD)
    result = sim.run()
    assert result.violation is None
    # Back in a formed primary: no longer amnesiac, and counted again from now on.
    assert not policy.state.amnesiac
    assert sim.nodes[5].primary is not None
    assert sim.final_views()["5"]["members"] == [1, 2, 5]


def test_misuse_removing_nodes_that_are_alive_splits_the_brain() -> None:
    """The cost of a wrong declaration: both sides of a partition act as primary at once.

    {3, 4, 5} is a majority and stays primary; the operator on {1, 2} wrongly declares
    3, 4 and 5 dead, and {1, 2} forms a primary too.  The lease cannot help: the nodes
    that could have stopped {1, 2} were declared out of the count.
    """
    events = [
        {"at": 2.0, "partition": [[1, 2], [3, 4, 5]]},
        {"at": 5.0, "remove": [3, 4, 5], "by": 1, "reason": "wrongly believed dead"},
    ]
    sim = Simulator(scenario(events))
    assert sim.run(until=4.9).violation is None
    assert primaries(sim)[3] is not None  # the majority side is primary
    result = sim.run()
    # The checker stops the run at the first sign: here {1, 2} forms a primary with the
    # very number {3, 4, 5} holds (both computed from the same last primary), while
    # {3, 4, 5} still acts as primary.
    violation = str(result.violation)
    assert violation.startswith("(c) primary safety") and "are both primary number" in violation
    views = {sim.nodes[n].view.view_id for n in (1, 3)}  # type: ignore[union-attr]
    assert {str(v) for v in views} <= set(violation.split())
    assert sim.nodes[3].primary is not None


def test_removal_is_refused_where_it_means_nothing() -> None:
    with pytest.raises(ConfigError, match=r"event\[0\]\.remove: policy 'majority' has no permanent removal"):
        Simulator(scenario([{"at": 1.0, "remove": [3], "by": 1}], policy="majority"))
    policy = YKD(QuorumConfig(policy="ykd", votes={1: 1, 2: 1, 3: 1}), 1, None)
    with pytest.raises(UsageError, match="cannot declare itself"):
        policy.remove_nodes([1, 2])


@pytest.mark.parametrize(
    ("event", "field"),
    [
        ({"at": 1.0, "remove": [3]}, "event[0].by"),
        ({"at": 1.0, "remove": [3], "by": 3}, "event[0].by"),
        ({"at": 1.0, "remove": [3], "by": 1, "reason": 7}, "event[0].reason"),
        ({"at": 1.0, "crash": [2], "by": 1}, "event[0].by"),
        ({"at": 1.0, "remove": "3", "by": 1}, "event[0].remove"),
    ],
)
def test_bad_remove_events_name_the_field(event: dict[str, Any], field: str) -> None:
    with pytest.raises(ConfigError) as info:
        scenario([event])
    assert info.value.setting == field


def test_the_remover_must_be_running() -> None:
    with pytest.raises(ConfigError) as info:
        scenario([{"at": 1.0, "crash": [1]}, {"at": 2.0, "remove": [3], "by": 1}])
    assert info.value.setting == "event[1].by"
