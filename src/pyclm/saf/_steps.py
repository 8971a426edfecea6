"""Three-step tracking: the VALIDATE and START rounds of a membership change, and their answers.

Theory of operation
-------------------
SA Forum B.04 lets a tracker take part in a change before it happens.  A process that
tracks with ``SA_TRACK_VALIDATE_STEP`` is asked first (VALIDATE) and may refuse; one
that tracks with ``SA_TRACK_START_STEP`` is told before the change starts (START) and
answers once it is ready.  Each such callback carries a fresh, non-zero invocation; the
process answers with ``saClmResponse_4(handle, invocation, response)``.  If anyone
REJECTS the VALIDATE, the VALIDATE subscribers get an ABORTED callback (no answer
expected) and the change does not happen; otherwise the change goes ahead and everyone
tracking gets the usual COMPLETED callback.

A :class:`StepRound` is one VALIDATE or START step on this node: which handle got which
invocation, and what each answered.  The code that drives the change (the leave
protocol) creates it with :func:`pyclm.saf._api.start_step`, waits for
:attr:`StepRound.complete` or its own deadline (the ``timeSupervision`` it announced),
then calls :meth:`StepRound.close` and reads :attr:`StepRound.answers`;
:func:`pyclm.saf._api.abort_step` ends a VALIDATE round with ABORTED callbacks.

The rules of ``saClmResponse_4`` for the invocation live here (:func:`answer`): the
invocation must be one this handle was given, in a round still open, not yet answered;
REJECTED is only an answer to VALIDATE.  A handle that stops tracking or is finalized
while it owes an answer is *withdrawn*: the round no longer waits for it (as OpenSAF's
server drops a client from its pending-response list).  So is a handle that tracks on
without the step's flag (``saClmClusterTrack_4`` again, without ``SA_TRACK_VALIDATE_STEP``
or ``SA_TRACK_START_STEP``), from the rounds of that step.

All state is guarded by the facade's lock (:data:`pyclm.saf._binding.LOCK`).
"""

from __future__ import annotations

import enum
import itertools
from collections.abc import Callable, Mapping
from types import MappingProxyType

from ..clm import NotificationBuffer
from ._binding import LOCK

__all__ = ["ChangeStep", "Response", "StepRound", "answer", "withdraw"]


class ChangeStep(enum.IntEnum):
    """``SaClmChangeStepT``."""

    VALIDATE = 1
    START = 2
    ABORTED = 3
    COMPLETED = 4


class Response(enum.IntEnum):
    """``SaClmResponseT``: what a tracker answers to VALIDATE or START."""

    OK = 1
    REJECTED = 2
    ERROR = 3


# Invocations are unique in the process and never reused, so an answer can't reach the
# wrong round, nor a handle answer with another handle's invocation.
_invocation_numbers = itertools.count(1)
_outstanding: dict[int, tuple[StepRound, int]] = {}  # invocation -> (round, handle id)


class StepRound:
    """One VALIDATE or START step delivered to this node's trackers, and their answers.

    ``on_answer(round)`` is called after every answer or withdrawal, in the thread that
    answered (an application thread, or the loop that dispatches its callbacks), after
    the facade's lock is released.  It should hand the news to the protocol's own loop
    (``loop.call_soon_threadsafe``, ``trio.lowlevel.TrioToken.run_sync_soon``); an
    exception from it is logged.
    """

    def __init__(
        self,
        step: ChangeStep,
        *,
        time_supervision: int,
        on_answer: Callable[[StepRound], None] | None = None,
    ) -> None:
        if step not in (ChangeStep.VALIDATE, ChangeStep.START):
            raise ValueError(f"a step round is VALIDATE or START, not {step!r}")
        self.step = step
        self.time_supervision = time_supervision
        self._on_answer = on_answer
        self._expected: dict[int, int] = {}  # handle id -> its invocation, while owed
        self._answers: dict[int, Response] = {}  # handle id -> answer
        self._withdrawn: set[int] = set()
        self._asked: dict[int, NotificationBuffer] = {}  # handle id -> what it was shown
        self._closed = False
        self._changed = LOCK.condition()

    @property
    def asked(self) -> Mapping[int, NotificationBuffer]:
        """Every handle this round was delivered to, with the buffer it was shown."""
        return MappingProxyType(self._asked)

    @property
    def outstanding(self) -> frozenset[int]:
        """Handles whose answer is still awaited."""
        with LOCK:
            return frozenset(self._expected)

    @property
    def answers(self) -> Mapping[int, Response]:
        """Handle id -> its answer, for the handles that answered."""
        with LOCK:
            return MappingProxyType(dict(self._answers))

    @property
    def withdrawn(self) -> frozenset[int]:
        """Handles that stopped tracking (or were finalized) before answering."""
        with LOCK:
            return frozenset(self._withdrawn)

    @property
    def complete(self) -> bool:
        """True when no answer is awaited any more (or the round is closed)."""
        with LOCK:
            return self._closed or not self._expected

    @property
    def rejected(self) -> bool:
        """True if a tracker answered REJECTED (VALIDATE only)."""
        with LOCK:
            return Response.REJECTED in self._answers.values()

    @property
    def closed(self) -> bool:
        return self._closed

    def expect(self, handle_id: int, shown: NotificationBuffer) -> int:
        """Register that ``handle_id`` is asked (with ``shown``); return its fresh invocation.  Under LOCK."""
        if self._closed:
            raise RuntimeError("the round is closed: start a new one")
        invocation = next(_invocation_numbers)
        self._expected[handle_id] = invocation
        self._asked[handle_id] = shown
        _outstanding[invocation] = (self, handle_id)
        return invocation

    def wait(self, timeout: float | None) -> bool:
        """Block until the round is :attr:`complete`; False if ``timeout`` seconds passed first."""
        with self._changed:
            return self._changed.wait_for(lambda: self._closed or not self._expected, timeout)

    def close(self) -> Mapping[int, Response]:
        """Stop waiting: answers after this get ``SA_AIS_ERR_INVALID_PARAM``.  Returns :attr:`answers`.

        Call it when every answer is in or the time supervision has run out; a handle
        that did not answer by then is in :attr:`outstanding` (frozen at close).
        """
        with LOCK:
            if not self._closed:
                self._closed = True
                for invocation in self._expected.values():
                    _outstanding.pop(invocation, None)
                self._changed.notify_all()
            return self.answers

    def _settle(self, handle_id: int, response: Response | None) -> None:
        invocation = self._expected.pop(handle_id)
        _outstanding.pop(invocation, None)
        if response is None:
            self._withdrawn.add(handle_id)
        else:
            self._answers[handle_id] = response
        self._changed.notify_all()
        on_answer = self._on_answer
        if on_answer is not None:
            LOCK.defer(lambda: on_answer(self))

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._expected)} outstanding"
        return f"<StepRound {self.step.name} {state} answers={dict(self._answers)}>"


def answer(handle_id: int, invocation: int, response: int) -> bool:
    """Record ``saClmResponse_4(handle, invocation, response)``; False (INVALID_PARAM) if not allowed.

    Call with LOCK held, after the handle and the response value were checked.
    """
    entry = _outstanding.get(invocation)
    if entry is None:
        return False  # unknown, already answered, or its round is closed
    round_, owner = entry
    if owner != handle_id:
        return False  # another handle's invocation
    if response == Response.REJECTED and round_.step is not ChangeStep.VALIDATE:
        return False  # only a VALIDATE can be refused
    round_._settle(handle_id, Response(response))
    return True


def withdraw(handle_id: int, step: ChangeStep | None = None) -> list[int]:
    """``handle_id`` stopped tracking (or was finalized): no round waits for it any more.  Under LOCK.

    ``step`` limits this to the rounds of that step (the handle tracks on, without that
    step's flag).  Returns the invocations withdrawn.
    """
    withdrawn = []
    for invocation, (round_, owner) in list(_outstanding.items()):
        if owner == handle_id and invocation in _outstanding and step in (None, round_.step):
            round_._settle(handle_id, None)
            withdrawn.append(invocation)
    return withdrawn
