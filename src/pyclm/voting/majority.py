"""Static majority: a view is primary when its members hold more than half the configured votes.

Any two such views share a member, and a member accepts view proposals with strictly
increasing epochs, so the epoch of a primary view is unique among primaries and orders
them as their common members saw them: it serves as the primary number.  No message
rounds and no state of its own are needed.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from ..errors import ConfigError
from ..ids import View
from .base import FormPrimary, QuorumConfig, QuorumPolicy, register_policy


@register_policy
class StaticMajority(QuorumPolicy):
    name = "majority"

    def __init__(self, config: QuorumConfig, node_id: int, stored: bytes | None, **kwargs: Any) -> None:
        super().__init__(config, node_id, stored, **kwargs)
        if config.total_votes <= 0:
            raise ConfigError(
                "quorum.votes",
                "static majority needs the configured votes (e.g. votes = { 1 = 1, 2 = 1, 3 = 1 })",
            )
        self._majority = False

    def view_installed(self, view: View, states: Mapping[int, bytes], now: float) -> None:
        self._majority = bool(self.rule_holds(self.config, view.node_ids))
        if self._majority:
            self.actions.append(FormPrimary(view.view_id.epoch))

    def contributes(self) -> bool:
        return self._majority

    @classmethod
    def rule_holds(cls, config: QuorumConfig, members: tuple[int, ...]) -> bool:
        return 2 * config.votes_of(members) > config.total_votes
