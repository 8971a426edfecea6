"""The connectivity matrix and the one rule that splits it into components.

Theory of operation
-------------------
Every node gossips its *row*: the members (id and incarnation) it currently hears.  A
node keeps the newest row of every origin it has learned, directly or relayed; together
they are its matrix.  Nodes that hold the same matrix must compute the same components,
so the rule below reads nothing but the matrix:

* ``inc(x)``: the incarnation of node ``x`` is the one its own row carries, or, when
  ``x``'s row is unknown, the highest incarnation any row mentions for it.
* ``hears(a, b)``: ``a``'s row lists ``b`` at ``inc(b)``.  When ``a``'s row is unknown we
  give it the benefit of the doubt: it hears everyone.
* ``a`` and ``b`` are *linked* when ``hears(a, b)`` and ``hears(b, a)`` and at least one of
  the two rows is known.  One-way links therefore do not count, and neither does a stale
  incarnation.
* Components are **greedy cliques by ascending id**: take the lowest id not yet placed,
  then every higher unplaced id, in ascending order, that is linked to all nodes already
  in the clique.  Repeat until every node is placed.

Because links need not be transitive (A-B and B-C up, A-C down), a component is a clique,
not a connected region: the example gives {A, B} and {C}.

The rule is a pure function of the set of rows, so it is memoised: in the simulator many
nodes hold the very same row objects and compute each distinct matrix once.
"""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping

from .ids import Member, find, member
from .wire import SMALL_IDS, Row

Component = tuple[Member, ...]


def _bits(mask: int) -> Iterable[int]:
    while mask:
        low = mask & -mask
        yield low.bit_length() - 1
        mask ^= low


_CURRENT: dict[frozenset[tuple[int, int]], frozenset[tuple[int, int]]] = {}


def _interned(current: frozenset[tuple[int, int]]) -> frozenset[tuple[int, int]]:
    """One object per distinct incarnation map, so the per-row mask caches hit by identity."""
    if len(_CURRENT) > 1024:
        _CURRENT.clear()
    return _CURRENT.setdefault(current, current)


def _mask(row: Row, current: frozenset[tuple[int, int]], pos: dict[int, int], *, small: bool) -> int:
    """Bits of the members ``row`` hears at their current incarnation."""
    if small and row.pairs <= current:
        return row.id_mask  # nothing stale, and ids are their own bit positions
    mask = 0
    for node_id, _ in row.pairs & current:
        mask |= 1 << pos[node_id]
    return mask


class _Matrix:
    """Masks of one set of rows (built once per distinct set).

    Bit ``p`` of a mask stands for node ``ids_at[p]``: the node id itself when every id
    is small (the usual case, and then each row's mask is cached on the row), otherwise
    its rank.
    """

    def __init__(self, rows: frozenset[Row]) -> None:
        by_origin = {row.origin: row for row in rows}
        inc = {origin: row.incarnation for origin, row in by_origin.items()}
        # Nodes that rows mention but whose own row we lack (usually none).
        small = all(row.id_mask >= 0 and row.origin < SMALL_IDS for row in rows)
        if small:
            mentioned_mask = origins_mask = 0
            for row in rows:
                mentioned_mask |= row.id_mask
                origins_mask |= 1 << row.origin
            missing: set[int] = set(_bits(mentioned_mask & ~origins_mask))
        else:
            missing = set().union(*(row.heard for row in rows)) - inc.keys()
        for node_id in missing:
            inc[node_id] = max(row.heard[node_id] for row in rows if node_id in row.heard)
        ids = sorted(inc)
        self.inc = inc
        self.pos: dict[int, int] = {n: n for n in ids} if small else {n: i for i, n in enumerate(ids)}
        pos = self.pos
        self.ids_at: dict[int, int] = {p: n for n, p in pos.items()}
        everyone = 0
        for p in pos.values():
            everyone |= 1 << p
        current = _interned(frozenset(inc.items()))
        self.known = 0
        self.hears: dict[int, int] = {}
        for node_id in ids:
            origin_row = by_origin.get(node_id)
            if origin_row is None:
                self.hears[pos[node_id]] = everyone
                continue
            self.known |= 1 << pos[node_id]
            if small:
                # With ids as bit positions a row's mask depends only on the row and on the
                # current incarnations, so it is computed once and shared by every node
                # (and every matrix) that holds the same row and the same incarnations.
                mask = origin_row.masks.get(current)
                if mask is None:
                    mask = origin_row.masks[current] = _mask(origin_row, current, pos, small=True)
            else:
                mask = _mask(origin_row, current, pos, small=False)
            self.hears[pos[node_id]] = mask
        self.everyone = everyone
        self._regions: dict[int, frozenset[int]] = {}

    def components(self) -> tuple[Component, ...]:
        hears, known, ids_at, inc = self.hears, self.known, self.ids_at, self.inc
        remaining = self.everyone
        out: list[Component] = []
        while remaining:
            low = remaining & -remaining
            first = low.bit_length() - 1
            clique = low
            heard_by_all = hears[first]
            any_unknown = not (known & low)
            candidates = heard_by_all & remaining & ~low
            if any_unknown:
                candidates &= known  # two unknown rows never link: skip them up front
            for b in _bits(candidates):
                bit = 1 << b
                if not heard_by_all & bit or hears[b] & clique != clique:
                    continue
                if any_unknown and not known & bit:
                    continue  # two unknown rows: no evidence of a link
                clique |= bit
                heard_by_all &= hears[b]
                any_unknown = any_unknown or not known & bit
            remaining &= ~clique
            out.append(tuple(member(ids_at[p], inc[ids_at[p]]) for p in _bits(clique)))
        return tuple(out)

    def region(self, node_id: int) -> frozenset[int]:
        """Ids reachable from ``node_id`` by following rows (whom each hears)."""
        cached = self._regions.get(node_id)
        if cached is None:
            cached = self._regions[node_id] = self._region(node_id)
        return cached

    def _region(self, node_id: int) -> frozenset[int]:
        start = self.pos.get(node_id)
        if start is None:
            return frozenset()
        seen = frontier = 1 << start
        while frontier:
            reach = 0
            for p in _bits(frontier & self.known):
                reach |= self.hears[p]
            frontier = reach & ~seen
            seen |= frontier
        return frozenset(self.ids_at[p] for p in _bits(seen))


@functools.lru_cache(maxsize=256)
def _analyse(rows: frozenset[Row]) -> _Matrix:
    return _Matrix(rows)


@functools.lru_cache(maxsize=256)
def _components(rows: frozenset[Row]) -> tuple[Component, ...]:
    return _analyse(rows).components()


def components(rows: Iterable[Row]) -> tuple[Component, ...]:
    """Split a matrix (the newest row of each origin) into components, lowest ids first."""
    return _components(frozenset(rows))


class ConnectivityMatrix:
    """The rows one node holds: the newest version of each origin's row."""

    def __init__(self) -> None:
        self._rows: dict[int, Row] = {}
        self._frozen: frozenset[Row] | None = None
        self._matrix: _Matrix | None = None
        self._components: tuple[Component, ...] | None = None
        self._component_of: dict[int, Component | None] = {}  # memo, valid while _components is

    def __len__(self) -> int:
        return len(self._rows)

    def get(self, origin: int) -> Row | None:
        return self._rows.get(origin)

    @property
    def rows(self) -> Mapping[int, Row]:
        return self._rows

    def offer(self, row: Row) -> bool:
        """Keep ``row`` if it is newer than what we hold for its origin; say whether it was."""
        old = self._rows.get(row.origin)
        if old is not None and old.key >= row.key:
            return False
        self._rows[row.origin] = row
        self._frozen = self._matrix = self._components = None
        return True

    def forget(self, origin: int) -> None:
        if self._rows.pop(origin, None) is not None:
            self._frozen = self._matrix = self._components = None

    def snapshot(self) -> frozenset[Row]:
        if self._frozen is None:
            self._frozen = frozenset(self._rows.values())
        return self._frozen

    def _analysis(self) -> _Matrix:
        # Kept until the rows change: looking a snapshot up in the shared memo compares
        # it row by row with the one stored there, which is worth doing once, not per call.
        if self._matrix is None:
            self._matrix = _analyse(self.snapshot())
        return self._matrix

    def component_of(self, node_id: int) -> Component | None:
        if self._components is None:
            self._components = _components(self.snapshot())
            self._component_of = {}
        elif node_id in self._component_of:
            return self._component_of[node_id]
        self._component_of[node_id] = found = self._find_component(node_id)
        return found

    def _find_component(self, node_id: int) -> Component | None:
        assert self._components is not None
        for component in self._components:
            if component[0].node_id > node_id:
                break
            if find(component, node_id) is not None:
                return component
        return None

    def region(self, node_id: int) -> frozenset[int]:
        return self._analysis().region(node_id)
