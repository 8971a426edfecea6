"""The validated leave: a node asks the trackers of every member before it leaves (sans-IO).

Theory of operation
-------------------
SA Forum B.04 three-step tracking lets a tracker take part in a change before it
happens: VALIDATE (it may refuse), START (it is told, and answers when it is ready),
then COMPLETED (the change happened) or ABORTED (it was called off).  In pyclm the one
change that can be validated is a graceful leave.  :class:`LeaveProtocol` is one node's
part in it, on both sides:

*The leaver* (:meth:`LeaveProtocol.propose`) asks every member of its primary view,
itself included, in two phases, riding on the core's CLM messages
(``Membership.send_clm``, ``ClmMessage``):

1. **VALIDATE.**  It sends VALIDATE to every other member; its own node is asked
   without the network.  Each member asks its local participants (the trackers that
   asked for ``SA_TRACK_VALIDATE_STEP``, the Node's validators) and answers OK,
   REJECTED, or TIMED_OUT (its participants did not all answer within the leaver's
   ``validate_timeout``).  A member with no participants answers OK at once.
   - The first REJECTED or TIMED_OUT answer, or the ``validate_timeout`` passing before
     every answer is in, **aborts** the leave: the leaver sends ABORT to every member
     it asked (each delivers ABORTED to the participants it asked and acknowledges),
     stays in the cluster, and reports why (:class:`LeaveDecided` with ``leave`` False).
   - When every member answered OK, the leave goes on to START.
2. **START.**  It sends START, with the time supervision, to every member.  Each tells
   its ``SA_TRACK_START_STEP`` trackers and answers once all of them answered or the
   supervision ran out.  START cannot be refused.  When every answer is in, or the
   ``start_supervision`` has passed, the leaver is told to leave (:class:`LeaveDecided`
   with ``leave`` True): its runtime calls the core's ``leave``, and every member then
   reports the usual COMPLETED change (SHUTDOWN) from the CLM layer.

*Every node* answers the leaves of the others (and its own) as a **responder**: one
:class:`_Duty` per leaver, keyed by the leaver's node id, holding the newest request of
that leaver.  It hands the steps to the runtime as :class:`StepStarted` and
:class:`StepEnded` events and takes the participants' verdict in
:meth:`LeaveProtocol.local_answer`.

Best effort over an unreliable network:

- The leaver sends each request again, every ``retry_interval``, to the members that
  have not answered it, and ABORT to those that have not acknowledged it, for at most
  one ``validate_timeout`` after the abort.
- Answers are idempotent per request id: a repeated request gets the same answer again
  (or nothing while the participants are still deciding).  Request ids grow per life of
  the leaver; an older one than the newest seen from that leaver is stale.
- Anything that does not decode, comes out of order, or is stale is dropped and counted
  (:attr:`LeaveProtocol.counters`); the decoder never raises.

A change of view ends every negotiation, because the change it validated is no longer
the one that would happen:

- On ``ViewInstalled`` the leaver in VALIDATE aborts without sending anything (every
  member sees the new view too), and a leaver in START leaves at once (START cannot be
  called off, and no answer of the old view can reach it any more).  Each responder ends
  its duties: a VALIDATE it answered or is deciding ends ABORTED, unless the leaver
  departed gracefully in that very view (then the leave happened); a START ends.
- On ``PrimaryLost`` (the view is still installed) the leaver in VALIDATE aborts and
  sends ABORT; a leaver in START goes on.  Responders wait for the next view.
- On ``Stopped`` everything ends (the local node has left).

The members asked are those of the leaver's newest primary (``PrimaryFormed``); a node
that is not a member of a primary right now has nothing to validate and is told to leave
at once.  A request carries the primary number; a responder answers only while its own
primary has that number (otherwise it drops the request, and the leaver asks again or
times out).

Modules: :mod:`~pyclm.clm.leave_wire` (the payloads), :mod:`~pyclm.clm.leave_events` (what the
runtime sees), :mod:`~pyclm.clm.leaver` and :mod:`~pyclm.clm.responder` (the two sides);
this one ties them together and re-exports the public names.
"""

from __future__ import annotations

import math

from ..errors import ConfigError, UsageError
from ..events import ClmMessage, Event, PrimaryFormed, PrimaryLost, Stopped, ViewInstalled
from .leave_events import (
    AbortReason,
    LeaveDecided,
    LeaveEvent,
    LeaveProposal,
    LeaveStep,
    Outputs,
    StepEnded,
    StepStarted,
)
from .leave_wire import (
    U32_MAX,
    U64_MAX,
    Abort,
    Answer,
    Message,
    Phase,
    Start,
    Validate,
    Verdict,
    decode,
    encode,
)
from .leaver import Leaver
from .responder import Responder

__all__ = [
    "DEFAULT_START_SUPERVISION",
    "DEFAULT_VALIDATE_TIMEOUT",
    "Abort",
    "AbortReason",
    "Answer",
    "LeaveDecided",
    "LeaveProposal",
    "LeaveProtocol",
    "LeaveStep",
    "Phase",
    "Start",
    "StepEnded",
    "StepStarted",
    "Validate",
    "Verdict",
    "decode",
    "encode",
]

DEFAULT_VALIDATE_TIMEOUT = 5.0
"""Seconds a leaver waits for every member's VALIDATE answer before it calls the leave off."""
DEFAULT_START_SUPERVISION = 10.0
"""Seconds a leaver gives the START trackers (the ``timeSupervision`` they are shown)."""
DEFAULT_RETRY_INTERVAL = 0.1
"""Seconds between retransmissions (the runtime passes the heartbeat interval)."""


class LeaveProtocol:
    """One node's part in validated leaves: its own (the leaver) and the others' (a responder).

    Sans-IO.  Call contract, like the core's: feed every core event to
    :meth:`handle_event` in order; after any input drain :meth:`messages_to_send`
    (``(payload, to)`` pairs for ``Membership.send_clm``) and :meth:`next_event` until
    it returns None, and re-arm one timer at :meth:`get_timer`, calling
    :meth:`handle_timer` when it comes.  Handling an event may produce more input
    (:meth:`local_answer`); drain again after it.

    ``validate_timeout`` and ``start_supervision`` (seconds) are this node's, as the
    leaver; as a responder it follows the leaver's, which ride on the requests.
    ``retry_interval`` is the pause between retransmissions.
    """

    def __init__(
        self,
        node_id: int,
        *,
        validate_timeout: float = DEFAULT_VALIDATE_TIMEOUT,
        start_supervision: float = DEFAULT_START_SUPERVISION,
        retry_interval: float = DEFAULT_RETRY_INTERVAL,
    ) -> None:
        for setting, value, limit in (
            ("validate_timeout", validate_timeout, U32_MAX / 1000),
            ("start_supervision", start_supervision, U64_MAX / 1e9),
            ("retry_interval", retry_interval, math.inf),
        ):
            if (
                not isinstance(value, int | float)
                or isinstance(value, bool)
                or not math.isfinite(value)
                or not 0 < value <= limit
            ):
                raise ConfigError(setting, f"must be a positive number of seconds (at most {limit:g}), got {value!r}")
        self.node_id = node_id
        self.validate_timeout = float(validate_timeout)
        self.start_supervision = float(start_supervision)
        self.retry_interval = float(retry_interval)
        self._out = Outputs(node_id)
        self._leaver = Leaver(
            self._out,
            validate_timeout=self.validate_timeout,
            start_supervision=self.start_supervision,
            retry_interval=self.retry_interval,
        )
        self._responder = Responder(self._out)
        self._primary: tuple[tuple[int, ...], int] | None = None  # member ids, primary number
        self._stopped = False
        self._draining = False

    # ------------------------------------------------------------------ reading

    @property
    def negotiating(self) -> bool:
        """Whether this node's own leave is being negotiated."""
        return self._leaver.negotiating

    @property
    def counters(self) -> dict[str, int]:
        """Dropped input by reason (``leave_rx_*``) and retransmissions (``leave_tx_retransmitted``)."""
        return dict(self._out.counters)

    def messages_to_send(self) -> list[tuple[bytes, tuple[int, ...]]]:
        """CLM payloads to send, each with the member ids to send it to (never this node)."""
        out, self._out.outbox = self._out.outbox, []
        return out

    def next_event(self) -> LeaveEvent | None:
        """The oldest event not handed out yet, or None."""
        events = self._out.events
        return events.popleft() if events else None

    def get_timer(self) -> float | None:
        """When to call :meth:`handle_timer` (absolute, in the ``now`` of the inputs), or None."""
        return min(self._responder.deadlines() + self._leaver.deadlines(), default=None)

    # ------------------------------------------------------------------ inputs: the leaver

    def propose(self, now: float) -> int:
        """Begin this node's leave; returns its request id.  Drain the outputs afterwards.

        A :class:`LeaveDecided` for it comes later, or at once (``leave`` True) when this
        node is not a member of a primary.  Raises :class:`UsageError` while a leave is
        being negotiated already, and once the node has stopped.
        """
        if self._stopped:
            raise UsageError("this node has left; a new Node (a new life) can leave again")
        if self._leaver.negotiating:
            raise UsageError("a leave is being negotiated already: wait for its LeaveDecided, or cancel() it")
        request = self._leaver.propose(self._primary, now)
        self._drain_loopback(now)
        return request

    def cancel(self, now: float) -> None:
        """Call this node's leave off, if it is still in VALIDATE (then ABORT goes out).

        In START it does nothing: START cannot be called off, and the leave goes on.
        """
        if self._leaver.cancel(now):
            self._drain_loopback(now)

    # ------------------------------------------------------------------ inputs: every node

    def local_answer(self, leaver: int, request: int, step: LeaveStep, ok: bool, now: float) -> None:
        """This node's participants have answered step ``step`` of that leave.

        ``ok`` False means one of them REJECTED (VALIDATE only; ignored for START).  A
        late or repeated answer (the step is over) is ignored.
        """
        self._responder.local_answer(leaver, request, step, ok)
        self._drain_loopback(now)

    def handle_event(self, event: Event, now: float) -> None:
        """Take one core event, in the core's order."""
        if isinstance(event, ClmMessage):
            message = decode(event.payload)
            if message is None:
                self._out.counters["leave_rx_malformed"] += 1
            elif event.sender == self.node_id:
                self._out.counters["leave_rx_unexpected"] += 1  # the core never echoes; be safe
            else:
                self._receive(event.sender, message, now)
        elif isinstance(event, PrimaryFormed):
            self._primary = (event.view.node_ids, event.number)
        elif isinstance(event, PrimaryLost):
            self._primary = None
            self._leaver.on_primary_lost(now)
        elif isinstance(event, ViewInstalled):
            self._on_view_installed(event)
        elif isinstance(event, Stopped):
            self._on_stopped()
        self._drain_loopback(now)

    def handle_timer(self, now: float) -> None:
        """The timer of :meth:`get_timer` came: local deadlines, then the leaver's deadline and retries."""
        self._responder.handle_timer(now)
        self._drain_loopback(now)
        self._leaver.handle_timer(now)
        self._drain_loopback(now)

    # ------------------------------------------------------------------ dispatch

    def _receive(self, sender: int, message: Message, now: float) -> None:
        if isinstance(message, Answer):
            self._leaver.on_answer(sender, message, now)
        else:
            self._responder.receive(sender, message, None if self._primary is None else self._primary[1], now)

    def _on_view_installed(self, event: ViewInstalled) -> None:
        self._primary = None
        self._out.outbox.clear()  # addressed to the old view: its members' answers there are moot
        self._out.loopback.clear()
        self._responder.end_all({m.node_id for m in event.departed})
        self._leaver.on_view_installed()

    def _on_stopped(self) -> None:
        self._stopped = True
        self._primary = None
        self._out.outbox.clear()
        self._out.loopback.clear()
        self._responder.end_all(stopped=True)
        self._leaver.on_stopped()

    def _drain_loopback(self, now: float) -> None:
        """Hand this node's messages to itself, as if they came over the network (not re-entrant)."""
        if self._draining:
            return
        self._draining = True
        try:
            while self._out.loopback:
                self._receive(self.node_id, self._out.loopback.popleft(), now)
        finally:
            self._draining = False

    def __repr__(self) -> str:
        return f"<LeaveProtocol node {self.node_id} {self._leaver.state} duties={self._responder.leavers}>"
