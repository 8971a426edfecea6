"""One run of the availability study: real quorum policies over a message-level model.

The availability study needs tens of thousands of runs of 64 processes per policy, far
more than the full simulator (heartbeats, rows, digests) could give in hours.  This
model keeps exactly what decides availability: the message rounds.  Every message (view
agreement and the policy's own) takes its own delay, uniform in [0.5, 1.5] time units,
so the time unit is the mean one-way delay (one *round*), and is delivered only if
sender and receiver are still connected when it arrives.  The quorum policies are the
real ones (:mod:`pyclm.voting`), driven through the same interface as the core drives
them.

View agreement is pyclm's (:mod:`pyclm.core`), round for round:

1. after a change, the members' connectivity rows reach the new component's lowest
   id (one delay, from the slowest member), which then *proposes* the view;
2. each member that is still connected and has accepted nothing newer *accepts* it and
   acks with its policy's state;
3. with every ack in, the coordinator *installs* the view and sends the gathered
   states; a member installs on receipt if the view is still the one it accepted.

With ``exchange_round`` the policy states do not ride on the ACK and INSTALL: once a
member installs the view it sends its state to every other member, and its policy sees
the view only when every member's state is in (one more round, as in YKD's paper, where
the state exchange is a round of its own).  A member that accepts a newer proposal
before every state is in never hands that view to its policy (its ack already reported
for the newer view, as the core's policies require).  That variant exists to measure
what one more round to form costs (docs/availability.md).

A change that strikes in the middle leaves the view installed at some members and not
at others, and policy messages of a view still arrive while their receiver has not
installed a newer one - as in the core.  Messages are never lost and nobody crashes:
the study isolates connectivity changes.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Mapping
from typing import Any

from ..ids import View, ViewId, member
from ..sim.checker import InvariantChecker, InvariantViolation
from ..voting import FormPrimary, LosePrimary, QuorumConfig, QuorumPolicy, SendQuorum, WriteState, make_policy
from ..voting.oracle import SessionTruth
from .schedule import Change

_CHANGE, _PROPOSE, _PROP, _ACK, _INSTALL, _QUORUM, _TIMER, _STATE = range(8)
_NEVER = 1e18  # the retry interval: nothing is lost here, so nothing is retried


def _delay(rng: random.Random) -> float:
    return 0.5 + rng.random()


class _Process:
    __slots__ = (
        "accepted",
        "acks",
        "early",
        "early_states",
        "pending",
        "policy",
        "primary",
        "proposing",
        "sent_state",
        "states",
        "stored",
        "timer",
        "view",
    )

    def __init__(self, policy: QuorumPolicy) -> None:
        self.policy = policy
        self.accepted = 0  # epoch of the newest proposal accepted (epochs are global here)
        self.pending: View | None = None
        self.view: View | None = None
        self.proposing: View | None = None
        self.acks: dict[int, bytes] = {}
        self.early: list[tuple[int, bytes]] = []
        self.primary: int | None = None  # primary number of the installed view, if formed here
        self.timer: float | None = None
        self.stored: bytes | None = None  # the policy's newest record
        # exchange_round only: the state sent with our ack, and the states of the
        # installed view gathered so far (None once the policy has the view).
        self.sent_state = b""
        self.states: dict[int, bytes] | None = None
        self.early_states: dict[int, bytes] = {}  # states for the accepted view, before its install


class Run:
    """One policy on one schedule.  :meth:`run` returns whether a primary exists at the end.

    Every formed primary goes through the simulator's invariant checker.  A violation
    raises, unless ``tolerate_violations`` (for policies that are unsafe by design, such
    as votequorum): then it is counted in :attr:`violations` and checking stops.
    """

    def __init__(
        self,
        quorum: QuorumConfig,
        processes: int,
        schedule: list[Change],
        seed: int,
        *,
        settle: float,
        tolerate_violations: bool = False,
        initial: Mapping[int, bytes | None] | None = None,
        exchange_round: bool = False,
    ) -> None:
        """``initial``: each process's stored record to start from (see :func:`steady_state`);
        None: a cold start, everybody new.  ``exchange_round``: the state exchange is a
        round of its own after the install (module docstring)."""
        self.quorum = quorum
        self.exchange_round = exchange_round
        self.initial = initial
        self.rng = random.Random(seed)
        self.schedule = schedule
        self.settle = settle
        self.now = 0.0
        self.heap: list[tuple[float, int, int, Any]] = []
        self.seq = 0
        self.epoch = 0
        self.checker: InvariantChecker | None = InvariantChecker(quorum)  # a bug must not pass for availability
        self.tolerate_violations = tolerate_violations
        self.violations = 0
        truth = quorum.options.get("truth")
        self.truth = truth if isinstance(truth, SessionTruth) else None
        self.messages = 0
        self.formed: list[tuple[float, int, int]] = []  # (time, process, number) of every FormPrimary
        self.procs: dict[int, _Process] = {}
        for p in range(1, processes + 1):
            stored = initial.get(p) if initial is not None else None
            policy = make_policy(quorum, p, stored, history=initial is not None, retry_interval=_NEVER)
            proc = self.procs[p] = _Process(policy)
            proc.stored = stored
            for action in policy.pop_actions():  # its initial record, if it had none
                if isinstance(action, WriteState):
                    proc.stored = action.data
        self.label = dict.fromkeys(self.procs, 0)  # component label per process
        self.labels = 0

    # ------------------------------------------------------------------ running

    def _push(self, t: float, kind: int, data: Any) -> None:
        self.seq += 1
        heapq.heappush(self.heap, (t, self.seq, kind, data))

    def run(self, start: float) -> bool:
        """Connect everybody at 0, apply the schedule, settle; a primary at the end?

        From a steady state (``initial``) everybody is connected already and the first
        primary has formed, so nothing happens before the first change.
        """
        if self.initial is None:
            self._connect([tuple(self.procs)], 0.0)
        for i, _change in enumerate(self.schedule):
            self._push(_change.at, _CHANGE, i)
        end = (self.schedule[-1].at if self.schedule else start) + self.settle
        heap = self.heap
        while heap and heap[0][0] <= end:
            t, _, kind, data = heapq.heappop(heap)
            self.now = t
            if kind == _CHANGE:
                self._change(self.schedule[data])
            elif kind == _PROPOSE:
                self._propose(*data)
            elif kind == _PROP:
                self._on_prop(*data)
            elif kind == _ACK:
                self._on_ack(*data)
            elif kind == _INSTALL:
                self._on_install(*data)
            elif kind == _QUORUM:
                self._on_quorum(*data)
            elif kind == _STATE:
                self._on_state(*data)
            else:
                self._on_timer(*data)
        return any(p.primary is not None for p in self.procs.values())

    # ------------------------------------------------------------------ connectivity

    def _change(self, change: Change) -> None:
        old = self.label
        changed = [c for c in change.components if len({old[p] for p in c}) != 1 or not self._whole(c)]
        self._connect(changed, self.now)

    def _whole(self, component: tuple[int, ...]) -> bool:
        """Whether ``component`` is exactly one current component (unchanged by this change)."""
        label = self.label[component[0]]
        return sum(1 for v in self.label.values() if v == label) == len(component)

    def _connect(self, components: list[tuple[int, ...]], t: float) -> None:
        for component in components:
            self.labels += 1
            for p in component:
                self.label[p] = self.labels
            # The members' rows reach the coordinator (the lowest id) from the slowest one.
            gather = max((_delay(self.rng) for _ in component[1:]), default=0.0)
            self._push(t + gather, _PROPOSE, (component[0], self.labels, component))

    def _connected(self, a: int, b: int) -> bool:
        return self.label[a] == self.label[b]

    def _send(self, kind: int, src: int, dst: int, data: tuple[Any, ...]) -> None:
        self.messages += 1
        self._push(self.now + _delay(self.rng), kind, (src, dst, *data))

    # ------------------------------------------------------------------ view agreement

    def _propose(self, coordinator: int, label: int, component: tuple[int, ...]) -> None:
        if self.label[coordinator] != label:
            return  # another change came first: its own proposal follows
        self.epoch += 1
        view = View(ViewId(self.epoch, coordinator), tuple(member(p, 1) for p in component))
        proc = self.procs[coordinator]
        proc.accepted = self.epoch
        proc.pending = None
        proc.early = []
        proc.early_states = {}
        proc.states = None  # a view whose states are still coming in is never handed to the policy
        proc.proposing = view
        proc.sent_state = proc.policy.ack_state(view)
        proc.acks = {coordinator: proc.sent_state}
        if len(component) == 1:
            self._install(coordinator, view, proc.acks)
            return
        for p in component[1:]:
            self._send(_PROP, coordinator, p, (view,))

    def _on_prop(self, src: int, dst: int, view: View) -> None:
        proc = self.procs[dst]
        if not self._connected(src, dst) or proc.accepted >= view.view_id.epoch:
            return
        proc.accepted = view.view_id.epoch
        proc.pending = view
        proc.early = []
        proc.early_states = {}
        proc.states = None  # a view whose states are still coming in is never handed to the policy
        proc.proposing = None
        proc.sent_state = proc.policy.ack_state(view)
        self._send(_ACK, dst, src, (view.view_id, proc.sent_state))

    def _on_ack(self, src: int, dst: int, view_id: ViewId, state: bytes) -> None:
        proc = self.procs[dst]
        view = proc.proposing
        if not self._connected(src, dst) or view is None or view.view_id != view_id:
            return
        proc.acks[src] = state
        if len(proc.acks) < len(view.members):
            return
        proc.proposing = None
        states = dict(proc.acks)
        for p in view.node_ids[1:]:
            self._send(_INSTALL, dst, p, (view, states))
        self._install(dst, view, states)

    def _on_install(self, src: int, dst: int, view: View, states: dict[int, bytes]) -> None:
        proc = self.procs[dst]
        if self._connected(src, dst) and proc.pending is view:
            self._install(dst, view, states)

    def _install(self, p: int, view: View, states: dict[int, bytes]) -> None:
        proc = self.procs[p]
        proc.view = view
        proc.pending = None
        proc.primary = None
        if self.exchange_round and len(view.members) > 1:
            proc.states = {**proc.early_states, p: proc.sent_state}
            proc.early_states = {}
            for q in view.node_ids:
                if q != p:
                    self._send(_STATE, p, q, (view.view_id, proc.sent_state))
            self._states_in(p, proc, view)
            return
        self._policy_view(p, proc, view, states)

    def _on_state(self, src: int, dst: int, view_id: ViewId, state: bytes) -> None:
        proc = self.procs[dst]
        if not self._connected(src, dst):
            return
        view = proc.view
        if view is not None and view.view_id == view_id and proc.states is not None:
            proc.states[src] = state
            self._states_in(dst, proc, view)
        elif proc.pending is not None and proc.pending.view_id == view_id:
            proc.early_states[src] = state  # the sender installed first: keep it for our install

    def _states_in(self, p: int, proc: _Process, view: View) -> None:
        if proc.states is not None and len(proc.states) == len(view.members):
            self._policy_view(p, proc, view, proc.states)

    def _policy_view(self, p: int, proc: _Process, view: View, states: dict[int, bytes]) -> None:
        """The policy learns of the installed ``view`` with every member's state."""
        proc.states = None
        proc.policy.view_installed(view, states, self.now)
        self._actions(p, proc)
        early, proc.early = proc.early, []
        for src, payload in early:
            proc.policy.receive(src, view.view_id, payload, self.now)
            self._actions(p, proc)

    # ------------------------------------------------------------------ the policy

    def _on_quorum(self, src: int, dst: int, view_id: ViewId, payload: bytes) -> None:
        proc = self.procs[dst]
        if not self._connected(src, dst):
            if self.truth is not None and (proc.view is not None and proc.view.view_id == view_id):
                self.truth.view_left(dst, view_id)  # nothing is retransmitted: it can form nothing here
            return
        if proc.view is not None and proc.view.view_id == view_id:
            if proc.states is not None:
                proc.early.append((src, payload))  # the policy does not have the view yet
                return
            proc.policy.receive(src, view_id, payload, self.now)
            self._actions(dst, proc)
        elif proc.pending is not None and proc.pending.view_id == view_id:
            proc.early.append((src, payload))

    def _on_timer(self, p: int, at: float) -> None:
        proc = self.procs[p]
        if proc.timer != at:
            return
        proc.timer = None
        proc.policy.handle_timer(self.now)
        self._actions(p, proc)

    def _actions(self, p: int, proc: _Process) -> None:
        view = proc.view
        for action in proc.policy.pop_actions():
            if isinstance(action, SendQuorum):
                if view is None:
                    continue
                targets = action.to if action.to is not None else view.node_ids
                for q in targets:
                    if q != p:
                        self._send(_QUORUM, p, q, (view.view_id, action.payload))
            elif isinstance(action, FormPrimary):
                proc.primary = action.number
                self.formed.append((self.now, p, action.number))
                if view is not None and self.checker is not None:
                    try:
                        self.checker.primary_formed(self.now, p, view, action.number)
                    except InvariantViolation:
                        if not self.tolerate_violations:
                            raise
                        self.violations += 1
                        self.checker = None
            elif isinstance(action, LosePrimary):
                proc.primary = None
            else:
                assert isinstance(action, WriteState)
                proc.stored = action.data
        deadline = proc.policy.get_timer()
        if deadline is not None and deadline < _NEVER / 2 and deadline != proc.timer:
            proc.timer = deadline
            self._push(deadline, _TIMER, (p, deadline))


def steady_state(
    quorum: QuorumConfig, processes: int, *, start: float, settle: float, exchange_round: bool = False
) -> dict[int, bytes | None]:
    """Every process's stored record once all are connected and the first primary formed.

    Runs the cold start through the model once; runs that start from it skip the cold
    start (thousands of messages that end the same way every time).
    """
    run = Run(quorum, processes, [], 0, settle=settle, exchange_round=exchange_round)
    if not run.run(start):
        raise AssertionError(f"policy {quorum.policy!r} formed no primary at cold start with {processes} processes")
    return {p: proc.stored for p, proc in run.procs.items()}
