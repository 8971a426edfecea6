"""What the validated leave hands out: events for the runtime, CLM payloads for the network.

The events (:class:`StepStarted`, :class:`StepEnded`, :class:`LeaveDecided`) and what a
validator is shown (:class:`LeaveProposal`), plus :class:`Outputs`, the queues that the
leaver's and the responder's sides of :class:`~pyclm.clm.leave.LeaveProtocol` share.
"""

from __future__ import annotations

import enum
from collections import Counter, deque
from collections.abc import Iterable

import attrs

from .leave_wire import Message, encode
from .model import ClusterNode, MembershipChange

__all__ = [
    "AbortReason",
    "LeaveDecided",
    "LeaveEvent",
    "LeaveProposal",
    "LeaveStep",
    "Outputs",
    "StepEnded",
    "StepStarted",
]


class LeaveStep(enum.IntEnum):
    """The step of a leave a node's participants are asked to take part in (``SaClmChangeStepT`` values)."""

    VALIDATE = 1
    START = 2


class AbortReason(enum.Enum):
    """Why a validated leave was called off."""

    REJECTED = "rejected"
    """A participant on a member answered REJECTED."""
    TIMED_OUT = "timed out"
    """A member did not answer VALIDATE within the validate timeout (or its participants did not)."""
    VIEW_CHANGED = "view changed"
    """The view changed, or the primary was lost, during VALIDATE."""
    CANCELLED = "cancelled"
    """The leaver called it off (:meth:`LeaveProtocol.cancel`)."""


@attrs.frozen(kw_only=True)
class StepStarted:
    """Ask this node's participants to take part in step ``step`` of ``leaver``'s leave.

    When they have all answered (VALIDATE: or one refused), call
    :meth:`LeaveProtocol.local_answer`.  ``time_supervision`` is the START trackers'
    time in seconds (None for VALIDATE: ``SA_TIME_UNKNOWN``).  The protocol enforces it:
    :class:`StepEnded` comes when it runs out.
    """

    leaver: int
    request: int
    step: LeaveStep
    view_number: int
    time_supervision: float | None


@attrs.frozen(kw_only=True)
class StepEnded:
    """Step ``step`` of ``leaver``'s leave is over here: stop waiting for answers.

    ``aborted`` (VALIDATE only): the leave was called off, so tell the participants that
    were asked (ABORTED).  Otherwise the leave went on (or this node stopped).
    """

    leaver: int
    request: int
    step: LeaveStep
    aborted: bool


@attrs.frozen(kw_only=True)
class LeaveDecided:
    """The outcome of this node's own leave request ``request``.

    ``leave`` True: leave now (call the core's ``leave``).  False: the leave is called
    off for ``reason``; the node stays.  ``asked`` are the members asked (this node
    included; empty when it was not a member of a primary), ``rejected`` those that
    answered REJECTED and ``timed_out`` those that did not answer in time, ascending.
    """

    request: int
    leave: bool
    reason: AbortReason | None = None
    asked: tuple[int, ...] = ()
    rejected: tuple[int, ...] = ()
    timed_out: tuple[int, ...] = ()


LeaveEvent = StepStarted | StepEnded | LeaveDecided


@attrs.frozen(kw_only=True)
class LeaveProposal:
    """A leave that a node's participants are asked about: what a validator receives.

    ``leaving`` is the node that asks to leave (it may be the local node),
    ``view_number`` the primary it leaves, and ``change`` the change as it will be
    reported when it happens (``leaving`` in ``shutdown``).  ``time_supervision`` is, for
    START, the seconds the leaver waits for the START trackers; None for VALIDATE.
    """

    leaving: ClusterNode
    view_number: int
    change: MembershipChange
    time_supervision: float | None = None


class Outputs:
    """What one node's protocol has to hand out, and its drop counters (shared by both sides).

    A message to this node itself goes to :attr:`loopback` (the protocol delivers it as
    if it came over the network); the rest goes to :attr:`outbox` as one payload each.
    """

    def __init__(self, node_id: int) -> None:
        self.node_id = node_id
        self.outbox: list[tuple[bytes, tuple[int, ...]]] = []
        self.events: deque[LeaveEvent] = deque()
        self.loopback: deque[Message] = deque()  # messages from this node to itself
        self.counters: Counter[str] = Counter()

    def send(self, to: Iterable[int], message: Message) -> None:
        targets = set(to)
        others = tuple(sorted(n for n in targets if n != self.node_id))
        if self.node_id in targets:
            self.loopback.append(message)
        if others:
            self.outbox.append((encode(message), others))
