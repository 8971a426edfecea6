"""The CLM layer: SA Forum style cluster membership over the core's events (sans-IO).

The membership is the primary component this node is in, numbered by the primary
number.  :class:`ClusterMembership` turns core events into :class:`MembershipChange`
values; :func:`track_current` and :func:`track_changes` turn those into the
notification buffers of SA Forum track callbacks; :class:`LeaveProtocol` is the
validated leave that three-step tracking (VALIDATE, START) takes part in.  The SAF
facade and the async API both read membership from here.  See ``docs/clm.md``.
"""

from .leave import (
    DEFAULT_START_SUPERVISION,
    DEFAULT_VALIDATE_TIMEOUT,
    AbortReason,
    LeaveDecided,
    LeaveProposal,
    LeaveProtocol,
    LeaveStep,
    StepEnded,
    StepStarted,
)
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
    "DEFAULT_START_SUPERVISION",
    "DEFAULT_VALIDATE_TIMEOUT",
    "AbortReason",
    "Change",
    "ChangesLost",
    "ClusterMembership",
    "ClusterNode",
    "LeaveDecided",
    "LeaveProposal",
    "LeaveProtocol",
    "LeaveStep",
    "MembershipChange",
    "MembershipSnapshot",
    "Notification",
    "NotificationBuffer",
    "StepEnded",
    "StepStarted",
    "TrackMode",
    "track_changes",
    "track_current",
]
