"""A transport that seals every datagram it sends and opens every one it receives.

:class:`SecureTransport` wraps any :class:`~pyclm.transports.base.Transport` with a
:class:`~pyclm.security.Envelope`::

    keyring = Keyring.load("/etc/pyclm/keys.toml")
    envelope = Envelope(node_id=1, cluster_name="prod", keyring=keyring)
    async with Node(config, quorum, SecureTransport(net.endpoint(1), envelope)) as node:
        ...
        envelope.set_keyring(keyring.install(2, secret))  # rotation, at runtime

Datagrams that do not open (forged, replayed, from another cluster, ...) are counted in
:meth:`SecureTransport.counters` and logged at debug level; ``receive`` waits for the
next good one.  It never raises for them.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator, Callable
from typing import Any

import anyio.lowlevel

from ..security import Envelope
from ..wire import Dropped
from .base import Transport

log = logging.getLogger(__name__)

#: Consecutive drops after which ``receive`` lets other tasks run (a flood of bad datagrams
#: that the inner transport hands over without waiting must not starve the event loop).
_DROPS_PER_CHECKPOINT = 64


class SecureTransport:
    """Implements :class:`~pyclm.transports.base.Transport` on top of ``inner``.

    ``max_datagram`` is the inner transport's less the envelope's overhead, so a node
    built on this transport never hands out a message that would not fit once sealed.
    The envelope's keyring may be changed at any time (:meth:`Envelope.set_keyring`).
    """

    def __init__(self, inner: Transport, envelope: Envelope) -> None:
        if not isinstance(envelope, Envelope):
            raise TypeError(f"SecureTransport takes an Envelope, got {type(envelope).__name__}")
        max_datagram = inner.max_datagram - envelope.overhead
        if max_datagram < 1:
            raise ValueError(
                f"the inner transport's max_datagram ({inner.max_datagram}) leaves no room "
                f"after the envelope's {envelope.overhead} bytes"
            )
        self.inner = inner
        self.envelope = envelope
        self.max_datagram = max_datagram

    async def send(self, data: bytes, dest: Any) -> None:
        """Seal ``data`` and send it to ``dest``; ``ValueError`` if longer than :attr:`max_datagram`."""
        if len(data) > self.max_datagram:
            raise ValueError(
                f"datagram of {len(data)} bytes is longer than max_datagram={self.max_datagram} "
                f"(the inner transport's less {self.envelope.overhead} bytes of envelope)"
            )
        await self.inner.send(self.envelope.seal(data), dest)

    async def receive(self) -> tuple[bytes, Any]:
        """The next datagram that opens, and its source; :class:`anyio.ClosedResourceError` once closed."""
        dropped = 0
        while True:
            datagram, source = await self.inner.receive()
            opened = self.envelope.open(datagram)
            if not isinstance(opened, Dropped):
                return opened, source
            log.debug("dropped a datagram from %r: %s", source, opened.reason)
            dropped += 1
            if dropped % _DROPS_PER_CHECKPOINT == 0:
                await anyio.lowlevel.checkpoint()

    @property
    def reachability(self) -> Callable[[], AsyncIterator[tuple[int, bool]]] | None:
        """The inner transport's reachability events (``pyclm.Node`` feeds them to the core), if it has any."""
        source = getattr(self.inner, "reachability", None)
        return source if callable(source) else None

    @property
    def address(self) -> Any:
        """The inner transport's own address (None if it has none)."""
        return getattr(self.inner, "address", None)

    async def aclose(self) -> None:
        """Close the inner transport (idempotent)."""
        await self.inner.aclose()

    def counters(self) -> dict[str, int]:
        """The envelope's counters (a copy): ``tx_sealed``, ``rx_ok``, ``rx_own``, ``rx_dropped_<reason>``."""
        return self.envelope.counters()

    def __repr__(self) -> str:
        return f"<SecureTransport over {self.inner!r}>"
