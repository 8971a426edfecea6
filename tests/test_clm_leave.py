"""The validated leave, sans-IO: LeaveProtocol instances wired by hand over a fake link.

No event loop and no clock: ``now`` is a number the tests move.  Each node's local
participants are a policy (answer OK, REJECT, or stay silent) applied the moment a step
reaches them.  The link can drop or duplicate any message by a predicate.
"""

from __future__ import annotations

import random
import struct
from collections.abc import Callable, Iterable

import attrs
import pytest

from pyclm import ConfigError, UsageError
from pyclm.clm import ClusterMembership
from pyclm.clm.leave import (
    Abort,
    AbortReason,
    Answer,
    LeaveDecided,
    LeaveProtocol,
    LeaveStep,
    Phase,
    Start,
    StepEnded,
    StepStarted,
    Validate,
    Verdict,
    decode,
    encode,
)
from pyclm.events import ClmMessage, PrimaryFormed, PrimaryLost, Stopped, ViewInstalled
from pyclm.ids import Member, View, ViewId

VALIDATE_TIMEOUT = 1.0
LOST = PrimaryLost(view_id=ViewId(1, 1))
START_SUPERVISION = 2.0
RETRY = 0.1

Policy = str  # "ok", "reject" or "silent"
Drop = Callable[[int, int, bytes], bool]


def view_of(node_ids: Iterable[int], epoch: int = 1) -> View:
    ids = sorted(node_ids)
    return View(view_id=ViewId(epoch, ids[0]), members=tuple(Member(n, 100 + n) for n in ids))


def primary(view: View, number: int) -> PrimaryFormed:
    return PrimaryFormed(view=view, number=number, initial=tuple(number for _ in view.members))


@attrs.define
class Link:
    """Protocols of ``ids`` in one primary; ``deliver()`` runs the messages until none is left."""

    ids: list[int]
    now: float = 0.0
    protos: dict[int, LeaveProtocol] = attrs.field(factory=dict)
    events: dict[int, list[object]] = attrs.field(factory=dict)
    policy: dict[tuple[int, LeaveStep], Policy] = attrs.field(factory=dict)
    drop: Drop = lambda src, dst, payload: False
    duplicate: Drop = lambda src, dst, payload: False
    sent: list[tuple[int, int, bytes]] = attrs.field(factory=list)
    in_flight: list[tuple[int, int, bytes]] = attrs.field(factory=list)
    view: View | None = None

    def __attrs_post_init__(self) -> None:
        for node_id in self.ids:
            self.protos[node_id] = LeaveProtocol(
                node_id, validate_timeout=VALIDATE_TIMEOUT, start_supervision=START_SUPERVISION, retry_interval=RETRY
            )
            self.events[node_id] = []
        self.view = view_of(self.ids)
        self.event_all(primary(self.view, 7))

    def event_all(self, event: object, ids: Iterable[int] | None = None) -> None:
        for node_id in self.ids if ids is None else ids:
            self.protos[node_id].handle_event(event, self.now)  # type: ignore[arg-type]
        self.flush()

    def flush(self) -> None:
        """Move every protocol's outputs: messages onto the link, events into ``events`` (answering steps)."""
        busy = True
        while busy:
            busy = False
            for node_id, proto in self.protos.items():
                for payload, to in proto.messages_to_send():
                    assert node_id not in to
                    for dst in to:
                        self.sent.append((node_id, dst, payload))
                        if self.drop(node_id, dst, payload):
                            continue
                        self.in_flight.append((node_id, dst, payload))
                        if self.duplicate(node_id, dst, payload):
                            self.in_flight.append((node_id, dst, payload))
                while (event := proto.next_event()) is not None:
                    busy = True
                    self.events[node_id].append(event)
                    if isinstance(event, StepStarted):
                        answer = self.policy.get((node_id, event.step), "ok")
                        if answer != "silent":
                            proto.local_answer(event.leaver, event.request, event.step, answer == "ok", self.now)

    def deliver(self) -> None:
        self.flush()
        while self.in_flight:
            batch, self.in_flight = self.in_flight, []
            for src, dst, payload in batch:
                assert self.view is not None
                self.protos[dst].handle_event(
                    ClmMessage(sender=src, view_id=self.view.view_id, payload=payload), self.now
                )
            self.flush()

    def advance(self, until: float) -> None:
        """Move time to ``until``, firing every timer on the way (and delivering after each)."""
        self.deliver()
        while True:
            due = [t for t in (p.get_timer() for p in self.protos.values()) if t is not None and t <= until]
            if not due:
                break
            self.now = max(self.now, min(due))
            for proto in self.protos.values():
                timer = proto.get_timer()
                if timer is not None and timer <= self.now:
                    proto.handle_timer(self.now)
            self.deliver()
        self.now = until

    def propose(self, leaver: int) -> int:
        request = self.protos[leaver].propose(self.now)
        self.deliver()
        return request

    def of(self, node_id: int, kind: type) -> list:  # type: ignore[type-arg]
        return [e for e in self.events[node_id] if isinstance(e, kind)]

    def decided(self, node_id: int) -> LeaveDecided:
        [decided] = self.of(node_id, LeaveDecided)
        return decided  # type: ignore[no-any-return]

    def kinds(self, src: int | None = None, dst: int | None = None) -> list[str]:
        names = {Validate: "VALIDATE", Start: "START", Abort: "ABORT", Answer: "ANSWER"}
        out = []
        for s, d, payload in self.sent:
            if (src is None or s == src) and (dst is None or d == dst):
                message = decode(payload)
                assert message is not None
                out.append(names[type(message)])
        return out


def steps(link: Link, node_id: int) -> list[tuple[str, LeaveStep, bool | None]]:
    """What node ``node_id``'s participants were told, in order."""
    out: list[tuple[str, LeaveStep, bool | None]] = []
    for event in link.events[node_id]:
        if isinstance(event, StepStarted):
            out.append(("started", event.step, None))
        elif isinstance(event, StepEnded):
            out.append(("ended", event.step, event.aborted))
    return out


VALIDATED_AND_STARTED = [
    ("started", LeaveStep.VALIDATE, None),
    ("ended", LeaveStep.VALIDATE, False),
    ("started", LeaveStep.START, None),
    ("ended", LeaveStep.START, False),
]
VALIDATED_AND_ABORTED = [("started", LeaveStep.VALIDATE, None), ("ended", LeaveStep.VALIDATE, True)]


# ---------------------------------------------------------------------- the happy path


def test_all_answer_ok_then_start_then_leave() -> None:
    link = Link([1, 2, 3])
    request = link.propose(3)
    assert link.decided(3) == LeaveDecided(request=request, leave=True, asked=(1, 2, 3))
    for node_id in (1, 2, 3):  # the leaver's own participants are asked too
        assert steps(link, node_id) == VALIDATED_AND_STARTED
    started = [e for e in link.events[1] if isinstance(e, StepStarted)]
    assert [(e.leaver, e.request, e.view_number, e.time_supervision) for e in started] == [
        (3, request, 7, None),
        (3, request, 7, START_SUPERVISION),
    ]
    assert link.kinds(src=3) == ["VALIDATE", "VALIDATE", "START", "START"]
    assert link.kinds(dst=3) == ["ANSWER"] * 4
    assert all(p.get_timer() is None for p in link.protos.values())
    assert not any(p.counters for p in link.protos.values())


def test_the_leave_waits_for_every_answer_in_each_phase() -> None:
    link = Link([1, 2, 3])
    link.policy[(2, LeaveStep.VALIDATE)] = "silent"
    link.policy[(1, LeaveStep.START)] = "silent"
    request = link.propose(3)
    assert not link.of(3, LeaveDecided) and link.kinds(src=3) == ["VALIDATE", "VALIDATE"]
    link.protos[2].local_answer(3, request, LeaveStep.VALIDATE, True, link.now)
    link.deliver()
    assert not link.of(3, LeaveDecided)  # in START now, waiting for node 1
    assert link.kinds(src=3) == ["VALIDATE", "VALIDATE", "START", "START"]
    assert steps(link, 1)[-1] == ("started", LeaveStep.START, None)
    link.protos[1].local_answer(3, request, LeaveStep.START, True, link.now)
    link.deliver()
    assert link.decided(3).leave
    assert steps(link, 1) == VALIDATED_AND_STARTED


def test_a_node_outside_a_primary_leaves_at_once_and_a_lone_primary_asks_itself() -> None:
    alone = LeaveProtocol(1)
    request = alone.propose(0.0)
    assert alone.next_event() == LeaveDecided(request=request, leave=True)
    assert alone.messages_to_send() == [] and alone.get_timer() is None

    link = Link([1])
    link.policy[(1, LeaveStep.VALIDATE)] = "reject"
    link.propose(1)
    assert link.decided(1).rejected == (1,) and steps(link, 1) == VALIDATED_AND_ABORTED
    assert link.sent == []  # nothing on the wire


def test_after_the_primary_is_lost_there_is_nothing_to_validate() -> None:
    link = Link([1, 2, 3])
    link.event_all(LOST, ids=[3])
    link.propose(3)
    assert link.decided(3) == LeaveDecided(request=1, leave=True)
    assert link.sent == []


# ---------------------------------------------------------------------- refused


def test_one_rejected_aborts_and_every_member_gets_aborted() -> None:
    link = Link([1, 2, 3])
    link.policy[(2, LeaveStep.VALIDATE)] = "reject"
    request = link.propose(3)
    assert link.decided(3) == LeaveDecided(
        request=request, leave=False, reason=AbortReason.REJECTED, asked=(1, 2, 3), rejected=(2,)
    )
    for node_id in (1, 2, 3):
        assert steps(link, node_id) == VALIDATED_AND_ABORTED
    assert "START" not in link.kinds()
    assert link.kinds(src=3).count("ABORT") == 2
    assert link.protos[3].get_timer() is None  # both acknowledged: nothing lingers


def test_rejected_before_the_others_answered_still_tells_them() -> None:
    link = Link([1, 2, 3, 4])
    link.policy[(1, LeaveStep.VALIDATE)] = "silent"
    link.policy[(2, LeaveStep.VALIDATE)] = "reject"
    link.propose(4)
    assert link.decided(4).reason is AbortReason.REJECTED
    # Node 1 never answered; the ABORT closes its step all the same.
    assert steps(link, 1) == VALIDATED_AND_ABORTED


# ---------------------------------------------------------------------- timeouts


def test_participants_that_do_not_answer_time_the_leave_out() -> None:
    link = Link([1, 2, 3])
    link.policy[(1, LeaveStep.VALIDATE)] = "silent"
    request = link.propose(3)
    link.advance(VALIDATE_TIMEOUT - 0.01)
    assert not link.of(3, LeaveDecided)
    link.advance(VALIDATE_TIMEOUT + 0.5)
    decided = link.decided(3)
    assert (decided.leave, decided.reason, decided.timed_out, decided.rejected) == (
        False,
        AbortReason.TIMED_OUT,
        (1,),
        (),
    )
    assert decided.request == request
    for node_id in (1, 2, 3):
        assert steps(link, node_id) == VALIDATED_AND_ABORTED
    # A late answer changes nothing.
    link.protos[1].local_answer(3, request, LeaveStep.VALIDATE, True, link.now)
    link.deliver()
    assert len(link.of(3, LeaveDecided)) == 1


def test_an_unreachable_member_times_the_leave_out_after_retries() -> None:
    link = Link([1, 2, 3])
    link.drop = lambda src, dst, payload: dst == 2
    link.propose(3)
    link.advance(VALIDATE_TIMEOUT + 0.01)
    decided = link.decided(3)
    assert decided.reason is AbortReason.TIMED_OUT and decided.timed_out == (2,)
    validates = [k for k in link.kinds(src=3, dst=2) if k == "VALIDATE"]
    assert len(validates) == pytest.approx(VALIDATE_TIMEOUT / RETRY, abs=1)
    assert link.protos[3].counters["leave_tx_retransmitted"] >= len(validates) - 1
    # ABORT goes on being sent to node 2 for one more validate timeout, then stops.
    link.advance(link.now + 2 * VALIDATE_TIMEOUT)
    aborts = link.kinds(src=3, dst=2).count("ABORT")
    assert aborts == pytest.approx(VALIDATE_TIMEOUT / RETRY, abs=1)
    assert link.protos[3].get_timer() is None


def test_start_supervision_expiry_proceeds() -> None:
    link = Link([1, 2, 3])
    link.policy[(2, LeaveStep.START)] = "silent"
    request = link.propose(3)
    link.advance(START_SUPERVISION - 0.01)
    assert not link.of(3, LeaveDecided)
    link.advance(START_SUPERVISION + 0.01)
    assert link.decided(3) == LeaveDecided(request=request, leave=True, asked=(1, 2, 3))
    # Node 2 ended its START when its supervision ran out (answers after that are refused).
    assert steps(link, 2) == VALIDATED_AND_STARTED


def test_start_to_an_unreachable_member_proceeds_at_the_supervision() -> None:
    link = Link([1, 2, 3])
    link.drop = lambda src, dst, payload: (
        dst == 1 and decode(payload) == Start(request=1, view_number=7, supervision_ns=int(START_SUPERVISION * 1e9))
    )
    link.propose(3)
    link.advance(START_SUPERVISION + 0.01)
    assert link.decided(3).leave
    # Node 1 answered VALIDATE and never heard START: its VALIDATE step stays open
    # until the view changes, in which it sees node 3 departed: not aborted.
    assert steps(link, 1) == [("started", LeaveStep.VALIDATE, None)]
    departed = view_of([1, 2], epoch=2)
    link.event_all(ViewInstalled(view=departed, left=(Member(3, 103),), departed=(Member(3, 103),)), ids=[1, 2])
    assert steps(link, 1) == [("started", LeaveStep.VALIDATE, None), ("ended", LeaveStep.VALIDATE, False)]


# ---------------------------------------------------------------------- view changes


def test_a_view_change_during_validate_aborts_without_messages() -> None:
    link = Link([1, 2, 3])
    link.policy[(1, LeaveStep.VALIDATE)] = "silent"
    link.propose(3)
    sent = len(link.sent)
    link.event_all(ViewInstalled(view=view_of([1, 2, 3], epoch=2)))
    decided = link.decided(3)
    assert (decided.leave, decided.reason) == (False, AbortReason.VIEW_CHANGED)
    for node_id in (1, 2, 3):
        assert steps(link, node_id) == VALIDATED_AND_ABORTED
    link.advance(10.0)
    assert len(link.sent) == sent  # nothing more: every member saw the view change itself
    # The next proposal waits for a primary of the new view: without one, it leaves at once.
    assert link.protos[3].propose(link.now) == 2


def test_a_view_change_during_start_leaves_at_once() -> None:
    link = Link([1, 2, 3])
    link.policy[(1, LeaveStep.START)] = "silent"
    link.propose(3)
    assert not link.of(3, LeaveDecided)
    link.event_all(ViewInstalled(view=view_of([1, 2, 3], epoch=2)))
    assert link.decided(3).leave
    assert steps(link, 1) == VALIDATED_AND_STARTED


def test_the_primary_lost_at_the_leaver_aborts_with_abort_messages() -> None:
    link = Link([1, 2, 3])
    link.policy[(1, LeaveStep.VALIDATE)] = "silent"
    link.propose(3)
    link.event_all(LOST, ids=[3])
    link.deliver()
    assert link.decided(3).reason is AbortReason.VIEW_CHANGED
    assert link.kinds(src=3).count("ABORT") == 2
    for node_id in (1, 2):
        assert steps(link, node_id) == VALIDATED_AND_ABORTED


def test_a_request_for_another_primary_is_dropped_until_ours_forms() -> None:
    link = Link([1, 2, 3])
    link.event_all(LOST, ids=[1])  # node 1's primary is gone: no number to match
    link.propose(3)
    assert link.protos[1].counters["leave_rx_other_view_number"] == 1
    link.event_all(primary(view_of([1, 2, 3]), 7), ids=[1])
    link.advance(RETRY + 0.01)  # the retry finds node 1 ready
    assert link.decided(3).leave


def test_stopped_closes_every_step_and_refuses_to_propose() -> None:
    link = Link([1, 2, 3])
    link.policy[(3, LeaveStep.VALIDATE)] = "silent"
    link.propose(2)
    link.event_all(Stopped(), ids=[3])
    assert steps(link, 3) == [("started", LeaveStep.VALIDATE, None), ("ended", LeaveStep.VALIDATE, False)]
    with pytest.raises(UsageError, match="left"):
        link.protos[3].propose(link.now)


# ---------------------------------------------------------------------- an unreliable link


def test_lost_requests_are_retransmitted() -> None:
    link = Link([1, 2, 3])
    lost: list[bytes] = []

    def drop_first(src: int, dst: int, payload: bytes) -> bool:
        if dst == 2 and src == 3 and payload not in lost:
            lost.append(payload)
            return True
        return False

    link.drop = drop_first
    link.propose(3)
    assert not link.of(3, LeaveDecided)
    link.advance(1.0)
    assert link.decided(3).leave
    assert link.protos[3].counters["leave_tx_retransmitted"] == 2  # one VALIDATE, one START
    assert steps(link, 2) == VALIDATED_AND_STARTED


def test_lost_answers_are_given_again_and_the_step_is_not_repeated() -> None:
    link = Link([1, 2, 3])
    lost: list[bytes] = []

    def drop_first_answer(src: int, dst: int, payload: bytes) -> bool:
        if src == 1 and payload not in lost:
            lost.append(payload)
            return True
        return False

    link.drop = drop_first_answer
    link.propose(3)
    link.advance(1.0)
    assert link.decided(3).leave
    assert steps(link, 1) == VALIDATED_AND_STARTED  # each step once, though asked twice
    assert link.kinds(src=1) == ["ANSWER"] * 4


def test_duplicates_are_dropped_and_counted() -> None:
    link = Link([1, 2, 3])
    link.duplicate = lambda src, dst, payload: True
    link.policy[(1, LeaveStep.VALIDATE)] = "silent"
    request = link.propose(3)
    assert link.protos[1].counters["leave_rx_duplicate"] == 1  # the second VALIDATE while deciding
    link.protos[1].local_answer(3, request, LeaveStep.VALIDATE, True, link.now)
    link.deliver()
    assert link.decided(3).leave
    assert steps(link, 1) == VALIDATED_AND_STARTED
    # Every answer came twice: the second copy is a duplicate, or stale once the phase it
    # answers is over (the last VALIDATE answer, the last START answer).
    assert link.protos[3].counters == {"leave_rx_duplicate": 2, "leave_rx_stale": 2}


def test_stale_and_out_of_order_payloads_are_dropped() -> None:
    link = Link([1, 2, 3])
    link.policy[(2, LeaveStep.VALIDATE)] = "reject"
    assert link.propose(3) == 1 and not link.decided(3).leave
    link.policy[(2, LeaveStep.VALIDATE)] = "ok"
    assert link.propose(3) == 2 and link.of(3, LeaveDecided)[-1].leave
    proto = link.protos[1]
    assert link.view is not None
    view_id = link.view.view_id

    def receive(message: Validate | Start | Abort | Answer, sender: int = 3) -> None:
        proto.handle_event(ClmMessage(sender=sender, view_id=view_id, payload=encode(message)), link.now)
        link.flush()

    told = steps(link, 1)
    receive(Validate(request=1, view_number=7, timeout_ms=1000))  # older than request 2: stale
    receive(Abort(request=1))  # stale too
    receive(Start(request=5, view_number=7, supervision_ns=1))  # a START without a VALIDATE
    receive(Abort(request=2))  # an ABORT after START: START cannot be called off
    receive(Answer(request=9, phase=Phase.VALIDATE, verdict=Verdict.OK), sender=2)  # node 1 is not leaving
    receive(Validate(request=1, view_number=8, timeout_ms=1000), sender=2)  # for another primary
    assert proto.counters == {"leave_rx_stale": 3, "leave_rx_unexpected": 2, "leave_rx_other_view_number": 1}
    assert steps(link, 1) == told  # nothing started or ended


def test_an_answer_from_a_node_not_asked_is_unexpected() -> None:
    link = Link([1, 2, 3])
    link.policy[(1, LeaveStep.VALIDATE)] = "silent"
    request = link.propose(3)
    assert link.view is not None
    outsider = ClmMessage(
        sender=9,
        view_id=link.view.view_id,
        payload=encode(Answer(request=request, phase=Phase.VALIDATE, verdict=Verdict.OK)),
    )
    link.protos[3].handle_event(outsider, link.now)
    assert link.protos[3].counters["leave_rx_unexpected"] == 1


def test_a_newer_request_supersedes_an_older_one_at_a_responder() -> None:
    link = Link([1, 2, 3])
    link.drop = lambda src, dst, payload: decode(payload) == Abort(request=1)  # the ABORT never arrives
    link.policy[(2, LeaveStep.VALIDATE)] = "reject"
    link.propose(3)
    assert link.decided(3).reason is AbortReason.REJECTED
    assert steps(link, 1) == [("started", LeaveStep.VALIDATE, None)]
    link.policy[(2, LeaveStep.VALIDATE)] = "ok"
    link.propose(3)
    assert steps(link, 1) == [
        ("started", LeaveStep.VALIDATE, None),
        ("ended", LeaveStep.VALIDATE, True),  # request 1, superseded
        *VALIDATED_AND_STARTED,
    ]


def test_hostile_payloads_never_raise_and_are_counted() -> None:
    proto = LeaveProtocol(1)
    proto.handle_event(primary(view_of([1, 2]), 3), 0.0)
    rng = random.Random(7)
    samples = [b"", b"\x00", b"\x05" + bytes(20), bytes(range(40))]
    samples += [bytes(rng.randrange(256) for _ in range(rng.randrange(30))) for _ in range(3000)]
    for kind, size in ((1, 21), (2, 25), (3, 9), (4, 11)):
        samples.append(bytes([kind]) + bytes(size - 1))  # request 0
        samples.append(bytes([kind]) + bytes(size))  # one byte too long
        samples.append(bytes([kind]) + bytes(size - 2))  # one byte too short
    samples += [
        struct.pack("!BQBB", 4, 1, 2, 2),  # REJECTED to a START
        struct.pack("!BQBB", 4, 1, 3, 3),  # TIMED_OUT to an ABORT
        struct.pack("!BQBB", 4, 1, 4, 1),  # no phase 4
        struct.pack("!BQQI", 1, 1, 3, 0),  # a timeout of 0
        struct.pack("!BQQQ", 2, 1, 3, 0),  # a supervision of 0
    ]
    view_id = ViewId(1, 1)
    for payload in samples:
        message = decode(payload)
        if message is not None:
            assert encode(message) == payload  # what decodes is exactly what encodes
        proto.handle_event(ClmMessage(sender=2, view_id=view_id, payload=payload), 0.0)
        proto.messages_to_send()
        while proto.next_event() is not None:
            pass
    assert proto.counters["leave_rx_malformed"] >= 3000 * 0.9
    assert decode(memoryview(b"\x03" + bytes(8))) is None
    assert decode("not bytes") is None  # type: ignore[arg-type]


# ---------------------------------------------------------------------- the leaver's API


def test_cancel_in_validate_aborts_and_in_start_does_nothing() -> None:
    link = Link([1, 2, 3])
    link.policy[(1, LeaveStep.VALIDATE)] = "silent"
    link.propose(3)
    link.protos[3].cancel(link.now)
    link.deliver()
    assert link.decided(3).reason is AbortReason.CANCELLED
    assert steps(link, 1) == VALIDATED_AND_ABORTED

    link = Link([1, 2, 3])
    link.policy[(1, LeaveStep.START)] = "silent"
    link.propose(3)
    link.protos[3].cancel(link.now)
    link.advance(START_SUPERVISION + 0.01)
    assert link.decided(3).leave


def test_misuse_and_bad_settings() -> None:
    link = Link([1, 2, 3])
    link.policy[(1, LeaveStep.VALIDATE)] = "silent"
    link.propose(3)
    assert link.protos[3].negotiating
    with pytest.raises(UsageError, match="already"):
        link.protos[3].propose(link.now)
    for setting in ("validate_timeout", "start_supervision", "retry_interval"):
        for bad in (0, -1, float("nan"), float("inf"), True, "1"):
            with pytest.raises(ConfigError, match=setting):
                LeaveProtocol(1, **{setting: bad})  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match="validate_timeout"):
        LeaveProtocol(1, validate_timeout=2**32)


def test_the_payloads_are_laid_out_as_docs_wire_md_says() -> None:
    assert encode(Validate(request=1, view_number=7, timeout_ms=5000)).hex() == "01" + "0000000000000001" + (
        "0000000000000007" + "00001388"
    )
    assert encode(Start(request=1, view_number=7, supervision_ns=10**10)).hex() == "02" + "0000000000000001" + (
        "0000000000000007" + "00000002540be400"
    )
    assert encode(Abort(request=2)).hex() == "03" + "0000000000000002"
    assert encode(Answer(request=2, phase=Phase.VALIDATE, verdict=Verdict.REJECTED)).hex() == (
        "04" + "0000000000000002" + "01" + "02"
    )


def test_runs_are_deterministic_and_always_decide_under_loss() -> None:
    """Seeded loss and duplication: the same seed gives the same trace; every leave is
    decided in time, and once the view changes every step that started has ended."""

    def run(seed: int) -> tuple[list[tuple[int, int, bytes]], LeaveDecided]:
        rng = random.Random(seed)
        link = Link([1, 2, 3, 4])
        loss = rng.choice([0.3, 0.7])
        link.drop = lambda src, dst, payload: rng.random() < loss
        link.duplicate = lambda src, dst, payload: rng.random() < 0.2
        leaver = rng.choice(link.ids)
        link.propose(leaver)
        link.advance(VALIDATE_TIMEOUT + START_SUPERVISION + 0.01)
        decided = link.decided(leaver)  # decided by then, whatever was lost
        others = [n for n in link.ids if n != leaver]
        if decided.leave:
            gone = Member(leaver, 100 + leaver)
            link.event_all(Stopped(), ids=[leaver])
            link.event_all(ViewInstalled(view=view_of(others, epoch=2), left=(gone,), departed=(gone,)), ids=others)
        else:
            assert decided.reason is AbortReason.TIMED_OUT and decided.timed_out
            link.advance(link.now + 2 * VALIDATE_TIMEOUT)
            link.event_all(ViewInstalled(view=view_of(link.ids, epoch=2)))
        for node_id in link.ids:
            told = steps(link, node_id)
            assert len([s for s in told if s[0] == "started"]) == len([s for s in told if s[0] == "ended"])
            aborted = {s[2] for s in told if s[:2] == ("ended", LeaveStep.VALIDATE)}
            assert aborted <= {not decided.leave}
        return link.sent, decided

    outcomes = set()
    for seed in range(40):
        first = run(seed)
        assert first == run(seed)
        outcomes.add(first[1].leave)
    assert outcomes == {True, False}


# ---------------------------------------------------------------------- the prospective change


def test_prospective_leave_is_the_change_as_it_will_be_reported() -> None:
    clm = ClusterMembership(1, incarnation=101)
    view = view_of([1, 2, 3])
    clm.handle_event(ViewInstalled(view=view, joined=view.members), 0.0)
    clm.handle_event(primary(view, 4), 0.0)
    clm.next_change()
    change = clm.prospective_leave(3)
    assert change is not None
    assert change.view_number == 4 and [n.node_id for n in change.members] == [1, 2]
    assert [(n.node_id, n.member) for n in change.shutdown] == [(3, False)] and change.left == ()
    assert change.local == clm.local_node()
    own = clm.prospective_leave(1)
    assert own is not None and own.local.node_id == 1 and not own.local.member and own.shutdown == (own.local,)
    assert clm.prospective_leave(9) is None
    outside = ClusterMembership(5, incarnation=1)
    assert outside.prospective_leave(5) is None
