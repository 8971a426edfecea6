"""DFLS-like dynamic voting, after De Prisco, Fekete, Lynch and Shvartsman's DVS (PODC'98).

A comparison policy for the availability study (docs/voting.md, "Comparison policies").
DVS builds on the same idea as YKD (attempted views that may or may not have formed) but
discards an attempted view only once a later view is *totally registered*: every one
of its members has registered it.  It has no single-witness or all-members-present
resolution.  Our rendering (our definition where the paper's details are not available
to us) keeps YKD's state exchange and attempt, and adds one round:

Theory of operation
-------------------
1. **State exchange** (free: it rides on the view agreement, as in YKD).
2. **Attempt**, exactly as in YKD: the new session is written to stable storage as
   pending, then each member sends its attempt.
3. **Form** (local): a member with every member's attempt has formed the session.  It is
   a primary (announced at once), but the session stays *pending* in the state: it is
   not yet known to every member.
4. **Registration** (the extra round): a member that formed sends REGISTERED to the
   others.  A member that holds every member's REGISTERED (its own included) knows the
   session is *totally registered*: it writes that session as its newest totally
   registered one and drops every pending session older than it, in one durable write.

**The rule.**  A view may attempt only if its members hold a subquorum of the newest
totally registered session any of them reports **and** of every newer session any of
them still holds pending, whether it formed or not.  Nothing else resolves a pending
session: not a member that never attempted it, not every member being present, not
learning that it formed.  A member adopts a newer totally registered session from the
reports (and drops what it makes moot), as YKD adopts a newer primary.

**The record** is a :class:`~pyclm.voting.sessions.VotingState` read the DVS way:
``last_primary`` is the newest *totally registered* session (initially the configured
universe, numbered 0) and ``ambiguous`` every newer session this node attempted, formed
or not.  Each reading is safe for the other policy (a YKD record read here is YKD's rule
without its resolutions; a DFLS record read by YKD only holds more pending sessions).

Messages are YKD's three-byte-header attempt, with a second kind, REGISTERED; lost
messages are asked for again with the PLEASE_SEND flag, as YKD does for attempts.  A
REGISTERED also stands for its sender's attempt (it formed, so it had sent it), so a
member that formed answers a late request for its attempt with its registration.
Amnesia ends with total registration (not with forming, as in YKD).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import attrs

from ..ids import View, ViewId
from .base import FormPrimary, QuorumConfig, SendQuorum, WriteState, register_policy
from .sessions import Session, VotingState
from .ykd import _ATTEMPT, _KIND_ATTEMPT, _PLEASE_SEND, YKD

_KIND_REGISTERED = 2


@register_policy
class DFLS(YKD):
    """Dynamic voting that forgets an attempt only after total registration (``quorum.policy = "dfls"``)."""

    name = "dfls"

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
        # Volatile: the session formed in the current view (being registered), and who registered it.
        self.registering: Session | None = None
        self.registrations: set[int] = set()
        self.totally_registered = False

    def view_installed(self, view: View, states: Mapping[int, bytes], now: float) -> None:
        self.registering = None
        self.registrations = set()
        self.totally_registered = False
        super().view_installed(view, states, now)

    def resolve(self, reports: Mapping[int, VotingState]) -> tuple[Session, list[Session]]:
        """The newest totally registered session reported, and every newer pending one.

        Only members that are not amnesiac count.  Nothing is resolved: a pending
        session binds until some later session is totally registered.
        """
        counted = [r for r in reports.values() if not r.amnesiac]
        if not counted:
            return self.state.last_primary, []
        registered = max(r.last_primary for r in counted)
        pending = {s for r in counted for s in r.ambiguous if s.number > registered.number}
        return registered, sorted(pending)

    def _maybe_form(self) -> None:
        session = self.session
        if session is None or len(self.attempts) < len(session.members):
            return
        self.session = None
        self.registering = session
        # Formed, but still pending: it stays among the sessions a new view must respect.
        state = self.state
        self.state = attrs.evolve(
            state, session_number=max(state.session_number, session.number), last_formed=session.number
        )
        self.actions.append(WriteState(self.state.encode()))
        self.actions.append(FormPrimary(session.number))
        self.registrations.add(self.node_id)
        self.actions.append(SendQuorum(_ATTEMPT.pack(_KIND_REGISTERED, session.number, 0)))
        # The retry timer armed for the attempt now retransmits the registration.
        self._maybe_register()

    def _maybe_register(self) -> None:
        formed = self.registering
        if formed is None or self.totally_registered or not self.registrations.issuperset(formed.members):
            return
        self.totally_registered = True
        self._retry_at = None
        state = self.state
        registered = max(state.last_primary, formed)
        self.state = attrs.evolve(
            state,
            last_primary=registered,
            ambiguous=tuple(s for s in state.ambiguous if s.number > registered.number),
            amnesiac=False,  # every member formed a session that did not rely on what we forgot
        )
        self.actions.append(WriteState(self.state.encode()))

    def receive(self, sender: int, view_id: ViewId, payload: bytes, now: float) -> None:
        if len(payload) != _ATTEMPT.size:
            self._count("rx_dropped_malformed")
            return
        kind, number, flags = _ATTEMPT.unpack(payload)
        current = self.session or self.registering
        if (
            kind not in (_KIND_ATTEMPT, _KIND_REGISTERED)
            or current is None
            or number != current.number
            or sender not in current.members
        ):
            self._count("rx_dropped_other_session")
            return
        registered = _ATTEMPT.pack(_KIND_REGISTERED, number, 0)
        if kind == _KIND_ATTEMPT:
            if self.session is not None:
                super().receive(sender, view_id, payload, now)
            elif flags & _PLEASE_SEND:
                self.actions.append(SendQuorum(registered, to=(sender,)))  # it stands for our attempt
            return
        self.registrations.add(sender)
        if flags & _PLEASE_SEND and self.registering is not None:
            self.actions.append(SendQuorum(registered, to=(sender,)))
        if self.session is not None:
            self.attempts.add(sender)  # it formed, so it had sent its attempt
            self._maybe_form()
        self._maybe_register()

    def handle_timer(self, now: float) -> None:
        if self.session is not None:
            super().handle_timer(now)
            return
        formed = self.registering
        if formed is None or self.totally_registered or self._retry_at is None:
            return
        missing = tuple(n for n in formed.members if n not in self.registrations)
        self.actions.append(SendQuorum(_ATTEMPT.pack(_KIND_REGISTERED, formed.number, _PLEASE_SEND), to=missing))
        self._retry_at = now + self.retry_interval

    def describe(self) -> dict[str, Any]:
        state = self.state
        return {
            "session_number": state.session_number,
            "registered": str(state.last_primary),
            "pending": [str(s) for s in state.ambiguous],
            "last_formed": state.last_formed,
            "amnesiac": state.amnesiac,
            "removed": [{"node": n, "up_to_session": number} for n, number in state.removed],
        }
