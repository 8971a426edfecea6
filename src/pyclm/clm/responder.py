"""A member's side of the validated leave: answer other nodes' (and its own) requests (sans-IO).

One :class:`_Duty` per leaver, keyed by the leaver's node id, holding the newest request
of that leaver.  It hands the steps to the runtime as ``StepStarted`` / ``StepEnded``
events, takes the participants' verdict in :meth:`Responder.local_answer`, and answers
repeats idempotently.  What a duty does with each request, by its phase, is the table
below.  The theory of operation is in :mod:`pyclm.clm.leave`, which owns a
:class:`Responder` and feeds it VALIDATE, START and ABORT.
"""

from __future__ import annotations

import enum

import attrs

from .leave_events import LeaveStep, Outputs, StepEnded, StepStarted
from .leave_wire import Abort, Answer, Phase, Start, Validate, Verdict

__all__ = ["Responder"]


class _DutyPhase(enum.Enum):
    """A responder's part in one leave request."""

    VALIDATING = "validating"  # its participants are deciding
    VALIDATED = "validated"  # it answered VALIDATE; waiting for START or ABORT
    STARTING = "starting"  # its START trackers are getting ready
    STARTED = "started"  # it answered START
    ABORTED = "aborted"  # ABORT came (kept to acknowledge repeats)


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


class Responder:
    """This node's duties toward every leaver.  Its messages go to ``out``; the caller drains the loopback."""

    def __init__(self, out: Outputs) -> None:
        self._out = out
        self._duties: dict[int, _Duty] = {}  # leaver id -> its newest request here

    @property
    def leavers(self) -> list[int]:
        """The leavers this node has a duty toward, ascending (for ``repr``)."""
        return sorted(self._duties)

    def deadlines(self) -> list[float]:
        return [d.deadline for d in self._duties.values() if d.deadline is not None]

    # ------------------------------------------------------------------ inputs

    def receive(self, sender: int, message: Validate | Start | Abort, primary_number: int | None, now: float) -> None:
        """A request from ``sender``; ``primary_number`` is this node's primary now (None: none)."""
        duty = self._duties.get(sender)
        if duty is not None and message.request < duty.request:
            self._out.counters["leave_rx_stale"] += 1
            return
        if isinstance(message, Abort):
            self._on_abort(sender, message, duty)
        elif isinstance(message, Validate):
            self._on_validate(sender, message, duty, primary_number, now)
        else:
            self._on_start(sender, message, duty, now)

    def local_answer(self, leaver: int, request: int, step: LeaveStep, ok: bool) -> None:
        duty = self._duties.get(leaver)
        if duty is None or duty.request != request:
            return
        if step is LeaveStep.VALIDATE and duty.phase is _DutyPhase.VALIDATING:
            self._answer_validate(duty, Verdict.OK if ok else Verdict.REJECTED)
        elif step is LeaveStep.START and duty.phase is _DutyPhase.STARTING:
            self._answer_start(duty, Verdict.OK)

    def handle_timer(self, now: float) -> None:
        """The participants' deadlines: answer TIMED_OUT for those that ran out."""
        for duty in list(self._duties.values()):
            if duty.deadline is None or now < duty.deadline:
                continue
            if duty.phase is _DutyPhase.VALIDATING:
                self._answer_validate(duty, Verdict.TIMED_OUT)
            elif duty.phase is _DutyPhase.STARTING:
                self._answer_start(duty, Verdict.TIMED_OUT)

    def end_all(self, departed: frozenset[int] | set[int] = frozenset(), *, stopped: bool = False) -> None:
        """A new view (``departed``: who left in it) or this node stopped: end every duty, no messages."""
        for duty in self._duties.values():
            self._end_duty(duty, aborted=not stopped and duty.leaver not in departed)
        self._duties.clear()

    # ------------------------------------------------------------------ transitions

    def _on_validate(
        self, sender: int, message: Validate, duty: _Duty | None, primary_number: int | None, now: float
    ) -> None:
        if duty is not None and duty.request == message.request:
            self._repeat(duty, _ON_VALIDATE[duty.phase])
            return
        if primary_number is None or message.view_number != primary_number:
            self._out.counters["leave_rx_other_view_number"] += 1
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
        self._out.events.append(
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
            self._out.counters["leave_rx_unexpected"] += 1  # START comes only after our VALIDATE answer
            return
        action = _ON_START[duty.phase]
        if action == "start" and duty.verdict is not Verdict.OK:
            action = "bad"  # the leaver cannot go on without our OK
        if action != "start":
            self._repeat(duty, action)
            return
        supervision = message.supervision_ns / 1e9
        events = self._out.events
        events.append(StepEnded(leaver=sender, request=duty.request, step=LeaveStep.VALIDATE, aborted=False))
        duty.phase = _DutyPhase.STARTING
        duty.verdict = None
        duty.deadline = now + supervision
        events.append(
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
            self._out.send((sender,), Answer(request=message.request, phase=Phase.ABORT, verdict=Verdict.OK))
            return
        action = _ON_ABORT[duty.phase]
        if action != "abort":
            self._repeat(duty, action)
            return
        self._out.events.append(StepEnded(leaver=sender, request=duty.request, step=LeaveStep.VALIDATE, aborted=True))
        duty.phase = _DutyPhase.ABORTED
        duty.deadline = None
        duty.verdict = Verdict.OK
        self._out.send((sender,), Answer(request=duty.request, phase=Phase.ABORT, verdict=Verdict.OK))

    def _repeat(self, duty: _Duty, action: str) -> None:
        """A request this duty has seen (or one out of order): answer again, or count and drop."""
        if action == "again":
            assert duty.verdict is not None
            phase = {
                _DutyPhase.VALIDATED: Phase.VALIDATE,
                _DutyPhase.STARTED: Phase.START,
                _DutyPhase.ABORTED: Phase.ABORT,
            }[duty.phase]
            self._out.send((duty.leaver,), Answer(request=duty.request, phase=phase, verdict=duty.verdict))
        elif action == "dup":
            self._out.counters["leave_rx_duplicate"] += 1
        else:
            self._out.counters["leave_rx_unexpected"] += 1

    def _answer_validate(self, duty: _Duty, verdict: Verdict) -> None:
        # The participants' rounds stay open: ABORT (or START) ends them, and an ABORT
        # tells every one of them, those that did not answer included.
        duty.phase = _DutyPhase.VALIDATED
        duty.deadline = None
        duty.verdict = verdict
        self._out.send((duty.leaver,), Answer(request=duty.request, phase=Phase.VALIDATE, verdict=verdict))

    def _answer_start(self, duty: _Duty, verdict: Verdict) -> None:
        duty.phase = _DutyPhase.STARTED
        duty.deadline = None
        duty.verdict = verdict
        self._out.events.append(
            StepEnded(leaver=duty.leaver, request=duty.request, step=LeaveStep.START, aborted=False)
        )
        self._out.send((duty.leaver,), Answer(request=duty.request, phase=Phase.START, verdict=verdict))

    def _end_duty(self, duty: _Duty, *, aborted: bool) -> None:
        """Close what the participants still have open for ``duty`` (no messages)."""
        if duty.phase in (_DutyPhase.VALIDATING, _DutyPhase.VALIDATED):
            self._out.events.append(
                StepEnded(leaver=duty.leaver, request=duty.request, step=LeaveStep.VALIDATE, aborted=aborted)
            )
        elif duty.phase is _DutyPhase.STARTING:
            self._out.events.append(
                StepEnded(leaver=duty.leaver, request=duty.request, step=LeaveStep.START, aborted=False)
            )
