"""SAF Cluster Membership (CLM) service API, under the names of OpenSAF's ``pyosaf.saClm``.

Change ``from pyosaf import saAis, saClm`` to ``from pyclm.saf import saAis, saClm``
and a pyosaf CLM program runs on pyclm: this module defines every type,
enumeration, constant and callback type ``pyosaf.saClm`` does, with the same
names, values, ctypes layouts and constructors.  The ``saClm*`` functions of
SAI-AIS-CLM B.01.01 and B.04.01 (at the end of the module) answer from pyclm's
agreed membership instead of an OpenSAF library: no C library is loaded.
``saClmInitialize_3`` is there too, as in pyosaf, but B.03.01 is not supported:
it returns ``SA_AIS_ERR_VERSION``.

The structures are real ctypes structures with the C layout of ``saClm.h``, and
the callback types are ``ctypes.CFUNCTYPE`` types: wrap a Python function in
one (``SaClmClusterTrackCallbackT_4(on_change)``) and store it in a
``SaClmCallbacksT_4``, as with pyosaf.  Names pyosaf imports into ``saClm``
from ``saAis`` (``SaSelectionObjectT``, ``SaVersionT``, ``BYREF`` ...) are
available here too.
"""

from __future__ import annotations

from _ctypes import CFuncPtr
from ctypes import CFUNCTYPE, POINTER, Structure, _Pointer

from pyclm.saf import saNtf
from pyclm.saf.saAis import (
    BYREF,
    Const,
    Enumeration,
    SaAisErrorT,
    SaBoolT,
    SaDispatchFlagsT,
    SaEnumT,
    SaInt8T,
    SaInvocationT,
    SaNameT,
    SaSelectionObjectT,
    SaTimeT,
    SaUint8T,
    SaUint16T,
    SaUint32T,
    SaUint64T,
    SaVersionT,
    _encode,
    _load_bytes,
    _store_bytes,
)

__all__ = [
    # Names pyosaf's saClm imports from saAis / saNtf, so they are reachable here too.
    "BYREF",
    "Const",
    "Enumeration",
    "SaAisErrorT",
    "SaBoolT",
    # This module's own names.
    "SaClmAdditionalInfoIdT",
    "SaClmAdditionalInfoIdT_4",
    "SaClmAdminOperationIdT",
    "SaClmAdminStateT",
    "SaClmCallbacksT",
    "SaClmCallbacksT_3",
    "SaClmCallbacksT_4",
    "SaClmChangeStepT",
    "SaClmClusterChangesT",
    "SaClmClusterNodeEvictionCallbackT",
    "SaClmClusterNodeGetCallbackT",
    "SaClmClusterNodeGetCallbackT_4",
    "SaClmClusterNodeT",
    "SaClmClusterNodeT_4",
    "SaClmClusterNotificationBufferT",
    "SaClmClusterNotificationBufferT_4",
    "SaClmClusterNotificationT",
    "SaClmClusterNotificationT_4",
    "SaClmClusterTrackCallbackT",
    "SaClmClusterTrackCallbackT_4",
    "SaClmHandleT",
    "SaClmNodeAddressFamilyT",
    "SaClmNodeAddressT",
    "SaClmNodeIdT",
    "SaClmNotificationMinorIdT",
    "SaClmResponseT",
    "SaClmStateT",
    "SaDispatchFlagsT",
    "SaEnumT",
    "SaInt8T",
    "SaInvocationT",
    "SaNameT",
    "SaSelectionObjectT",
    "SaTimeT",
    "SaUint8T",
    "SaUint16T",
    "SaUint32T",
    "SaUint64T",
    "SaVersionT",
    "eSaClmAdditionalInfoIdT",
    "eSaClmAdditionalInfoIdT_4",
    "eSaClmAdminOperationIdT",
    "eSaClmAdminStateT",
    "eSaClmChangeStepT",
    "eSaClmClusterChangesT",
    "eSaClmNodeAddressFamilyT",
    "eSaClmNotificationMinorIdT",
    "eSaClmResponseT",
    "eSaClmStateT",
    "saClm",
    "saClmClusterNodeGet",
    "saClmClusterNodeGetAsync",
    "saClmClusterNodeGet_4",
    "saClmClusterNotificationFree",
    "saClmClusterNotificationFree_4",
    "saClmClusterTrack",
    "saClmClusterTrackStop",
    "saClmClusterTrack_4",
    "saClmDispatch",
    "saClmFinalize",
    "saClmInitialize",
    "saClmInitialize_3",
    "saClmInitialize_4",
    "saClmResponse_4",
    "saClmSelectionObjectGet",
    "saNtf",
]

SaClmHandleT = SaUint64T
SaClmNodeIdT = SaUint32T


class _SaClmConstants(Const):
    SA_CLM_LOCAL_NODE_ID: int
    SA_CLM_MAX_ADDRESS_LENGTH: int


saClm = _SaClmConstants()

# As a nodeId argument: the node the calling process runs on.
saClm.SA_CLM_LOCAL_NODE_ID = 0xFFFFFFFF
saClm.SA_CLM_MAX_ADDRESS_LENGTH = 64


# --- Enumerations ---------------------------------------------------------------

SaClmNodeAddressFamilyT = SaEnumT
eSaClmNodeAddressFamilyT = Enumeration(
    (
        ("SA_CLM_AF_INET", 1),
        ("SA_CLM_AF_INET6", 2),
    )
)

# UNLOCK and SHUTDOWN are B.04: a B.01 handle never sees them.
SaClmClusterChangesT = SaEnumT
eSaClmClusterChangesT = Enumeration(
    (
        ("SA_CLM_NODE_NO_CHANGE", 1),
        ("SA_CLM_NODE_JOINED", 2),
        ("SA_CLM_NODE_LEFT", 3),
        ("SA_CLM_NODE_RECONFIGURED", 4),
        ("SA_CLM_NODE_UNLOCK", 5),
        ("SA_CLM_NODE_SHUTDOWN", 6),
    )
)

SaClmStateT = SaEnumT
eSaClmStateT = Enumeration(
    (
        ("SA_CLM_CLUSTER_CHANGE_STATUS", 1),
        ("SA_CLM_ADMIN_STATE", 2),
    )
)

# pyosaf lists the first three; RESET and ACTION are in OpenSAF's saClm.h too.
SaClmAdminOperationIdT = SaEnumT
eSaClmAdminOperationIdT = Enumeration(
    (
        ("SA_CLM_ADMIN_UNLOCK", 1),
        ("SA_CLM_ADMIN_LOCK", 2),
        ("SA_CLM_ADMIN_SHUTDOWN", 3),
        ("SA_CLM_ADMIN_RESET", 4),
        ("SA_CLM_ADMIN_ACTION", 5),
    )
)

SaClmAdminStateT = SaEnumT
eSaClmAdminStateT = Enumeration(
    (
        ("SA_CLM_ADMIN_UNLOCKED", 1),
        ("SA_CLM_ADMIN_LOCKED", 2),
        ("SA_CLM_ADMIN_SHUTTING_DOWN", 3),
    )
)

# B.03 only.
SaClmAdditionalInfoIdT = SaEnumT
eSaClmAdditionalInfoIdT = Enumeration((("SA_CLM_NODE_NAME", 1),))

SaClmAdditionalInfoIdT_4 = SaEnumT
eSaClmAdditionalInfoIdT_4 = Enumeration((("SA_CLM_ROOT_CAUSE_ENTITY", 1),))

SaClmChangeStepT = SaEnumT
eSaClmChangeStepT = Enumeration(
    (
        ("SA_CLM_CHANGE_VALIDATE", 1),
        ("SA_CLM_CHANGE_START", 2),
        ("SA_CLM_CHANGE_ABORTED", 3),
        ("SA_CLM_CHANGE_COMPLETED", 4),
    )
)

SaClmResponseT = SaEnumT
eSaClmResponseT = Enumeration(
    (
        ("SA_CLM_CALLBACK_RESPONSE_OK", 1),
        ("SA_CLM_CALLBACK_RESPONSE_REJECTED", 2),
        ("SA_CLM_CALLBACK_RESPONSE_ERROR", 3),
    )
)

SaClmNotificationMinorIdT = SaEnumT
eSaClmNotificationMinorIdT = Enumeration(
    (
        ("SA_CLM_NTFID_NODE_JOIN", 0x065),
        ("SA_CLM_NTFID_NODE_LEAVE", 0x066),
        ("SA_CLM_NTFID_NODE_RECONFIG", 0x067),
        ("SA_CLM_NTFID_NODE_ADMIN_STATE", 0x068),
    )
)


# --- Structures -----------------------------------------------------------------


class SaClmNodeAddressT(Structure):
    """A node's communication address in text form: ``SaClmNodeAddressT(SA_CLM_AF_INET, '10.0.0.3')``.

    ``length`` counts the significant bytes of ``value`` (at most
    ``SA_CLM_MAX_ADDRESS_LENGTH``, 64); ``str(address)`` gives the text back.
    """

    family: int
    length: int
    value: bytes

    _fields_ = (
        ("family", SaClmNodeAddressFamilyT),
        ("length", SaUint16T),
        ("value", SaInt8T * saClm.SA_CLM_MAX_ADDRESS_LENGTH),
    )

    def __init__(self, family: int = 0, address: str | bytes = "") -> None:
        raw = _encode(address, "SaClmNodeAddressT", saClm.SA_CLM_MAX_ADDRESS_LENGTH)
        super().__init__(family, len(raw))
        _store_bytes(self, "value", raw)

    def __str__(self) -> str:
        raw = _load_bytes(self, "value", self.length, saClm.SA_CLM_MAX_ADDRESS_LENGTH)
        return raw.decode("utf-8", errors="replace")

    def __repr__(self) -> str:
        return f"SaClmNodeAddressT({self.family}, {str(self)!r})"


class SaClmClusterNodeT(Structure):
    """One cluster node as B.01.01-B.03.01 describe it.

    ``member`` is an ``SaBoolT``; ``bootTimestamp`` is in nanoseconds;
    ``initialViewNumber`` is the view number at which the node joined the
    membership.
    """

    nodeId: int
    nodeAddress: SaClmNodeAddressT
    nodeName: SaNameT
    member: int
    bootTimestamp: int
    initialViewNumber: int

    _fields_ = (
        ("nodeId", SaClmNodeIdT),
        ("nodeAddress", SaClmNodeAddressT),
        ("nodeName", SaNameT),
        ("member", SaBoolT),
        ("bootTimestamp", SaTimeT),
        ("initialViewNumber", SaUint64T),
    )


class SaClmClusterNotificationT(Structure):
    """One node of a track notification and how it changed (an ``SaClmClusterChangesT``)."""

    clusterNode: SaClmClusterNodeT
    clusterChange: int

    _fields_ = (
        ("clusterNode", SaClmClusterNodeT),
        ("clusterChange", SaClmClusterChangesT),
    )


class SaClmClusterNotificationBufferT(Structure):
    """``numberOfItems`` notifications at ``notification``, for view ``viewNumber``."""

    viewNumber: int
    numberOfItems: int
    notification: _Pointer[SaClmClusterNotificationT]

    _fields_ = (
        ("viewNumber", SaUint64T),
        ("numberOfItems", SaUint32T),
        ("notification", POINTER(SaClmClusterNotificationT)),
    )


class SaClmClusterNodeT_4(Structure):
    """One cluster node as B.04.01 describes it: ``SaClmClusterNodeT`` plus ``executionEnvironment``.

    ``executionEnvironment`` is the DN of the PLM execution environment hosting
    the node, empty (length 0) when there is none.
    """

    nodeId: int
    nodeAddress: SaClmNodeAddressT
    nodeName: SaNameT
    executionEnvironment: SaNameT
    member: int
    bootTimestamp: int
    initialViewNumber: int

    _fields_ = (
        ("nodeId", SaClmNodeIdT),
        ("nodeAddress", SaClmNodeAddressT),
        ("nodeName", SaNameT),
        ("executionEnvironment", SaNameT),
        ("member", SaBoolT),
        ("bootTimestamp", SaTimeT),
        ("initialViewNumber", SaUint64T),
    )


class SaClmClusterNotificationT_4(Structure):
    """One node of a B.04 track notification and how it changed."""

    clusterNode: SaClmClusterNodeT_4
    clusterChange: int

    _fields_ = (
        ("clusterNode", SaClmClusterNodeT_4),
        ("clusterChange", SaClmClusterChangesT),
    )


class SaClmClusterNotificationBufferT_4(Structure):
    """``numberOfItems`` B.04 notifications at ``notification``, for view ``viewNumber``."""

    viewNumber: int
    numberOfItems: int
    notification: _Pointer[SaClmClusterNotificationT_4]

    _fields_ = (
        ("viewNumber", SaUint64T),
        ("numberOfItems", SaUint32T),
        ("notification", POINTER(SaClmClusterNotificationT_4)),
    )


# --- Callback types -------------------------------------------------------------
# Each is a ctypes.CFUNCTYPE type.  A field of a callbacks structure that was
# never set holds a NULL function pointer: it is falsy, and calling it crashes
# the process (ctypes calls address 0), so test it before calling.

# B.01.01 - B.03.01
SaClmClusterTrackCallbackT = CFUNCTYPE(
    None,
    POINTER(SaClmClusterNotificationBufferT),  # notificationBuffer
    SaUint32T,  # numberOfMembers
    SaAisErrorT,  # error
)

SaClmClusterNodeGetCallbackT = CFUNCTYPE(
    None,
    SaInvocationT,  # invocation
    POINTER(SaClmClusterNodeT),  # clusterNode
    SaAisErrorT,  # error
)


class SaClmCallbacksT(Structure):
    """The callbacks a B.01.01 (or B.02.01) client registers with ``saClmInitialize``."""

    saClmClusterNodeGetCallback: CFuncPtr
    saClmClusterTrackCallback: CFuncPtr

    _fields_ = (
        ("saClmClusterNodeGetCallback", SaClmClusterNodeGetCallbackT),
        ("saClmClusterTrackCallback", SaClmClusterTrackCallbackT),
    )


# B.03.01 only (deprecated by B.04).
SaClmClusterNodeEvictionCallbackT = CFUNCTYPE(
    None,
    SaClmHandleT,  # clmHandle
    SaInvocationT,  # invocation
    SaClmAdminOperationIdT,  # operationId
)


class SaClmCallbacksT_3(Structure):
    """The callbacks a B.03.01 client registers with ``saClmInitialize_3``."""

    saClmClusterNodeGetCallback: CFuncPtr
    saClmClusterTrackCallback: CFuncPtr
    saClmClusterNodeEvictionCallback: CFuncPtr

    _fields_ = (
        ("saClmClusterNodeGetCallback", SaClmClusterNodeGetCallbackT),
        ("saClmClusterTrackCallback", SaClmClusterTrackCallbackT),
        ("saClmClusterNodeEvictionCallback", SaClmClusterNodeEvictionCallbackT),
    )


# B.04.01
SaClmClusterNodeGetCallbackT_4 = CFUNCTYPE(
    None,
    SaInvocationT,  # invocation
    POINTER(SaClmClusterNodeT_4),  # clusterNode
    SaAisErrorT,  # error
)

SaClmClusterTrackCallbackT_4 = CFUNCTYPE(
    None,
    POINTER(SaClmClusterNotificationBufferT_4),  # notificationBuffer
    SaUint32T,  # numberOfMembers
    SaInvocationT,  # invocation: non-zero when saClmResponse_4 must answer
    POINTER(SaNameT),  # rootCauseEntity
    POINTER(saNtf.SaNtfCorrelationIdsT),  # correlationIds
    SaClmChangeStepT,  # step
    SaTimeT,  # timeSupervision
    SaAisErrorT,  # error
)


class SaClmCallbacksT_4(Structure):
    """The callbacks a B.04.01 client registers with ``saClmInitialize_4``."""

    saClmClusterNodeGetCallback: CFuncPtr
    saClmClusterTrackCallback: CFuncPtr

    _fields_ = (
        ("saClmClusterNodeGetCallback", SaClmClusterNodeGetCallbackT_4),
        ("saClmClusterTrackCallback", SaClmClusterTrackCallbackT_4),
    )


# --- API functions: see pyclm.saf._api (wave 2) ---
#
# The functions of SAI-AIS-CLM B.01.01 (with B.02.01's NotificationFree) and B.04.01,
# with pyosaf's names and argument order.  Pass what a pyosaf program passes (pyosaf
# wraps pointers in BYREF itself): an out-parameter is the object to fill (SaClmHandleT(),
# SaVersionT(...), a buffer structure) or None for a C NULL; ctypes.pointer(obj) and
# ctypes.byref(obj) are accepted too.  Values (handles, flags, ids, invocations, times)
# are ints or ctypes scalars.  Each returns an SaAisErrorT int.  Which one when:
# pyclm.saf._api, and docs/saf.md.

from typing import TYPE_CHECKING, TypeAlias, TypeVar  # noqa: E402

from pyclm.saf import _api  # noqa: E402  (the functions below need the types above)

if TYPE_CHECKING:
    from ctypes import Array, _CArgObject

    _T = TypeVar("_T")
    #: A C pointer argument: the object, ctypes.pointer(obj), ctypes.byref(obj), or None (NULL).
    _Ref: TypeAlias = _T | _Pointer[_T] | _CArgObject | None


def saClmInitialize(
    clmHandle: _Ref[SaClmHandleT], clmCallbacks: _Ref[SaClmCallbacksT], version: _Ref[SaVersionT]
) -> int:
    """Open a B.01.01 / B.02.01 handle on the bound node (``pyclm.saf.bind``); the granted version is written back."""
    return _api.initialize(_api.B01_API, clmHandle, clmCallbacks, version)


def saClmInitialize_3(
    clmHandle: _Ref[SaClmHandleT], clmCallbacks: _Ref[SaClmCallbacksT_3], version: _Ref[SaVersionT]
) -> int:
    """B.03.01 is not supported: SA_AIS_ERR_VERSION, with B.04.01 written back (use saClmInitialize_4)."""
    return _api.initialize_b03(clmHandle, clmCallbacks, version)


def saClmInitialize_4(
    clmHandle: _Ref[SaClmHandleT], clmCallbacks: _Ref[SaClmCallbacksT_4], version: _Ref[SaVersionT]
) -> int:
    """Open a B.04.01 handle on the bound node (``pyclm.saf.bind``); the granted version is written back."""
    return _api.initialize(_api.B04_API, clmHandle, clmCallbacks, version)


def saClmSelectionObjectGet(clmHandle: SaClmHandleT | int, selectionObject: _Ref[SaSelectionObjectT]) -> int:
    """Write the handle's file descriptor, readable exactly while callbacks are pending."""
    return _api.selection_object_get(clmHandle, selectionObject)


def saClmDispatch(clmHandle: SaClmHandleT | int, dispatchFlags: SaDispatchFlagsT | int) -> int:
    """Run pending callbacks on this thread: SA_DISPATCH_ONE, SA_DISPATCH_ALL or SA_DISPATCH_BLOCKING."""
    return _api.dispatch(clmHandle, dispatchFlags)


def saClmFinalize(clmHandle: SaClmHandleT | int) -> int:
    """Close the handle: tracking stops, pending callbacks are dropped, the selection object closes."""
    return _api.finalize(clmHandle)


def saClmClusterTrack(
    clmHandle: SaClmHandleT | int,
    trackFlags: SaUint8T | int,
    notificationBuffer: _Ref[SaClmClusterNotificationBufferT],
) -> int:
    """B.01: get the membership now (SA_TRACK_CURRENT) and/or track its changes (SA_TRACK_CHANGES[_ONLY])."""
    return _api.cluster_track(_api.B01_API, clmHandle, trackFlags, notificationBuffer)


def saClmClusterTrack_4(
    clmHandle: SaClmHandleT | int,
    trackFlags: SaUint8T | int,
    notificationBuffer: _Ref[SaClmClusterNotificationBufferT_4],
) -> int:
    """B.04: as saClmClusterTrack, plus SA_TRACK_LOCAL, SA_TRACK_START_STEP and SA_TRACK_VALIDATE_STEP."""
    return _api.cluster_track(_api.B04_API, clmHandle, trackFlags, notificationBuffer)


def saClmClusterTrackStop(clmHandle: SaClmHandleT | int) -> int:
    """Stop tracking changes; pending track callbacks are dropped (NodeGetAsync answers stay)."""
    return _api.cluster_track_stop(clmHandle)


def saClmClusterNotificationFree(
    clmHandle: SaClmHandleT | int, notification: _Ref[SaClmClusterNotificationT] | Array[SaClmClusterNotificationT]
) -> int:
    """B.02: release the array saClmClusterTrack allocated (``buffer.notification``)."""
    return _api.notification_free(_api.B01_API, clmHandle, notification)


def saClmClusterNotificationFree_4(
    clmHandle: SaClmHandleT | int, notification: _Ref[SaClmClusterNotificationT_4] | Array[SaClmClusterNotificationT_4]
) -> int:
    """B.04: release the array saClmClusterTrack_4 allocated (``buffer.notification``)."""
    return _api.notification_free(_api.B04_API, clmHandle, notification)


def saClmClusterNodeGet(
    clmHandle: SaClmHandleT | int,
    nodeId: SaClmNodeIdT | int,
    timeout: SaTimeT | int,
    clusterNode: _Ref[SaClmClusterNodeT],
) -> int:
    """B.01: fill ``clusterNode`` with the node ``nodeId`` (SA_CLM_LOCAL_NODE_ID: this node)."""
    return _api.cluster_node_get(_api.B01_API, clmHandle, nodeId, timeout, clusterNode)


def saClmClusterNodeGet_4(
    clmHandle: SaClmHandleT | int,
    nodeId: SaClmNodeIdT | int,
    timeout: SaTimeT | int,
    clusterNode: _Ref[SaClmClusterNodeT_4],
) -> int:
    """B.04: fill ``clusterNode`` with the node ``nodeId`` (SA_CLM_LOCAL_NODE_ID: this node)."""
    return _api.cluster_node_get(_api.B04_API, clmHandle, nodeId, timeout, clusterNode)


def saClmClusterNodeGetAsync(
    clmHandle: SaClmHandleT | int, invocation: SaInvocationT | int, nodeId: SaClmNodeIdT | int
) -> int:
    """Ask for the node ``nodeId``; the answer comes to the NodeGet callback with ``invocation``."""
    return _api.cluster_node_get_async(clmHandle, invocation, nodeId)


def saClmResponse_4(
    clmHandle: SaClmHandleT | int, invocation: SaInvocationT | int, response: SaClmResponseT | int
) -> int:
    """Answer a VALIDATE or START track callback (its ``invocation``): OK, REJECTED (VALIDATE only) or ERROR."""
    return _api.response(clmHandle, invocation, response)
