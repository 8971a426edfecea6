"""The component rule over hand-made rows, and its properties.

The rule (``pyclm.connectivity``): ``a`` and ``b`` are *linked* when each one's row lists
the other at its current incarnation, an unknown row hearing everyone, and at least one
of the two rows is known.  Components are greedy cliques by ascending id.

What the greedy rule guarantees, precisely (checked by :func:`check_greedy`):

1. the components partition the node ids, and each is a clique of mutual links;
2. they come out in ascending order of their first (lowest) member, and the first
   member of each is the lowest id not placed in an earlier component;
3. for every component ``C`` and every node ``x`` placed in a *later* component
   (necessarily ``x > min(C)``), some member ``c`` of ``C`` with ``c < x`` is not
   linked to ``x``: ``x`` was offered to ``C`` at its turn and refused because of a
   member already in it.  Hence each component is a *maximal* clique among the nodes
   not placed before it (nothing later could be added), although it is not
   necessarily the largest clique: greed, not optimisation.
"""

from __future__ import annotations

import random

from hypothesis import given, settings
from hypothesis import strategies as st

from pyclm.connectivity import Component, ConnectivityMatrix, components
from pyclm.ids import Member
from pyclm.wire import Row

SETTINGS = settings(max_examples=250, derandomize=True, database=None, deadline=None)


def row(origin: int, *heard: int, inc: int = 1, version: int = 0, incs: dict[int, int] | None = None) -> Row:
    """``origin``'s row (in life ``inc``) listing itself and ``heard``, each at incarnation 1 unless in ``incs``."""
    incs = {**(incs or {}), origin: inc}
    listed = sorted({origin, *heard})
    return Row(
        origin=origin, incarnation=inc, version=version, entries=tuple(Member(n, incs.get(n, 1)) for n in listed)
    )


def ids(result: tuple[Component, ...]) -> list[list[int]]:
    return [[m.node_id for m in component] for component in result]


# ------------------------------------------------------------------ hand-made matrices


def test_full_mesh_is_one_component() -> None:
    rows = [row(n, 1, 2, 3, 4) for n in (1, 2, 3, 4)]
    result = components(rows)
    assert ids(result) == [[1, 2, 3, 4]]
    assert result[0] == tuple(Member(n, 1) for n in (1, 2, 3, 4))


def test_partition_gives_one_component_per_side() -> None:
    rows = [row(n, 1, 2, 3) for n in (1, 2, 3)] + [row(n, 4, 5) for n in (4, 5)]
    assert ids(components(rows)) == [[1, 2, 3], [4, 5]]


def test_partition_with_interleaved_ids() -> None:
    rows = [row(n, 1, 3, 5) for n in (1, 3, 5)] + [row(n, 2, 4) for n in (2, 4)]
    assert ids(components(rows)) == [[1, 3, 5], [2, 4]]


def test_non_transitive_links_give_cliques_not_regions() -> None:
    # A=1, B=2, C=3: A-B and B-C up, A-C down.
    rows = [row(1, 2), row(2, 1, 3), row(3, 2)]
    assert ids(components(rows)) == [[1, 2], [3]]


def test_non_transitive_with_the_middle_node_lowest() -> None:
    # B=1 hears A=2 and C=3; A and C do not hear each other: B takes A (the lower), C is alone.
    rows = [row(1, 2, 3), row(2, 1), row(3, 1)]
    assert ids(components(rows)) == [[1, 2], [3]]


def test_one_way_link_does_not_count() -> None:
    rows = [row(1, 2), row(2)]
    assert ids(components(rows)) == [[1], [2]]
    rows = [row(1), row(2, 1)]
    assert ids(components(rows)) == [[1], [2]]


def test_stale_incarnation_in_a_row_is_not_a_link() -> None:
    # 2 restarted as incarnation 2; 1 still lists its old life.
    rows = [row(1, 2, incs={2: 1}), row(2, 1, inc=2)]
    result = components(rows)
    assert ids(result) == [[1], [2]]
    assert result[1] == (Member(2, 2),)
    # Once 1 lists the new life they are linked again.
    rows = [row(1, 2, incs={2: 2}), row(2, 1, inc=2)]
    assert components(rows) == ((Member(1, 1), Member(2, 2)),)


def test_stale_incarnation_of_the_row_owner() -> None:
    # 2 lists 1 at incarnation 1, but 1's own row says it runs as incarnation 3.
    rows = [row(1, 2, inc=3), row(2, 1, incs={1: 1})]
    assert ids(components(rows)) == [[1], [2]]


def test_unknown_row_gets_the_benefit_of_the_doubt() -> None:
    # 3's row is unknown: 1 and 2 hear it, so it is linked to both (their rows are known).
    rows = [row(1, 2, 3), row(2, 1, 3)]
    assert ids(components(rows)) == [[1, 2, 3]]


def test_unknown_row_is_still_not_heard_by_someone_who_does_not_list_it() -> None:
    rows = [row(1, 2, 3), row(2, 1)]
    assert ids(components(rows)) == [[1, 2], [3]]


def test_two_unknown_rows_are_not_linked() -> None:
    # Only 1's row is known; 2 and 3 are both unknown: no evidence of a 2-3 link.
    rows = [row(1, 2, 3)]
    assert ids(components(rows)) == [[1, 2], [3]]


def test_unknown_first_node_links_to_known_rows_only() -> None:
    # 1's row is unknown (2 and 3 list it); 4's row is unknown too and 2, 3 list it.
    rows = [row(2, 1, 3, 4), row(3, 1, 2, 4)]
    assert ids(components(rows)) == [[1, 2, 3], [4]]


def test_unknown_node_takes_the_highest_incarnation_mentioned() -> None:
    rows = [row(1, 2, 3, incs={3: 5}), row(2, 1, 3, incs={3: 7})]
    result = components(rows)
    assert ids(result) == [[1, 2], [3]]
    assert result[1] == (Member(3, 7),)


def test_only_nodes_named_by_some_row_exist() -> None:
    assert components([]) == ()
    assert ids(components([row(5)])) == [[5]]


# ------------------------------------------------------------------ ConnectivityMatrix


def test_matrix_keeps_the_newest_row_per_origin() -> None:
    matrix = ConnectivityMatrix()
    assert matrix.offer(row(1, 2, version=1))
    assert not matrix.offer(row(1, version=1))  # same key: not newer
    assert not matrix.offer(row(1, version=0))
    assert matrix.get(1) is not None
    assert matrix.get(1).entries == (Member(1, 1), Member(2, 1))  # type: ignore[union-attr]
    assert matrix.offer(row(1, version=2))
    assert matrix.offer(row(1, 2, inc=2, version=0))  # a new life beats any version of the old one
    assert matrix.get(1).incarnation == 2  # type: ignore[union-attr]
    assert len(matrix) == 1


def test_matrix_component_of_and_forget() -> None:
    matrix = ConnectivityMatrix()
    for r in (row(1, 2, 3), row(2, 1, 3), row(3, 1, 2), row(4)):
        matrix.offer(r)
    assert matrix.component_of(2) == (Member(1, 1), Member(2, 1), Member(3, 1))
    assert matrix.component_of(4) == (Member(4, 1),)
    assert matrix.component_of(9) is None
    snapshot = matrix.snapshot()
    assert matrix.snapshot() is snapshot
    matrix.offer(row(3, version=1))  # 3 stops hearing 1 and 2
    assert matrix.snapshot() is not snapshot
    assert matrix.component_of(2) == (Member(1, 1), Member(2, 1))
    matrix.forget(4)
    assert matrix.component_of(4) is None
    assert set(matrix.rows) == {1, 2, 3}


def test_matrix_region_follows_known_rows() -> None:
    matrix = ConnectivityMatrix()
    matrix.offer(row(1, 2))
    matrix.offer(row(2, 3))
    assert matrix.region(1) == {1, 2, 3}
    assert matrix.region(2) == {2, 3}
    assert matrix.region(3) == {3}  # 3's row is unknown: it leads nowhere
    assert matrix.region(9) == frozenset()


# ------------------------------------------------------------------ properties


class Reference:
    """The rule exactly as the module docstring states it, written for clarity, not speed."""

    def __init__(self, rows: list[Row]) -> None:
        self.by_origin = {r.origin: r for r in rows}
        inc: dict[int, int] = {}
        for r in rows:
            for m in r.entries:
                if m.node_id not in self.by_origin:
                    inc[m.node_id] = max(inc.get(m.node_id, -1), m.incarnation)
        for origin, r in self.by_origin.items():
            inc[origin] = r.incarnation
        self.inc = inc

    def hears(self, a: int, b: int) -> bool:
        r = self.by_origin.get(a)
        return r is None or Member(b, self.inc[b]) in r.entries

    def linked(self, a: int, b: int) -> bool:
        known = a in self.by_origin or b in self.by_origin
        return known and self.hears(a, b) and self.hears(b, a)

    def components(self) -> list[list[int]]:
        remaining = sorted(self.inc)
        out = []
        while remaining:
            clique = [remaining[0]]
            for x in remaining[1:]:
                if all(self.linked(x, c) for c in clique):
                    clique.append(x)
            out.append(clique)
            remaining = [x for x in remaining if x not in clique]
        return out


@st.composite
def matrices(draw: st.DrawFn) -> list[Row]:
    """Rows of up to 8 nodes: some unknown, some listing stale lives, some one-way."""
    n = draw(st.integers(1, 8))
    nodes = sorted(draw(st.sets(st.integers(1, 40), min_size=n, max_size=n)))
    incs = {x: draw(st.integers(1, 2)) for x in nodes}
    out = []
    for origin in nodes:
        if draw(st.integers(0, 4)) == 0:
            continue  # unknown row
        listed = [Member(origin, incs[origin])]
        for other in nodes:
            if other == origin:
                continue
            how = draw(st.sampled_from(["current", "current", "current", "absent", "stale"]))
            if how == "current":
                listed.append(Member(other, incs[other]))
            elif how == "stale":
                listed.append(Member(other, draw(st.integers(1, 3))))
        out.append(
            Row(origin=origin, incarnation=incs[origin], version=draw(st.integers(0, 3)), entries=tuple(sorted(listed)))
        )
    return out


def check_greedy(rows: list[Row], result: tuple[Component, ...]) -> None:
    ref = Reference(rows)
    comps = ids(result)
    placed = [x for c in comps for x in c]
    # 1. a partition of every node id, each component a clique of mutual links
    assert sorted(placed) == sorted(ref.inc)
    assert len(placed) == len(set(placed))
    for comp in comps:
        assert comp == sorted(comp)
        for i, a in enumerate(comp):
            for b in comp[i + 1 :]:
                assert ref.linked(a, b), (a, b, comp)
    # members carry the incarnation the matrix assigns each node
    for component in result:
        for m in component:
            assert m.incarnation == ref.inc[m.node_id]
    # 2. first members ascend; each is the lowest id not placed before
    for k, comp in enumerate(comps):
        earlier = {x for c in comps[:k] for x in c}
        assert comp[0] == min(set(placed) - earlier)
    # 3. every node placed later was refused by a member below it
    for k, comp in enumerate(comps):
        for later in comps[k + 1 :]:
            for x in later:
                assert x > comp[0]
                assert any(not ref.linked(c, x) for c in comp if c < x), (x, comp)


@SETTINGS
@given(matrices())
def test_components_follow_the_greedy_rule(rows: list[Row]) -> None:
    result = components(rows)
    check_greedy(rows, result)
    assert ids(result) == Reference(rows).components()


@SETTINGS
@given(matrices(), st.randoms(use_true_random=False))
def test_components_do_not_depend_on_row_order(rows: list[Row], rnd: random.Random) -> None:
    expected = components(rows)
    # Fresh row objects (rows hash by identity) given in a shuffled order: a distinct
    # frozenset, so the memo cannot hand back the first answer.
    copies = [Row(origin=r.origin, incarnation=r.incarnation, version=r.version, entries=r.entries) for r in rows]
    rnd.shuffle(copies)
    assert components(copies) == expected
    matrix = ConnectivityMatrix()
    for r in reversed(copies):
        matrix.offer(r)
    for component in expected:
        for m in component:
            assert matrix.component_of(m.node_id) == component


def test_greedy_is_not_the_largest_clique() -> None:
    # 1-2 linked, 1-3 not, 2-3-4 a triangle: greed gives {1,2}, {3,4} although {2,3,4} is bigger.
    rows = [row(1, 2), row(2, 1, 3, 4), row(3, 2, 4), row(4, 2, 3)]
    result = components(rows)
    assert ids(result) == [[1, 2], [3, 4]]
    check_greedy(rows, result)


@given(matrices())
def test_large_ids_give_the_same_components(rows: list[Row]) -> None:
    """Ids of 2**16 and more take the general path (ranks as bit positions): same answer."""
    shift = 1 << 20

    def moved(row: Row) -> Row:
        entries = tuple(Member(m.node_id + shift, m.incarnation) for m in row.entries)
        return Row(origin=row.origin + shift, incarnation=row.incarnation, version=row.version, entries=entries)

    small = components(rows)
    large = components([moved(r) for r in rows])
    assert [[m.node_id + shift for m in c] for c in small] == [[m.node_id for m in c] for c in large]
