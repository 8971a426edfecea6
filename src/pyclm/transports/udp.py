"""UDP, for asyncio and trio programs: IP multicast, or a static list of peers.

Two modes (see ``docs/udp.md``):

* **multicast** (:meth:`UdpTransport.open_multicast`): :data:`~pyclm.core.GROUP` is one
  datagram to ``(group, port)``, sent by ``interface`` with ``ttl`` hops.
* **unicast** (:meth:`UdpTransport.open_unicast`): GROUP is one copy to every peer in a
  static list except this node's own entry (the one equal to its listen address).

A node's address is the ``(host, port)`` of its **unicast socket**: it is the source of
every datagram the node sends and the address its replies go to, and it is unique even
when every node of a host uses 127.0.0.1.  That is why multicast mode needs two sockets:
the *group socket*, bound to ``(group, port)`` with SO_REUSEADDR/SO_REUSEPORT (every node
of a host shares the group port) and a member of the group, only receives; the *unicast
socket*, bound to ``(interface address, unicast_port)``, sends everything (multicast and
unicast) and receives the replies.  The group socket also gets the node's own multicasts
back (always on ``lo``, and on any interface with multicast loop, which other nodes of
the host need): a datagram whose source is the node's own address is dropped, counted
``own``, and never reaches the core.

Receive path: one reader task per socket waits with :func:`anyio.wait_readable`, reads
with non-blocking ``recvfrom`` and feeds one bounded memory stream; what does not fit is
dropped (``buffer_full``).  Sends are non-blocking ``sendto`` calls: a full socket buffer
or a network error (unreachable, refused) drops the datagram (``send_error``).  The
reader tasks run in the transport's own task group, so enter it before use::

    transport = await UdpTransport.open_multicast("239.255.0.1", 5405, interface="127.0.0.1")
    async with transport, Node(config, quorum, transport) as node:
        ...
"""

from __future__ import annotations

import errno
import functools
import logging
import socket
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Literal, Self

import anyio
import anyio.abc
import anyio.lowlevel

from ..core import GROUP
from . import _udp_sockets as sockets
from ._readers import SocketReaders
from ._udp_addresses import Endpoint, check_limits, endpoint_text, open_unicast_socket, parse_endpoint, parse_peers

__all__ = ["Endpoint", "UdpTransport", "parse_endpoint", "parse_peers"]

log = logging.getLogger(__name__)

DEFAULT_TTL = 1
#: Datagrams the receive buffer holds before arrivals are dropped.
DEFAULT_BUFFER_SIZE = 1024
#: One Ethernet MTU (1500) less the IPv4 (20) or IPv6 (40) header and the UDP header (8).
DEFAULT_MAX_DATAGRAM = {socket.AF_INET: 1472, socket.AF_INET6: 1452}
_READ_BURST = 64  # datagrams read per wake-up before the reader lets other tasks run
# Errors a receive can report for an earlier send (ICMP); anything else means the socket is gone.
_TRANSIENT = frozenset({errno.ECONNREFUSED, errno.EHOSTUNREACH, errno.ENETUNREACH, errno.EHOSTDOWN})
_TRAFFIC = ("datagrams_in", "bytes_in", "datagrams_out", "bytes_out")
_DROPPED = ("own", "oversized", "buffer_full", "send_error", "receive_error")


class UdpTransport:
    """A node's UDP endpoint; build it with :meth:`open_multicast` or :meth:`open_unicast`.

    Implements :class:`~pyclm.transports.base.Transport`.  Enter ``async with transport``
    (it starts the reader tasks) before handing it to a :class:`pyclm.Node`; leaving the
    block closes it.
    """

    def __init__(
        self,
        *,
        mode: Literal["multicast", "unicast"],
        unicast: socket.socket,
        group_socket: socket.socket | None,
        group_targets: tuple[Any, ...],
        max_datagram: int | None,
        buffer_size: int,
    ) -> None:
        family = socket.AddressFamily(unicast.family)
        if max_datagram is None:
            max_datagram = DEFAULT_MAX_DATAGRAM[family]
        self.mode = mode
        self.family = family
        self.max_datagram = max_datagram
        #: This node's address: its unicast socket's ``(host, port)``.
        self.address: Endpoint = sockets.own_address(unicast)
        self._unicast = unicast
        self._group_targets = group_targets
        self._counters = dict.fromkeys(_TRAFFIC + _DROPPED, 0)
        own_sockets = (unicast,) if group_socket is None else (unicast, group_socket)
        self._readers = SocketReaders("UdpTransport", own_sockets, buffer_size)

    # ------------------------------------------------------------------ opening

    @classmethod
    async def open_multicast(
        cls,
        group: str,
        port: int,
        *,
        interface: str,
        ttl: int = DEFAULT_TTL,
        unicast_port: int = 0,
        max_datagram: int | None = None,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
    ) -> Self:
        """Bind a unicast socket on ``interface`` and join ``group`` there; GROUP goes to ``(group, port)``.

        ``interface`` is an address of this host (``"127.0.0.2"``, ``"fd00::2"``) or an
        interface name (``"eth0"``).  Raises :class:`~pyclm.errors.ConfigError` for a bad
        setting, an unknown interface or a port that cannot be bound.
        """
        check_limits(max_datagram, buffer_size)
        unicast, group_socket, target = sockets.open_multicast_sockets(group, port, interface, ttl, unicast_port)
        return cls(
            mode="multicast",
            unicast=unicast,
            group_socket=group_socket,
            group_targets=(target,),
            max_datagram=max_datagram,
            buffer_size=buffer_size,
        )

    @classmethod
    async def open_unicast(
        cls,
        listen: str | Endpoint,
        peers: str | Iterable[str | Endpoint],
        *,
        max_datagram: int | None = None,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
    ) -> Self:
        """Bind ``listen`` (``"host:port"`` or a pair); GROUP goes to every peer but this node's own entry.

        Host names are resolved here.  A peer equal to ``listen`` is this node and gets no
        GROUP copy.  Raises :class:`~pyclm.errors.ConfigError` for a bad setting, a name
        that does not resolve, or an address that cannot be bound.
        """
        check_limits(max_datagram, buffer_size)
        unicast, targets = await open_unicast_socket(listen, peers)
        return cls(
            mode="unicast",
            unicast=unicast,
            group_socket=None,
            group_targets=targets,
            max_datagram=max_datagram,
            buffer_size=buffer_size,
        )

    # ------------------------------------------------------------------ lifetime

    async def __aenter__(self) -> Self:
        drains = [functools.partial(self._drain, sock) for sock in self._readers.sockets]
        await self._readers.enter(drains, self._close)
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        return await self._readers.exit(exc_type, exc, tb, self._close)

    @property
    def closed(self) -> bool:
        return self._readers.closed

    async def aclose(self) -> None:
        """Stop sending and receiving (idempotent); pending and later receives raise ClosedResourceError.

        Returns once the sockets are closed (their ports are free again).
        """
        self._close()
        await self._readers.wait_closed()

    def _close(self) -> None:
        self._readers.close()

    def counters(self) -> dict[str, int]:
        """A copy of the counters: ``datagrams_in``/``bytes_in`` (everything read from the
        sockets), ``datagrams_out``/``bytes_out`` (copies handed to the kernel), and what was
        dropped: ``own`` (own echoes), ``oversized``, ``buffer_full``, ``send_error``,
        ``receive_error``."""
        return dict(self._counters)

    # ------------------------------------------------------------------ the Transport interface

    async def send(self, data: bytes, dest: Any) -> None:
        """Send ``data`` to ``dest`` (an address from :meth:`receive`) or to GROUP; never raises for network faults."""
        if self._readers.closed:
            raise anyio.ClosedResourceError
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"a datagram is bytes, got {type(data).__name__}")
        size = memoryview(data).nbytes
        if size > self.max_datagram:
            raise ValueError(f"datagram of {size} bytes is longer than max_datagram={self.max_datagram}")
        targets = self._group_targets if dest is GROUP else (self._destination(dest),)
        counters = self._counters
        for target in targets:
            try:
                self._unicast.sendto(data, target)
            except OSError as exc:  # EAGAIN (buffer full), unreachable, refused (an earlier ICMP error)
                counters["send_error"] += 1
                log.debug("udp %s: dropped a datagram to %s: %s", endpoint_text(self.address), target, exc)
            else:
                counters["datagrams_out"] += 1
                counters["bytes_out"] += size
        await anyio.lowlevel.checkpoint()

    async def receive(self) -> tuple[bytes, Endpoint]:
        """The next datagram and its source ``(host, port)``; :class:`anyio.ClosedResourceError` once closed."""
        return await self._readers.receive()

    def _destination(self, dest: Any) -> Endpoint:
        if (
            isinstance(dest, tuple)
            and len(dest) == 2
            and isinstance(dest[0], str)
            and type(dest[1]) is int
            and 0 < dest[1] < 65536
        ):
            try:
                socket.inet_pton(self.family, dest[0].partition("%")[0])
            except OSError:
                pass
            else:
                return dest
        version = 4 if self.family == socket.AF_INET else 6
        raise ValueError(f"a UDP destination is GROUP or an IPv{version} (host, port) from receive(), got {dest!r}")

    # ------------------------------------------------------------------ receiving

    def _drain(self, sock: socket.socket) -> bool:
        """Read what ``sock`` holds (a burst at most); False once the transport closed."""
        counters = self._counters
        limit = self.max_datagram
        for _ in range(_READ_BURST):
            try:
                data, raw = sock.recvfrom(limit + 1)  # one byte more: tells an oversized datagram
            except BlockingIOError:
                return True
            except OSError as exc:
                counters["receive_error"] += 1
                if exc.errno in _TRANSIENT:
                    log.debug("udp %s: receive error: %s", endpoint_text(self.address), exc)
                    continue
                log.warning("udp %s: the socket failed (%s): closing the transport", endpoint_text(self.address), exc)
                self._close()  # the network went away: behave as if closed
                return False
            counters["datagrams_in"] += 1
            counters["bytes_in"] += len(data)
            if len(data) > limit:
                counters["oversized"] += 1
                log.debug("udp %s: dropped a datagram over %d bytes from %s", endpoint_text(self.address), limit, raw)
                continue
            source = sockets.normalize(raw)
            if source == self.address:
                counters["own"] += 1
                continue
            refused = self._readers.offer((data, source))
            if refused == "buffer_full":
                counters["buffer_full"] += 1
            elif refused == "closed":
                return False
        return True

    def __repr__(self) -> str:
        state = " closed" if self._readers.closed else ""
        return f"<UdpTransport {self.mode} {endpoint_text(self.address)}{state}>"
