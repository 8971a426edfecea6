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
    incarnation in ``left`` and its new one in ``joined``.
    """

    view: View
    joined: tuple[Member, ...] = ()
    left: tuple[Member, ...] = ()


@attrs.frozen(kw_only=True)
class PrimaryFormed:
    """This node's current view became the primary component.

    ``number`` is the primary number: primaries are totally ordered by it and it is
    what applications see as the cluster's view number (never reused, never going back).
    """

    view: View
    number: int


@attrs.frozen(kw_only=True)
class PrimaryLost:
    """This node stopped being primary while it still has view ``view_id`` installed."""

    view_id: ViewId


@attrs.frozen(kw_only=True)
class Stopped:
    """The core left the cluster (graceful leave completed); it produces nothing more."""


Event = ViewInstalled | PrimaryFormed | PrimaryLost | Stopped
