"""Invariants the simulator checks on every event it sees.

(a) view agreement: two nodes that install the same view id install the same members;
(b) per node id, installed view ids strictly increase, across restarts too;
(c) primary safety: primaries (views in which some node's policy formed primary, whether
    or not it was announced) ordered by primary number never share a number, and each
    follows the one before as the policy promises: dynamic voting, a subquorum of it
    (the first: of the configured universe); other policies, a shared node.  Each also
    satisfies the policy's own rule where it has one (static majority: more than half
    the configured votes);
(e) with the primary lease on: at any instant, the nodes acting as primary (announced,
    not yet lost) act for one primary number.  That is stronger than "never two
    primaries with disjoint members at once", and the lease is what makes it hold;
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
    def __init__(self, quorum: QuorumConfig, *, lease: bool = False) -> None:
        self.quorum = quorum
        policy = POLICIES[quorum.policy]
        self._rule = policy.rule_holds
        self._succession = policy.succession_holds
        self.lease = lease
        self.views: dict[ViewId, tuple[Member, ...]] = {}
        self.last_installed: dict[int, ViewId] = {}
        self.primaries: dict[int, tuple[int, ...]] = {}
        self.primary_views: dict[int, ViewId] = {}
        self._numbers: list[int] = []
        initial = policy.initial_primary(quorum)
        if initial is not None:
            self._numbers.append(0)
            self.primaries[0] = initial
        self.acting: dict[int, int] = {}  # node -> primary number it acts for
        self.removed: dict[int, int] = {}  # operator removals: node -> up to which primary number

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
        """Node ``node``'s policy formed primary ``number`` in ``view`` (announced or not)."""
        known = self.primary_views.get(number)
        if known is not None:
            if known != view.view_id:
                raise InvariantViolation(
                    f"(c) primary safety at t={t:.6f}: views {known} and {view.view_id} are both primary "
                    f"number {number}"
                )
            return
        if number in self.primaries:  # the configured universe is number 0
            raise InvariantViolation(f"(c) primary safety at t={t:.6f}: view {view.view_id} formed primary {number}")
        ids = view.node_ids
        if self._rule(self.quorum, ids) is False:
            raise InvariantViolation(
                f"(c) primary safety at t={t:.6f}: node {node} formed primary {number} in view {view.view_id} "
                f"{list(ids)}, which does not satisfy the {self.quorum.policy} rule"
            )
        at = bisect.bisect(self._numbers, number)
        pairs = []
        if at > 0:
            pairs.append((self._numbers[at - 1], number))
        if at < len(self._numbers):
            pairs.append((number, self._numbers[at]))
        members = dict(self.primaries)
        members[number] = ids
        for earlier, later in pairs:
            self._check_succession(t, earlier, members[earlier], later, members[later])
        self._numbers.insert(at, number)
        self.primaries[number] = ids
        self.primary_views[number] = view.view_id

    def nodes_removed(self, entries: list[tuple[int, int]]) -> None:
        """An operator declared these nodes gone for good from primaries numbered up to the given number.

        Successions are then judged without them: that is what the declaration asks for
        (and why it is unsafe when the nodes are in fact alive).
        """
        for node, number in entries:
            self.removed[node] = max(self.removed.get(node, -1), number)

    def _check_succession(
        self, t: float, earlier: int, previous: tuple[int, ...], later: int, members: tuple[int, ...]
    ) -> None:
        if self.removed:
            previous = tuple(n for n in previous if self.removed.get(n, -1) < earlier)
        promised = self._succession(self.quorum, previous, members)
        if promised is None:
            if set(previous) & set(members):
                return
            problem = "share no node"
        elif promised:
            return
        else:
            problem = f"the later holds no subquorum of the earlier ({self.quorum.policy})"
        raise InvariantViolation(
            f"(c) primary safety at t={t:.6f}: consecutive primaries {earlier} {list(previous)} and "
            f"{later} {list(members)}: {problem}"
        )

    def primary_announced(self, t: float, node: int, number: int) -> None:
        if self.lease:
            for other, acting in self.acting.items():
                if acting != number and other != node:
                    raise InvariantViolation(
                        f"(e) one primary at a time at t={t:.6f}: node {node} acts as primary {number} while "
                        f"node {other} still acts as primary {acting}"
                    )
        self.acting[node] = number

    def primary_ended(self, node: int) -> None:
        """``node`` stopped acting as primary (lost it, installed a view, crashed or left)."""
        self.acting.pop(node, None)


def _ids(members: tuple[Member, ...]) -> list[int]:
    return [m.node_id for m in members]
