"""Failure detectors: who do we still hear?

The core tells a detector when it heard a node and asks it when the next node becomes
suspect.  :class:`TimeoutDetector` suspects a node exactly ``timeout`` seconds after the
last datagram from it.  Any object with the same methods (a phi-accrual detector, say)
can be passed to the core instead.
"""

from __future__ import annotations

from collections import OrderedDict
from typing import Protocol


class FailureDetector(Protocol):
    def heard(self, node_id: int, now: float) -> None:
        """A datagram from ``node_id`` arrived at ``now``."""

    def forget(self, node_id: int) -> None:
        """Stop tracking ``node_id`` (suspected, left, or restarted as a new incarnation)."""

    def deadline(self) -> float | None:
        """When the next tracked node becomes suspect (None: nobody is tracked)."""
        ...

    def expired(self, now: float) -> list[int]:
        """Nodes suspect at ``now``; they are no longer tracked until heard again."""
        ...

    def longest_silence(self, now: float) -> float:
        """How long the most silent tracked node has been silent (0 when none)."""
        ...


class TimeoutDetector:
    """Suspect a node ``timeout`` seconds after the last datagram from it.

    Nodes are kept in the order they were last heard (``now`` never goes back), so the
    next deadline and the expired nodes are found at the front in O(1) each.
    """

    def __init__(self, timeout: float) -> None:
        self.timeout = timeout
        self._last: OrderedDict[int, float] = OrderedDict()

    def heard(self, node_id: int, now: float) -> None:
        last = self._last
        last[node_id] = now
        last.move_to_end(node_id)

    def forget(self, node_id: int) -> None:
        self._last.pop(node_id, None)

    def last_heard(self, node_id: int) -> float | None:
        return self._last.get(node_id)

    def deadline(self) -> float | None:
        last = self._last
        return last[next(iter(last))] + self.timeout if last else None

    def expired(self, now: float) -> list[int]:
        timeout = self.timeout
        last = self._last
        out = []
        while last:
            node_id, heard = next(iter(last.items()))
            if heard + timeout > now:  # the same sum as deadline(): no float mismatch
                break
            del last[node_id]
            out.append(node_id)
        return out

    def longest_silence(self, now: float) -> float:
        for first in self._last.values():
            return now - first
        return 0.0
