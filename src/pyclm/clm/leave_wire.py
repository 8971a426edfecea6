"""The validated leave's CLM payloads: VALIDATE, START, ABORT and ANSWER (docs/wire.md, "Leave payloads").

Values, :func:`encode` and :func:`decode`; :func:`decode` never raises (hostile input is
None, and the protocol counts it).  The protocol itself is :mod:`pyclm.clm.leave`.
"""

from __future__ import annotations

import enum
import struct

import attrs

__all__ = [
    "KIND_ABORT",
    "KIND_ANSWER",
    "KIND_START",
    "KIND_VALIDATE",
    "U32_MAX",
    "U64_MAX",
    "Abort",
    "Answer",
    "Message",
    "Phase",
    "Start",
    "Validate",
    "Verdict",
    "decode",
    "encode",
]

KIND_VALIDATE = 1
KIND_START = 2
KIND_ABORT = 3
KIND_ANSWER = 4

_VALIDATE = struct.Struct("!BQQI")  # kind, request, view number, timeout (ms)
_START = struct.Struct("!BQQQ")  # kind, request, view number, time supervision (ns)
_ABORT = struct.Struct("!BQ")  # kind, request
_ANSWER = struct.Struct("!BQBB")  # kind, request, phase, verdict


U32_MAX = 2**32 - 1
U64_MAX = 2**64 - 1


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
