"""The part of SAF NTF (notification service) types that CLM needs, under pyosaf's names.

CLM B.04 track callbacks carry the NTF correlation ids of the notification that
reported the membership change; this module defines that structure and its
member type, as ``pyosaf.saNtf`` does.  It is not an NTF implementation.
"""

from __future__ import annotations

from ctypes import Structure

from pyclm.saf.saAis import Const, SaUint64T

__all__ = [
    "SaNtfCorrelationIdsT",
    "SaNtfIdentifierT",
    "saNtf",
]


class _SaNtfConstants(Const):
    SA_NTF_IDENTIFIER_UNUSED: int


saNtf = _SaNtfConstants()

SaNtfIdentifierT = SaUint64T
saNtf.SA_NTF_IDENTIFIER_UNUSED = 0


class SaNtfCorrelationIdsT(Structure):
    """The identifiers that tie a notification to the ones it follows from.

    ``rootCorrelationId`` and ``parentCorrelationId`` are
    ``SA_NTF_IDENTIFIER_UNUSED`` when there is no such notification.
    """

    rootCorrelationId: int
    parentCorrelationId: int
    notificationId: int

    _fields_ = (
        ("rootCorrelationId", SaNtfIdentifierT),
        ("parentCorrelationId", SaNtfIdentifierT),
        ("notificationId", SaNtfIdentifierT),
    )
