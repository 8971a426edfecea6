"""``pyclm status``: what the control socket's ``status`` op answers, and how it is printed.

The answer (docs/daemon.md lists every field) is built from the running :class:`~pyclm.Node`
and the counters of its transport stack; :func:`render` turns it into the text
``pyclm status`` prints without ``--json``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from typing import Any

import anyio

from ..runtime import Node, address_text


def build_status(
    node: Node,
    *,
    started: float,
    transport: str,
    counters: Mapping[str, Mapping[str, int]],
    traffic: tuple[int | None, int | None],
    drops: Mapping[str, int],
) -> dict[str, Any]:
    """The status of ``node``; ``counters`` are the transport stack's, by layer, ``traffic`` its
    datagrams in and out, ``drops`` what it dropped by ``layer.reason``."""
    now = anyio.current_time()
    view = node.view
    peers = {p.node_id: p for p in node.peers()}
    in_view = set(view.node_ids) if view is not None else set()
    local_address = address_text(getattr(node.transport, "address", None))

    def entry(node_id: int) -> dict[str, Any]:
        if node_id == node.node_id:
            return {"node": node_id, "address": local_address, "self": True, "incarnation": node.incarnation}
        peer = peers.get(node_id)
        if peer is None:
            return {"node": node_id, "address": None, "last_heard": None, "trusted": False}
        heard = None if peer.last_heard is None else round(max(0.0, now - peer.last_heard), 3)
        return {
            "node": node_id,
            "address": address_text(peer.address),
            "last_heard": heard,
            "trusted": peer.trusted,
            "incarnation": peer.incarnation,
        }

    core = node.counters
    layers = {name: dict(values) for name, values in counters.items()}
    layers["core"] = core
    rejected = dict(drops)
    for key, count in core.items():
        if key.startswith("rx_dropped_") and count:
            rejected[f"core.{key.removeprefix('rx_dropped_')}"] = count
    return {
        "node": node.node_id,
        "incarnation": node.incarnation,
        "running": node.running,
        "uptime": round(now - started, 3),
        "transport": transport,
        "address": local_address,
        "view": None if view is None else str(view.view_id),
        "primary": node.is_primary,
        "primary_number": node.primary_number,
        "view_number": node.view_number,
        "members": [entry(n) for n in sorted(in_view)],
        "others": [entry(n) for n in sorted(peers) if n not in in_view],
        "datagrams_in": traffic[0],
        "datagrams_out": traffic[1],
        "rejected": dict(sorted(rejected.items())),
        "counters": layers,
    }


def _ago(value: object) -> str:
    return "-" if value is None else f"{value:.3f}s ago"


def render(status: Mapping[str, Any], write: Callable[[str], None]) -> None:
    """The text form of a status answer, one line per ``write`` call."""
    primary = f"primary #{status['primary_number']}" if status["primary"] else "not primary"
    write(
        f"node {status['node']} (incarnation {status['incarnation']}) at {status['address']} "
        f"over {status['transport']}, up {status['uptime']:.1f}s"
    )
    write(f"view {status['view'] or '-'}: {primary}; cluster view number {status['view_number']}")
    write("members:")
    for member in status["members"]:
        if member.get("self"):
            write(f"  {member['node']:>5}  {member['address'] or '-':<28}  (this node)")
        else:
            heard = _ago(member.get("last_heard"))
            state = "" if member.get("trusted") else "  (not heard now)"
            write(f"  {member['node']:>5}  {member['address'] or '-':<28}  heard {heard}{state}")
    if status["others"]:
        write("other nodes heard:")
        for member in status["others"]:
            state = "heard" if member.get("trusted") else "silent, last heard"
            write(f"  {member['node']:>5}  {member['address'] or '-':<28}  {state} {_ago(member.get('last_heard'))}")
    if status["datagrams_in"] is not None:
        write(f"datagrams: {status['datagrams_in']} in, {status['datagrams_out']} out")
    rejected = status["rejected"]
    if rejected:
        write("rejected: " + ", ".join(f"{reason} {count}" for reason, count in rejected.items()))
    else:
        write("rejected: none")
