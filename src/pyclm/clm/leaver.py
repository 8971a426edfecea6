"""The leaving node's side of the validated leave: VALIDATE, then START or ABORT (sans-IO).

One negotiation at a time, over the members of the leaver's primary, this node
included; an ABORT lingers, sent again to those that have not acknowledged it, for one
validate timeout.  The theory of operation is in :mod:`pyclm.clm.leave`, which owns a
:class:`Leaver` and feeds it the ANSWERs and view changes.
"""

from __future__ import annotations

import enum
import itertools
import math

import attrs

from .leave_events import AbortReason, LeaveDecided, Outputs
from .leave_wire import U32_MAX, U64_MAX, Abort, Answer, Message, Phase, Start, Validate, Verdict

__all__ = ["Leaver"]


class _Phase(enum.Enum):
    """The leaver's negotiation."""

    VALIDATE = "validate"
    START = "start"


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


class Leaver:
    """This node's own leave.  Its messages go to ``out``; the caller drains the loopback."""

    def __init__(
        self,
        out: Outputs,
        *,
        validate_timeout: float,
        start_supervision: float,
        retry_interval: float,
    ) -> None:
        self._out = out
        self.node_id = out.node_id
        self.validate_timeout = validate_timeout
        self.start_supervision = start_supervision
        self.retry_interval = retry_interval
        self._requests = itertools.count(1)
        self._negotiation: _Negotiation | None = None
        self._linger: _AbortLinger | None = None

    @property
    def negotiating(self) -> bool:
        return self._negotiation is not None

    @property
    def state(self) -> str:
        """The negotiation's phase, or "idle" (for ``repr``)."""
        return "idle" if self._negotiation is None else self._negotiation.phase.value

    def deadlines(self) -> list[float]:
        times: list[float] = []
        if self._negotiation is not None:
            times += (self._negotiation.deadline, self._negotiation.retry_at)
        if self._linger is not None:
            times += (self._linger.deadline, self._linger.retry_at)
        return times

    # ------------------------------------------------------------------ inputs

    def propose(self, primary: tuple[tuple[int, ...], int] | None, now: float) -> int:
        """Begin a leave over ``primary`` (member ids, primary number); the caller checked it may."""
        request = next(self._requests)
        self._linger = None  # the new request supersedes an older one at every responder
        if primary is None:
            self._out.events.append(LeaveDecided(request=request, leave=True))
            return request
        members, number = primary
        negotiation = self._negotiation = _Negotiation(
            request=request,
            view_number=number,
            asked=members,
            phase=_Phase.VALIDATE,
            deadline=now + self.validate_timeout,
            retry_at=now + self.retry_interval,
        )
        self._out.send(members, self._request_of(negotiation))
        return request

    def cancel(self, now: float) -> bool:
        """Call the leave off if it is in VALIDATE; whether it was."""
        negotiation = self._negotiation
        if negotiation is not None and negotiation.phase is _Phase.VALIDATE:
            self._abort(AbortReason.CANCELLED, now, send=True)
            return True
        return False

    def on_primary_lost(self, now: float) -> None:
        negotiation = self._negotiation
        if negotiation is not None and negotiation.phase is _Phase.VALIDATE:
            self._abort(AbortReason.VIEW_CHANGED, now, send=True)

    def on_view_installed(self) -> None:
        self._linger = None
        negotiation = self._negotiation
        if negotiation is not None:
            if negotiation.phase is _Phase.VALIDATE:
                self._abort(AbortReason.VIEW_CHANGED, 0.0, send=False)
            else:
                self._proceed()  # START cannot be called off; no answer can come any more

    def on_stopped(self) -> None:
        self._linger = None
        self._negotiation = None

    def handle_timer(self, now: float) -> None:
        """The negotiation's deadline and retries, then the lingering ABORT's."""
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
                    self._out.counters["leave_tx_retransmitted"] += len(missing)
                    self._out.send(missing, self._request_of(negotiation))
        linger = self._linger
        if linger is not None:
            if now >= linger.deadline or not linger.pending:
                self._linger = None
            elif now >= linger.retry_at:
                linger.retry_at = now + self.retry_interval
                self._out.counters["leave_tx_retransmitted"] += len(linger.pending)
                self._out.send(sorted(linger.pending), Abort(request=linger.request))

    def on_answer(self, sender: int, answer: Answer, now: float) -> None:
        negotiation = self._negotiation
        counters = self._out.counters
        if answer.phase is Phase.ABORT:
            if sender == self.node_id:
                return  # this node's own acknowledgement: it never waits for itself
            linger = self._linger
            if linger is not None and linger.request == answer.request:
                linger.pending.discard(sender)
                if not linger.pending:
                    self._linger = None
            else:
                counters["leave_rx_duplicate"] += 1  # acknowledged already, or superseded
            return
        if negotiation is None or answer.request != negotiation.request:
            counters["leave_rx_stale"] += 1
            return
        if sender not in negotiation.asked:
            counters["leave_rx_unexpected"] += 1
            return
        current = Phase.VALIDATE if negotiation.phase is _Phase.VALIDATE else Phase.START
        if answer.phase is not current:
            counters["leave_rx_stale"] += 1  # a late VALIDATE answer during START
            return
        if sender in negotiation.answers:
            counters["leave_rx_duplicate"] += 1
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

    # ------------------------------------------------------------------ transitions

    def _request_of(self, negotiation: _Negotiation) -> Message:
        if negotiation.phase is _Phase.VALIDATE:
            timeout_ms = min(max(1, math.ceil(self.validate_timeout * 1000)), U32_MAX)
            return Validate(request=negotiation.request, view_number=negotiation.view_number, timeout_ms=timeout_ms)
        supervision_ns = min(max(1, round(self.start_supervision * 1e9)), U64_MAX)
        return Start(request=negotiation.request, view_number=negotiation.view_number, supervision_ns=supervision_ns)

    def _begin_start(self, negotiation: _Negotiation, now: float) -> None:
        negotiation.phase = _Phase.START
        negotiation.answers = {}
        negotiation.deadline = now + self.start_supervision
        negotiation.retry_at = now + self.retry_interval
        self._out.send(negotiation.asked, self._request_of(negotiation))

    def _proceed(self) -> None:
        negotiation = self._negotiation
        assert negotiation is not None
        self._negotiation = None
        self._out.events.append(LeaveDecided(request=negotiation.request, leave=True, asked=negotiation.asked))

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
            self._out.send(negotiation.asked, Abort(request=negotiation.request))
            others = {n for n in negotiation.asked if n != self.node_id}
            if others:
                self._linger = _AbortLinger(
                    request=negotiation.request,
                    pending=others,
                    deadline=now + self.validate_timeout,
                    retry_at=now + self.retry_interval,
                )
        self._out.events.append(
            LeaveDecided(
                request=negotiation.request,
                leave=False,
                reason=reason,
                asked=negotiation.asked,
                rejected=rejected,
                timed_out=timed_out,
            )
        )
