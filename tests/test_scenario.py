"""Scenario files: the example parses; every bad field is a ConfigError that names it."""

from __future__ import annotations

import copy
import tomllib
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from pyclm.errors import ConfigError
from pyclm.sim.network import NetworkConditions
from pyclm.sim.scenario import Scenario, ScenarioEvent, load_scenario, parse_scenario

#: The example of the issue, verbatim.
EXAMPLE = """\
nodes = 5
seed = 42
duration = 30.0
connectivity = "heartbeat"
[quorum]
policy = "majority"
votes = { 1 = 1, 2 = 1, 3 = 1, 4 = 1, 5 = 1 }
tie_breaker = "lowest"
[timing]
heartbeat_interval = 0.1
suspect_timeout = 0.5
[network]
latency = 0.001
jitter = 0.0002
loss = 0.0
duplicate = 0.0
reorder = 0.0
[[event]]
at = 2.0
partition = [[1, 2, 3], [4, 5]]
[[event]]
at = 8.0
heal = true
[[event]]
at = 10.0
crash = [2]
[[event]]
at = 14.0
recover = [2]
[[event]]
at = 16.0
leave = [5]
[[event]]
at = 18.0
join = [6]
[[event]]
at = 20.0
link = { from = 1, to = 3, up = false }
[[event]]
at = 22.0
loss = 0.3
"""

Doc = dict[str, Any]


def example() -> Doc:
    return tomllib.loads(EXAMPLE)


def test_the_example_parses() -> None:
    scenario = parse_scenario(example())
    assert isinstance(scenario, Scenario)
    assert scenario.nodes == (1, 2, 3, 4, 5)
    assert (scenario.seed, scenario.duration, scenario.connectivity) == (42, 30.0, "heartbeat")
    assert scenario.quorum.policy == "majority"
    assert scenario.quorum.votes == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}
    assert scenario.quorum.tie_breaker == "lowest"
    assert (scenario.timing.heartbeat_interval, scenario.timing.suspect_timeout) == (0.1, 0.5)
    assert scenario.network == NetworkConditions(latency=0.001, jitter=0.0002, loss=0.0, duplicate=0.0, reorder=0.0)
    assert scenario.events == (
        ScenarioEvent(at=2.0, action="partition", groups=((1, 2, 3), (4, 5))),
        ScenarioEvent(at=8.0, action="heal"),
        ScenarioEvent(at=10.0, action="crash", nodes=(2,)),
        ScenarioEvent(at=14.0, action="recover", nodes=(2,)),
        ScenarioEvent(at=16.0, action="leave", nodes=(5,)),
        ScenarioEvent(at=18.0, action="join", nodes=(6,)),
        ScenarioEvent(at=20.0, action="link", src=1, dst=3, up=False),
        ScenarioEvent(at=22.0, action="loss", loss=0.3),
    )


def test_event_records() -> None:
    records = [e.as_record() for e in parse_scenario(example()).events]
    assert records == [
        {"event": "partition", "groups": [[1, 2, 3], [4, 5]]},
        {"event": "heal"},
        {"event": "crash", "nodes": [2]},
        {"event": "recover", "nodes": [2]},
        {"event": "leave", "nodes": [5]},
        {"event": "join", "nodes": [6]},
        {"event": "link", "from": 1, "to": 3, "up": False},
        {"event": "loss", "loss": 0.3},
    ]


def test_load_scenario_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "example.toml"
    path.write_text(EXAMPLE, encoding="utf-8")
    assert load_scenario(path) == parse_scenario(example())


def test_load_scenario_reports_unreadable_and_invalid_files(tmp_path: Path) -> None:
    missing = tmp_path / "missing.toml"
    with pytest.raises(ConfigError) as info:
        load_scenario(missing)
    assert info.value.setting == str(missing)
    broken = tmp_path / "broken.toml"
    broken.write_text("nodes = [1, 2", encoding="utf-8")
    with pytest.raises(ConfigError) as info:
        load_scenario(broken)
    assert info.value.setting == str(broken)
    assert "TOML" in info.value.problem


def test_minimal_scenario_takes_the_defaults() -> None:
    scenario = parse_scenario({"nodes": [7, 3]})
    assert scenario.nodes == (3, 7)
    assert scenario.quorum.votes == {3: 1, 7: 1}
    assert scenario.events == ()
    assert (scenario.seed, scenario.duration, scenario.connectivity) == (0, 30.0, "heartbeat")


def test_events_are_sorted_by_time_and_the_story_replayed_in_time_order() -> None:
    doc = {"nodes": 3, "event": [{"at": 5.0, "recover": [2]}, {"at": 1.0, "crash": [2]}]}
    scenario = parse_scenario(doc)
    assert [e.action for e in scenario.events] == ["crash", "recover"]


def test_a_node_that_left_may_join_again() -> None:
    parse_scenario({"nodes": 3, "event": [{"at": 1.0, "leave": [3]}, {"at": 2.0, "join": [3]}]})


# ------------------------------------------------------------------ bad fields


def setter(path: list[Any], value: Any) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        target: Any = doc
        for key in path[:-1]:
            target = target[key]
        target[path[-1]] = value

    return apply


def deleter(path: list[Any]) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        target: Any = doc
        for key in path[:-1]:
            target = target[key]
        del target[path[-1]]

    return apply


def add_event(event: dict[str, Any]) -> Callable[[Doc], None]:
    def apply(doc: Doc) -> None:
        doc["event"].append(event)

    return apply


# (name, change to the example, expected .setting).  New events are appended: index 8.
BAD: list[tuple[str, Callable[[Doc], None], str]] = [
    ("unknown top-level key", setter(["colour"], "blue"), "colour"),
    ("nodes missing", deleter(["nodes"]), "nodes"),
    ("nodes=0", setter(["nodes"], 0), "nodes"),
    ("nodes too many", setter(["nodes"], 1025), "nodes"),
    ("nodes empty list", setter(["nodes"], []), "nodes"),
    ("duplicate ids", setter(["nodes"], [1, 2, 2]), "nodes"),
    ("negative id", setter(["nodes"], [1, -2]), "nodes"),
    ("nodes not a count or list", setter(["nodes"], "five"), "nodes"),
    ("negative seed", setter(["seed"], -1), "seed"),
    ("zero duration", setter(["duration"], 0.0), "duration"),
    ("bad connectivity", setter(["connectivity"], "psychic"), "connectivity"),
    ("bad probability", setter(["network", "loss"], 1.5), "network.loss"),
    ("negative probability", setter(["network", "duplicate"], -0.1), "network.duplicate"),
    ("bad latency", setter(["network", "latency"], "fast"), "network.latency"),
    ("unknown network field", setter(["network", "bandwidth"], 1), "network.bandwidth"),
    ("unknown timing field", setter(["timing", "tick"], 1), "timing.tick"),
    ("negative heartbeat", setter(["timing", "heartbeat_interval"], -0.1), "timing.heartbeat_interval"),
    ("suspect_timeout <= heartbeat_interval", setter(["timing", "suspect_timeout"], 0.1), "timing.suspect_timeout"),
    ("timing not a table", setter(["timing"], 3), "timing"),
    ("unknown quorum policy", setter(["quorum", "policy"], "dictator"), "quorum.policy"),
    ("negative votes", setter(["quorum", "votes", "3"], -1), "quorum.votes"),
    ("votes not a table", setter(["quorum", "votes"], [1, 1]), "quorum.votes"),
    ("bad tie breaker", setter(["quorum", "tie_breaker"], "coin"), "quorum.tie_breaker"),
    ("event with two actions", setter(["event", 1, "crash"], [1]), "event[1]"),
    ("event with no action", deleter(["event", 1, "heal"]), "event[1]"),
    ("event without at", deleter(["event", 2, "at"]), "event[2].at"),
    ("event after the end", setter(["event", 2, "at"], 31.0), "event[2].at"),
    ("unknown action", add_event({"at": 1.0, "explode": [1]}), "event[8].explode"),
    ("event not an array", setter(["event"], {"at": 1.0}), "event"),
    ("crash of a node not running", add_event({"at": 11.0, "crash": [2]}), "event[8].crash"),
    ("crash of an unknown node", add_event({"at": 1.0, "crash": [9]}), "event[8].crash"),
    ("leave of a crashed node", add_event({"at": 12.0, "leave": [2]}), "event[8].leave"),
    ("recover of a node that never crashed", add_event({"at": 1.0, "recover": [3]}), "event[8].recover"),
    ("recover of a node that left", add_event({"at": 17.0, "recover": [5]}), "event[8].recover"),
    ("join of a running node", add_event({"at": 1.0, "join": [1]}), "event[8].join"),
    ("join of a crashed node", add_event({"at": 12.0, "join": [2]}), "event[8].join"),
    ("crash list with a node twice", add_event({"at": 1.0, "crash": [1, 1]}), "event[8].crash"),
    ("link from==to", setter(["event", 6, "link", "to"], 1), "event[6].link"),
    ("link missing up", deleter(["event", 6, "link", "up"]), "event[6].link.up"),
    ("link up not a bool", setter(["event", 6, "link", "up"], 1), "event[6].link.up"),
    ("link unknown key", setter(["event", 6, "link", "weight"], 1), "event[6].link.weight"),
    ("link bad node", setter(["event", 6, "link", "from"], -1), "event[6].link.from"),
    ("link to an unknown node", setter(["event", 6, "link", "to"], 99), "event[6].link"),
    ("partition with a node twice", setter(["event", 0, "partition"], [[1, 2], [2, 3]]), "event[0].partition"),
    ("partition not groups", setter(["event", 0, "partition"], [1, 2]), "event[0].partition"),
    ("partition of an unknown node", setter(["event", 0, "partition"], [[1, 2], [7]]), "event[0].partition"),
    ("heal = false", setter(["event", 1, "heal"], False), "event[1].heal"),
    ("event loss above 1", setter(["event", 7, "loss"], 1.5), "event[7].loss"),
    ("during_write not a bool", setter(["event", 2, "during_write"], "yes"), "event[2].during_write"),
    ("during_write = 1", setter(["event", 2, "during_write"], 1), "event[2].during_write"),
    ("unknown lose_state", setter(["event", 2, "lose_state"], "disk"), "event[2].lose_state"),
    ("lose_state not a string", setter(["event", 2, "lose_state"], True), "event[2].lose_state"),
    ("during_write on a recover", setter(["event", 3, "during_write"], True), "event[3].during_write"),
    ("lose_state on a leave", setter(["event", 4, "lose_state"], "all"), "event[4].lose_state"),
    ("lose_state on a heal", setter(["event", 1, "lose_state"], "quorum"), "event[1].lose_state"),
    ("a modifier alone", add_event({"at": 1.0, "during_write": True}), "event[8]"),
    ("a modifier on two actions", add_event({"at": 1.0, "crash": [1], "heal": True, "during_write": True}), "event[8]"),
]


@pytest.mark.parametrize(("change", "setting"), [(c, s) for _, c, s in BAD], ids=[name for name, _, _ in BAD])
def test_bad_field_names_the_setting(change: Callable[[Doc], None], setting: str) -> None:
    doc = example()
    change(doc)
    with pytest.raises(ConfigError) as info:
        parse_scenario(doc)
    assert info.value.setting == setting, info.value
    assert str(info.value).startswith(f"{setting}: ")


def test_example_document_is_not_mutated_between_cases() -> None:
    # The table above edits a fresh copy each time; the example itself must stay valid.
    doc = example()
    before = copy.deepcopy(doc)
    parse_scenario(doc)
    assert doc == before


def test_crash_message_names_node_and_time() -> None:
    doc = example()
    doc["event"].append({"at": 11.0, "crash": [2]})
    with pytest.raises(ConfigError, match=r"node 2 is not running at t=11.0"):
        parse_scenario(doc)


def test_crash_modifiers_parse_and_appear_in_the_record_only_when_set() -> None:
    doc = example()
    doc["event"][2].update({"during_write": True, "lose_state": "quorum"})
    event = parse_scenario(doc).events[2]
    assert event == ScenarioEvent(at=10.0, action="crash", nodes=(2,), during_write=True, lose_state="quorum")
    assert event.as_record() == {"event": "crash", "nodes": [2], "during_write": True, "lose_state": "quorum"}
    doc["event"][2].update({"during_write": False, "lose_state": "all"})
    event = parse_scenario(doc).events[2]
    assert event.as_record() == {"event": "crash", "nodes": [2], "lose_state": "all"}
    del doc["event"][2]["lose_state"]
    assert parse_scenario(doc) == parse_scenario(example())  # during_write = false is the default


def test_a_during_write_crash_counts_as_a_crash_for_the_story() -> None:
    events: list[dict[str, Any]] = [{"at": 1.0, "crash": [2], "during_write": True}, {"at": 2.0, "recover": [2]}]
    parse_scenario({"nodes": 3, "event": events})
    events.append({"at": 1.5, "leave": [2]})
    with pytest.raises(ConfigError, match=r"event\[2\]\.leave: node 2 is not running"):
        parse_scenario({"nodes": 3, "event": events})


def test_scenario_events_check_their_modifiers() -> None:
    with pytest.raises(ValueError, match="during_write modifies a crash, not a leave"):
        ScenarioEvent(at=1.0, action="leave", nodes=(1,), during_write=True)
    with pytest.raises(ValueError, match="lose_state modifies a crash, not a recover"):
        ScenarioEvent(at=1.0, action="recover", nodes=(1,), lose_state="all")
    with pytest.raises(ValueError, match="lose_state is None or one of"):
        ScenarioEvent(at=1.0, action="crash", nodes=(1,), lose_state="disk")
