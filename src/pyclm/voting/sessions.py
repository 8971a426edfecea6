"""Sessions, the dynamic-voting state record, and the subquorum rule.

These are the values the dynamic-voting policies (:mod:`pyclm.voting.ykd` and its
comparison variants) share.  A *session* is a numbered attempt to make a set of nodes
the primary component; the state a node keeps on stable storage, and reports to the
members of every new view, says which sessions it knows formed and which it attempted
without learning their outcome.

The record is versioned and checksummed by the storage; :meth:`VotingState.decode`
never raises: anything it cannot read is ``None`` (an unreadable state, handled as
amnesia by the policy).
"""

from __future__ import annotations

import functools
import operator
import struct
from collections.abc import Iterable, Mapping

import attrs

_HEAD = struct.Struct("!BBQQ")  # version, flags, session number, last formed
_SESSION = struct.Struct("!QH")  # number, member count
_U16 = struct.Struct("!H")
_REMOVED = struct.Struct("!IQ")  # node, up to which session number
_VERSION = 1
_AMNESIAC = 0x01


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

    def encode(self) -> bytes:
        parts = [
            _HEAD.pack(_VERSION, _AMNESIAC if self.amnesiac else 0, self.session_number, self.last_formed),
            _encode_session(self.last_primary),
            _U16.pack(len(self.ambiguous)),
        ]
        parts.extend(_encode_session(s) for s in self.ambiguous)
        parts.append(_U16.pack(len(self.removed)))
        parts.extend(_REMOVED.pack(node, number) for node, number in self.removed)
        return b"".join(parts)

    @classmethod
    def decode(cls, data: bytes) -> VotingState | None:
        """The state in ``data``, or None if it is not a complete, valid record.

        Every member decodes every other member's report in every view, and reports
        repeat byte for byte: decoded values (immutable) are cached.
        """
        return _decode(bytes(data))

    @classmethod
    def _parse(cls, data: bytes) -> VotingState | None:
        try:
            version, flags, number, last_formed = _HEAD.unpack_from(data, 0)
            if version != _VERSION or flags & ~_AMNESIAC:
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
        except (struct.error, ValueError):
            return None
        if [n for n, _ in removed] != sorted({n for n, _ in removed}):
            return None
        if offset != len(data) or ambiguous != sorted(ambiguous):
            return None
        if number < last_primary.number or any(s.number <= last_primary.number for s in ambiguous):
            return None
        return cls(
            session_number=number,
            last_primary=last_primary,
            ambiguous=tuple(ambiguous),
            last_formed=last_formed,
            amnesiac=bool(flags & _AMNESIAC),
            removed=tuple((n, number) for n, number in removed),
        )


@functools.lru_cache(maxsize=4096)
def _decode(data: bytes) -> VotingState | None:
    return VotingState._parse(data)


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


def _encode_session(session: Session) -> bytes:
    members = session.members
    return _SESSION.pack(session.number, len(members)) + struct.pack(f"!{len(members)}I", *members)


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
