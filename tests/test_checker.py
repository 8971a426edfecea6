"""The simulator's invariant checker, fed hand-made views and primaries."""

from __future__ import annotations

from collections.abc import Mapping

import pytest

from pyclm.ids import Member, View, ViewId
from pyclm.sim.checker import InvariantChecker, InvariantViolation
from pyclm.voting import POLICIES, QuorumConfig, QuorumPolicy

FIVE = QuorumConfig(votes={n: 1 for n in range(1, 6)})


def view(epoch: int, *nodes: int, inc: int = 1) -> View:
    members = tuple(Member(n, inc) for n in sorted(nodes))
    return View(ViewId(epoch, members[0].node_id), members)


class NoRule(QuorumPolicy):
    """A policy without a static rule (like dynamic voting): only the checker's own tests apply."""

    name = "test-no-rule"

    def view_installed(self, view: View, states: Mapping[int, bytes], now: float) -> None:
        pass


@pytest.fixture
def no_rule(monkeypatch: pytest.MonkeyPatch) -> QuorumConfig:
    monkeypatch.setitem(POLICIES, NoRule.name, NoRule)
    return QuorumConfig(policy=NoRule.name, votes={n: 1 for n in range(1, 8)})


def test_a_valid_history_passes() -> None:
    checker = InvariantChecker(FIVE)
    first = view(1, 1, 2, 3, 4, 5)
    for node in first.node_ids:
        checker.view_installed(0.1, node, first)
    checker.primary_formed(0.1, 1, first, 1)
    checker.primary_formed(0.1, 2, first, 1)  # every member reports the same primary
    left, right = view(2, 1, 2, 3), view(2, 4, 5)  # same epoch, different coordinators: different ids
    for node in left.node_ids:
        checker.view_installed(2.0, node, left)
    for node in right.node_ids:
        checker.view_installed(2.0, node, right)
    checker.primary_formed(2.0, 1, left, 2)
    merged = view(3, 1, 2, 3, 4, 5)
    for node in merged.node_ids:
        checker.view_installed(8.0, node, merged)
    checker.primary_formed(8.0, 3, merged, 3)
    assert sorted(checker.primaries) == [1, 2, 3]
    assert checker.last_installed == {n: ViewId(3, 1) for n in range(1, 6)}


def test_a_view_id_installed_with_other_members_breaks_agreement() -> None:
    checker = InvariantChecker(FIVE)
    checker.view_installed(1.0, 1, view(4, 1, 2))
    with pytest.raises(InvariantViolation, match=r"^\(a\) view agreement") as info:
        checker.view_installed(1.5, 2, view(4, 1, 2, 3))
    assert "4.1" in str(info.value)
    assert "node 2" in str(info.value)


def test_a_restarted_member_is_a_different_member_for_agreement() -> None:
    checker = InvariantChecker(FIVE)
    checker.view_installed(1.0, 1, view(4, 1, 2, inc=1))
    with pytest.raises(InvariantViolation, match=r"^\(a\)"):
        checker.view_installed(1.0, 2, view(4, 1, 2, inc=2))


@pytest.mark.parametrize(
    ("first", "second"),
    [(ViewId(5, 1), ViewId(4, 1)), (ViewId(5, 2), ViewId(5, 1)), (ViewId(5, 1), ViewId(5, 1))],
    ids=["lower-epoch", "lower-coordinator", "same-id"],
)
def test_view_ids_must_strictly_increase_per_node(first: ViewId, second: ViewId) -> None:
    checker = InvariantChecker(FIVE)
    checker.view_installed(1.0, 2, View(first, (Member(first.coordinator, 1), Member(3, 1))))
    with pytest.raises(InvariantViolation, match=r"^\(b\) view order") as info:
        checker.view_installed(2.0, 2, View(second, (Member(second.coordinator, 1), Member(3, 1))))
    assert f"after {first}" in str(info.value)


def test_view_order_holds_across_restarts() -> None:
    checker = InvariantChecker(FIVE)
    checker.view_installed(1.0, 1, view(5, 1, inc=1))
    with pytest.raises(InvariantViolation, match=r"^\(b\)"):
        checker.view_installed(9.0, 1, view(3, 1, inc=2))  # node 1 restarted as a new life


def test_other_nodes_have_their_own_order() -> None:
    checker = InvariantChecker(FIVE)
    checker.view_installed(1.0, 1, view(5, 1))
    checker.view_installed(1.0, 2, view(3, 2))  # lower than node 1's, but node 2's first


def test_two_views_with_one_primary_number() -> None:
    checker = InvariantChecker(FIVE)
    checker.primary_formed(1.0, 1, view(3, 1, 2, 3), 3)
    with pytest.raises(InvariantViolation, match=r"^\(c\) primary safety") as info:
        checker.primary_formed(1.0, 3, view(3, 3, 4, 5), 3)
    assert "both primary number 3" in str(info.value)


def test_a_primary_must_satisfy_the_majority_rule() -> None:
    checker = InvariantChecker(FIVE)
    with pytest.raises(InvariantViolation, match=r"^\(c\) primary safety") as info:
        checker.primary_formed(1.0, 1, view(2, 1, 2), 2)
    assert "does not satisfy the majority rule" in str(info.value)


def test_an_exact_half_is_not_a_majority() -> None:
    checker = InvariantChecker(QuorumConfig(votes={1: 1, 2: 1, 3: 1, 4: 1}))
    with pytest.raises(InvariantViolation, match=r"majority rule"):
        checker.primary_formed(1.0, 1, view(1, 1, 2), 1)
    checker.primary_formed(1.0, 1, view(2, 1, 2, 3), 2)


def test_consecutive_primaries_must_share_a_node(no_rule: QuorumConfig) -> None:
    checker = InvariantChecker(no_rule)
    checker.primary_formed(1.0, 1, view(1, 1, 2, 3), 1)
    checker.primary_formed(2.0, 3, view(2, 3, 4), 2)
    with pytest.raises(InvariantViolation, match=r"^\(c\) primary safety") as info:
        checker.primary_formed(3.0, 5, view(3, 5, 6), 3)
    assert "consecutive primaries 2" in str(info.value)
    assert "share no node" in str(info.value)


def test_a_primary_numbered_in_between_is_checked_against_both_neighbours(no_rule: QuorumConfig) -> None:
    checker = InvariantChecker(no_rule)
    checker.primary_formed(1.0, 1, view(1, 1, 2, 3), 1)
    checker.primary_formed(2.0, 3, view(5, 3, 4, 5), 5)
    checker.primary_formed(2.0, 2, view(3, 2, 4), 3)  # shares 2 with #1 and 4 with #5
    with pytest.raises(InvariantViolation, match=r"consecutive primaries 3 .* and 4 .* share no node"):
        checker.primary_formed(2.0, 5, view(4, 5, 6), 4)  # shares 5 with #5, nothing with #3
    with pytest.raises(InvariantViolation, match=r"consecutive primaries 0 .* and 1 .* share no node"):
        checker.primary_formed(2.0, 6, view(9, 6, 7), 0)  # below #1, sharing nothing with it


def test_a_policy_without_a_rule_accepts_any_single_view(no_rule: QuorumConfig) -> None:
    checker = InvariantChecker(no_rule)
    checker.primary_formed(1.0, 7, view(1, 7), 1)
    assert checker.primaries[1] == (7,)
