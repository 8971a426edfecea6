"""TIPC's topology service, sans I/O: subscriptions, events, and who is reachable.

Every TIPC host runs a topology server (service type 1).  A client connects a
SOCK_SEQPACKET socket to it and sends subscriptions (``struct tipc_subscr``, 28 bytes in
host byte order); the server answers with one 48-byte ``struct tipc_event`` per change:
PUBLISHED when a socket somewhere in the cluster binds a name in the subscribed range,
WITHDRAWN when that binding goes away.  A binding goes away when its socket closes (the
process left or died: the kernel closes its sockets) and, on the other hosts, when the
TIPC link to its host is lost (link supervision: a bearer disabled, a cable pulled, or
silence for the link tolerance, 1.5 s by default).  Subscribing with ``TIPC_SUB_PORTS``
reports every binding on its own; existing ones are reported at once, as PUBLISHED.

:class:`ServicePublications` turns the events of pyclm's service type into reachability:
instance ``n`` is pyclm node ``n``.  One node may have several bindings at once (a
restarted node whose old socket has not gone yet, or two transports with one node id),
so it counts them and a node is unreachable only when its last binding is withdrawn.
Subscribing to type 0 (``TIPC_NODE_STATE``) reports TIPC hosts coming and going instead:
``lower`` is the host's node address.
"""

from __future__ import annotations

import enum
import struct

import attrs

from ._tipc_sockets import U32, TipcPortId

#: ``struct tipc_subscr``: type, lower, upper, timeout (ms), filter, an 8-byte user handle.
SUBSCRIPTION = struct.Struct("=IIIII8s")
#: ``struct tipc_event``: event, found_lower, found_upper, port (ref, node), then the subscription.
EVENT = struct.Struct("=IIIII" + SUBSCRIPTION.format[1:])
#: Python's ``socket.TIPC_WAIT_FOREVER`` is -1 (a C int); the kernel reads a u32.
TIPC_WAIT_FOREVER = U32
TIPC_SUB_PORTS = 1


class TopologyKind(enum.Enum):
    PUBLISHED = 1
    WITHDRAWN = 2
    TIMEOUT = 3  # the subscription ran out (never, with TIPC_WAIT_FOREVER)


@attrs.frozen(kw_only=True)
class TopologyEvent:
    """One event from the topology server."""

    kind: TopologyKind
    #: The service type of the subscription this event answers.
    service_type: int
    #: The published range, clipped to the subscribed one.
    lower: int
    upper: int
    #: The socket that published (or withdrew) it.
    port: TipcPortId


def subscription(service_type: int, *, handle: bytes = b"pyclm") -> bytes:
    """A subscription to every binding of ``service_type`` (instances 0..2**32-1), for ever."""
    return SUBSCRIPTION.pack(service_type, 0, U32, TIPC_WAIT_FOREVER, TIPC_SUB_PORTS, handle)


def parse_event(data: bytes) -> TopologyEvent | None:
    """The event in one message from the topology server; None if it is not one."""
    if len(data) != EVENT.size:
        return None
    kind, lower, upper, ref, node, service_type, *_ = EVENT.unpack(data)
    try:
        event_kind = TopologyKind(kind)
    except ValueError:
        return None
    return TopologyEvent(
        kind=event_kind, service_type=service_type, lower=lower, upper=upper, port=TipcPortId(node=node, port=ref)
    )


class ServicePublications:
    """Which pyclm nodes have a socket bound under the service type: TIPC's reachability input.

    Feed every event of the service's subscription to :meth:`apply`; it returns the change
    of one node's reachability that the event causes, if any.  A node id is reachable while
    at least one socket has it bound.  This node's own id is not tracked, and neither are
    bindings of a range of instances (no pyclm transport makes one).
    """

    def __init__(self, own_node_id: int) -> None:
        self.own_node_id = own_node_id
        self._bindings: dict[int, set[TipcPortId]] = {}

    @property
    def reachable(self) -> list[int]:
        """The node ids with at least one binding, ascending."""
        return sorted(self._bindings)

    def bindings(self, node_id: int) -> int:
        """How many sockets have ``node_id`` bound."""
        return len(self._bindings.get(node_id, ()))

    def apply(self, event: TopologyEvent) -> tuple[int, bool] | None:
        """``(node_id, reachable)`` if ``event`` changes whether a node is reachable, else None."""
        node_id = event.lower
        if event.lower != event.upper or node_id == self.own_node_id or event.kind is TopologyKind.TIMEOUT:
            return None
        if event.kind is TopologyKind.PUBLISHED:
            published = self._bindings.setdefault(node_id, set())
            published.add(event.port)
            return (node_id, True) if len(published) == 1 else None
        ports = self._bindings.get(node_id)
        if ports is None:
            return None
        if event.port in ports:
            ports.remove(event.port)
        else:
            # A socket of this host bound while the host had no node address yet was
            # reported with node 0; TIPC gives it the real address once it is set.
            ports.discard(TipcPortId(node=0, port=event.port.port))
        if ports:
            return None
        del self._bindings[node_id]
        return (node_id, False)
