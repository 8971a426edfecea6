"""A node's validated leave: :mod:`pyclm.clm.leave` driven by the node's owner task.

Theory of operation
-------------------
:class:`LeaveDriver` is the :class:`~pyclm.runtime.Node`'s part in validated leaves
(docs/clm.md, "Validated leave"), its own and the other members'.  It holds the node's
sans-IO :class:`~pyclm.clm.LeaveProtocol`, the node's leave participants (the SAF
binding, each leave validator), the steps they are taking part in, and the node's own
leave request.  The node feeds the protocol every core event
(:meth:`LeaveDriver.handle_event`, in the core's order) and, in each pump, after the
membership changes, calls :meth:`LeaveDriver.drive`.  That fires the protocol's timer if
it came due, hands its CLM messages to the core (``send_clm``) and acts on its events:

- :class:`~pyclm.clm.leave.StepStarted`: ask every participant about the step, one
  *round* each (:class:`LeaveRound`; a synchronous validator answers at once, an async
  one runs as a task of the node).  The protocol is told once every round
  answered, or (VALIDATE) as soon as one refused; a node with no one to ask answers OK
  at once.
- :class:`~pyclm.clm.leave.StepEnded`: end the step's rounds, closed or aborted.
- :class:`~pyclm.clm.leave.LeaveDecided`: this node's own leave.  Leave now (the
  core's ``leave``), or log why it stays; either way its callers are told.

If the core got something to send, the node drains it again.  The node's timer covers
:meth:`LeaveDriver.get_timer` too.

The caller's side (:meth:`LeaveDriver.leave`, behind ``await Node.leave()``) proposes the
leave on the owner task, or joins the request under way, and waits for the decision.  A
leave called off because the view changed is proposed again once the node settled (a
primary, or out), up to :data:`LEAVE_ATTEMPTS` times; any other refusal raises
:class:`~pyclm.errors.LeaveRejected`.  When every caller gave up (cancelled) while the
leave is still being validated, it is called off.

Threads: participants are added and removed under a lock, copy-on-write, so the owner
task reads them without one.  A participant's answer may come from any thread: it
reaches the owner task through the node's inbox (``Node._post``).  When the node stops,
every round still open is closed and the callers return.  Errors raised by participants
and validators are logged (logger ``pyclm.runtime``, the node's) and do not refuse.
"""

from __future__ import annotations

import inspect
import logging
import threading
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Protocol

import anyio

from .clm import ClusterMembership
from .clm.leave import AbortReason, LeaveDecided, LeaveProposal, LeaveProtocol, LeaveStep, StepEnded, StepStarted
from .core import Membership
from .errors import LeaveRejected
from .events import Event

if TYPE_CHECKING:
    from .runtime import Node

log = logging.getLogger("pyclm.runtime")  # the node's logger: where these errors are documented to go

#: How many times a validated leave is proposed when views keep changing under it.
LEAVE_ATTEMPTS = 3


class LeaveRound(Protocol):
    """One participant's part in one step of a leave (what ``begin_leave_step`` returns).

    The node calls exactly one of the two, once, on its event loop.
    """

    def close(self) -> None:
        """The step is over here (all answered, the time ran out, or the leave went on):
        stop waiting; answers after this are refused."""

    def abort(self) -> None:
        """VALIDATE only: the leave was called off; tell those that were asked (ABORTED)."""


class LeaveParticipant(Protocol):
    """Something on this node that takes part in validated leaves: the SAF facade's
    binding (its VALIDATE_STEP and START_STEP trackers) and each leave validator.

    Register it with :meth:`Node.add_leave_participant`.
    """

    def begin_leave_step(
        self, step: LeaveStep, proposal: LeaveProposal, answer: Callable[[bool], None]
    ) -> LeaveRound | None:
        """Ask whoever this participant stands for about ``step`` of ``proposal``.

        Called on the node's event loop; must not block.  Return None when there is no
        one to ask (that counts as OK).  Otherwise return the round, and call
        ``answer(ok)`` once everyone answered (VALIDATE: ``answer(False)`` as soon as one
        refused; START: the value is ignored).  ``answer`` may be called from any thread,
        also before this method returns; only its first call counts.
        """


class _SettledRound:
    """A round whose answer was given at once (a synchronous validator)."""

    def close(self) -> None:
        pass

    def abort(self) -> None:
        pass


class _PendingValidation:
    """An async validator's round: a task in the node's task group, cancelled when the step ends."""

    def __init__(self, node_id: int, fn: object, answer: Callable[[bool], None]) -> None:
        self._node_id = node_id
        self._fn = fn
        self._answer = answer
        self._scope = anyio.CancelScope()

    async def run(self, pending: Awaitable[object]) -> None:
        with self._scope:
            try:
                result = await pending
            except Exception:
                log.exception("node %d: leave validator %r raised; it does not refuse", self._node_id, self._fn)
                self._answer(True)
            else:
                self._answer(bool(result))

    def close(self) -> None:
        self._scope.cancel()

    def abort(self) -> None:
        self._scope.cancel()


class _Validator:
    """:meth:`Node.add_leave_validator`'s function as a participant: VALIDATE only."""

    def __init__(self, node: Node, fn: Callable[[LeaveProposal], bool | Awaitable[bool]]) -> None:
        self._node = node
        self.fn = fn

    def begin_leave_step(
        self, step: LeaveStep, proposal: LeaveProposal, answer: Callable[[bool], None]
    ) -> LeaveRound | None:
        if step is not LeaveStep.VALIDATE:
            return None
        node_id = self._node.node_id
        try:
            result = self.fn(proposal)
        except Exception:
            log.exception("node %d: leave validator %r raised; it does not refuse", node_id, self.fn)
            return None
        if inspect.isawaitable(result):
            pending = _PendingValidation(node_id, self.fn, answer)
            task_group = self._node._task_group
            assert task_group is not None
            task_group.start_soon(pending.run, result)
            return pending
        answer(bool(result))
        return _SettledRound()


class _LocalStep:
    """One step of one leave on this node: the participants' rounds and who still owes an answer."""

    __slots__ = ("issued", "pending", "rejected", "reported", "rounds", "step")

    def __init__(self, step: LeaveStep) -> None:
        self.step = step
        self.rounds: list[LeaveRound] = []
        self.pending: set[int] = set()  # numbers of the rounds that have not answered
        self.issued = 0  # round numbers handed out
        self.rejected = False
        self.reported = False


class _LeaveAttempt:
    """This node's own leave request, as its callers wait for it."""

    __slots__ = ("decided", "done", "request", "waiters")

    def __init__(self, request: int) -> None:
        self.request = request
        self.decided: LeaveDecided | None = None  # None once done: the node stopped
        self.done = anyio.Event()
        self.waiters = 0


_StepKey = tuple[int, int, LeaveStep]  # leaver, request, step


class LeaveDriver:
    """A node's part in validated leaves, driven by its owner task (see the module docstring).

    ``node`` owns it and reaches it from its owner task (:meth:`handle_event`,
    :meth:`drive`, :meth:`get_timer`, :meth:`finish`), from its API
    (:meth:`add_participant`, :meth:`add_validator`, :meth:`leave`) and for
    :attr:`counters`.  It reaches back into the node for the owner task's entries
    (``_call``, ``_post``, ``_post_from_loop``), the node's task group (async validators)
    and its state-changed signal (``_changed``).  The timeouts are the node's
    (``leave_validate_timeout``, ``leave_start_supervision``); requests are sent again
    every ``retry_interval``.
    """

    def __init__(self, node: Node, *, validate_timeout: float, start_supervision: float, retry_interval: float) -> None:
        self._node = node
        self._protocol = LeaveProtocol(
            node.node_id,
            validate_timeout=validate_timeout,
            start_supervision=start_supervision,
            retry_interval=retry_interval,
        )
        self._participants: tuple[LeaveParticipant, ...] = ()
        self._participants_lock = threading.Lock()
        self._local_steps: dict[_StepKey, _LocalStep] = {}
        self._attempt: _LeaveAttempt | None = None

    @property
    def counters(self) -> dict[str, int]:
        """The protocol's counters (``leave_*``)."""
        return self._protocol.counters

    # ------------------------------------------------------------------ participants (any thread)

    def add_participant(self, participant: LeaveParticipant) -> Callable[[], None]:
        """Register ``participant``; returns the function that removes it (idempotent)."""
        if not callable(getattr(participant, "begin_leave_step", None)):
            raise TypeError(f"a leave participant has a begin_leave_step method, got {type(participant).__name__}")
        with self._participants_lock:
            self._participants = (*self._participants, participant)

        def remove() -> None:
            with self._participants_lock:
                self._participants = tuple(p for p in self._participants if p is not participant)

        return remove

    def add_validator(self, fn: Callable[[LeaveProposal], bool | Awaitable[bool]]) -> Callable[[], None]:
        """Register ``fn`` as a participant asked about VALIDATE steps (see :meth:`Node.add_leave_validator`)."""
        return self.add_participant(_Validator(self._node, fn))

    # ------------------------------------------------------------------ the owner task

    def handle_event(self, event: Event, now: float) -> None:
        """Feed the protocol one core event, in the core's order."""
        self._protocol.handle_event(event, now)

    def get_timer(self) -> float | None:
        """The protocol's deadline: :meth:`drive` fires it once it came due."""
        return self._protocol.get_timer()

    def drive(self, core: Membership, clm: ClusterMembership, now: float) -> bool:
        """Fire the leave protocol's timer if due, send its messages and act on its events
        (no await).  Returns whether the core got something to send (drain it again)."""
        leave = self._protocol
        deadline = leave.get_timer()
        if deadline is not None and now >= deadline:
            leave.handle_timer(now)
        touched = False
        while True:
            for payload, to in leave.messages_to_send():
                if not core.stopped and core.view is not None:
                    core.send_clm(payload, to, now)
                    touched = True
            event = leave.next_event()
            if event is None:
                return touched
            if isinstance(event, StepStarted):
                self._begin_local_step(event, clm, now)
            elif isinstance(event, StepEnded):
                local = self._local_steps.pop((event.leaver, event.request, event.step), None)
                if local is not None:
                    self._end_rounds(local, aborted=event.aborted)
            else:
                touched |= self._leave_decided(event, core, now)

    def finish(self) -> None:
        """The node stopped: close every round still open and release the callers (no decision)."""
        steps = list(self._local_steps.values())
        self._local_steps.clear()
        for local in steps:
            self._end_rounds(local, aborted=False)
        attempt = self._attempt
        if attempt is not None:
            attempt.done.set()  # with no decision: the node stopped (left, or aborted)

    def _begin_local_step(self, event: StepStarted, clm: ClusterMembership, now: float) -> None:
        """Ask every leave participant of this node about ``event``'s step."""
        key = (event.leaver, event.request, event.step)
        local = self._local_steps[key] = _LocalStep(event.step)
        change = clm.prospective_leave(event.leaver)
        if change is not None:
            proposal = LeaveProposal(
                leaving=change.shutdown[0],
                view_number=event.view_number,
                change=change,
                time_supervision=event.time_supervision,
            )
            for participant in self._participants:
                number = local.issued
                local.issued += 1
                try:
                    round_ = participant.begin_leave_step(event.step, proposal, self._answer_for(key, number))
                except Exception:
                    log.exception(
                        "node %d: leave participant %r raised; it does not refuse", self._node.node_id, participant
                    )
                    continue
                if round_ is not None:
                    local.rounds.append(round_)
                    local.pending.add(number)
        self._report_local_step(key, local, now)

    def _answer_for(self, key: _StepKey, number: int) -> Callable[[bool], None]:
        """The ``answer`` callable of one participant's round: from any thread, to the owner task."""

        def answer(ok: bool = True) -> None:
            self._node._post(lambda core, now: self._on_local_answer(key, number, bool(ok), now))

        return answer

    def _on_local_answer(self, key: _StepKey, number: int, ok: bool, now: float) -> None:
        local = self._local_steps.get(key)
        if local is None or number not in local.pending:
            return  # the step is over, or this round answered already
        local.pending.discard(number)
        if not ok and local.step is LeaveStep.VALIDATE:
            local.rejected = True
        self._report_local_step(key, local, now)

    def _report_local_step(self, key: _StepKey, local: _LocalStep, now: float) -> None:
        """Tell the protocol once every round answered, or (VALIDATE) as soon as one refused."""
        if local.reported or (local.pending and not local.rejected):
            return
        local.reported = True
        leaver, request, step = key
        self._protocol.local_answer(leaver, request, step, not local.rejected, now)

    def _end_rounds(self, local: _LocalStep, *, aborted: bool) -> None:
        for round_ in local.rounds:
            try:
                if aborted:
                    round_.abort()
                else:
                    round_.close()
            except Exception:
                log.exception("node %d: ending the leave round %r raised", self._node.node_id, round_)

    def _leave_decided(self, decided: LeaveDecided, core: Membership, now: float) -> bool:
        """This node's own leave: leave now, or log why it stays.  Returns whether the core left."""
        attempt = self._attempt
        if attempt is not None and attempt.request == decided.request:
            attempt.decided = decided
            attempt.done.set()
        if not decided.leave:
            assert decided.reason is not None
            log.warning(
                "node %d: its leave was called off (%s; rejected by %s, no answer in time from %s); it stays",
                self._node.node_id,
                decided.reason.value,
                list(decided.rejected),
                list(decided.timed_out),
            )
            return False
        if core.stopped:
            return False
        core.leave(now)
        return True

    # ------------------------------------------------------------------ the caller's side (event loop)

    async def leave(self) -> None:
        """Propose this node's leave, wait for the decision; again after a view change.

        Returns once the leave was decided (or the node stopped); raises
        :class:`~pyclm.errors.LeaveRejected` when it was called off for good.
        """
        node = self._node
        for attempt_number in range(1, LEAVE_ATTEMPTS + 1):
            if not node.running:
                return
            attempt = await self._propose()
            if attempt is None:
                return  # stopped meanwhile
            decided = await self._await_decision(attempt)
            if decided is None or decided.leave:
                return
            assert decided.reason is not None
            if decided.reason is AbortReason.VIEW_CHANGED and attempt_number < LEAVE_ATTEMPTS:
                await self._until_settled()
                continue
            raise LeaveRejected(
                node.node_id, reason=decided.reason.value, rejected=decided.rejected, timed_out=decided.timed_out
            )

    async def _propose(self) -> _LeaveAttempt | None:
        """This node's leave request: the one under way (joined), or a new one."""
        proposed: list[_LeaveAttempt] = []

        def propose(core: Membership, now: float) -> None:
            attempt = self._attempt
            if core.stopped:
                return
            if attempt is None or attempt.done.is_set():
                attempt = self._attempt = _LeaveAttempt(self._protocol.propose(now))
            proposed.append(attempt)

        await self._node._call(propose)
        return proposed[0] if proposed else None

    async def _await_decision(self, attempt: _LeaveAttempt) -> LeaveDecided | None:
        attempt.waiters += 1
        try:
            await attempt.done.wait()
        finally:
            attempt.waiters -= 1
            if not attempt.done.is_set() and not attempt.waiters and self._node.running:
                # Every caller gave up (cancelled): call the leave off if it is still in VALIDATE.
                self._node._post_from_loop(lambda core, now: self._cancel(attempt, now))
        return attempt.decided

    def _cancel(self, attempt: _LeaveAttempt, now: float) -> None:
        if self._attempt is attempt and not attempt.done.is_set():
            self._protocol.cancel(now)

    async def _until_settled(self) -> None:
        """After a view change: wait (at most the settle timeout) for a primary, or to be out."""
        node = self._node
        with anyio.move_on_after(node.settle_timeout):
            while node.running and node.is_member and not node.is_primary:
                assert node._changed is not None
                await node._changed.wait()
