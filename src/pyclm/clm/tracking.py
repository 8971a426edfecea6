"""What an SA Forum track subscriber receives: notification buffers for CURRENT and for
CHANGES / CHANGES_ONLY callbacks, with or without SA_TRACK_LOCAL.

These are pure functions of the reported membership, not of a subscriber's history: a
callback's content depends only on the :class:`MembershipChange` and the subscriber's
flags.  So every subscriber with the same flags gets the same buffer for the same view
number, however long it has been tracking (SA Forum's consistency requirement), as in
OpenSAF, whose server builds one buffer per change for all its clients.
"""

from __future__ import annotations

import enum
from collections.abc import Iterable

from .membership import ClusterMembership
from .model import Change, ClusterNode, MembershipChange, MembershipSnapshot, Notification, NotificationBuffer


class TrackMode(enum.Enum):
    """Which change callbacks a subscriber asked for (``SA_TRACK_CHANGES`` or ``SA_TRACK_CHANGES_ONLY``)."""

    CHANGES = "changes"
    CHANGES_ONLY = "changes_only"


def track_current(membership: ClusterMembership | MembershipSnapshot, *, local: bool = False) -> NotificationBuffer:
    """The answer to ``SA_TRACK_CURRENT`` (``local``: with ``SA_TRACK_LOCAL``).

    ``membership`` is the layer itself or a :class:`MembershipSnapshot` of it (what
    ``pyclm.Node.membership_snapshot()`` gives, from any thread).  A member node lists
    every member, NO_CHANGE (only itself with ``local``).  A node outside the membership
    lists only itself, LEFT with ``member`` False, as OpenSAF's server answers (SA Forum
    B.04 3.5.1: a non-member sees only its own node).  Before the local node's life is
    known (no ``incarnation`` given, no view yet) the list is empty.
    """
    snapshot = membership.snapshot() if isinstance(membership, ClusterMembership) else membership
    me = snapshot.local
    if not snapshot.is_member:
        entries = () if me is None else (Notification(node=me, change=Change.LEFT),)
        return NotificationBuffer(view_number=snapshot.view_number, notifications=entries, number_of_members=0)
    members = snapshot.members
    shown = (me,) if local and me is not None else members
    return NotificationBuffer(
        view_number=snapshot.view_number,
        notifications=tuple(Notification(node=n, change=Change.NO_CHANGE) for n in shown),
        number_of_members=len(members),
    )


def track_changes(change: MembershipChange, mode: TrackMode, *, local: bool = False) -> NotificationBuffer | None:
    """The callback a subscriber with ``mode`` (and ``SA_TRACK_LOCAL`` if ``local``) gets for ``change``.

    CHANGES: every member (NO_CHANGE, JOINED or RECONFIGURED) and every life gone
    (LEFT or SHUTDOWN, ``member`` False).  CHANGES_ONLY: the joined, reconfigured and
    gone ones only; none when only the view number changed (a callback with zero
    entries).  With ``local``: one entry, the local node, and only for a change of the
    local node itself (None otherwise: no callback), as OpenSAF sends it.  Entries are
    ascending by node id, a restarted node's old life before its new one.
    """
    changed = _changes_of(change)
    if local:
        mine = [n for n in changed if n.node.node_id == change.local.node_id]
        if not mine:
            return None
        return NotificationBuffer(
            view_number=change.view_number, notifications=(mine[-1],), number_of_members=len(change.members)
        )
    entries = list(changed)
    if mode is TrackMode.CHANGES:
        touched = {n.node for n in changed}
        entries += (Notification(node=n, change=Change.NO_CHANGE) for n in change.members if n not in touched)
    return NotificationBuffer(
        view_number=change.view_number,
        notifications=_ordered(entries),
        number_of_members=len(change.members),
    )


def _changes_of(change: MembershipChange) -> tuple[Notification, ...]:
    """The entries of ``change`` that are changes, in callback order."""
    entries: list[Notification] = []
    groups: tuple[tuple[tuple[ClusterNode, ...], Change], ...] = (
        (change.joined, Change.JOINED),
        (change.reconfigured, Change.RECONFIGURED),
        (change.left, Change.LEFT),
        (change.shutdown, Change.SHUTDOWN),
    )
    for nodes, kind in groups:
        entries += (Notification(node=n, change=kind) for n in nodes)
    return _ordered(entries)


def _ordered(entries: Iterable[Notification]) -> tuple[Notification, ...]:
    # Incarnations grow with every start, so a node's old life sorts before its new one.
    return tuple(sorted(entries, key=lambda e: (e.node.node_id, e.node.incarnation)))
