"""Invariants the simulator checks on every event it sees.

(a) view agreement: two nodes that install the same view id install the same members;
(b) per node id, installed view ids strictly increase, across restarts too;
(c) primary safety: primaries (views in which some node formed primary) ordered by
    primary number never share a number, consecutive ones share a node, and each
    satisfies the policy's own rule where it has one (static majority: more than half
    the configured votes);
Liveness (d) needs a quiet period and knowledge of the policy's intent; the property
tests check it (``tests/test_sim_properties.py``).
"""

from __future__ import annotations

import bisect

from ..ids import Member, View, ViewId
from ..voting import POLICIES, QuorumConfig


class InvariantViolation(AssertionError):
    """The first invariant the run broke; the message names it and the evidence."""


class InvariantChecker:
    def __init__(self, quorum: QuorumConfig) -> None:
        self.quorum = quorum
        self._rule = POLICIES[quorum.policy].rule_holds
        self.views: dict[ViewId, tuple[Member, ...]] = {}
        self.last_installed: dict[int, ViewId] = {}
        self.primaries: dict[int, View] = {}
        self._numbers: list[int] = []

    def view_installed(self, t: float, node: int, view: View) -> None:
        known = self.views.setdefault(view.view_id, view.members)
        if known != view.members:
            raise InvariantViolation(
                f"(a) view agreement at t={t:.6f}: node {node} installed view {view.view_id} with members "
                f"{_ids(view.members)}, another node installed it with {_ids(known)}"
            )
        last = self.last_installed.get(node)
        if last is not None and not view.view_id > last:
            raise InvariantViolation(
                f"(b) view order at t={t:.6f}: node {node} installed view {view.view_id} after {last}"
            )
        self.last_installed[node] = view.view_id

    def primary_formed(self, t: float, node: int, view: View, number: int) -> None:
        known = self.primaries.get(number)
        if known is not None:
            if known.view_id != view.view_id:
                raise InvariantViolation(
                    f"(c) primary safety at t={t:.6f}: views {known.view_id} and {view.view_id} are both primary "
                    f"number {number}"
                )
            return
        ids = view.node_ids
        if self._rule(self.quorum, ids) is False:
            raise InvariantViolation(
                f"(c) primary safety at t={t:.6f}: node {node} formed primary {number} in view {view.view_id} "
                f"{list(ids)}, which does not satisfy the {self.quorum.policy} rule"
            )
        at = bisect.bisect(self._numbers, number)
        for neighbour in self._numbers[max(at - 1, 0) : at + 1]:
            other = self.primaries[neighbour]
            if not set(other.node_ids) & set(ids):
                raise InvariantViolation(
                    f"(c) primary safety at t={t:.6f}: consecutive primaries {neighbour} (view {other.view_id} "
                    f"{list(other.node_ids)}) and {number} (view {view.view_id} {list(ids)}) share no node"
                )
        self._numbers.insert(at, number)
        self.primaries[number] = view


def _ids(members: tuple[Member, ...]) -> list[int]:
    return [m.node_id for m in members]
