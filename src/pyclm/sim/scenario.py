"""Scenario files: a simulated cluster and what happens to it (``docs/scenarios.md``).

:func:`load_scenario` and :func:`parse_scenario` validate everything up front and raise
:class:`~pyclm.errors.ConfigError` naming the first bad field, e.g.
``event[3].crash: node 9 is not running at t=10.0``.
"""

from __future__ import annotations

import math
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from ..config import MAX_CLUSTER_SIZE, TimingConfig
from ..errors import ConfigError
from ..ids import MAX_NODE_ID
from ..voting import QuorumConfig
from .network import NetworkConditions

ACTIONS = ("partition", "heal", "crash", "recover", "leave", "join", "link", "loss", "remove")
#: Extra keys of a ``crash`` event (see ``docs/scenarios.md``).
CRASH_MODIFIERS = ("during_write", "lose_state")
#: What ``lose_state`` may destroy: the quorum policy's record, or the whole storage.
LOSE_STATES = ("quorum", "all")
#: Extra keys of a ``remove`` event: the node the operator runs it on, and why.
REMOVE_MODIFIERS = ("by", "reason")


@attrs.frozen(kw_only=True)
class ScenarioEvent:
    """One scripted event.  ``during_write`` and ``lose_state`` modify a ``crash`` only."""

    at: float
    action: str
    nodes: tuple[int, ...] = ()
    groups: tuple[tuple[int, ...], ...] = ()
    src: int = 0
    dst: int = 0
    up: bool = True
    loss: float = 0.0
    during_write: bool = attrs.field(default=False)
    lose_state: str | None = attrs.field(default=None)
    by: int = 0  # remove: the survivor the operator runs it on
    reason: str = ""  # remove: the audit log's reason

    @during_write.validator
    def _check_during_write(self, _attr: attrs.Attribute[bool], value: bool) -> None:
        if value and self.action != "crash":
            raise ValueError(f"during_write modifies a crash, not a {self.action}")

    @lose_state.validator
    def _check_lose_state(self, _attr: attrs.Attribute[str | None], value: str | None) -> None:
        if value is not None and value not in LOSE_STATES:
            raise ValueError(f"lose_state is None or one of {LOSE_STATES}, got {value!r}")
        if value is not None and self.action != "crash":
            raise ValueError(f"lose_state modifies a crash, not a {self.action}")

    def as_record(self) -> dict[str, Any]:
        """The JSON line of this event (without ``t``); a crash's modifiers only when set."""
        record: dict[str, Any] = {"event": self.action}
        if self.action in ("crash", "recover", "leave", "join"):
            record["nodes"] = list(self.nodes)
            if self.during_write:
                record["during_write"] = True
            if self.lose_state is not None:
                record["lose_state"] = self.lose_state
        elif self.action == "partition":
            record["groups"] = [list(g) for g in self.groups]
        elif self.action == "link":
            record.update({"from": self.src, "to": self.dst, "up": self.up})
        elif self.action == "loss":
            record["loss"] = self.loss
        elif self.action == "remove":
            record.update({"nodes": list(self.nodes), "by": self.by, "reason": self.reason})
        return record


@attrs.frozen(kw_only=True)
class Scenario:
    nodes: tuple[int, ...]
    seed: int = 0
    duration: float = 30.0
    connectivity: str = "heartbeat"
    quorum: QuorumConfig
    timing: TimingConfig = attrs.field(factory=TimingConfig)
    network: NetworkConditions = attrs.field(factory=NetworkConditions)
    events: tuple[ScenarioEvent, ...] = ()


def load_scenario(path: str | Path) -> Scenario:
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(str(path), f"cannot read the scenario: {exc.strerror or exc}") from None
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(str(path), f"not valid TOML: {exc}") from None
    return parse_scenario(data)


_TIMING_KEYS = ("heartbeat_interval", "suspect_timeout", "settle_delay", "lease", "max_drift")
_TOP = {"nodes", "seed", "duration", "connectivity", "quorum", "timing", "network", "event"}


def _number(field: str, value: Any, *, low: float = 0.0, high: float = math.inf, low_open: bool = False) -> float:
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        raise ConfigError(field, f"must be a number, got {value!r}")
    if value < low or value > high or (low_open and value == low):
        bound = f"> {low}" if low_open else f">= {low}"
        raise ConfigError(
            field, f"must be {bound}" + (f" and <= {high}" if high != math.inf else "") + f", got {value}"
        )
    return float(value)


def _node(field: str, value: Any) -> int:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_NODE_ID:
        raise ConfigError(field, f"node ids are integers in 0..{MAX_NODE_ID}, got {value!r}")
    return value


def _node_list(field: str, value: Any) -> tuple[int, ...]:
    if not isinstance(value, list) or not value:
        raise ConfigError(field, f"must be a non-empty list of node ids, got {value!r}")
    ids = tuple(_node(field, v) for v in value)
    if len(set(ids)) != len(ids):
        raise ConfigError(field, f"lists a node twice: {list(ids)}")
    return ids


def _table(field: str, value: Any) -> Mapping[str, Any]:
    if not isinstance(value, dict):
        raise ConfigError(field, "must be a table")
    return value


def parse_scenario(data: Mapping[str, Any]) -> Scenario:
    """Validate a decoded TOML document and build the :class:`Scenario`."""
    for key in data:
        if key not in _TOP:
            raise ConfigError(key, f"unknown field (known: {', '.join(sorted(_TOP))})")
    if "nodes" not in data:
        raise ConfigError("nodes", "missing: give a count (nodes = 5) or a list (nodes = [1, 2, 7])")
    raw_nodes = data["nodes"]
    if isinstance(raw_nodes, int) and not isinstance(raw_nodes, bool):
        if not 1 <= raw_nodes <= MAX_CLUSTER_SIZE:
            raise ConfigError("nodes", f"a count must be in 1..{MAX_CLUSTER_SIZE}, got {raw_nodes}")
        nodes = tuple(range(1, raw_nodes + 1))
    else:
        nodes = tuple(sorted(_node_list("nodes", raw_nodes)))
        if len(nodes) > MAX_CLUSTER_SIZE:
            raise ConfigError("nodes", f"at most {MAX_CLUSTER_SIZE} nodes")
    seed = data.get("seed", 0)
    if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
        raise ConfigError("seed", f"must be an integer >= 0, got {seed!r}")
    duration = _number("duration", data.get("duration", 30.0), low=0.0, high=1e6, low_open=True)
    connectivity = data.get("connectivity", "heartbeat")
    if connectivity not in ("heartbeat", "oracle"):
        raise ConfigError("connectivity", f"must be 'heartbeat' or 'oracle', got {connectivity!r}")

    quorum = parse_quorum(data.get("quorum", {}), "quorum").with_default_votes(list(nodes))

    timing_raw = dict(_table("timing", data.get("timing", {})))
    for key in timing_raw:
        if key not in _TIMING_KEYS:
            raise ConfigError(f"timing.{key}", f"unknown field (known: {', '.join(_TIMING_KEYS)})")
    timing = TimingConfig(**timing_raw)

    network_raw = dict(_table("network", data.get("network", {})))
    for key in network_raw:
        if key not in ("latency", "jitter", "loss", "duplicate", "reorder"):
            raise ConfigError(f"network.{key}", "unknown field (known: latency, jitter, loss, duplicate, reorder)")
    try:
        network = NetworkConditions(**network_raw)
    except ValueError as exc:
        field, _, problem = str(exc).partition(": ")
        raise ConfigError(field, problem) from None

    raw_events = data.get("event", [])
    if not isinstance(raw_events, list):
        raise ConfigError("event", "must be an array of tables ([[event]])")
    events = tuple(_parse_event(i, raw, duration) for i, raw in enumerate(raw_events))
    _check_story(nodes, events)
    return Scenario(
        nodes=nodes,
        seed=seed,
        duration=duration,
        connectivity=connectivity,
        quorum=quorum,
        timing=timing,
        network=network,
        events=tuple(sorted(events, key=lambda e: e.at)),
    )


def parse_quorum(raw: Any, field: str) -> QuorumConfig:
    """Build a :class:`QuorumConfig` from a ``[quorum]`` table (scenarios and node configs)."""
    table = dict(_table(field, raw))
    known = {"policy", "votes", "tie_breaker"}
    kwargs = {k: table.pop(k) for k in list(table) if k in known}
    if "votes" in kwargs and not isinstance(kwargs["votes"], dict):
        raise ConfigError(f"{field}.votes", "must be a table of node id = votes, e.g. { 1 = 1, 2 = 1 }")
    try:
        return QuorumConfig(**kwargs, options=table)
    except ConfigError:
        raise
    except (TypeError, ValueError) as exc:
        raise ConfigError(field, str(exc)) from None


def _parse_event(i: int, raw: Any, duration: float) -> ScenarioEvent:
    field = f"event[{i}]"
    table = _table(field, raw)
    if "at" not in table:
        raise ConfigError(f"{field}.at", "missing: when the event happens, in simulated seconds")
    at = _number(f"{field}.at", table["at"], high=duration)
    actions = [k for k in table if k != "at" and k not in CRASH_MODIFIERS and k not in REMOVE_MODIFIERS]
    unknown = [k for k in actions if k not in ACTIONS]
    if unknown:
        raise ConfigError(f"{field}.{unknown[0]}", f"unknown action (known: {', '.join(ACTIONS)})")
    if len(actions) != 1:
        raise ConfigError(field, f"needs exactly one action, got {len(actions)}: {actions}")
    action = actions[0]
    value = table[action]
    where = f"{field}.{action}"
    for modifier in CRASH_MODIFIERS:
        if modifier in table and action != "crash":
            raise ConfigError(f"{field}.{modifier}", f"only a crash takes {modifier}, not {action}")
    for modifier in REMOVE_MODIFIERS:
        if modifier in table and action != "remove":
            raise ConfigError(f"{field}.{modifier}", f"only a remove takes {modifier}, not {action}")
    if action == "remove":
        if "by" not in table:
            raise ConfigError(f"{field}.by", "missing: the running node the operator declares the removal on")
        by = _node(f"{field}.by", table["by"])
        reason = table.get("reason", "scenario")
        if not isinstance(reason, str):
            raise ConfigError(f"{field}.reason", f"must be a string, got {reason!r}")
        nodes = _node_list(where, value)
        if by in nodes:
            raise ConfigError(f"{field}.by", f"node {by} cannot declare itself removed")
        return ScenarioEvent(at=at, action=action, nodes=nodes, by=by, reason=reason)
    if action == "crash":
        during_write = table.get("during_write", False)
        if not isinstance(during_write, bool):
            raise ConfigError(f"{field}.during_write", f"must be true or false, got {during_write!r}")
        lose_state = table.get("lose_state")
        if lose_state is not None and lose_state not in LOSE_STATES:
            raise ConfigError(f"{field}.lose_state", f'must be "quorum" or "all", got {lose_state!r}')
        nodes = _node_list(where, value)
        return ScenarioEvent(at=at, action=action, nodes=nodes, during_write=during_write, lose_state=lose_state)
    if action in ("recover", "leave", "join"):
        return ScenarioEvent(at=at, action=action, nodes=_node_list(where, value))
    if action == "partition":
        if not isinstance(value, list) or not all(isinstance(g, list) for g in value):
            raise ConfigError(where, "must be a list of groups of node ids, e.g. [[1, 2], [3]]")
        groups = tuple(_node_list(where, g) for g in value)
        flat = [n for g in groups for n in g]
        if len(set(flat)) != len(flat):
            raise ConfigError(where, "a node is in two groups")
        return ScenarioEvent(at=at, action=action, groups=groups)
    if action == "heal":
        if value is not True:
            raise ConfigError(where, "write heal = true")
        return ScenarioEvent(at=at, action=action)
    if action == "link":
        link = _table(where, value)
        for key in link:
            if key not in ("from", "to", "up"):
                raise ConfigError(f"{where}.{key}", "unknown field (known: from, to, up)")
        for key in ("from", "to", "up"):
            if key not in link:
                raise ConfigError(f"{where}.{key}", "missing")
        if not isinstance(link["up"], bool):
            raise ConfigError(f"{where}.up", "must be true or false")
        src, dst = _node(f"{where}.from", link["from"]), _node(f"{where}.to", link["to"])
        if src == dst:
            raise ConfigError(where, "from and to are the same node")
        return ScenarioEvent(at=at, action=action, src=src, dst=dst, up=link["up"])
    # loss
    return ScenarioEvent(at=at, action=action, loss=_number(where, value, high=1.0))


def _check_story(nodes: tuple[int, ...], events: tuple[ScenarioEvent, ...]) -> None:
    """Replay who is running so that e.g. crashing a crashed node is caught before running."""
    running = set(nodes)
    crashed: set[int] = set()
    known = set(nodes)
    order = sorted(range(len(events)), key=lambda i: events[i].at)
    for i in order:
        event = events[i]
        where = f"event[{i}].{event.action}"
        if event.action == "remove":
            if event.by not in running:
                raise ConfigError(f"event[{i}].by", f"node {event.by} is not running at t={event.at}")
            continue
        for n in event.nodes:
            if event.action in ("crash", "leave") and n not in running:
                raise ConfigError(where, f"node {n} is not running at t={event.at}")
            if event.action == "recover" and n not in crashed:
                raise ConfigError(where, f"node {n} has not crashed at t={event.at} (use join for a node that left)")
            if event.action == "join" and (n in running or n in crashed):
                raise ConfigError(where, f"node {n} is {'running' if n in running else 'crashed'} at t={event.at}")
        if event.action == "crash":
            running -= set(event.nodes)
            crashed |= set(event.nodes)
        elif event.action == "recover":
            running |= set(event.nodes)
            crashed -= set(event.nodes)
        elif event.action == "leave":
            running -= set(event.nodes)
        elif event.action == "join":
            running |= set(event.nodes)
            known |= set(event.nodes)
        elif event.action in ("partition", "link"):
            named = [n for g in event.groups for n in g] + ([event.src, event.dst] if event.action == "link" else [])
            for n in named:
                if n not in known:
                    raise ConfigError(where, f"node {n} is not part of the scenario (yet) at t={event.at}")
        if len(known) > MAX_CLUSTER_SIZE:
            raise ConfigError(where, f"more than {MAX_CLUSTER_SIZE} nodes")
