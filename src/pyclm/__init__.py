"""pyclm: cluster membership for Python.

Numbered, agreed membership views; one primary component chosen by a quorum policy;
a sans-IO core (:class:`Membership`) driven by an anyio runtime (:class:`Node`) or by
the deterministic simulator (:mod:`pyclm.sim`); SA Forum style cluster membership
(:mod:`pyclm.clm`) that a Node reports through ``track()`` and its accessors.
"""

import contextlib
import os
from typing import Any

from .clm import Change, ChangesLost, ClusterNode, LeaveProposal, LeaveStep, MembershipChange, MembershipSnapshot
from .config import MAX_CLUSTER_SIZE, ConnectivitySource, MembershipConfig, TimingConfig
from .core import GROUP, Membership
from .errors import ConfigError, LeaveRejected, PyclmError, UsageError
from .events import ClmMessage, Event, PrimaryFormed, PrimaryLost, Stopped, ViewInstalled
from .ids import Member, View, ViewId
from .runtime import MembershipTrack, Node
from .voting import QuorumConfig

__version__ = "0.1.0"


def open_node(
    config: str | os.PathLike[str] | None = None, /, **settings: Any
) -> contextlib.AbstractAsyncContextManager[Node]:
    """A :class:`Node` configured like ``pyclm node``: ``async with pyclm.open_node("node.toml") as node:``.

    See :func:`pyclm.daemon.embed.open_node` (transport, keys and state dir by configuration).
    """
    from .daemon.embed import open_node as open_configured

    return open_configured(config, **settings)


__all__ = [
    "GROUP",
    "MAX_CLUSTER_SIZE",
    "Change",
    "ChangesLost",
    "ClmMessage",
    "ClusterNode",
    "ConfigError",
    "ConnectivitySource",
    "Event",
    "LeaveProposal",
    "LeaveRejected",
    "LeaveStep",
    "Member",
    "Membership",
    "MembershipChange",
    "MembershipConfig",
    "MembershipSnapshot",
    "MembershipTrack",
    "Node",
    "PrimaryFormed",
    "PrimaryLost",
    "PyclmError",
    "QuorumConfig",
    "Stopped",
    "TimingConfig",
    "UsageError",
    "View",
    "ViewId",
    "ViewInstalled",
    "__version__",
    "open_node",
]
