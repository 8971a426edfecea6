"""YKD dynamic voting (Yeger Lotem, Keidar, Dolev, PODC'97).

Theory of operation
-------------------
Every view the membership layer installs is a chance to form a new primary component.
Each node keeps a :class:`~pyclm.voting.sessions.VotingState` on stable storage: the
highest session number it has seen, the newest primary it knows formed
(``last_primary``) and the sessions it *attempted* after that without learning whether
they formed (``ambiguous``).  In a new view the protocol runs two rounds:

1. **State exchange.**  Each member reports its state.  Here it rides on the
   view-agreement messages (the ack carries it, the install gathers every member's), so
   it costs no round of its own: :meth:`YKD.view_installed` already has every report.
   A report names its sessions' members as a bitmap over the proposed view, and the
   install sends each distinct report once, so this fits one datagram even for a
   64-node view (``docs/wire.md``).
2. **Attempt.**  From the reports, every member computes the same decision
   (:meth:`YKD.decide`).  If the view may become primary, each member records the new
   session as ambiguous on stable storage and *then* sends its attempt to the others.
3. **Form** (local, no message).  A member that receives the attempt of every member
   before its view changes has formed the session: it writes ``last_primary := S`` and
   clears its ambiguous sessions in one durable write, then announces the primary.
   Members of one view may legitimately differ: a view change can strike while attempts
   are in flight, leaving the session formed at some members and ambiguous at others.

**The rule.**  A view may become primary only if its members hold a *subquorum*
(:meth:`Weights.subquorum`: more than half the weight, or exactly half including the
designated member) of the newest primary any of them knows, **and** of every ambiguous
session newer than it that any of them still holds.  The second half is YKD's
contribution: it makes retrying safe without first learning what happened to
interrupted attempts.

**Resolution** (:meth:`YKD.resolve`) keeps the ambiguous sets small, from the reports
alone:

- *learned formed*: the newest ``last_primary`` reported is a primary that formed;
  everything older is moot, and every member adopts it;
- *learned not formed*: a member of an ambiguous session that reports it never attempted
  it (the session is not among its ambiguous ones and its last primary is older) proves
  nobody received all attempts; one witness suffices;
- *all members present*: every member of the session reports, none formed it.

**Amnesia.**  A node whose stored state is missing or unreadable after it has been a
member cannot say what it attempted.  It says so once in the log, counts toward no
subquorum and witnesses nothing, until a primary forms without relying on it.

The primary number is the session number: unique among formed sessions, and increasing
along the chain of primaries, each of which holds a subquorum of the one before.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Mapping
from typing import Any

import attrs

from ..errors import ConfigError, UsageError
from ..ids import View, ViewId
from ..wire import MAX_STATE
from .base import FormPrimary, QuorumConfig, QuorumPolicy, SendQuorum, WriteState, register_policy
from .sessions import Session, VotingState, Weights, merge_removed, without

log = logging.getLogger("pyclm.voting.ykd")

_ATTEMPT = struct.Struct("!BQB")  # kind, session number, flags
_KIND_ATTEMPT = 1
_PLEASE_SEND = 0x01  # "I lack your attempt": the receiver sends its own again

#: What an unreadable report or a lost state stands for: it knows nothing and counts for nothing.
_AMNESIAC = VotingState(session_number=0, last_primary=Session(0, ()), amnesiac=True)


def _order(session: Session) -> tuple[int, tuple[int, ...]]:
    return (session.number, session.members)


@register_policy
class YKD(QuorumPolicy):
    """Dynamic linear voting with YKD's ambiguous sessions (``quorum.policy = "ykd"``)."""

    name = "ykd"
    option_names = frozenset({"wait_for_all"})

    def __init__(
        self,
        config: QuorumConfig,
        node_id: int,
        stored: bytes | None,
        *,
        history: bool = False,
        retry_interval: float = 0.1,
    ) -> None:
        super().__init__(config, node_id, stored, history=history, retry_interval=retry_interval)
        votes = config.votes or {}
        universe = tuple(sorted(n for n, v in votes.items() if v > 0))
        if not universe:
            raise ConfigError(
                "quorum.votes",
                f"{self.name} needs the initial universe: the nodes and their votes (e.g. votes = {{ 1 = 1, 2 = 1 }})",
            )
        wait_for_all = config.options.get("wait_for_all", False)
        if not isinstance(wait_for_all, bool):
            raise ConfigError("quorum.wait_for_all", f"must be true or false, got {wait_for_all!r}")
        self.wait_for_all = wait_for_all
        self.weights = Weights(votes, config.tie_breaker)
        self.retry_interval = retry_interval
        state = VotingState.decode(stored) if stored is not None else None
        if state is None:
            if stored is not None or history:
                why = "unreadable" if stored is not None else "missing"
                log.warning(
                    "node %d: voting state %s after being a member: amnesiac - it counts toward no quorum "
                    "and witnesses nothing until a primary forms without it",
                    node_id,
                    why,
                )
                state = _AMNESIAC
            else:
                state = VotingState(session_number=0, last_primary=Session(0, universe))
            # Durable from the start, so that a missing record later means a lost one.
            self.actions.append(WriteState(state.encode()))
        self.state = state
        # Volatile: the current view and this node's attempt in it.
        self.view: View | None = None
        self._members: frozenset[int] = frozenset()
        self.session: Session | None = None
        self.attempts: set[int] = set()
        self.attempted = False  # we sent an attempt in the current view
        self.attempted_number = 0  # ...with this session number
        self._retry_at: float | None = None

    # ------------------------------------------------------------------ the algorithm

    def ack_state(self, view: View | None = None) -> bytes:
        """Our report, sent as this node accepts ``view``: from now on it never forms the
        session of its current view.

        That is what makes "all members present" sound: once every member of a session
        has reported for a newer view, nobody can still form it.  (Answering requests for
        our attempt stays allowed: the attempt was sent already.)
        """
        if self.session is not None:
            self.session = None
            self._retry_at = None
            self._count("session_abandoned")
        return self.state.encode(view.node_ids if view is not None else None)

    def view_installed(self, view: View, states: Mapping[int, bytes], now: float) -> None:
        self.view = view
        self._members = frozenset(view.node_ids)
        self.session = None
        self.attempts = set()
        self.attempted = False
        self.attempted_number = 0
        self._retry_at = None
        reports = self._reports(view, states)
        newest, binding = self.resolve(reports)
        self._learn(newest, binding)
        if not self.decide(view, reports, newest, binding):
            return
        counted = [r.session_number for r in reports.values() if not r.amnesiac]
        session = Session(max(counted) + 1, view.node_ids)
        attempted = attrs.evolve(
            self.state,
            session_number=max(self.state.session_number, session.number),  # never goes back
            ambiguous=(*self.state.ambiguous, session),
        )
        if len(attempted.encode()) > MAX_STATE:  # (a report is never longer than the record)
            # Never attempt what we could not report: not attempting is always safe.
            self._count("attempt_skipped_state_full")
            log.warning("node %d: too many ambiguous sessions to attempt another; resolve them first", self.node_id)
            return
        self.state = attempted
        self.session = session
        self.attempts = {self.node_id}
        self.attempted = True
        self.attempted_number = session.number
        self.actions.append(WriteState(attempted.encode()))  # durable before the attempt leaves
        self.actions.append(SendQuorum(_ATTEMPT.pack(_KIND_ATTEMPT, session.number, 0)))
        self._retry_at = now + self.retry_interval
        self._maybe_form()

    def resolve(self, reports: Mapping[int, VotingState]) -> tuple[Session, list[Session]]:
        """The newest primary the members know, and the ambiguous sessions that still bind.

        Only members that are not amnesiac count.  Returns ``(newest, binding)`` where
        ``binding`` holds, ascending, every ambiguous session newer than ``newest`` that
        no resolution rule settles.
        """
        counted = {n: r for n, r in reports.items() if not r.amnesiac}
        if not counted:
            return self.state.last_primary, []
        newest = max((r.last_primary for r in counted.values()), key=_order)  # learned formed
        candidates = {a for r in counted.values() for a in r.ambiguous if a.number > newest.number}
        binding = []
        for session in sorted(candidates, key=_order):
            if any(self._never_attempted(counted.get(m), session) for m in session.members):
                continue  # learned not formed: one witness suffices
            if all(m in counted for m in session.members):
                continue  # all members present, none formed it (or newest would be >= it)
            binding.append(session)
        return newest, binding

    @staticmethod
    def _never_attempted(report: VotingState | None, session: Session) -> bool:
        # By number: a node attempts at most one session per number (each attempt's
        # number exceeds every number it has seen).
        if report is None or report.last_primary.number >= session.number:
            return False
        return all(a.number != session.number for a in report.ambiguous)

    def decide(self, view: View, reports: Mapping[int, VotingState], newest: Session, binding: list[Session]) -> bool:
        """Whether ``view`` may attempt: a subquorum of ``newest`` and of every binding session."""
        counted = [n for n in view.node_ids if not reports[n].amnesiac]
        if not counted:
            return False
        if self.wait_for_all and newest.number == 0 and not set(newest.members) <= set(counted):
            return False  # cold start: the whole configured universe, once
        return self.weights.subquorum(counted, newest) and all(self.weights.subquorum(counted, s) for s in binding)

    def _learn(self, newest: Session, binding: list[Session]) -> None:
        """Adopt what the reports taught: a newer primary, and which of our attempts are settled."""
        state = self.state
        last_primary = max(state.last_primary, newest, key=_order) if not state.amnesiac else state.last_primary
        keep = set(binding)
        ambiguous = tuple(s for s in state.ambiguous if s.number > last_primary.number and s in keep)
        number = max(state.session_number, newest.number)
        if (last_primary, ambiguous, number) != (state.last_primary, state.ambiguous, state.session_number):
            self.state = attrs.evolve(state, session_number=number, last_primary=last_primary, ambiguous=ambiguous)
            self.actions.append(WriteState(self.state.encode()))

    def receive(self, sender: int, view_id: ViewId, payload: bytes, now: float) -> None:
        if len(payload) != _ATTEMPT.size:
            self._count("rx_dropped_malformed")
            return
        kind, number, flags = _ATTEMPT.unpack(payload)
        view = self.view
        if kind != _KIND_ATTEMPT or not self.attempted or number != self.attempted_number or view is None:
            self._count("rx_dropped_other_session")
            return
        if sender not in self._members:
            self._count("rx_dropped_other_session")
            return
        if flags & _PLEASE_SEND:
            # Also after we formed (or stopped) this session: the asker still needs ours.
            self.actions.append(SendQuorum(_ATTEMPT.pack(_KIND_ATTEMPT, number, 0), to=(sender,)))
        session = self.session
        if session is None:
            return
        self.attempts.add(sender)
        self._maybe_form()

    def _maybe_form(self) -> None:
        session = self.session
        if session is None or len(self.attempts) < len(session.members):
            return
        self.session = None
        self._retry_at = None
        self.state = attrs.evolve(
            self.state,
            session_number=max(self.state.session_number, session.number),
            last_primary=session,
            ambiguous=(),
            last_formed=session.number,
            amnesiac=False,  # a primary formed without relying on what we forgot
        )
        self.actions.append(WriteState(self.state.encode()))  # durable before the announcement
        self.actions.append(FormPrimary(session.number))

    def handle_timer(self, now: float) -> None:
        session = self.session
        if session is None or self._retry_at is None:
            return
        missing = tuple(n for n in session.members if n not in self.attempts)
        self.actions.append(SendQuorum(_ATTEMPT.pack(_KIND_ATTEMPT, session.number, _PLEASE_SEND), to=missing))
        self._retry_at = now + self.retry_interval

    def get_timer(self) -> float | None:
        return self._retry_at

    # ------------------------------------------------------------------ operator recovery

    def remove_nodes(self, node_ids: list[int]) -> list[tuple[int, int]]:
        """Declare ``node_ids`` gone for good from every session this node knows.

        They stop counting toward the subquorums of those sessions (numbered up to this
        node's session number), so survivors can form a primary after losing a quorum
        for good.  The declaration spreads to the other members with the state reports;
        a removed node that comes back with its old state is treated as amnesiac.
        Unsafe if a removed node is in fact alive elsewhere (docs/voting.md).
        """
        if self.node_id in node_ids:
            raise UsageError("a node cannot declare itself removed; run the removal on a survivor")
        entries = tuple((n, self.state.session_number) for n in sorted(set(node_ids)))
        self.state = without(self.state, entries)
        self.actions.append(WriteState(self.state.encode()))
        return list(entries)

    # ------------------------------------------------------------------ helpers

    def _reports(self, view: View, states: Mapping[int, bytes]) -> dict[int, VotingState]:
        """Every member's report, with the removals any of them knows applied to all."""
        raw = {n: self._report(states.get(n), view) for n in view.node_ids}
        removed = merge_removed(self.state.removed, *(r.removed for r in raw.values() if not r.amnesiac))
        if removed != self.state.removed:
            self._adopt_removed(removed)
        if not removed:
            return raw
        upto = dict(removed)
        reports = {}
        for n, report in raw.items():
            if report.amnesiac:
                reports[n] = report
            elif upto.get(n, -1) >= report.last_primary.number:
                reports[n] = _AMNESIAC  # declared gone, and its state is from before that
            else:
                reports[n] = without(report, removed)
        return reports

    def _adopt_removed(self, removed: tuple[tuple[int, int], ...]) -> None:
        upto = dict(removed).get(self.node_id)
        if upto is not None and upto >= self.state.last_primary.number and not self.state.amnesiac:
            log.warning(
                "node %d: an operator declared this node permanently removed; its voting state is discarded "
                "(amnesiac until a primary forms without it)",
                self.node_id,
            )
            self.state = attrs.evolve(_AMNESIAC, removed=removed)
        else:
            self.state = without(self.state, removed)
        self.actions.append(WriteState(self.state.encode()))

    def _report(self, data: bytes | None, view: View) -> VotingState:
        """A member's report for ``view`` (its sets may be relative to it)."""
        report = VotingState.decode(data, view.node_ids) if data is not None else None
        if report is None:
            self._count("state_unreadable")
            return _AMNESIAC
        return report

    def _count(self, name: str) -> None:
        self.counters[name] = self.counters.get(name, 0) + 1

    def contributes(self) -> bool:
        return self.attempted

    def confirms(self, view: View, node_ids: list[int]) -> bool:
        return self.weights.subquorum(node_ids, Session(0, view.node_ids))

    def describe(self) -> dict[str, Any]:
        state = self.state
        return {
            "session_number": state.session_number,
            "last_primary": str(state.last_primary),
            "ambiguous": [str(s) for s in state.ambiguous],
            "last_formed": state.last_formed,
            "amnesiac": state.amnesiac,
            "removed": [{"node": n, "up_to_session": number} for n, number in state.removed],
        }

    @classmethod
    def initial_primary(cls, config: QuorumConfig) -> tuple[int, ...] | None:
        return tuple(sorted(n for n, v in (config.votes or {}).items() if v > 0))

    @classmethod
    def succession_holds(cls, config: QuorumConfig, previous: tuple[int, ...], members: tuple[int, ...]) -> bool:
        weights = Weights(config.votes or {}, config.tie_breaker)
        return weights.subquorum(members, Session(0, previous))
