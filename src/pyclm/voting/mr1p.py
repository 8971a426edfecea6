"""MR1p, "majority-resilient 1-pending" (our definition): 1-pending that tolerates one pending attempt.

A comparison policy for the availability study (docs/voting.md, "Comparison policies").
The literature we could read names the algorithm but not its rule, so this is our
definition.  It keeps YKD's state, rounds and resolution rules and decides, after
resolution, by the number of ambiguous sessions that still bind the view:

- none: YKD's rule (a subquorum of the newest primary);
- exactly one: YKD's rule too, a subquorum of the newest primary **and** of that session
  (the view is "majority-resilient" to the one interrupted attempt);
- two or more: the view blocks, as 1-pending would.

A node therefore holds at most two ambiguous sessions: the one it tolerated and its own.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..ids import View
from .base import register_policy
from .sessions import Session, VotingState
from .ykd import YKD


@register_policy
class MR1P(YKD):
    """YKD that attempts past at most one binding ambiguous session (``quorum.policy = "mr1p"``)."""

    name = "mr1p"

    def decide(self, view: View, reports: Mapping[int, VotingState], newest: Session, binding: list[Session]) -> bool:
        if len(binding) > 1:
            self._count("blocked_pending")
            return False
        return super().decide(view, reports, newest, binding)
