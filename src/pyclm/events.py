"""Events the membership core hands out through :meth:`Membership.next_event`.

Don't subclass these: consumers dispatch on ``type(event)``.
"""

from __future__ import annotations

import attrs

from .ids import Member, View, ViewId


@attrs.frozen(kw_only=True)
class ViewInstalled:
    """This node installed ``view``.

    ``joined`` and ``left`` compare with the view this node had installed before
    (empty for the first view of this life).  A restarted node shows up as its old
    incarnation in ``left`` and its new one in ``joined``.  ``departed`` is the part of
    ``left`` whose graceful leave (LEAVE) this node received; the rest crashed, were
    cut off, or restarted.
    """

    view: View
    joined: tuple[Member, ...] = ()
    left: tuple[Member, ...] = ()
    departed: tuple[Member, ...] = ()


@attrs.frozen(kw_only=True)
class PrimaryFormed:
    """This node's current view became the primary component.

    ``number`` is the primary number: primaries are totally ordered by it and it is
    what applications see as the cluster's view number (never reused, never going back).

    ``initial`` is aligned with ``view.members``: for each member, the primary number at
    which it joined the membership (SA Forum's *initialViewNumber*).  Every member of the
    view computes the same tuple (see :mod:`pyclm.core`, "Membership numbers").
    """

    view: View
    number: int
    initial: tuple[int, ...] = attrs.field()

    @initial.validator
    def _aligned(self, _: object, initial: tuple[int, ...]) -> None:
        if len(initial) != len(self.view.members):
            raise ValueError(f"initial has {len(initial)} numbers for a view of {len(self.view.members)} members")


@attrs.frozen(kw_only=True)
class PrimaryLost:
    """This node stopped being primary while it still has view ``view_id`` installed."""

    view_id: ViewId


@attrs.frozen(kw_only=True)
class ClmMessage:
    """A member of the installed view ``view_id`` sent ``payload`` with :meth:`Membership.send_clm`."""

    sender: int
    view_id: ViewId
    payload: bytes


@attrs.frozen(kw_only=True)
class Stopped:
    """The core left the cluster (graceful leave completed); it produces nothing more."""


Event = ViewInstalled | PrimaryFormed | PrimaryLost | ClmMessage | Stopped
