"""TIPC, for asyncio and trio programs: cluster-wide multicast and TIPC's link supervision.

TIPC (Transparent Inter-Process Communication, ``AF_TIPC``, a Linux kernel module) names
sockets by *service*: a socket binds ``{type, instance}`` and others address the name,
wherever in the TIPC cluster the socket lives.  See ``docs/tipc.md``.

* Each node binds one SOCK_RDM socket (reliable datagrams) to ``{service_type, node_id}``
  in cluster scope: instance = the pyclm node id.
* :data:`~pyclm.core.GROUP` is one multicast to the whole name sequence
  ``{service_type, 0..2**32-1}``: TIPC delivers a copy to every socket bound in it, on
  every host, *including the sender's own socket*.  Those echoes are dropped (``own``).
* A node's address is its socket's port id, :class:`TipcPortId` ``(node, port)``: what
  ``recvfrom`` reports as the origin of a datagram, so what :meth:`TipcTransport.receive`
  returns as the source and a reply is sent to.
* Topology: a SOCK_SEQPACKET socket subscribes at TIPC's topology server to every binding
  of the service type.  A binding appears (PUBLISHED) when a node's transport opens and
  goes away (WITHDRAWN) when it closes, when its process dies, or when TIPC's link
  supervision loses the node's host.  :meth:`TipcTransport.reachability` turns that into
  ``(node_id, reachable)``; :class:`pyclm.Node` feeds it to the core's ``set_reachable``,
  so a lost node is suspected at once instead of after the suspect timeout.

Receive path: one reader task per socket waits with :func:`anyio.wait_readable` and reads
with non-blocking calls; datagrams go into one bounded memory stream, and what does not
fit is dropped (``buffer_full``).  Sends are non-blocking ``sendto`` calls: link
congestion (EAGAIN), an unreachable node (EHOSTUNREACH) and any other error drop the
datagram (``send_error``).  Enter the transport before use (it starts the readers)::

    transport = await TipcTransport.open(node_id)
    async with transport, Node(config, quorum, transport) as node:
        ...
"""

from __future__ import annotations

import logging
import math
import socket
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc
import anyio.lowlevel
from anyio.streams.memory import MemoryObjectReceiveStream, MemoryObjectSendStream

from ..core import GROUP
from ..errors import ConfigError
from ..ids import MAX_NODE_ID
from ._readers import SocketReaders
from ._tipc_sockets import (
    SOL_TIPC,
    TIPC_ADDR_MCAST,
    TIPC_ADDR_NAME,
    TIPC_ADDR_NAMESEQ,
    TIPC_CLUSTER_SCOPE,
    TIPC_CRITICAL_IMPORTANCE,
    TIPC_DEST_DROPPABLE,
    TIPC_IMPORTANCE,
    TIPC_MAX_USER_MSG_SIZE,
    TIPC_NODE_STATE,
    TIPC_RESERVED_TYPES,
    TIPC_TOP_SRV,
    U32,
    TipcPortId,
    open_socket,
    tipc_available,
)
from ._tipc_topology import ServicePublications, TopologyEvent, TopologyKind, parse_event, subscription

__all__ = [
    "DEFAULT_BUFFER_SIZE",
    "DEFAULT_MAX_DATAGRAM",
    "DEFAULT_SERVICE_TYPE",
    "DEFAULT_WAIT_FOR_ADDRESS",
    "TipcPortId",
    "TipcTransport",
    "tipc_available",
]

log = logging.getLogger(__name__)

#: pyclm's TIPC service type: "PCLM" in ASCII (0x50434C4D = 1346587725).  Types 0..63 are TIPC's own.
DEFAULT_SERVICE_TYPE = 0x50434C4D
#: The membership core's own default; TIPC itself carries up to 66000 bytes.
DEFAULT_MAX_DATAGRAM = 65000
#: Datagrams the receive buffer holds before arrivals are dropped.
DEFAULT_BUFFER_SIZE = 1024
#: Seconds :meth:`TipcTransport.open` waits for this host's TIPC node address.  TIPC sets it
#: about a second after the first bearer is enabled.
DEFAULT_WAIT_FOR_ADDRESS = 5.0
_ADDRESS_POLL = 0.05  # seconds between two looks at the node address
_READ_BURST = 64  # messages read per wake-up before the reader lets other tasks run
_TRAFFIC = ("datagrams_in", "bytes_in", "datagrams_out", "bytes_out")
_DROPPED = ("own", "oversized", "returned", "buffer_full", "send_error", "receive_error")
_TOPOLOGY = (
    "topology_published",
    "topology_withdrawn",
    "topology_node_up",
    "topology_node_down",
    "topology_ignored",
    "topology_error",
)


class TipcTransport:
    """A node's TIPC endpoint; build it with :meth:`open`.

    Implements :class:`~pyclm.transports.base.Transport`, plus :meth:`reachability`.
    Enter ``async with transport`` (it starts the reader tasks) before handing it to a
    :class:`pyclm.Node`; leaving the block closes it.
    """

    def __init__(
        self,
        *,
        node_id: int,
        service_type: int,
        rdm: socket.socket,
        topology: socket.socket,
        max_datagram: int,
        buffer_size: int,
    ) -> None:
        self.node_id = node_id
        self.service_type = service_type
        self.max_datagram = max_datagram
        own = TipcPortId.from_sockaddr(rdm.getsockname())
        assert own is not None
        self._address = own
        self._rdm = rdm
        self._topology = topology
        self._group = (TIPC_ADDR_MCAST, service_type, 0, U32, TIPC_CLUSTER_SCOPE)
        self._counters = dict.fromkeys(_TRAFFIC + _DROPPED + _TOPOLOGY, 0)
        self._readers = SocketReaders("TipcTransport", (rdm, topology), buffer_size)
        self._publications = ServicePublications(node_id)
        self._watchers: list[MemoryObjectSendStream[tuple[int, bool]]] = []
        self._topology_ended = False

    # ------------------------------------------------------------------ opening

    @classmethod
    async def open(
        cls,
        node_id: int,
        *,
        service_type: int = DEFAULT_SERVICE_TYPE,
        max_datagram: int | None = None,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
        wait_for_address: float | None = DEFAULT_WAIT_FOR_ADDRESS,
    ) -> Self:
        """Bind ``{service_type, node_id}`` and subscribe to the service's topology.

        Waits up to ``wait_for_address`` seconds for this host's TIPC node address (it
        appears about a second after the first bearer is enabled) and raises
        :class:`~pyclm.errors.ConfigError` if there is none by then: no bearer is enabled.
        ``wait_for_address=None`` does not wait and accepts a host without a node address:
        *single-node mode*, where TIPC reaches only the sockets of this host.

        Both sockets are created before the first ``await``, so a caller that switched the
        thread into a network namespace around this call gets them in that namespace.
        Raises ConfigError for a bad setting and, with one message that names the kernel
        module, where the kernel or Python has no AF_TIPC.
        """
        _check_settings(node_id, service_type, max_datagram, buffer_size, wait_for_address)
        rdm = open_socket(socket.SOCK_RDM)
        try:
            topology = open_socket(socket.SOCK_SEQPACKET)
        except BaseException:
            rdm.close()
            raise
        try:
            await _wait_for_node_address(rdm, wait_for_address)
            try:
                rdm.bind((TIPC_ADDR_NAMESEQ, service_type, node_id, node_id, TIPC_CLUSTER_SCOPE))
            except OSError as exc:
                raise ConfigError(
                    "service_type", f"cannot bind TIPC service {{{service_type}, {node_id}}}: {exc.strerror or exc}"
                ) from None
            # Membership traffic is the last thing to drop when a link or a receiver is
            # congested (TIPC's queue limits grow with importance); and a datagram to a
            # socket that is gone is dropped rather than sent back to us.
            rdm.setsockopt(SOL_TIPC, TIPC_IMPORTANCE, TIPC_CRITICAL_IMPORTANCE)
            rdm.setsockopt(SOL_TIPC, TIPC_DEST_DROPPABLE, 1)
            rdm.setblocking(False)
            try:
                topology.connect((TIPC_ADDR_NAME, TIPC_TOP_SRV, TIPC_TOP_SRV, 0))
                topology.sendall(subscription(service_type))
                topology.sendall(subscription(TIPC_NODE_STATE))
            except OSError as exc:
                raise ConfigError("transport", f"cannot subscribe at the TIPC topology server: {exc}") from None
            topology.setblocking(False)
            return cls(
                node_id=node_id,
                service_type=service_type,
                rdm=rdm,
                topology=topology,
                max_datagram=DEFAULT_MAX_DATAGRAM if max_datagram is None else max_datagram,
                buffer_size=buffer_size,
            )
        except BaseException:
            rdm.close()
            topology.close()
            raise

    # ------------------------------------------------------------------ lifetime

    async def __aenter__(self) -> Self:
        await self._readers.enter([self._drain_datagrams, self._drain_topology], self._close)
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

        Returns once the sockets are closed: the node's binding is withdrawn, and the
        other nodes' topology subscriptions report it.
        """
        self._close()
        await self._readers.wait_closed()

    def _close(self) -> None:
        if self._readers.close():
            self._end_reachability()

    # ------------------------------------------------------------------ state

    @property
    def address(self) -> TipcPortId:
        """This node's address: its socket's port id (what the other nodes see as the source)."""
        return self._address

    @property
    def reachable_nodes(self) -> list[int]:
        """The other nodes that have a socket bound under the service type now, ascending."""
        return self._publications.reachable

    def counters(self) -> dict[str, int]:
        """A copy of the counters (see docs/tipc.md): ``datagrams_in``/``bytes_in`` (everything
        read), ``datagrams_out``/``bytes_out`` (datagrams handed to the kernel), what was
        dropped: ``own`` (own multicast echoes), ``oversized``, ``returned`` (undeliverable
        datagrams given back by TIPC), ``buffer_full``, ``send_error``, ``receive_error``; and
        the topology events: ``topology_published``/``topology_withdrawn`` (bindings of the
        service type), ``topology_node_up``/``topology_node_down`` (other TIPC hosts),
        ``topology_ignored`` (bindings that name no single node) and ``topology_error``."""
        return dict(self._counters)

    def reachability(self) -> MemoryObjectReceiveStream[tuple[int, bool]]:
        """The nodes that become reachable or unreachable over TIPC: ``(node_id, reachable)``.

        Starts with ``(node_id, True)`` for every node reachable now, then one item per
        change, in order and never dropped (a change happens only when a binding of the
        service appears or goes away).  This node's own id never appears.  Iterate it with
        ``async for``; the iteration ends when the transport closes (or the topology server
        went away); close the stream to stop early.  Each call returns a new stream.
        """
        send, receive = anyio.create_memory_object_stream[tuple[int, bool]](math.inf)
        if self._readers.closed or self._topology_ended:
            send.close()
            return receive
        for node_id in self._publications.reachable:
            send.send_nowait((node_id, True))
        self._watchers.append(send)
        return receive

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
        target = self._group if dest is GROUP else _destination(dest)
        try:
            self._rdm.sendto(data, target)
        except OSError as exc:  # EAGAIN (link congestion), EHOSTUNREACH (no such socket or node), ...
            self._counters["send_error"] += 1
            log.debug("tipc node %d: dropped a datagram to %s: %s", self.node_id, dest, exc)
        else:
            self._counters["datagrams_out"] += 1
            self._counters["bytes_out"] += size
        await anyio.lowlevel.checkpoint()

    async def receive(self) -> tuple[bytes, TipcPortId]:
        """The next datagram and its source port id; :class:`anyio.ClosedResourceError` once closed."""
        return await self._readers.receive()

    # ------------------------------------------------------------------ receiving

    def _drain_datagrams(self) -> bool:
        """Read what the RDM socket holds (a burst at most); False once the socket failed."""
        counters = self._counters
        limit = self.max_datagram
        for _ in range(_READ_BURST):
            try:
                data, raw = self._rdm.recvfrom(limit + 1)  # one byte more: tells an oversized datagram
            except BlockingIOError:
                return True  # also after a wake-up for an empty message: TIPC skips those
            except OSError as exc:
                counters["receive_error"] += 1
                log.warning("tipc node %d: the socket failed (%s): closing the transport", self.node_id, exc)
                self._close()  # the network went away: behave as if closed
                return False
            counters["datagrams_in"] += 1
            counters["bytes_in"] += len(data)
            source = TipcPortId.from_sockaddr(raw)
            if source is None:
                counters["receive_error"] += 1
                continue
            if not data:  # a datagram of ours that TIPC could not deliver (its data is not returned)
                counters["returned"] += 1
                continue
            if len(data) > limit:
                counters["oversized"] += 1
                log.debug("tipc node %d: dropped a datagram over %d bytes from %s", self.node_id, limit, source)
                continue
            if source.port == self._address.port and self._is_own(source):
                counters["own"] += 1
                continue
            refused = self._readers.offer((data, source))
            if refused == "buffer_full":
                counters["buffer_full"] += 1
            elif refused == "closed":
                return False
        return True

    def _is_own(self, source: TipcPortId) -> bool:
        if source == self._address:
            return True
        # The host may have got its node address since we looked (a bearer was enabled
        # after a single-node start): TIPC then renames our socket too.
        try:
            own = TipcPortId.from_sockaddr(self._rdm.getsockname())
        except OSError:
            return False
        if own is not None and own != self._address:
            log.info("tipc node %d: this host's TIPC address is now %s", self.node_id, own)
            self._address = own
        return source == self._address

    def _drain_topology(self) -> bool:
        """Read the topology server's events (a burst at most); False once the connection ended."""
        counters = self._counters
        for _ in range(_READ_BURST):
            try:
                data = self._topology.recv(256)
            except BlockingIOError:
                return True
            except OSError as exc:
                self._topology_failed(f"failed ({exc})")
                return False
            if not data:
                self._topology_failed("was closed by the server")
                return False
            event = parse_event(data)
            if event is None:
                counters["topology_error"] += 1
                log.debug("tipc node %d: not a topology event: %r", self.node_id, data[:64])
            elif event.service_type == TIPC_NODE_STATE:
                self._node_state(event)
            elif event.service_type == self.service_type:
                self._service_event(event)
            else:
                counters["topology_ignored"] += 1
        return True

    def _service_event(self, event: TopologyEvent) -> None:
        counters = self._counters
        if event.kind is TopologyKind.PUBLISHED:
            counters["topology_published"] += 1
        elif event.kind is TopologyKind.WITHDRAWN:
            counters["topology_withdrawn"] += 1
        if event.lower != event.upper or event.kind is TopologyKind.TIMEOUT:
            counters["topology_ignored"] += 1
            return
        if event.lower == self.node_id:
            if event.kind is TopologyKind.PUBLISHED and event.port.port != self._address.port:
                log.warning(
                    "tipc node %d: another socket (%s) is bound to this node's id: two nodes with id %d?",
                    self.node_id,
                    event.port,
                    self.node_id,
                )
            return
        change = self._publications.apply(event)
        log.debug("tipc node %d: topology %s %d by %s", self.node_id, event.kind.name, event.lower, event.port)
        if change is None:
            return
        log.info(
            "tipc node %d: node %d is %s over TIPC",
            self.node_id,
            change[0],
            "reachable" if change[1] else "unreachable",
        )
        for watcher in list(self._watchers):
            try:
                watcher.send_nowait(change)
            except (anyio.BrokenResourceError, anyio.ClosedResourceError):
                self._watchers.remove(watcher)  # its reader closed the stream

    def _node_state(self, event: TopologyEvent) -> None:
        if event.lower == self._address.node or event.kind is TopologyKind.TIMEOUT:
            return  # this host itself, reported once its address is set
        up = event.kind is TopologyKind.PUBLISHED
        self._counters["topology_node_up" if up else "topology_node_down"] += 1
        log.info("tipc node %d: TIPC host %08x is %s", self.node_id, event.lower, "up" if up else "down")

    def _topology_failed(self, how: str) -> None:
        self._counters["topology_error"] += 1
        if not self._readers.closed:
            log.warning(
                "tipc node %d: the topology server connection %s: no more reachability input "
                "(the failure detector still works)",
                self.node_id,
                how,
            )
        self._topology_ended = True
        self._end_reachability()

    def _end_reachability(self) -> None:
        watchers, self._watchers = self._watchers, []
        for watcher in watchers:
            watcher.close()

    def __repr__(self) -> str:
        state = " closed" if self._readers.closed else ""
        return f"<TipcTransport node {self.node_id} service {self.service_type:#x} at {self._address}{state}>"


# ---------------------------------------------------------------------- helpers


def _destination(dest: Any) -> tuple[int, int, int, int, int]:
    if (
        isinstance(dest, TipcPortId)
        and type(dest.node) is int
        and type(dest.port) is int
        and 0 <= dest.node <= U32
        and 0 <= dest.port <= U32
    ):
        return dest.sockaddr
    raise ValueError(f"a TIPC destination is GROUP or a TipcPortId from receive(), got {dest!r}")


def _check_settings(
    node_id: int, service_type: int, max_datagram: int | None, buffer_size: int, wait_for_address: float | None
) -> None:
    def whole(value: object) -> bool:
        return isinstance(value, int) and not isinstance(value, bool)

    if not whole(node_id) or not 0 <= node_id <= MAX_NODE_ID:
        raise ConfigError("node_id", f"must be an integer in 0..{MAX_NODE_ID}, got {node_id!r}")
    if not whole(service_type) or not TIPC_RESERVED_TYPES <= service_type <= U32:
        raise ConfigError(
            "service_type",
            f"must be an integer in {TIPC_RESERVED_TYPES}..{U32} (0..63 are TIPC's own), got {service_type!r}",
        )
    if max_datagram is not None and (not whole(max_datagram) or not 512 <= max_datagram <= TIPC_MAX_USER_MSG_SIZE):
        raise ConfigError("max_datagram", f"must be an integer in 512..{TIPC_MAX_USER_MSG_SIZE}, got {max_datagram!r}")
    if not whole(buffer_size) or buffer_size < 1:
        raise ConfigError("buffer_size", f"must be a positive number of datagrams, got {buffer_size!r}")
    if wait_for_address is not None and (
        not isinstance(wait_for_address, int | float)
        or isinstance(wait_for_address, bool)
        or not math.isfinite(wait_for_address)
        or wait_for_address < 0
    ):
        raise ConfigError("wait_for_address", f"must be a number of seconds >= 0, or None, got {wait_for_address!r}")


async def _wait_for_node_address(sock: socket.socket, wait: float | None) -> None:
    """Return once this host has a TIPC node address (at once with ``wait`` None)."""
    if wait is None:
        return
    deadline = anyio.current_time() + wait
    while True:
        own = TipcPortId.from_sockaddr(sock.getsockname())
        if own is not None and own.node != 0:
            return
        if anyio.current_time() >= deadline:
            raise ConfigError(
                "transport",
                f"this host has no TIPC node address after {wait:g} s: no TIPC bearer is enabled. "
                "Enable one: `tipc bearer enable media eth device IFACE` (or a UDP bearer: "
                "`tipc bearer enable media udp name NAME localip ADDR`); for nodes that all run on "
                "this host, open with wait_for_address=None (single-node mode)",
            )
        await anyio.sleep(_ADDRESS_POLL)
