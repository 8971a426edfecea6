"""Transports: how a :class:`pyclm.Node` moves datagrams (see :mod:`pyclm.transports.base`)."""

from .base import Transport
from .memory import MemoryNetwork, MemoryTransport

__all__ = ["MemoryNetwork", "MemoryTransport", "Transport"]
