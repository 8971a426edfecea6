"""pyclm's CLM values as the ctypes structures of ``saClm.h``, for a handle of a given version.

The one version rule here: B.04 added ``SA_CLM_NODE_SHUTDOWN``; a B.01/B.02 handle sees a
node that left gracefully as ``SA_CLM_NODE_LEFT`` (:func:`change_code`).  Everything
else has the same meaning in both versions; B.04 structures only add
``executionEnvironment``, which pyclm leaves empty (there is no PLM).

Names longer than ``SA_MAX_NAME_LENGTH`` bytes and addresses longer than
``SA_CLM_MAX_ADDRESS_LENGTH`` are cut to fit (at a character boundary): a callback
cannot fail because a configured name is long.
"""

from __future__ import annotations

import ctypes
import ipaddress
from typing import Any

from ..clm import Change, ClusterNode, Notification, NotificationBuffer
from .saAis import SaNameT, eSaBoolT, saAis
from .saClm import (
    SaClmClusterNodeT,
    SaClmClusterNodeT_4,
    SaClmClusterNotificationBufferT,
    SaClmClusterNotificationBufferT_4,
    SaClmClusterNotificationT,
    SaClmClusterNotificationT_4,
    SaClmNodeAddressT,
    eSaClmClusterChangesT,
    eSaClmNodeAddressFamilyT,
    saClm,
)

__all__ = [
    "B04",
    "NodeStruct",
    "NotificationStruct",
    "buffer_struct",
    "change_code",
    "copy_into",
    "fit",
    "node_struct",
    "notification_array",
    "point_at",
    "set_node",
    "set_notification",
]

B04 = 4
"""The major version from which B.04 rules apply (SHUTDOWN, UNAVAILABLE, the ``_4`` structures)."""

NodeStruct = SaClmClusterNodeT | SaClmClusterNodeT_4
NotificationStruct = SaClmClusterNotificationT | SaClmClusterNotificationT_4
BufferStruct = SaClmClusterNotificationBufferT | SaClmClusterNotificationBufferT_4


def change_code(change: Change, major: int) -> int:
    """The ``SaClmClusterChangesT`` a handle of version ``major`` gets for ``change``."""
    if change is Change.SHUTDOWN and major < B04:
        return eSaClmClusterChangesT.SA_CLM_NODE_LEFT
    return int(change)


def fit(text: str, limit: int) -> bytes:
    """``text`` in UTF-8, cut to at most ``limit`` bytes without splitting a character."""
    raw = text.encode("utf-8")
    if len(raw) <= limit:
        return raw
    return raw[:limit].decode("utf-8", errors="ignore").encode("utf-8")


def _address(text: str | None) -> SaClmNodeAddressT:
    if text is None:
        return SaClmNodeAddressT(eSaClmNodeAddressFamilyT.SA_CLM_AF_INET, b"")
    return SaClmNodeAddressT(_family(text), fit(text, saClm.SA_CLM_MAX_ADDRESS_LENGTH))


def _family(text: str) -> int:
    """INET6 for an IPv6 address (with or without ``[...]:port``), INET otherwise."""
    host = text
    if host.startswith("[") and "]" in host:
        host = host[1 : host.index("]")]
    try:
        version = ipaddress.ip_address(host).version
    except ValueError:
        version = 4  # "host:port", a name or a memory-transport id: report it as INET text
    return eSaClmNodeAddressFamilyT.SA_CLM_AF_INET6 if version == 6 else eSaClmNodeAddressFamilyT.SA_CLM_AF_INET


def set_node(target: NodeStruct, node: ClusterNode) -> None:
    """Fill ``target`` (an ``SaClmClusterNodeT`` or ``_4``) with ``node``."""
    target.nodeId = node.node_id
    target.nodeAddress = _address(node.address)
    target.nodeName = SaNameT(fit(node.name, saAis.SA_MAX_NAME_LENGTH))
    if isinstance(target, SaClmClusterNodeT_4):
        target.executionEnvironment = SaNameT()
    target.member = eSaBoolT.SA_TRUE if node.member else eSaBoolT.SA_FALSE
    target.bootTimestamp = node.boot_timestamp
    target.initialViewNumber = node.initial_view_number


def node_struct(node: ClusterNode | None, major: int) -> NodeStruct:
    """A new ``SaClmClusterNodeT`` (``_4`` for B.04) holding ``node``; all zero for None."""
    target: NodeStruct = SaClmClusterNodeT_4() if major >= B04 else SaClmClusterNodeT()
    if node is not None:
        set_node(target, node)
    return target


def set_notification(target: NotificationStruct, entry: Notification, major: int) -> None:
    set_node(target.clusterNode, entry.node)
    target.clusterChange = change_code(entry.change, major)


def notification_array(buffer: NotificationBuffer, major: int) -> ctypes.Array[Any]:
    """A new C array of the notifications of ``buffer``, as a handle of version ``major`` reads them."""
    element: type[NotificationStruct] = SaClmClusterNotificationT_4 if major >= B04 else SaClmClusterNotificationT
    array = (element * len(buffer.notifications))()
    for slot, entry in zip(array, buffer.notifications, strict=True):
        set_notification(slot, entry, major)
    return array


def buffer_struct(buffer: NotificationBuffer, major: int) -> BufferStruct:
    """A new ``SaClmClusterNotificationBufferT`` (``_4`` for B.04) that owns its notification array.

    With no entries the ``notification`` pointer is NULL and ``numberOfItems`` 0.
    """
    target: BufferStruct = SaClmClusterNotificationBufferT_4() if major >= B04 else SaClmClusterNotificationBufferT()
    point_at(target, notification_array(buffer, major), buffer.view_number)
    return target


def point_at(target: BufferStruct, array: ctypes.Array[Any], view_number: int) -> None:
    """Make ``target`` describe ``array`` (which it keeps alive) for ``view_number``."""
    target.viewNumber = view_number
    target.numberOfItems = len(array)
    pointer = _pointer_type(target)
    target.notification = ctypes.cast(array, pointer) if len(array) else pointer()


def copy_into(target: BufferStruct, buffer: NotificationBuffer, major: int) -> None:
    """Write ``buffer`` into the caller's array at ``target.notification`` (large enough: checked by the caller)."""
    for index, entry in enumerate(buffer.notifications):
        set_notification(target.notification[index], entry, major)
    target.numberOfItems = len(buffer.notifications)
    target.viewNumber = buffer.view_number


def _pointer_type(target: BufferStruct) -> type[ctypes._Pointer[Any]]:
    if isinstance(target, SaClmClusterNotificationBufferT_4):
        return ctypes.POINTER(SaClmClusterNotificationT_4)
    return ctypes.POINTER(SaClmClusterNotificationT)
