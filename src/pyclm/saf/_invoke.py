"""Queued callbacks and how ``saClmDispatch`` runs them: through the application's C function pointers.

A handle's queue holds :class:`TrackDelivery`, :class:`NodeGetDelivery` and the
:data:`STALE` marker.  They are plain values; the ctypes structures are built only when
the callback runs (:func:`run_track`, :func:`run_node_get`), new for every call, and are
the library's: valid during the callback (Python keeps them alive as long as the
application holds on to them, but the application must not count on that).

The callbacks are called through the ``CFUNCTYPE`` pointers the application stored in
its ``SaClmCallbacksT`` / ``_4``, exactly as a C library calls them, so a pyosaf
callback gets the same arguments (pointers it reads with ``.contents``).  An exception
inside such a callback never reaches the dispatcher: ctypes prints it (through
``sys.unraisablehook``) and goes on, as with pyosaf.
"""

from __future__ import annotations

import ctypes
from typing import Any, Final

import attrs

from ..clm import ClusterNode, NotificationBuffer
from . import saNtf
from ._convert import B04, buffer_struct, fit, node_struct
from .saAis import SaNameT, eSaAisErrorT, saAis

__all__ = ["STALE", "NodeGetDelivery", "Stale", "TrackDelivery", "run_node_get", "run_track", "time_value"]


@attrs.frozen(kw_only=True)
class TrackDelivery:
    """One track callback: the buffer, and for B.04 the step, invocation and time supervision."""

    buffer: NotificationBuffer
    step: int
    invocation: int = 0
    time_supervision: int = saAis.SA_TIME_UNKNOWN
    root_cause: str = ""


@attrs.frozen(kw_only=True)
class NodeGetDelivery:
    """The answer to ``saClmClusterNodeGetAsync``: the node (None on error) and the error code."""

    invocation: int
    node: ClusterNode | None
    error: int


class Stale:
    """The marker queued when a handle's binding ends: dispatching it releases the handle."""

    def __repr__(self) -> str:
        return "STALE"


STALE: Final = Stale()


def time_value(ns: int) -> int:
    """``ns`` as a signed ``SaTimeT`` holds it (``SA_TIME_UNKNOWN``, 2**63, is -2**63 there)."""
    return ctypes.c_int64(ns).value


def run_track(callback: Any, major: int, delivery: TrackDelivery) -> None:
    """Call ``saClmClusterTrackCallback`` (``_4`` for B.04) with ``delivery``."""
    buffer = buffer_struct(delivery.buffer, major)
    members = delivery.buffer.number_of_members
    ok = eSaAisErrorT.SA_AIS_OK
    if major < B04:
        callback(ctypes.pointer(buffer), members, ok)
        return
    root_cause = SaNameT(fit(delivery.root_cause, saAis.SA_MAX_NAME_LENGTH))
    unused = saNtf.saNtf.SA_NTF_IDENTIFIER_UNUSED
    correlation = saNtf.SaNtfCorrelationIdsT(unused, unused, unused)  # pyclm sends no NTF notifications
    callback(
        ctypes.pointer(buffer),
        members,
        delivery.invocation,
        ctypes.pointer(root_cause),
        ctypes.pointer(correlation),
        delivery.step,
        time_value(delivery.time_supervision),
        ok,
    )


def run_node_get(callback: Any, major: int, delivery: NodeGetDelivery) -> None:
    """Call ``saClmClusterNodeGetCallback`` (``_4`` for B.04).

    On an error the node structure is all zero, never a NULL pointer: callbacks written
    for OpenSAF often read it before looking at the error.
    """
    node = node_struct(delivery.node, major)
    callback(delivery.invocation, ctypes.pointer(node), delivery.error)
