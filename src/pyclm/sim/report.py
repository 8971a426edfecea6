"""Presenting a run: JSON lines in the documented order, a full timeline, a settled summary."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any, TextIO

from ..events import Event, PrimaryFormed, PrimaryLost, ViewInstalled

Record = dict[str, Any]


def event_record(t: float, node_id: int, event: Event) -> Record | None:
    """The ``view`` / ``primary`` / ``primary_lost`` record of a core event (None for the
    other events): the same shape in ``pyclm simulate --json`` and ``pyclm node --events-json``."""
    if type(event) is ViewInstalled or type(event) is PrimaryFormed:
        view = event.view
        record = {
            "t": t,
            "node": node_id,
            "event": "view" if type(event) is ViewInstalled else "primary",
            "view": str(view.view_id),
            "epoch": view.view_id.epoch,
            "members": list(view.node_ids),
        }
        if type(event) is PrimaryFormed:
            record["number"] = event.number
        return record
    if type(event) is PrimaryLost:
        return {"t": t, "node": node_id, "event": "primary_lost", "view": str(event.view_id)}
    return None


def _order(record: Record) -> tuple[int, int]:
    return (0, 0) if "node" not in record else (1, int(record["node"]))


class OrderedRecords:
    """Re-orders records that share a time (scenario events first, then nodes by id) and streams them."""

    def __init__(self, sink: Callable[[Record], None]) -> None:
        self._sink = sink
        self._t: float | None = None
        self._batch: list[Record] = []

    def __call__(self, record: Record) -> None:
        if record["t"] != self._t:
            self.flush()
            self._t = record["t"]
        self._batch.append(record)

    def flush(self) -> None:
        for record in sorted(self._batch, key=_order):  # sorted() is stable: a node's own order stays
            self._sink(record)
        self._batch = []


def json_line(record: Record) -> str:
    return json.dumps(record, separators=(", ", ": "))


def _members(members: list[int]) -> str:
    return "[" + " ".join(str(m) for m in members) + "]"


def describe(record: Record) -> str:
    """What a record says, in words (without its time)."""
    kind = record["event"]
    if kind == "view":
        return f"node {record['node']:<4} installs view {record['view']} {_members(record['members'])}"
    if kind == "primary":
        number, view = record["number"], record["view"]
        return f"node {record['node']:<4} PRIMARY #{number} in view {view} {_members(record['members'])}"
    if kind == "primary_lost":
        return f"node {record['node']:<4} stops acting as primary of view {record['view']}"
    if kind == "end":
        return "\n".join(["end of the run", *summary_lines(record["views"])])
    if kind == "partition":
        return "== partition " + " | ".join(_members(g) for g in record["groups"])
    if kind == "link":
        return f"== link {record['from']} -> {record['to']} {'up' if record['up'] else 'down'}"
    if kind == "loss":
        return f"== loss {record['loss']:.0%}"
    if kind == "heal":
        return "== heal: every link up"
    if kind == "remove":
        return f"== remove {_members(record['nodes'])} declared by node {record['by']} ({record['reason']})"
    extra = ""
    if record.get("during_write"):
        extra += " during a write"
    if record.get("lose_state"):
        extra += f", losing {record['lose_state']} state"
    return f"== {kind} {_members(record['nodes'])}{extra}"


def timeline_line(record: Record) -> str:
    """One readable line per record (the end record adds a line per view)."""
    return f"{record['t']:10.6f}  {describe(record)}"


def summary_lines(views: dict[str, dict[str, Any]]) -> list[str]:
    """Who is in which view: one line per distinct view, primary ones marked."""
    groups: dict[str | None, list[int]] = {}
    primary: dict[str | None, bool] = {}
    for node, state in views.items():
        groups.setdefault(state["view"], []).append(int(node))
        primary[state["view"]] = primary.get(state["view"], False) or state["primary"]
    lines = []
    for view, nodes in sorted(groups.items(), key=lambda item: min(item[1])):
        label = "no view yet" if view is None else f"view {view}"
        flag = "PRIMARY" if primary[view] else "non-primary"
        lines.append(f"            nodes {_members(sorted(nodes))} {label}: {flag}")
    return lines


def write_records(out: TextIO, *, as_json: bool) -> Callable[[Record], None]:
    def sink(record: Record) -> None:
        out.write((json_line(record) if as_json else timeline_line(record)) + "\n")

    return sink
