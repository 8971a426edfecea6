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

__all__ = [
    "POLICIES",
    "FormPrimary",
    "LosePrimary",
    "PolicyAction",
    "QuorumConfig",
    "QuorumPolicy",
    "SendQuorum",
    "StaticMajority",
    "WriteState",
    "make_policy",
    "register_policy",
]
