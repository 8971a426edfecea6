"""Corosync votequorum's rule: expected votes, last man standing, tie-breaker, wait for all.

A comparison policy for the availability study (docs/voting.md, "Comparison policies"),
after corosync's ``votequorum(5)`` with ``last_man_standing``, ``auto_tie_breaker`` and
``wait_for_all`` on.  It is **not safe in general**: last man standing shrinks a
*number* (the expected votes), not a member set, so nodes that missed the shrink still
count with the old number, and two disjoint views can both be primary (the tests show
such an interleaving).  It is here to be compared, not to be used for safety.

Theory of operation
-------------------
Each node keeps ``expected_votes`` on stable storage (initially the total configured
votes) and whether it has been a member of a primary view (``quorate_once``).  Both
ride on the view agreement, so the policy needs no message of its own.  When a view is
installed, from the members' reports alone (so every member decides the same):

- ``expected`` := the highest expected votes any member reports, raised to the view's
  votes if they are more (expected votes never go down, except by last man standing);
- ``quorum`` := ``expected // 2 + 1``;
- the view is primary iff ``votes >= quorum``, or (``auto_tie_breaker``) ``2 * votes ==
  expected`` and the tie-breaker node (``quorum.tie_breaker`` among the configured
  voters) is a member;
- with ``wait_for_all``, additionally only if every configured voter is a member, or
  some member has been in a primary view before.

**Last man standing**: once a view has been primary, unchanged, for
``last_man_standing_window`` seconds, each member sets ``expected_votes`` to the view's
votes (durable).  The primary number is the view's epoch, as for static majority.
"""

from __future__ import annotations

import logging
import math
import struct
from collections.abc import Mapping
from typing import Any

import attrs

from ..errors import ConfigError
from ..ids import View
from .base import FormPrimary, QuorumConfig, QuorumPolicy, WriteState, register_policy
from .sessions import Weights

log = logging.getLogger("pyclm.voting.votequorum")

_RECORD = struct.Struct("!BBQ")  # version, flags, expected votes
_VERSION = 1
_QUORATE_ONCE = 0x01


@attrs.frozen(kw_only=True)
class ExpectedVotes:
    """What a votequorum node keeps on stable storage and reports to each new view."""

    expected: int
    #: Has been a member of a primary view (wait_for_all is satisfied for it).
    quorate_once: bool = False

    def encode(self) -> bytes:
        return _RECORD.pack(_VERSION, _QUORATE_ONCE if self.quorate_once else 0, self.expected)

    @classmethod
    def decode(cls, data: bytes) -> ExpectedVotes | None:
        """The record in ``data``, or None if it is not a complete, valid one."""
        if len(data) != _RECORD.size:
            return None
        version, flags, expected = _RECORD.unpack(data)
        if version != _VERSION or flags & ~_QUORATE_ONCE:
            return None
        return cls(expected=expected, quorate_once=bool(flags & _QUORATE_ONCE))


def _flag(config: QuorumConfig, name: str, default: bool) -> bool:
    value = config.options.get(name, default)
    if not isinstance(value, bool):
        raise ConfigError(f"quorum.{name}", f"must be true or false, got {value!r}")
    return value


@register_policy
class VoteQuorum(QuorumPolicy):
    """Expected votes with last man standing (``quorum.policy = "votequorum"``)."""

    name = "votequorum"
    option_names = frozenset({"auto_tie_breaker", "wait_for_all", "last_man_standing", "last_man_standing_window"})

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
        self.universe = tuple(sorted(n for n, v in votes.items() if v > 0))
        if not self.universe:
            raise ConfigError(
                "quorum.votes",
                "votequorum needs the configured nodes and their votes (e.g. votes = { 1 = 1, 2 = 1, 3 = 1 })",
            )
        self.auto_tie_breaker = _flag(config, "auto_tie_breaker", True)
        self.wait_for_all = _flag(config, "wait_for_all", True)
        self.last_man_standing = _flag(config, "last_man_standing", True)
        window = config.options.get("last_man_standing_window", 10.0)
        if isinstance(window, bool) or not isinstance(window, int | float) or not math.isfinite(window) or window <= 0:
            raise ConfigError("quorum.last_man_standing_window", f"must be a number of seconds > 0, got {window!r}")
        self.window = float(window)
        self.weights = Weights(votes, config.tie_breaker)
        self.tie_breaker = config.tie_breaker_node()
        # What an unreadable report or a lost record stands for: the configured votes, never quorate.
        self._nothing = ExpectedVotes(expected=config.total_votes)
        state = ExpectedVotes.decode(stored) if stored is not None else None
        if state is None:
            if stored is not None or history:
                log.warning(
                    "node %d: votequorum record %s: expected votes start again from the configuration",
                    node_id,
                    "unreadable" if stored is not None else "missing",
                )
            state = self._nothing
            self.actions.append(WriteState(state.encode()))
        self.state = state
        # Volatile: the current view, its votes, and whether it is primary.
        self.view: View | None = None
        self.votes = 0
        self.primary = False
        self._lms_at: float | None = None

    def ack_state(self, view: View | None = None) -> bytes:
        return self.state.encode()

    def view_installed(self, view: View, states: Mapping[int, bytes], now: float) -> None:
        self.view = view
        self._lms_at = None
        reports = [self._report(states.get(n)) for n in view.node_ids]
        self.votes = self.weights.total(view.node_ids)
        expected = max(self.votes, *(r.expected for r in reports))
        everyone = set(self.universe) <= set(view.node_ids)
        waited = not self.wait_for_all or everyone or any(r.quorate_once for r in reports)
        self.primary = waited and self.quorate(self.votes, expected, view.node_ids)
        state = ExpectedVotes(expected=expected, quorate_once=self.state.quorate_once or self.primary)
        if state != self.state:
            self.state = state
            self.actions.append(WriteState(state.encode()))
        if self.primary:
            self.actions.append(FormPrimary(view.view_id.epoch))
            if self.last_man_standing and self.votes < expected:
                self._lms_at = now + self.window

    def quorate(self, votes: int, expected: int, members: tuple[int, ...] | list[int]) -> bool:
        """votequorum's test: a quorum of ``expected``, or half of it with the tie-breaker node."""
        if votes >= expected // 2 + 1:
            return True
        return self.auto_tie_breaker and 2 * votes == expected and self.tie_breaker in members

    def handle_timer(self, now: float) -> None:
        if self._lms_at is None or now < self._lms_at:
            return
        self._lms_at = None
        # Last man standing: the view has been primary and unchanged for the window.
        if self.primary and self.votes < self.state.expected:
            self.state = attrs.evolve(self.state, expected=self.votes)
            self.actions.append(WriteState(self.state.encode()))

    def get_timer(self) -> float | None:
        return self._lms_at

    def _report(self, data: bytes | None) -> ExpectedVotes:
        report = ExpectedVotes.decode(data) if data is not None else None
        return self._nothing if report is None else report

    def contributes(self) -> bool:
        return self.primary

    def confirms(self, view: View, node_ids: list[int]) -> bool:
        # No promise holds here (see the module docstring); the best this rule can say.
        return self.quorate(self.weights.total(node_ids), self.state.expected, node_ids)

    def describe(self) -> dict[str, Any]:
        return {
            "expected_votes": self.state.expected,
            "quorum": self.state.expected // 2 + 1,
            "quorate_once": self.state.quorate_once,
            "primary": self.primary,
        }
