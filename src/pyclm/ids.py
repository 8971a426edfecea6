"""Identity values: node ids, members (a node in one life) and view ids.

A node id is a uint32 chosen by the operator.  A node's *incarnation* is a
uint64 that grows with every start of the node (see :mod:`pyclm.core`), so the
pair ``Member(node_id, incarnation)`` names one life of one node: a restarted
node is a different member even though it keeps its id.

View ids are totally ordered pairs ``(epoch, coordinator)``.  Their text form,
used by the CLI and the JSON output, is ``"<epoch>.<coordinator>"``.
"""

from __future__ import annotations

import bisect
import functools

import attrs

MAX_NODE_ID = 2**32 - 1
MAX_INCARNATION = 2**64 - 1
MAX_EPOCH = 2**64 - 1


def _check_node_id(_inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_NODE_ID:
        raise ValueError(f"{attr.name} must be an integer in 0..{MAX_NODE_ID}, got {value!r}")


def _check_u64(_inst: object, attr: attrs.Attribute[int], value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_EPOCH:
        raise ValueError(f"{attr.name} must be an integer in 0..2**64-1, got {value!r}")


@attrs.frozen(order=True)
class Member:
    """One life of one node: its id and the incarnation it runs as."""

    node_id: int = attrs.field(validator=_check_node_id)
    incarnation: int = attrs.field(validator=_check_u64)

    def __str__(self) -> str:
        return f"{self.node_id}@{self.incarnation}"


@attrs.frozen(order=True)
class ViewId:
    """A view id; compares by ``epoch`` first, then by ``coordinator``."""

    epoch: int = attrs.field(validator=_check_u64)
    coordinator: int = attrs.field(validator=_check_node_id)

    def __str__(self) -> str:
        return f"{self.epoch}.{self.coordinator}"

    @classmethod
    def parse(cls, text: str) -> ViewId:
        """Parse the text form ``"<epoch>.<coordinator>"``."""
        epoch, sep, coordinator = text.partition(".")
        if not sep or not epoch.isdigit() or not coordinator.isdigit():
            raise ValueError(f"a view id looks like '7.1' (epoch.coordinator), got {text!r}")
        return cls(epoch=int(epoch), coordinator=int(coordinator))


@functools.lru_cache(maxsize=1 << 16)
def member(node_id: int, incarnation: int) -> Member:
    """A shared :class:`Member` (they are immutable): decoding and the matrix create many."""
    return Member(node_id, incarnation)


def find(members: tuple[Member, ...], node_id: int) -> Member | None:
    """The member with ``node_id`` in ``members`` (ascending by id, as views and rows keep
    them), or None; O(log n)."""
    i = bisect.bisect_left(members, node_id, key=_node_id)
    return members[i] if i < len(members) and members[i].node_id == node_id else None


def _node_id(m: Member) -> int:
    return m.node_id


def _sorted_members(members: tuple[Member, ...] | list[Member]) -> tuple[Member, ...]:
    return tuple(sorted(members))


@attrs.frozen
class View:
    """An installed (or proposed) view: its id and its members, ascending by id."""

    view_id: ViewId
    members: tuple[Member, ...] = attrs.field(converter=_sorted_members)

    @members.validator
    def _check_members(self, _attr: attrs.Attribute[tuple[Member, ...]], value: tuple[Member, ...]) -> None:
        ids = [m.node_id for m in value]
        if len(set(ids)) != len(ids):
            raise ValueError(f"a view lists each node once, got {ids}")
        if not ids:
            raise ValueError("a view has at least one member")
        if self.view_id.coordinator != ids[0]:
            raise ValueError("the coordinator of a view is its lowest member id")

    #: The member ids, ascending (derived; kept because every layer asks for them).
    node_ids: tuple[int, ...] = attrs.field(init=False, eq=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "node_ids", tuple(m.node_id for m in self.members))

    def __contains__(self, node_id: object) -> bool:
        return find(self.members, node_id) is not None if isinstance(node_id, int) else False
