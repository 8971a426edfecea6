"""Failure detectors: who do we still hear?

The core asks a detector two things: record that a node was heard at ``now``, and
which nodes are suspected at ``now``.  The core sweeps at every heartbeat tick, so a
node is suspected between ``suspect_timeout`` and ``suspect_timeout +
heartbeat_interval`` after the last datagram from it.  Any object with the same
methods (a phi-accrual detector, say) can be passed to the core instead.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Protocol


class FailureDetector(Protocol):
    def heard(self, node_id: int, now: float) -> None:
        """A datagram from ``node_id`` arrived at ``now``."""

    def forget(self, node_id: int) -> None:
        """Stop tracking ``node_id`` (it left, or restarted as a new incarnation)."""

    def suspects(self, candidates: Iterable[int], now: float) -> list[int]:
        """Which of ``candidates`` (currently trusted) should be suspected at ``now``."""
        ...


class TimeoutDetector:
    """Suspect a node after ``timeout`` seconds without a datagram from it."""

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._last: dict[int, float] = {}

    def heard(self, node_id: int, now: float) -> None:
        self._last[node_id] = now

    def forget(self, node_id: int) -> None:
        self._last.pop(node_id, None)

    def last_heard(self, node_id: int) -> float | None:
        return self._last.get(node_id)

    def suspects(self, candidates: Iterable[int], now: float) -> list[int]:
        limit = now - self.timeout
        last = self._last
        return [n for n in candidates if last.get(n, -1e300) < limit]
