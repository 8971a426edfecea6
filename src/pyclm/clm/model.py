"""The values of the CLM layer: cluster nodes, changes and notifications (SA Forum CLM shapes)."""

from __future__ import annotations

import enum

import attrs

from ..ids import Member
from ..ids import member as interned_member


class Change(enum.IntEnum):
    """``SaClmClusterChangesT``, with SA Forum's values.

    ``SHUTDOWN`` exists from B.04 on: a B.01 front end reports it as ``LEFT``.
    (``UNLOCK = 5`` belongs to administrative operations, which pyclm does not have.)
    """

    NO_CHANGE = 1
    JOINED = 2
    LEFT = 3
    RECONFIGURED = 4
    SHUTDOWN = 6


@attrs.frozen(kw_only=True)
class ClusterNode:
    """One life of one node as the CLM layer reports it (``SaClmClusterNodeT``).

    ``member`` says whether it is in the membership.  ``boot_timestamp`` is the wall
    clock (ns) at the start of this life, which is what the core uses as the
    incarnation.  ``initial_view_number`` is the view (primary) number at which it
    joined the membership; 0 for a node that has not been a member in this life.
    """

    node_id: int
    name: str
    address: str | None
    member: bool
    boot_timestamp: int
    initial_view_number: int
    incarnation: int

    @property
    def life(self) -> Member:
        """The core's name for this life of the node."""
        return interned_member(self.node_id, self.incarnation)


@attrs.frozen(kw_only=True)
class Notification:
    """One entry of a track callback (``SaClmClusterNotificationT``)."""

    node: ClusterNode
    change: Change


@attrs.frozen(kw_only=True)
class MembershipChange:
    """One transition of the membership as this node reports it.

    ``members`` is the membership after the change, ascending by id (empty when the
    local node is not a member).  ``joined`` and ``reconfigured`` are the entries of
    ``members`` that joined at ``view_number`` or whose name or address changed;
    ``left`` and ``shutdown`` are the lives that are no longer members (``member`` is
    False in them): ``shutdown`` those whose graceful leave this node saw, ``left`` the
    others.  A restarted node has its old life in ``left`` (or ``shutdown``) and its new
    one in ``joined``.  ``local`` is the local node's record after the change.
    """

    view_number: int
    members: tuple[ClusterNode, ...]
    joined: tuple[ClusterNode, ...] = ()
    reconfigured: tuple[ClusterNode, ...] = ()
    left: tuple[ClusterNode, ...] = ()
    shutdown: tuple[ClusterNode, ...] = ()
    local: ClusterNode

    @property
    def local_member(self) -> bool:
        """Whether the local node is a member after this change."""
        return self.local.member


@attrs.frozen(kw_only=True)
class NotificationBuffer:
    """What one track callback delivers: ``SaClmClusterNotificationBufferT`` and
    ``numberOfMembers`` (the size of the membership, which LEFT entries do not count)."""

    view_number: int
    notifications: tuple[Notification, ...]
    number_of_members: int


@attrs.frozen(kw_only=True)
class MembershipSnapshot:
    """The membership as this node reports it at one instant: what a tracker starts from.

    ``members`` is ascending by id and empty while the local node is not a member;
    ``local`` is the local node's record (``member`` says whether it is in), None before
    its life is known.  After a :class:`MembershipChange` the snapshot is that change's
    ``view_number``, ``members`` and ``local`` (:meth:`after`).
    """

    view_number: int
    members: tuple[ClusterNode, ...]
    local: ClusterNode | None

    @classmethod
    def after(cls, change: MembershipChange) -> MembershipSnapshot:
        """The membership as ``change`` leaves it."""
        return cls(view_number=change.view_number, members=change.members, local=change.local)

    @property
    def is_member(self) -> bool:
        """Whether the local node is in the membership."""
        return self.local is not None and self.local.member

    def node(self, node_id: int) -> ClusterNode | None:
        """The member ``node_id``; the local node also when it is not a member; else None."""
        if self.local is not None and node_id == self.local.node_id:
            return self.local
        return next((n for n in self.members if n.node_id == node_id), None)


@attrs.frozen(kw_only=True)
class ChangesLost:
    """Stands in for ``count`` membership changes a slow tracker did not take in time.

    The lost changes are the oldest ones that were waiting: every change after the marker
    is newer.  Read the current membership (``Node.cluster_members()``) to catch up.
    """

    count: int
