"""Identity values: members, view ids (order and text form) and views."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyclm.ids import MAX_EPOCH, MAX_INCARNATION, MAX_NODE_ID, Member, View, ViewId

SETTINGS = settings(max_examples=100, derandomize=True, database=None, deadline=None)


def test_member_bounds_and_text() -> None:
    assert str(Member(7, 42)) == "7@42"
    Member(0, 0)
    Member(MAX_NODE_ID, MAX_INCARNATION)
    for node_id, incarnation in [(-1, 0), (MAX_NODE_ID + 1, 0), (0, -1), (0, MAX_INCARNATION + 1)]:
        with pytest.raises(ValueError):
            Member(node_id, incarnation)


@pytest.mark.parametrize("bad", [True, 1.0, "1", None])
def test_member_rejects_non_integers(bad: object) -> None:
    with pytest.raises(ValueError, match="node_id"):
        Member(bad, 1)  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="incarnation"):
        Member(1, bad)  # type: ignore[arg-type]


def test_member_orders_by_node_id_then_incarnation() -> None:
    assert sorted([Member(2, 1), Member(1, 9), Member(1, 3)]) == [Member(1, 3), Member(1, 9), Member(2, 1)]


def test_view_id_orders_by_epoch_then_coordinator() -> None:
    assert ViewId(1, 9) < ViewId(2, 1)
    assert ViewId(2, 1) < ViewId(2, 3)
    assert max([ViewId(3, 1), ViewId(2, 9), ViewId(3, 0)]) == ViewId(3, 1)
    with pytest.raises(ValueError):
        ViewId(MAX_EPOCH + 1, 1)
    with pytest.raises(ValueError):
        ViewId(1, MAX_NODE_ID + 1)


def test_view_id_text_form() -> None:
    assert str(ViewId(7, 1)) == "7.1"
    assert ViewId.parse("7.1") == ViewId(7, 1)
    assert ViewId.parse("0.0") == ViewId(0, 0)


@pytest.mark.parametrize("text", ["", "7", "7.", ".1", "a.b", "-1.2", "7.-2", "7.1.2", " 7.1", "7,1"])
def test_view_id_parse_rejects_malformed_text(text: str) -> None:
    with pytest.raises(ValueError, match=r"epoch\.coordinator"):
        ViewId.parse(text)


def test_view_id_parse_rejects_out_of_range() -> None:
    with pytest.raises(ValueError):
        ViewId.parse(f"{MAX_EPOCH + 1}.1")
    with pytest.raises(ValueError):
        ViewId.parse(f"1.{MAX_NODE_ID + 1}")


@SETTINGS
@given(st.integers(0, MAX_EPOCH), st.integers(0, MAX_NODE_ID))
def test_view_id_text_round_trip(epoch: int, coordinator: int) -> None:
    view_id = ViewId(epoch, coordinator)
    assert ViewId.parse(str(view_id)) == view_id


def test_view_sorts_members_and_answers_membership() -> None:
    view = View(ViewId(3, 1), [Member(5, 1), Member(1, 2), Member(3, 1)])  # a list is sorted into a tuple
    assert view.members == (Member(1, 2), Member(3, 1), Member(5, 1))
    assert view.node_ids == (1, 3, 5)
    assert 3 in view
    assert 4 not in view
    assert "3" not in view


def test_view_rejects_duplicates_empty_and_wrong_coordinator() -> None:
    with pytest.raises(ValueError, match="once"):
        View(ViewId(1, 1), (Member(1, 1), Member(1, 2)))
    with pytest.raises(ValueError, match="at least one"):
        View(ViewId(1, 1), ())
    with pytest.raises(ValueError, match="lowest member id"):
        View(ViewId(1, 2), (Member(1, 1), Member(2, 1)))


def test_values_are_frozen_and_hashable() -> None:
    assert len({Member(1, 1), Member(1, 1), Member(1, 2)}) == 2
    assert len({ViewId(1, 1), ViewId(1, 1)}) == 1
    view = View(ViewId(1, 1), (Member(1, 1),))
    assert hash(view) == hash(View(ViewId(1, 1), (Member(1, 1),)))
    with pytest.raises(AttributeError):
        view.view_id = ViewId(2, 1)  # type: ignore[misc]
