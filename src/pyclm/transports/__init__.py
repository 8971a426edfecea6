"""Transports: how a :class:`pyclm.Node` moves datagrams (see :mod:`pyclm.transports.base`)."""

from .base import Transport
from .memory import MemoryNetwork, MemoryTransport
from .secure import SecureTransport
from .tipc import TipcTransport
from .udp import UdpTransport

__all__ = ["MemoryNetwork", "MemoryTransport", "SecureTransport", "TipcTransport", "Transport", "UdpTransport"]
