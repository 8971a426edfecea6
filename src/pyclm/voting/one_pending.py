"""1-pending: YKD that never leaves more than one attempt pending.

A comparison policy for the availability study (docs/voting.md, "Comparison policies").
It keeps YKD's state, its two rounds (state exchange on the view agreement, then the
attempt) and its resolution rules, and adds one restriction to the decision: a view may
attempt only if, once the members' reports are resolved, **no** ambiguous session still
binds it.  So a node holds at most one pending (ambiguous) attempt: the one it makes
itself, and it may make another only after learning what became of it.  This is the
"block until the outcome of the interrupted attempt is resolved" behaviour that YKD
was designed to avoid.
"""

from __future__ import annotations

from collections.abc import Mapping

from ..ids import View
from .base import register_policy
from .sessions import Session, VotingState
from .ykd import YKD


@register_policy
class OnePending(YKD):
    """YKD that attempts only with no binding ambiguous session (``quorum.policy = "one-pending"``)."""

    name = "one-pending"

    def decide(self, view: View, reports: Mapping[int, VotingState], newest: Session, binding: list[Session]) -> bool:
        if binding:
            self._count("blocked_pending")
            return False
        return super().decide(view, reports, newest, binding)
