"""Sessions, the dynamic-voting state record, and the subquorum rule.

These are the values the dynamic-voting policies (:mod:`pyclm.voting.ykd` and its
comparison variants) share.  A *session* is a numbered attempt to make a set of nodes
the primary component; the state a node keeps on stable storage, and reports to the
members of every new view, says which sessions it knows formed and which it attempted
without learning their outcome.

The record is versioned and checksummed by the storage; :meth:`VotingState.decode`
never raises: anything it cannot read is ``None`` (an unreadable state, handled as
amnesia by the policy).

The same record is each member's report on the view agreement (the ACK's state, and the
INSTALL's table of states), so it is written compactly: numbers as varints, node-id
lists as gaps, and, in a report, member sets as bitmaps over the view being agreed when
that is shorter.  A report of a 64-node view whose last primary is that view takes about
20 bytes, not 290.  ``docs/wire.md`` ("Stored records") has the layout.
"""

from __future__ import annotations

import functools
import operator
import struct
from collections.abc import Iterable, Mapping

import attrs

from ..ids import MAX_NODE_ID
from ..wire import encode_varint, read_varint

# Version 1 (read only: records stored before version 2).
_HEAD = struct.Struct("!BBQQ")  # version, flags, session number, last formed
_SESSION = struct.Struct("!QH")  # number, member count
_U16 = struct.Struct("!H")
_REMOVED = struct.Struct("!IQ")  # node, up to which session number
_VERSION_1 = 1
#: What :meth:`VotingState.encode` writes.
_VERSION = 2
_AMNESIAC = 0x01
#: Version 2: the member sets are bitmaps over the view the report is for (plus the
#: members outside it), not lists.
_IN_VIEW = 0x02


@attrs.frozen(order=True)
class Session:
    """An attempt to form a primary component: its number and its members (ascending ids)."""

    number: int
    members: tuple[int, ...]

    def __str__(self) -> str:
        return f"#{self.number}{list(self.members)}"


@attrs.frozen(kw_only=True)
class VotingState:
    """What a node of the dynamic-voting family keeps on stable storage and reports.

    ``session_number`` is the highest session number it has used or seen (never goes
    back); ``last_primary`` the newest session it knows formed (initially the configured
    universe, numbered 0); ``ambiguous`` the sessions it attempted after that primary
    whose outcome it does not know, ascending; ``last_formed`` the number of the newest
    session it formed itself (0: none), reported so the others can learn of it.
    ``amnesiac`` marks a state rebuilt after the stored one was lost: such a node
    counts toward no subquorum and witnesses nothing until a primary forms without it.
    ``removed`` holds the operator's declarations ``(node, number)``: that node is gone
    for good from every session numbered ``number`` or less (see :func:`without`).
    """

    session_number: int
    last_primary: Session
    ambiguous: tuple[Session, ...] = ()
    last_formed: int = 0
    amnesiac: bool = False
    removed: tuple[tuple[int, int], ...] = ()  # ascending by node

    def encode(self, view: tuple[int, ...] | None = None) -> bytes:
        """This state as a version-2 record.

        ``view``: the node ids (ascending) of the view this record is a report for.  The
        member sets are then written as bitmaps over it if that makes the record shorter,
        and the reader must pass the same view to :meth:`decode`.  Without it (a stored
        record) every set is a list.  Raises ``ValueError`` for a session whose members do
        not ascend.
        """
        plain = self._encode(None)
        if view is None:
            return plain
        relative = self._encode(view)
        return relative if len(relative) < len(plain) else plain

    def _encode(self, view: tuple[int, ...] | None) -> bytes:
        flags = (_AMNESIAC if self.amnesiac else 0) | (_IN_VIEW if view is not None else 0)
        out = bytearray((_VERSION, flags))
        out += encode_varint(self.session_number)
        out += encode_varint(self.last_formed)
        position = {n: i for i, n in enumerate(view)} if view is not None else None
        _put_session(out, self.last_primary, position)
        out += encode_varint(len(self.ambiguous))
        for session in self.ambiguous:
            _put_session(out, session, position)
        out += encode_varint(len(self.removed))
        previous = -1
        for node, number in self.removed:
            out += encode_varint(node - previous - 1)
            out += encode_varint(number)
            previous = node
        return bytes(out)

    @classmethod
    def decode(cls, data: bytes, view: tuple[int, ...] | None = None) -> VotingState | None:
        """The state in ``data``, or None if it is not a complete, valid record.

        ``view``: the node ids of the view ``data`` is a report for (as given to
        :meth:`encode`); a record whose sets refer to a view is unreadable without one.
        Version-1 records (stored before version 2) are read too.  Every member decodes
        every other member's report in every view, and reports repeat byte for byte:
        decoded values (immutable) are cached.
        """
        return _decode(bytes(data), view)

    @classmethod
    def _parse(cls, data: bytes, view: tuple[int, ...] | None) -> VotingState | None:
        try:
            state = _parse_v2(data, view) if data[:1] == bytes((_VERSION,)) else _parse_v1(data)
        except (struct.error, ValueError):
            return None
        return state if state is not None and state._valid() else None

    def _valid(self) -> bool:
        """The rules every record keeps, whatever its layout."""
        ambiguous = list(self.ambiguous)
        if ambiguous != sorted(ambiguous):
            return False
        number = self.last_primary.number
        return self.session_number >= number and all(s.number > number for s in ambiguous)


@functools.lru_cache(maxsize=4096)
def _decode(data: bytes, view: tuple[int, ...] | None) -> VotingState | None:
    return VotingState._parse(data, view)


def _put_session(out: bytearray, session: Session, position: dict[int, int] | None) -> None:
    """``number`` varint, then the member set: the bitmap over the view (``position``:
    node id -> its index in the view) when there is one, then the members outside it."""
    out += encode_varint(session.number)
    members: Iterable[int] = session.members
    if position is not None:
        bits = bytearray((len(position) + 7) // 8)
        outside = []
        for node in session.members:
            i = position.get(node)
            if i is None:
                outside.append(node)
            else:
                bits[i >> 3] |= 0x80 >> (i & 7)
        out += bits
        members = outside
    _put_ids(out, tuple(members))


def _put_ids(out: bytearray, ids: tuple[int, ...]) -> None:
    """Ascending node ids: the count, then each id as its gap to the one before, minus 1."""
    out += encode_varint(len(ids))
    previous = -1
    for node in ids:
        if node <= previous:
            raise ValueError(f"the members of a session must ascend, got {list(ids)}")
        out += encode_varint(node - previous - 1)
        previous = node


class _Cursor:
    """Reads a version-2 record; every method raises ``ValueError`` at malformed bytes."""

    __slots__ = ("data", "pos", "view")

    def __init__(self, data: bytes, view: tuple[int, ...] | None) -> None:
        self.data = data
        self.pos = 2  # after version and flags
        self.view = view

    def number(self) -> int:
        value, self.pos = read_varint(self.data, self.pos)
        return value

    def ids(self) -> list[int]:
        out = []
        node = -1
        for _ in range(self.number()):
            node += self.number() + 1
            if node > MAX_NODE_ID:
                raise ValueError("node id out of range")
            out.append(node)
        return out

    def session(self) -> Session:
        number = self.number()
        view = self.view
        if view is None:
            return Session(number, tuple(self.ids()))
        size = (len(view) + 7) // 8
        end = self.pos + size
        if end > len(self.data):
            raise ValueError("truncated")
        bits = self.data[self.pos : end]
        self.pos = end
        if len(view) % 8 and bits[-1] & (0xFF >> (len(view) % 8)):
            raise ValueError("bits set beyond the view")
        inside = [node for i, node in enumerate(view) if bits[i >> 3] & (0x80 >> (i & 7))]
        outside = self.ids()
        if not outside:
            return Session(number, tuple(inside))
        if set(outside) & set(view):
            raise ValueError("a member of the view listed outside it")
        return Session(number, tuple(sorted(inside + outside)))


def _parse_v1(data: bytes) -> VotingState | None:
    """A version-1 record: fixed-size fields, sessions as u32 lists (written before version 2)."""
    version, flags, number, last_formed = _HEAD.unpack_from(data, 0)
    if version != _VERSION_1 or flags & ~_AMNESIAC:
        return None
    offset = _HEAD.size
    last_primary, offset = _decode_session(data, offset)
    (count,) = _U16.unpack_from(data, offset)
    offset += _U16.size
    ambiguous = []
    for _ in range(count):
        session, offset = _decode_session(data, offset)
        ambiguous.append(session)
    (count,) = _U16.unpack_from(data, offset)
    offset += _U16.size
    removed = [_REMOVED.unpack_from(data, offset + i * _REMOVED.size) for i in range(count)]
    offset += count * _REMOVED.size
    if offset != len(data) or [n for n, _ in removed] != sorted({n for n, _ in removed}):
        return None
    return VotingState(
        session_number=number,
        last_primary=last_primary,
        ambiguous=tuple(ambiguous),
        last_formed=last_formed,
        amnesiac=bool(flags & _AMNESIAC),
        removed=tuple((n, upto) for n, upto in removed),
    )


def _parse_v2(data: bytes, view: tuple[int, ...] | None) -> VotingState | None:
    flags = data[1] if len(data) > 1 else -1
    if flags < 0 or flags & ~(_AMNESIAC | _IN_VIEW):
        return None
    if flags & _IN_VIEW and view is None:
        return None  # a report whose sets refer to a view we were not told
    r = _Cursor(data, view if flags & _IN_VIEW else None)
    number = r.number()
    last_formed = r.number()
    last_primary = r.session()
    ambiguous = tuple(r.session() for _ in range(r.number()))
    removed = []
    node = -1
    for _ in range(r.number()):
        node += r.number() + 1
        if node > MAX_NODE_ID:
            return None
        removed.append((node, r.number()))
    if r.pos != len(data):
        return None
    return VotingState(
        session_number=number,
        last_primary=last_primary,
        ambiguous=ambiguous,
        last_formed=last_formed,
        amnesiac=bool(flags & _AMNESIAC),
        removed=tuple(removed),
    )


def merge_removed(*lists: tuple[tuple[int, int], ...]) -> tuple[tuple[int, int], ...]:
    """The union of removal declarations (per node, the highest number)."""
    out: dict[int, int] = {}
    for entries in lists:
        for node, number in entries:
            out[node] = max(out.get(node, 0), number)
    return tuple(sorted(out.items()))


def without(state: VotingState, removed: tuple[tuple[int, int], ...]) -> VotingState:
    """``state`` with every removed node taken out of the sessions the removal covers."""
    if not removed:
        return state
    upto = dict(removed)

    def strip(session: Session) -> Session:
        kept = tuple(m for m in session.members if upto.get(m, -1) < session.number)
        return session if len(kept) == len(session.members) else Session(session.number, kept)

    ambiguous = tuple(a for a in (strip(s) for s in state.ambiguous) if a.members)
    return attrs.evolve(
        state,
        last_primary=strip(state.last_primary),
        ambiguous=ambiguous,
        removed=merge_removed(state.removed, removed),
    )


def _decode_session(data: bytes, offset: int) -> tuple[Session, int]:
    number, count = _SESSION.unpack_from(data, offset)
    offset += _SESSION.size
    members = struct.unpack_from(f"!{count}I", data, offset)
    offset += 4 * count
    if not all(map(operator.lt, members, members[1:])):
        raise ValueError("members must ascend")
    return Session(number, members), offset


class Weights:
    """Votes by node id, and the dynamic *linear* voting subquorum rule.

    ``votes`` lists the configured nodes; a node it does not list weighs ``default``
    (dynamic voting lets newcomers in once they are members of a formed primary).
    """

    def __init__(self, votes: Mapping[int, int], tie_breaker: str | int, default: int = 1) -> None:
        self._votes = dict(votes)
        self._tie_breaker = tie_breaker
        self._default = default
        self._sessions: dict[tuple[int, ...], tuple[frozenset[int], int]] = {}

    def of(self, node_id: int) -> int:
        return self._votes.get(node_id, self._default)

    def total(self, nodes: Iterable[int]) -> int:
        return sum(self.of(n) for n in nodes)

    def designated(self, members: tuple[int, ...]) -> int | None:
        """The member of a session that breaks an exact half (None: nobody weighs anything)."""
        voters = [n for n in members if self.of(n) > 0]
        if not voters:
            return None
        tb = self._tie_breaker
        if tb == "highest":
            return voters[-1]
        if isinstance(tb, int) and tb in voters:
            return tb
        return voters[0]  # "lowest", or a configured node that is not a member

    def subquorum(self, present: Iterable[int], session: Session) -> bool:
        """Whether the nodes ``present`` hold a subquorum of ``session``.

        More than half of the session's weight, or exactly half including its designated
        member.  Two subquorums of one session always share a node that weighs something.
        """
        if not session.members:
            return True  # every member of it was removed for good: nothing to intersect
        members, whole = self._session_weight(session.members)
        if whole == 0:
            return False
        here = [n for n in present if n in members]
        part = self.total(here)
        return 2 * part > whole or (2 * part == whole and self.designated(session.members) in here)

    def _session_weight(self, members: tuple[int, ...]) -> tuple[frozenset[int], int]:
        # Sessions recur in every decision of every member: remember their sets and weights.
        known = self._sessions.get(members)
        if known is None:
            if len(self._sessions) > 4096:
                self._sessions.clear()
            known = self._sessions[members] = (frozenset(members), self.total(members))
        return known
