"""The CLM layer: SA Forum style cluster membership over the core's events (sans-IO).

The membership is the primary component this node is in, numbered by the primary
number.  :class:`ClusterMembership` turns core events into :class:`MembershipChange`
values; :func:`track_current` and :func:`track_changes` turn those into the
notification buffers of SA Forum track callbacks.  The SAF facade and the async API
both read membership from here.  See ``docs/clm.md``.
"""

from .membership import DEFAULT_SETTLE_TIMEOUT, ClusterMembership
from .model import (
    Change,
    ChangesLost,
    ClusterNode,
    MembershipChange,
    MembershipSnapshot,
    Notification,
    NotificationBuffer,
)
from .tracking import TrackMode, track_changes, track_current

__all__ = [
    "DEFAULT_SETTLE_TIMEOUT",
    "Change",
    "ChangesLost",
    "ClusterMembership",
    "ClusterNode",
    "MembershipChange",
    "MembershipSnapshot",
    "Notification",
    "NotificationBuffer",
    "TrackMode",
    "track_changes",
    "track_current",
]
