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
"""

from __future__ import annotations

import enum
import itertools
import math
import struct
from collections import Counter, deque
from collections.abc import Iterable

import attrs

from ..errors import ConfigError, UsageError
from ..events import ClmMessage, Event, PrimaryFormed, PrimaryLost, Stopped, ViewInstalled
from .model import ClusterNode, MembershipChange

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

# ---------------------------------------------------------------------- the payloads (docs/wire.md, CLM)

KIND_VALIDATE = 1
KIND_START = 2
KIND_ABORT = 3
KIND_ANSWER = 4

_VALIDATE = struct.Struct("!BQQI")  # kind, request, view number, timeout (ms)
_START = struct.Struct("!BQQQ")  # kind, request, view number, time supervision (ns)
_ABORT = struct.Struct("!BQ")  # kind, request
_ANSWER = struct.Struct("!BQBB")  # kind, request, phase, verdict

_U32_MAX = 2**32 - 1
_U64_MAX = 2**64 - 1


class Phase(enum.IntEnum):
    """The request an ANSWER answers."""

    VALIDATE = 1
    START = 2
    ABORT = 3


class Verdict(enum.IntEnum):
    """What a member answers.

    VALIDATE: OK, REJECTED, or TIMED_OUT (its participants did not all answer in time).
    START: OK (all its START trackers answered) or TIMED_OUT (the supervision ran out).
    ABORT: OK (the acknowledgement).
    """

    OK = 1
    REJECTED = 2
    TIMED_OUT = 3


_PHASES = {p.value: p for p in Phase}
_VERDICT_VALUES = {v.value: v for v in Verdict}
_VERDICTS: dict[Phase, frozenset[Verdict]] = {
    Phase.VALIDATE: frozenset(Verdict),
    Phase.START: frozenset({Verdict.OK, Verdict.TIMED_OUT}),
    Phase.ABORT: frozenset({Verdict.OK}),
}


@attrs.frozen(kw_only=True)
class Validate:
    """VALIDATE: may ``leaver`` (the sender) leave the primary ``view_number``?  Answer within ``timeout_ms``."""

    request: int
    view_number: int
    timeout_ms: int


@attrs.frozen(kw_only=True)
class Start:
    """START: the leave goes ahead; tell the START trackers, who have ``supervision_ns``."""

    request: int
    view_number: int
    supervision_ns: int


@attrs.frozen(kw_only=True)
class Abort:
    """ABORT: the leave is called off; tell those asked to VALIDATE (ABORTED)."""

    request: int


@attrs.frozen(kw_only=True)
class Answer:
    """A member's answer to the request ``request`` in ``phase``."""

    request: int
    phase: Phase
    verdict: Verdict


Message = Validate | Start | Abort | Answer


def encode(message: Message) -> bytes:
    """The CLM payload of ``message`` (docs/wire.md, "Leave payloads")."""
    if isinstance(message, Validate):
        return _VALIDATE.pack(KIND_VALIDATE, message.request, message.view_number, message.timeout_ms)
    if isinstance(message, Start):
        return _START.pack(KIND_START, message.request, message.view_number, message.supervision_ns)
    if isinstance(message, Abort):
        return _ABORT.pack(KIND_ABORT, message.request)
    return _ANSWER.pack(KIND_ANSWER, message.request, message.phase, message.verdict)


def decode(payload: bytes | bytearray | memoryview) -> Message | None:
    """The message in a CLM payload, or None if it is not a well-formed leave message.  Never raises.

    Each kind has one exact length; the request id is never 0; a timeout or supervision
    of 0 is malformed; an ANSWER's verdict must be one its phase has.
    """
    if not isinstance(payload, bytes | bytearray | memoryview) or not payload:
        return None
    data = bytes(payload)
    kind = data[0]
    message: Message
    if kind == KIND_VALIDATE and len(data) == _VALIDATE.size:
        _, request, number, timeout_ms = _VALIDATE.unpack(data)
        if timeout_ms == 0:
            return None
        message = Validate(request=request, view_number=number, timeout_ms=timeout_ms)
    elif kind == KIND_START and len(data) == _START.size:
        _, request, number, supervision_ns = _START.unpack(data)
        if supervision_ns == 0:
            return None
        message = Start(request=request, view_number=number, supervision_ns=supervision_ns)
    elif kind == KIND_ABORT and len(data) == _ABORT.size:
        _, request = _ABORT.unpack(data)
        message = Abort(request=request)
    elif kind == KIND_ANSWER and len(data) == _ANSWER.size:
        _, request, phase_value, verdict_value = _ANSWER.unpack(data)
        phase = _PHASES.get(phase_value)
        verdict = _VERDICT_VALUES.get(verdict_value)
        if phase is None or verdict is None or verdict not in _VERDICTS[phase]:
            return None
        message = Answer(request=request, phase=phase, verdict=verdict)
    else:
        return None
    return message if message.request != 0 else None


# ---------------------------------------------------------------------- what the runtime sees


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


# ---------------------------------------------------------------------- the state machines


class _Phase(enum.Enum):
    """The leaver's negotiation."""

    VALIDATE = "validate"
    START = "start"


class _DutyPhase(enum.Enum):
    """A responder's part in one leave request."""

    VALIDATING = "validating"  # its participants are deciding
    VALIDATED = "validated"  # it answered VALIDATE; waiting for START or ABORT
    STARTING = "starting"  # its START trackers are getting ready
    STARTED = "started"  # it answered START
    ABORTED = "aborted"  # ABORT came (kept to acknowledge repeats)


@attrs.define
class _Negotiation:
    request: int
    view_number: int
    asked: tuple[int, ...]
    phase: _Phase
    deadline: float
    retry_at: float
    answers: dict[int, Verdict] = attrs.field(factory=dict)


@attrs.define
class _AbortLinger:
    """ABORT still unacknowledged by ``pending``: sent again until ``deadline``."""

    request: int
    pending: set[int]
    deadline: float
    retry_at: float


@attrs.define
class _Duty:
    leaver: int
    request: int
    view_number: int
    phase: _DutyPhase
    deadline: float | None = None  # while its participants decide
    verdict: Verdict | None = None  # the answer sent in the current phase (sent again on repeats)


# What a responder does with each request, by the phase of its duty for that request.
# "dup": a repeat while deciding (count, drop); "again": send the same answer again;
# "bad": out of order (count, drop); otherwise the name of the transition.
_ON_VALIDATE = {
    _DutyPhase.VALIDATING: "dup",
    _DutyPhase.VALIDATED: "again",
    _DutyPhase.STARTING: "dup",
    _DutyPhase.STARTED: "dup",
    _DutyPhase.ABORTED: "dup",
}
_ON_START = {
    _DutyPhase.VALIDATING: "bad",  # the leaver starts only after our answer
    _DutyPhase.VALIDATED: "start",  # (only after an OK: see _start)
    _DutyPhase.STARTING: "dup",
    _DutyPhase.STARTED: "again",
    _DutyPhase.ABORTED: "bad",
}
_ON_ABORT = {
    _DutyPhase.VALIDATING: "abort",
    _DutyPhase.VALIDATED: "abort",
    _DutyPhase.STARTING: "bad",  # START cannot be called off
    _DutyPhase.STARTED: "bad",
    _DutyPhase.ABORTED: "again",
}


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
            ("validate_timeout", validate_timeout, _U32_MAX / 1000),
            ("start_supervision", start_supervision, _U64_MAX / 1e9),
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
        self._requests = itertools.count(1)
        self._primary: tuple[tuple[int, ...], int] | None = None  # member ids, primary number
        self._stopped = False
        self._negotiation: _Negotiation | None = None
        self._linger: _AbortLinger | None = None
        self._duties: dict[int, _Duty] = {}  # leaver id -> its newest request here
        self._outbox: list[tuple[bytes, tuple[int, ...]]] = []
        self._events: deque[LeaveEvent] = deque()
        self._loopback: deque[Message] = deque()  # messages from this node to itself
        self._draining = False
        self._counters: Counter[str] = Counter()

    # ------------------------------------------------------------------ reading

    @property
    def negotiating(self) -> bool:
        """Whether this node's own leave is being negotiated."""
        return self._negotiation is not None

    @property
    def counters(self) -> dict[str, int]:
        """Dropped input by reason (``leave_rx_*``) and retransmissions (``leave_tx_retransmitted``)."""
        return dict(self._counters)

    def messages_to_send(self) -> list[tuple[bytes, tuple[int, ...]]]:
        """CLM payloads to send, each with the member ids to send it to (never this node)."""
        out, self._outbox = self._outbox, []
        return out

    def next_event(self) -> LeaveEvent | None:
        """The oldest event not handed out yet, or None."""
        return self._events.popleft() if self._events else None

    def get_timer(self) -> float | None:
        """When to call :meth:`handle_timer` (absolute, in the ``now`` of the inputs), or None."""
        times: list[float] = [d.deadline for d in self._duties.values() if d.deadline is not None]
        if self._negotiation is not None:
            times += (self._negotiation.deadline, self._negotiation.retry_at)
        if self._linger is not None:
            times += (self._linger.deadline, self._linger.retry_at)
        return min(times, default=None)

    # ------------------------------------------------------------------ inputs: the leaver

    def propose(self, now: float) -> int:
        """Begin this node's leave; returns its request id.  Drain the outputs afterwards.

        A :class:`LeaveDecided` for it comes later, or at once (``leave`` True) when this
        node is not a member of a primary.  Raises :class:`UsageError` while a leave is
        being negotiated already, and once the node has stopped.
        """
        if self._stopped:
            raise UsageError("this node has left; a new Node (a new life) can leave again")
        if self._negotiation is not None:
            raise UsageError("a leave is being negotiated already: wait for its LeaveDecided, or cancel() it")
        request = next(self._requests)
        self._linger = None  # the new request supersedes an older one at every responder
        if self._primary is None:
            self._events.append(LeaveDecided(request=request, leave=True))
            return request
        members, number = self._primary
        negotiation = self._negotiation = _Negotiation(
            request=request,
            view_number=number,
            asked=members,
            phase=_Phase.VALIDATE,
            deadline=now + self.validate_timeout,
            retry_at=now + self.retry_interval,
        )
        self._send(members, self._request_of(negotiation))
        self._drain_loopback(now)
        return request

    def cancel(self, now: float) -> None:
        """Call this node's leave off, if it is still in VALIDATE (then ABORT goes out).

        In START it does nothing: START cannot be called off, and the leave goes on.
        """
        negotiation = self._negotiation
        if negotiation is not None and negotiation.phase is _Phase.VALIDATE:
            self._abort(AbortReason.CANCELLED, now, send=True)
            self._drain_loopback(now)

    # ------------------------------------------------------------------ inputs: every node

    def local_answer(self, leaver: int, request: int, step: LeaveStep, ok: bool, now: float) -> None:
        """This node's participants have answered step ``step`` of that leave.

        ``ok`` False means one of them REJECTED (VALIDATE only; ignored for START).  A
        late or repeated answer (the step is over) is ignored.
        """
        duty = self._duties.get(leaver)
        if duty is None or duty.request != request:
            return
        if step is LeaveStep.VALIDATE and duty.phase is _DutyPhase.VALIDATING:
            self._answer_validate(duty, Verdict.OK if ok else Verdict.REJECTED)
        elif step is LeaveStep.START and duty.phase is _DutyPhase.STARTING:
            self._answer_start(duty, Verdict.OK)
        self._drain_loopback(now)

    def handle_event(self, event: Event, now: float) -> None:
        """Take one core event, in the core's order."""
        if isinstance(event, ClmMessage):
            message = decode(event.payload)
            if message is None:
                self._counters["leave_rx_malformed"] += 1
            elif event.sender == self.node_id:
                self._counters["leave_rx_unexpected"] += 1  # the core never echoes; be safe
            else:
                self._receive(event.sender, message, now)
        elif isinstance(event, PrimaryFormed):
            self._primary = (event.view.node_ids, event.number)
        elif isinstance(event, PrimaryLost):
            self._primary = None
            negotiation = self._negotiation
            if negotiation is not None and negotiation.phase is _Phase.VALIDATE:
                self._abort(AbortReason.VIEW_CHANGED, now, send=True)
        elif isinstance(event, ViewInstalled):
            self._on_view_installed(event)
        elif isinstance(event, Stopped):
            self._on_stopped()
        self._drain_loopback(now)

    def handle_timer(self, now: float) -> None:
        """The timer of :meth:`get_timer` came: local deadlines, then the leaver's deadline and retries."""
        for duty in list(self._duties.values()):
            if duty.deadline is None or now < duty.deadline:
                continue
            if duty.phase is _DutyPhase.VALIDATING:
                self._answer_validate(duty, Verdict.TIMED_OUT)
            elif duty.phase is _DutyPhase.STARTING:
                self._answer_start(duty, Verdict.TIMED_OUT)
        self._drain_loopback(now)
        negotiation = self._negotiation
        if negotiation is not None:
            if now >= negotiation.deadline:
                if negotiation.phase is _Phase.VALIDATE:
                    self._abort(AbortReason.TIMED_OUT, now, send=True)
                else:
                    self._proceed()  # the START supervision is over: leave
            elif now >= negotiation.retry_at:
                negotiation.retry_at = now + self.retry_interval
                missing = [n for n in negotiation.asked if n not in negotiation.answers and n != self.node_id]
                if missing:
                    self._counters["leave_tx_retransmitted"] += len(missing)
                    self._send(missing, self._request_of(negotiation))
        linger = self._linger
        if linger is not None:
            if now >= linger.deadline or not linger.pending:
                self._linger = None
            elif now >= linger.retry_at:
                linger.retry_at = now + self.retry_interval
                self._counters["leave_tx_retransmitted"] += len(linger.pending)
                self._send(sorted(linger.pending), Abort(request=linger.request))
        self._drain_loopback(now)

    # ------------------------------------------------------------------ the leaver's transitions

    def _request_of(self, negotiation: _Negotiation) -> Message:
        if negotiation.phase is _Phase.VALIDATE:
            timeout_ms = min(max(1, math.ceil(self.validate_timeout * 1000)), _U32_MAX)
            return Validate(request=negotiation.request, view_number=negotiation.view_number, timeout_ms=timeout_ms)
        supervision_ns = min(max(1, round(self.start_supervision * 1e9)), _U64_MAX)
        return Start(request=negotiation.request, view_number=negotiation.view_number, supervision_ns=supervision_ns)

    def _on_answer(self, sender: int, answer: Answer, now: float) -> None:
        negotiation = self._negotiation
        if answer.phase is Phase.ABORT:
            if sender == self.node_id:
                return  # this node's own acknowledgement: it never waits for itself
            linger = self._linger
            if linger is not None and linger.request == answer.request:
                linger.pending.discard(sender)
                if not linger.pending:
                    self._linger = None
            else:
                self._counters["leave_rx_duplicate"] += 1  # acknowledged already, or superseded
            return
        if negotiation is None or answer.request != negotiation.request:
            self._counters["leave_rx_stale"] += 1
            return
        if sender not in negotiation.asked:
            self._counters["leave_rx_unexpected"] += 1
            return
        current = Phase.VALIDATE if negotiation.phase is _Phase.VALIDATE else Phase.START
        if answer.phase is not current:
            self._counters["leave_rx_stale"] += 1  # a late VALIDATE answer during START
            return
        if sender in negotiation.answers:
            self._counters["leave_rx_duplicate"] += 1
            return
        negotiation.answers[sender] = answer.verdict
        if negotiation.phase is _Phase.VALIDATE:
            if answer.verdict is Verdict.REJECTED:
                self._abort(AbortReason.REJECTED, now, send=True)
            elif answer.verdict is Verdict.TIMED_OUT:
                self._abort(AbortReason.TIMED_OUT, now, send=True)
            elif len(negotiation.answers) == len(negotiation.asked):
                self._begin_start(negotiation, now)
        elif len(negotiation.answers) == len(negotiation.asked):
            self._proceed()

    def _begin_start(self, negotiation: _Negotiation, now: float) -> None:
        negotiation.phase = _Phase.START
        negotiation.answers = {}
        negotiation.deadline = now + self.start_supervision
        negotiation.retry_at = now + self.retry_interval
        self._send(negotiation.asked, self._request_of(negotiation))

    def _proceed(self) -> None:
        negotiation = self._negotiation
        assert negotiation is not None
        self._negotiation = None
        self._events.append(LeaveDecided(request=negotiation.request, leave=True, asked=negotiation.asked))

    def _abort(self, reason: AbortReason, now: float, *, send: bool) -> None:
        negotiation = self._negotiation
        assert negotiation is not None and negotiation.phase is _Phase.VALIDATE
        self._negotiation = None
        answers = negotiation.answers
        rejected = tuple(n for n in negotiation.asked if answers.get(n) is Verdict.REJECTED)
        timed_out = tuple(
            n
            for n in negotiation.asked
            if answers.get(n) is Verdict.TIMED_OUT or (reason is AbortReason.TIMED_OUT and n not in answers)
        )
        if send:
            self._send(negotiation.asked, Abort(request=negotiation.request))
            others = {n for n in negotiation.asked if n != self.node_id}
            if others:
                self._linger = _AbortLinger(
                    request=negotiation.request,
                    pending=others,
                    deadline=now + self.validate_timeout,
                    retry_at=now + self.retry_interval,
                )
        self._events.append(
            LeaveDecided(
                request=negotiation.request,
                leave=False,
                reason=reason,
                asked=negotiation.asked,
                rejected=rejected,
                timed_out=timed_out,
            )
        )

    # ------------------------------------------------------------------ the responder's transitions

    def _receive(self, sender: int, message: Message, now: float) -> None:
        if isinstance(message, Answer):
            self._on_answer(sender, message, now)
            return
        duty = self._duties.get(sender)
        if duty is not None and message.request < duty.request:
            self._counters["leave_rx_stale"] += 1
            return
        if isinstance(message, Abort):
            self._on_abort(sender, message, duty)
        elif isinstance(message, Validate):
            self._on_validate(sender, message, duty, now)
        else:
            self._on_start(sender, message, duty, now)

    def _on_validate(self, sender: int, message: Validate, duty: _Duty | None, now: float) -> None:
        if duty is not None and duty.request == message.request:
            self._repeat(duty, _ON_VALIDATE[duty.phase])
            return
        if self._primary is None or message.view_number != self._primary[1]:
            self._counters["leave_rx_other_view_number"] += 1
            return
        if duty is not None:
            self._end_duty(duty, aborted=True)  # superseded by the leaver's newer request
        duty = self._duties[sender] = _Duty(
            leaver=sender,
            request=message.request,
            view_number=message.view_number,
            phase=_DutyPhase.VALIDATING,
            deadline=now + message.timeout_ms / 1000,
        )
        self._events.append(
            StepStarted(
                leaver=sender,
                request=message.request,
                step=LeaveStep.VALIDATE,
                view_number=message.view_number,
                time_supervision=None,
            )
        )

    def _on_start(self, sender: int, message: Start, duty: _Duty | None, now: float) -> None:
        if duty is None or duty.request != message.request or message.view_number != duty.view_number:
            self._counters["leave_rx_unexpected"] += 1  # START comes only after our VALIDATE answer
            return
        action = _ON_START[duty.phase]
        if action == "start" and duty.verdict is not Verdict.OK:
            action = "bad"  # the leaver cannot go on without our OK
        if action != "start":
            self._repeat(duty, action)
            return
        supervision = message.supervision_ns / 1e9
        self._events.append(StepEnded(leaver=sender, request=duty.request, step=LeaveStep.VALIDATE, aborted=False))
        duty.phase = _DutyPhase.STARTING
        duty.verdict = None
        duty.deadline = now + supervision
        self._events.append(
            StepStarted(
                leaver=sender,
                request=duty.request,
                step=LeaveStep.START,
                view_number=duty.view_number,
                time_supervision=supervision,
            )
        )

    def _on_abort(self, sender: int, message: Abort, duty: _Duty | None) -> None:
        if duty is None or duty.request != message.request:
            # Nothing to call off here (never asked, or superseded): acknowledge all the same.
            self._send((sender,), Answer(request=message.request, phase=Phase.ABORT, verdict=Verdict.OK))
            return
        action = _ON_ABORT[duty.phase]
        if action != "abort":
            self._repeat(duty, action)
            return
        self._events.append(StepEnded(leaver=sender, request=duty.request, step=LeaveStep.VALIDATE, aborted=True))
        duty.phase = _DutyPhase.ABORTED
        duty.deadline = None
        duty.verdict = Verdict.OK
        self._send((sender,), Answer(request=duty.request, phase=Phase.ABORT, verdict=Verdict.OK))

    def _repeat(self, duty: _Duty, action: str) -> None:
        """A request this duty has seen (or one out of order): answer again, or count and drop."""
        if action == "again":
            assert duty.verdict is not None
            phase = {
                _DutyPhase.VALIDATED: Phase.VALIDATE,
                _DutyPhase.STARTED: Phase.START,
                _DutyPhase.ABORTED: Phase.ABORT,
            }[duty.phase]
            self._send((duty.leaver,), Answer(request=duty.request, phase=phase, verdict=duty.verdict))
        elif action == "dup":
            self._counters["leave_rx_duplicate"] += 1
        else:
            self._counters["leave_rx_unexpected"] += 1

    def _answer_validate(self, duty: _Duty, verdict: Verdict) -> None:
        # The participants' rounds stay open: ABORT (or START) ends them, and an ABORT
        # tells every one of them, those that did not answer included.
        duty.phase = _DutyPhase.VALIDATED
        duty.deadline = None
        duty.verdict = verdict
        self._send((duty.leaver,), Answer(request=duty.request, phase=Phase.VALIDATE, verdict=verdict))

    def _answer_start(self, duty: _Duty, verdict: Verdict) -> None:
        duty.phase = _DutyPhase.STARTED
        duty.deadline = None
        duty.verdict = verdict
        self._events.append(StepEnded(leaver=duty.leaver, request=duty.request, step=LeaveStep.START, aborted=False))
        self._send((duty.leaver,), Answer(request=duty.request, phase=Phase.START, verdict=verdict))

    def _end_duty(self, duty: _Duty, *, aborted: bool) -> None:
        """Close what the participants still have open for ``duty`` (no messages)."""
        if duty.phase in (_DutyPhase.VALIDATING, _DutyPhase.VALIDATED):
            self._events.append(
                StepEnded(leaver=duty.leaver, request=duty.request, step=LeaveStep.VALIDATE, aborted=aborted)
            )
        elif duty.phase is _DutyPhase.STARTING:
            self._events.append(
                StepEnded(leaver=duty.leaver, request=duty.request, step=LeaveStep.START, aborted=False)
            )

    # ------------------------------------------------------------------ view changes

    def _on_view_installed(self, event: ViewInstalled) -> None:
        self._primary = None
        self._outbox.clear()  # addressed to the old view: its members' answers there are moot
        self._loopback.clear()
        departed = {m.node_id for m in event.departed}
        for duty in self._duties.values():
            self._end_duty(duty, aborted=duty.leaver not in departed)
        self._duties.clear()
        self._linger = None
        negotiation = self._negotiation
        if negotiation is not None:
            if negotiation.phase is _Phase.VALIDATE:
                self._abort(AbortReason.VIEW_CHANGED, 0.0, send=False)
            else:
                self._proceed()  # START cannot be called off; no answer can come any more

    def _on_stopped(self) -> None:
        self._stopped = True
        self._primary = None
        self._outbox.clear()
        self._loopback.clear()
        for duty in self._duties.values():
            self._end_duty(duty, aborted=False)
        self._duties.clear()
        self._linger = None
        self._negotiation = None

    # ------------------------------------------------------------------ sending

    def _send(self, to: Iterable[int], message: Message) -> None:
        targets = set(to)
        others = tuple(sorted(n for n in targets if n != self.node_id))
        if self.node_id in targets:
            self._loopback.append(message)
        if others:
            self._outbox.append((encode(message), others))

    def _drain_loopback(self, now: float) -> None:
        """Hand this node's messages to itself, as if they came over the network (not re-entrant)."""
        if self._draining:
            return
        self._draining = True
        try:
            while self._loopback:
                self._receive(self.node_id, self._loopback.popleft(), now)
        finally:
            self._draining = False

    def __repr__(self) -> str:
        state = "idle" if self._negotiation is None else self._negotiation.phase.value
        return f"<LeaveProtocol node {self.node_id} {state} duties={sorted(self._duties)}>"
