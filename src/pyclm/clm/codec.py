"""The CLM values as JSON objects: what the daemon's control socket sends (docs/daemon.md).

``*_to_json`` give plain dicts (``json.dumps`` takes them as they are); ``*_from_json``
rebuild the frozen values and raise :class:`ValueError` on anything malformed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from .model import ClusterNode, MembershipChange, MembershipSnapshot

_NODE_FIELDS = ("node_id", "name", "address", "member", "boot_timestamp", "initial_view_number", "incarnation")
_CHANGE_LISTS = ("joined", "reconfigured", "left", "shutdown")


def node_to_json(node: ClusterNode) -> dict[str, Any]:
    return {name: getattr(node, name) for name in _NODE_FIELDS}


def node_from_json(data: object) -> ClusterNode:
    if not isinstance(data, Mapping) or set(data) != set(_NODE_FIELDS):
        raise ValueError(f"not a cluster node: {data!r}")
    ints = ("node_id", "boot_timestamp", "initial_view_number", "incarnation")
    if not all(isinstance(data[k], int) and not isinstance(data[k], bool) for k in ints):
        raise ValueError(f"not a cluster node: {data!r}")
    if not isinstance(data["name"], str) or not isinstance(data["member"], bool):
        raise ValueError(f"not a cluster node: {data!r}")
    if data["address"] is not None and not isinstance(data["address"], str):
        raise ValueError(f"not a cluster node: {data!r}")
    return ClusterNode(**{k: data[k] for k in _NODE_FIELDS})


def _nodes(data: Mapping[str, Any], key: str) -> tuple[ClusterNode, ...]:
    items = data.get(key, [])
    if not isinstance(items, list):
        raise ValueError(f"{key} is not a list")
    return tuple(node_from_json(item) for item in items)


def _view_number(data: Mapping[str, Any]) -> int:
    number = data.get("view_number")
    if not isinstance(number, int) or isinstance(number, bool) or number < 0:
        raise ValueError(f"bad view_number {number!r}")
    return number


def change_to_json(change: MembershipChange) -> dict[str, Any]:
    out: dict[str, Any] = {
        "view_number": change.view_number,
        "members": [node_to_json(n) for n in change.members],
        "local": node_to_json(change.local),
    }
    for key in _CHANGE_LISTS:
        out[key] = [node_to_json(n) for n in getattr(change, key)]
    return out


def change_from_json(data: object) -> MembershipChange:
    if not isinstance(data, Mapping):
        raise ValueError(f"not a membership change: {data!r}")
    lists = {key: _nodes(data, key) for key in _CHANGE_LISTS}
    return MembershipChange(
        view_number=_view_number(data),
        members=_nodes(data, "members"),
        local=node_from_json(data.get("local")),
        **lists,
    )


def snapshot_to_json(snapshot: MembershipSnapshot) -> dict[str, Any]:
    return {
        "view_number": snapshot.view_number,
        "members": [node_to_json(n) for n in snapshot.members],
        "local": None if snapshot.local is None else node_to_json(snapshot.local),
    }


def snapshot_from_json(data: object) -> MembershipSnapshot:
    if not isinstance(data, Mapping):
        raise ValueError(f"not a membership snapshot: {data!r}")
    local = data.get("local")
    return MembershipSnapshot(
        view_number=_view_number(data),
        members=_nodes(data, "members"),
        local=None if local is None else node_from_json(local),
    )
