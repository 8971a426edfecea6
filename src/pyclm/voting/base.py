"""The quorum-policy interface and the ``[quorum]`` configuration table.

A policy decides whether the view a node has just installed is the **primary
component**.  The core drives it:

1. Before acknowledging a proposal, a member asks :meth:`QuorumPolicy.ack_state` for
   the bytes to carry on its ack; the coordinator gathers every member's state and
   sends them all on the install message (each distinct state once).  So when
   :meth:`view_installed` runs, the policy already has the state of every member, with
   no extra round.  A state may be written relative to the proposed view (it is given
   to :meth:`ack_state`, and it is the view :meth:`view_installed` gets).
2. The policy may then exchange further messages (:class:`SendQuorum`, delivered to
   :meth:`receive` of the other members while they are in the same view), persist its
   state (:class:`WriteState`, made durable before any later output acts), and finally
   declare :class:`FormPrimary` with the primary number, or :class:`LosePrimary`.

Policies see only frozen values and never read a clock: every method gets ``now``.
"""

from __future__ import annotations

import abc
from collections.abc import Mapping
from typing import Any, ClassVar

import attrs

from ..errors import ConfigError, UsageError
from ..ids import MAX_NODE_ID, View, ViewId


def _votes(value: Mapping[Any, Any] | None) -> dict[int, int] | None:
    if value is None:
        return None
    out: dict[int, int] = {}
    for key, vote in value.items():
        try:
            node_id = int(key)
        except (TypeError, ValueError):
            raise ConfigError("quorum.votes", f"keys are node ids, got {key!r}") from None
        if not 0 <= node_id <= MAX_NODE_ID:
            raise ConfigError("quorum.votes", f"node id {node_id} is out of range")
        if not isinstance(vote, int) or isinstance(vote, bool) or vote < 0:
            raise ConfigError("quorum.votes", f"the vote of node {node_id} must be a whole number >= 0, got {vote!r}")
        out[node_id] = vote
    return out


@attrs.frozen(kw_only=True)
class QuorumConfig:
    """The ``[quorum]`` table shared by scenarios and node configs."""

    policy: str = "majority"
    #: node id -> votes; None means "1 for every node the scenario or config lists".
    votes: dict[int, int] | None = attrs.field(default=None, converter=_votes)
    #: "lowest", "highest" or a node id: breaks exact halves in policies that do.
    tie_breaker: str | int = "lowest"
    #: Policy-specific settings (documented with each policy).
    options: dict[str, Any] = attrs.field(factory=dict)
    _total: int = attrs.field(init=False, eq=False, repr=False, default=0)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_total", sum((self.votes or {}).values()))
        if not isinstance(self.policy, str) or self.policy not in POLICIES:
            known = ", ".join(sorted(POLICIES))
            raise ConfigError("quorum.policy", f"unknown policy {self.policy!r} (known: {known})")
        unknown = sorted(set(self.options) - POLICIES[self.policy].option_names)
        if unknown:
            raise ConfigError(f"quorum.{unknown[0]}", f"unknown setting for policy {self.policy!r}")
        tb = self.tie_breaker
        if not (tb in ("lowest", "highest") or (isinstance(tb, int) and not isinstance(tb, bool) and tb >= 0)):
            raise ConfigError("quorum.tie_breaker", f"must be 'lowest', 'highest' or a node id, got {tb!r}")

    def with_default_votes(self, node_ids: list[int]) -> QuorumConfig:
        """This table with ``votes`` filled in as 1 per listed node when it was not given."""
        if self.votes is not None:
            return self
        return attrs.evolve(self, votes={n: 1 for n in node_ids})

    @property
    def total_votes(self) -> int:
        return self._total

    def votes_of(self, node_ids: list[int] | tuple[int, ...]) -> int:
        votes = self.votes or {}
        return sum(votes.get(n, 0) for n in node_ids)

    def tie_breaker_node(self) -> int | None:
        votes = {n for n, v in (self.votes or {}).items() if v > 0}
        if not votes:
            return None
        if self.tie_breaker == "lowest":
            return min(votes)
        if self.tie_breaker == "highest":
            return max(votes)
        return int(self.tie_breaker)


@attrs.frozen
class SendQuorum:
    """Send ``payload`` to ``to`` (node ids in the current view; None: every other member)."""

    payload: bytes
    to: tuple[int, ...] | None = None


@attrs.frozen
class WriteState:
    """Persist the policy's state (made durable before any later output acts)."""

    data: bytes


@attrs.frozen
class FormPrimary:
    """The current view is primary, with this primary number."""

    number: int


@attrs.frozen
class LosePrimary:
    """This node no longer acts as primary in its current view."""


PolicyAction = SendQuorum | WriteState | FormPrimary | LosePrimary


class QuorumPolicy(abc.ABC):
    """Base class of quorum policies.  Subclasses append to ``self.actions``."""

    name: ClassVar[str]
    #: The extra keys this policy accepts in the ``[quorum]`` table (QuorumConfig.options).
    option_names: ClassVar[frozenset[str]] = frozenset()

    def __init__(
        self,
        config: QuorumConfig,
        node_id: int,
        stored: bytes | None,
        *,
        history: bool = False,
        retry_interval: float = 0.1,
    ) -> None:
        """``stored``: the policy's record (None: none on storage); ``history``: this node
        has accepted views before, so a missing record was lost; ``retry_interval``: how
        often to retransmit messages that may have been lost."""
        self.config = config
        self.node_id = node_id
        self.actions: list[PolicyAction] = []
        #: What the policy counts (dropped messages, abandoned sessions...); the core
        #: reports them with its own counters, prefixed ``quorum_``.
        self.counters: dict[str, int] = {}

    def ack_state(self, view: View | None = None) -> bytes:
        """The state this member carries on its acknowledgement of the proposal of ``view``.

        The same ``view`` is installed, if ever, with the states gathered for it, so the
        state may be written relative to it (a member set as a bitmap over its members,
        say).  ``None``: no view at hand (a test driving the policy by hand); the state
        must then stand on its own.  Keep it short: the install message carries every
        distinct state of the view's members, and it must fit one datagram.
        """
        return b""

    @abc.abstractmethod
    def view_installed(self, view: View, states: Mapping[int, bytes], now: float) -> None:
        """A view was installed; ``states`` holds every member's :meth:`ack_state`."""

    def receive(self, sender: int, view_id: ViewId, payload: bytes, now: float) -> None:  # noqa: B027 (optional hook)
        """A :class:`SendQuorum` payload from ``sender`` in the current view ``view_id``."""

    def handle_timer(self, now: float) -> None:  # noqa: B027 (optional hook)
        """The deadline from :meth:`get_timer` passed."""

    def get_timer(self) -> float | None:
        return None

    def pop_actions(self) -> list[PolicyAction]:
        actions, self.actions = self.actions, []
        return actions

    def contributes(self) -> bool:
        """Whether this node may have enabled its current view to be primary somewhere.

        The primary lease (:mod:`pyclm.lease`) then holds this node back from helping a
        view without some member of this one until the lease of that member has run out.
        The default, True, is the safe answer for a policy that does not know: it can only
        delay a view change out of a view that was never primary.  Override it to say
        False when the policy is sure this node enabled nothing (no attempt, no quorum).
        """
        return True

    def confirms(self, view: View, node_ids: list[int]) -> bool:
        """Whether ``node_ids`` hearing this node is enough to keep acting as primary of ``view``.

        Any primary formed later must share a node with every such set (the lease rests
        on that).  The default, a strict majority of the configured votes, suits
        policies whose primaries are majorities of a fixed universe.
        """
        return 2 * self.config.votes_of(node_ids) > self.config.total_votes

    def remove_nodes(self, node_ids: list[int]) -> list[tuple[int, int]]:
        """Operator recovery: declare ``node_ids`` permanently gone (see docs/voting.md).

        Returns what was recorded.  Policies without such a notion refuse.
        """
        raise UsageError(f"quorum policy {self.name!r} has no permanent removal of nodes")

    def describe(self) -> dict[str, Any]:
        """The policy's state for status output and logs (JSON-friendly)."""
        return {}

    @classmethod
    def initial_primary(cls, config: QuorumConfig) -> tuple[int, ...] | None:
        """The members of the primary numbered 0 that the first real one succeeds, if any."""
        return None

    @classmethod
    def succession_holds(cls, config: QuorumConfig, previous: tuple[int, ...], members: tuple[int, ...]) -> bool | None:
        """Whether a primary with ``members`` may directly follow one with ``previous``.

        The simulator's checker calls this for consecutive formed primaries (by number);
        ``None``: the policy makes no such promise.
        """
        return None

    @classmethod
    def rule_holds(cls, config: QuorumConfig, members: tuple[int, ...]) -> bool | None:
        """Whether a primary with these members satisfies the policy's static rule.

        The simulator's checker calls this for every primary; ``None`` means the
        policy has no rule that a single view can be checked against.
        """
        return None


POLICIES: dict[str, type[QuorumPolicy]] = {}


def register_policy(cls: type[QuorumPolicy]) -> type[QuorumPolicy]:
    """Class decorator: make ``cls`` available as ``quorum.policy = cls.name``."""
    POLICIES[cls.name] = cls
    return cls


def make_policy(
    config: QuorumConfig, node_id: int, stored: bytes | None, *, history: bool = False, retry_interval: float = 0.1
) -> QuorumPolicy:
    return POLICIES[config.policy](config, node_id, stored, history=history, retry_interval=retry_interval)
