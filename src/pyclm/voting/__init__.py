"""Quorum policies: which installed view is the primary component.

``quorum.policy`` names one of :data:`POLICIES`; new policies register themselves with
:func:`register_policy`.
"""

from .base import (
    POLICIES,
    FormPrimary,
    LosePrimary,
    PolicyAction,
    QuorumConfig,
    QuorumPolicy,
    SendQuorum,
    WriteState,
    make_policy,
    register_policy,
)
from .majority import StaticMajority
from .sessions import Session, VotingState, Weights
from .ykd import YKD

__all__ = [
    "POLICIES",
    "YKD",
    "FormPrimary",
    "LosePrimary",
    "PolicyAction",
    "QuorumConfig",
    "QuorumPolicy",
    "SendQuorum",
    "Session",
    "StaticMajority",
    "VotingState",
    "Weights",
    "WriteState",
    "make_policy",
    "register_policy",
]
