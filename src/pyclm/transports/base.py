"""The transport interface: how a :class:`pyclm.Node` moves datagrams.

A transport carries whole datagrams between node addresses (an opaque, hashable value
that the transport hands out as a source and takes back as a destination) and
understands :data:`pyclm.core.GROUP`, "every other node of the group" (multicast).
Implementations: :mod:`pyclm.transports.memory` (in-process, seeded faults),
:mod:`pyclm.transports.udp`, :mod:`pyclm.transports.tipc`, and
:mod:`pyclm.transports.secure` (the security envelope around any of them).

Contract
--------
* ``send`` is best effort, like a datagram socket: a network fault (loss, an unreachable
  or unknown peer, a full receive buffer at the far end) never raises: lost is lost.
  It raises only for misuse: ``ValueError`` for a datagram longer than
  :attr:`Transport.max_datagram` or a destination that is not an address,
  :class:`anyio.ClosedResourceError` once the transport was closed.
* ``receive`` waits for the next datagram addressed to this node (or to the group) and
  returns ``(datagram, source address)``.  The source address is what a reply is sent to.
* After ``aclose`` (called from any task, even while another task waits in ``receive``)
  every pending and later ``receive`` raises :class:`anyio.ClosedResourceError`, and so
  does ``send``.  ``aclose`` is idempotent.  A transport whose underlying network went
  away behaves as if closed.
* Sending never blocks for long: a transport has a bounded buffer and drops what does
  not fit (and counts it), as a socket does.

Optional: a transport that learns on its own which nodes it can reach (TIPC's topology
service) has ``reachability()``, an async iterator of ``(node_id, reachable)``.
:class:`pyclm.Node` feeds each into the core's ``set_reachable``: "unreachable" suspects
the node at once, "reachable" hands the decision back to the failure detector.
"""

from __future__ import annotations

from typing import Any, Protocol, runtime_checkable


@runtime_checkable
class Transport(Protocol):
    """What :class:`pyclm.Node` needs from a transport.  See the module docstring for the contract."""

    #: The longest datagram, in bytes, that :meth:`send` accepts.
    max_datagram: int

    async def send(self, data: bytes, dest: Any) -> None:
        """Send ``data`` to the address ``dest`` or to :data:`pyclm.core.GROUP`; never raises for network faults."""
        ...

    async def receive(self) -> tuple[bytes, Any]:
        """The next datagram and its source address; :class:`anyio.ClosedResourceError` once closed."""
        ...

    async def aclose(self) -> None:
        """Stop sending and receiving (idempotent); pending receives raise :class:`anyio.ClosedResourceError`."""
        ...
