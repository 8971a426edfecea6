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
from .dfls import DFLS
from .majority import StaticMajority
from .mr1p import MR1P
from .one_pending import OnePending
from .oracle import Oracle, SessionTruth
from .sessions import Session, VotingState, Weights
from .votequorum import ExpectedVotes, VoteQuorum
from .ykd import YKD

__all__ = [
    "DFLS",
    "MR1P",
    "POLICIES",
    "YKD",
    "ExpectedVotes",
    "FormPrimary",
    "LosePrimary",
    "OnePending",
    "Oracle",
    "PolicyAction",
    "QuorumConfig",
    "QuorumPolicy",
    "SendQuorum",
    "Session",
    "SessionTruth",
    "StaticMajority",
    "VoteQuorum",
    "VotingState",
    "Weights",
    "WriteState",
    "make_policy",
    "register_policy",
]
