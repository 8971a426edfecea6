"""The TIPC transport where the kernel has no TIPC, and the parts of it that need no kernel.

Our hosts' kernel has no AF_TIPC: opening a transport must raise one clear ConfigError that
names the module to load, never a traceback.  The settings are checked before any socket
is made, and the topology events are decoded and counted without I/O, so both are tested
here too, on every run.  The transport on a real TIPC kernel: ``tests/tipc/``.
"""

from __future__ import annotations

import errno
import socket
import struct
from typing import Any

import anyio
import pytest

from pyclm import ConfigError
from pyclm.transports import _tipc_sockets
from pyclm.transports._tipc_topology import (
    EVENT,
    ServicePublications,
    TopologyEvent,
    TopologyKind,
    parse_event,
    subscription,
)
from pyclm.transports.tipc import DEFAULT_SERVICE_TYPE, TipcPortId, TipcTransport, tipc_available

KERNEL_HAS_TIPC = tipc_available()


def refuse(monkeypatch: pytest.MonkeyPatch, code: int) -> None:
    """Make ``socket.socket(AF_TIPC, ...)`` fail with ``code``, as a kernel without TIPC does (or worse)."""

    class Refusing(socket.socket):
        def __init__(self, family: int = -1, type: int = -1, proto: int = -1, fileno: int | None = None) -> None:
            if family == _tipc_sockets.AF_TIPC:
                raise OSError(code, "refused")
            super().__init__(family, type, proto, fileno)

    monkeypatch.setattr(socket, "socket", Refusing)


# ---------------------------------------------------------------------- the one clear error


@pytest.mark.anyio
@pytest.mark.skipif(KERNEL_HAS_TIPC, reason="this kernel has TIPC")
async def test_a_kernel_without_tipc_gets_one_clear_error() -> None:
    with pytest.raises(ConfigError) as caught:
        await TipcTransport.open(1)
    error = caught.value
    assert error.setting == "transport"
    assert "TIPC is not available" in error.problem and "modprobe tipc" in error.problem
    assert error.__cause__ is None and error.__suppress_context__  # no chained traceback


# open() makes its sockets before its first await, so these drive it without an event loop
# (socket.socket is patched for the whole process while they run).


def open_now() -> None:
    coroutine = TipcTransport.open(1)
    try:
        coroutine.send(None)
    finally:
        coroutine.close()


def test_the_error_names_the_module(monkeypatch: pytest.MonkeyPatch) -> None:
    refuse(monkeypatch, errno.EAFNOSUPPORT)
    with pytest.raises(ConfigError, match=r"no AF_TIPC sockets\. Load the tipc kernel module: `modprobe tipc`"):
        open_now()
    assert not tipc_available()


def test_other_socket_errors_and_a_python_without_tipc(monkeypatch: pytest.MonkeyPatch) -> None:
    refuse(monkeypatch, errno.EPERM)
    with pytest.raises(ConfigError, match="cannot open a TIPC socket: refused"):
        open_now()
    monkeypatch.delattr(socket, "AF_TIPC")
    with pytest.raises(ConfigError, match="this Python was built without AF_TIPC support"):
        open_now()


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("options", "setting"),
    [
        ({"node_id": -1}, "node_id"),
        ({"node_id": 2**32}, "node_id"),
        ({"node_id": True}, "node_id"),
        ({"service_type": 63}, "service_type"),  # 0..63 are TIPC's own
        ({"service_type": 2**32}, "service_type"),
        ({"max_datagram": 511}, "max_datagram"),
        ({"max_datagram": 66001}, "max_datagram"),  # TIPC_MAX_USER_MSG_SIZE is 66000
        ({"buffer_size": 0}, "buffer_size"),
        ({"wait_for_address": -1}, "wait_for_address"),
        ({"wait_for_address": float("nan")}, "wait_for_address"),
    ],
)
async def test_bad_settings_are_refused_before_any_socket(options: dict[str, Any], setting: str) -> None:
    options = dict(options)  # the parameters are shared by both backends
    node_id = options.pop("node_id", 1)
    with pytest.raises(ConfigError) as caught:
        await TipcTransport.open(node_id, **options)
    assert caught.value.setting == setting


def test_the_default_service_type_spells_pclm() -> None:
    assert DEFAULT_SERVICE_TYPE.to_bytes(4, "big") == b"PCLM"


# ---------------------------------------------------------------------- addresses


def test_port_ids() -> None:
    port = TipcPortId(node=0x1001001, port=3735928559)
    assert str(port) == "01001001:3735928559"
    assert port.sockaddr == (3, 0x1001001, 3735928559, 0, 0)
    assert TipcPortId.from_sockaddr(port.sockaddr) == port
    assert TipcPortId.from_sockaddr((3, 0x1001001, 3735928559, 0, 2)) == port  # scope is not part of it
    assert TipcPortId.from_sockaddr((1, 5, 0, 0, 2)) is None  # a name sequence, not a socket
    assert TipcPortId.from_sockaddr(("127.0.0.1", 9)) is None
    assert len({port, TipcPortId(node=0x1001001, port=3735928559)}) == 1


# ---------------------------------------------------------------------- topology events


def event(kind: int, lower: int, port: int, *, node: int = 0x1001002, upper: int | None = None) -> bytes:
    """A topology server message, as the kernel sends it (host byte order)."""
    sub = subscription(DEFAULT_SERVICE_TYPE)
    return struct.pack("=IIIII", kind, lower, lower if upper is None else upper, port, node) + sub


def test_a_subscription_is_every_binding_for_ever() -> None:
    packed = subscription(77)
    assert len(packed) == 28
    assert struct.unpack("=IIIII8s", packed) == (77, 0, 0xFFFFFFFF, 0xFFFFFFFF, 1, b"pyclm\0\0\0")


def test_events_are_decoded_and_nonsense_is_not_an_event() -> None:
    decoded = parse_event(event(1, 5, 1234))
    assert decoded == TopologyEvent(
        kind=TopologyKind.PUBLISHED,
        service_type=DEFAULT_SERVICE_TYPE,
        lower=5,
        upper=5,
        port=TipcPortId(node=0x1001002, port=1234),
    )
    assert EVENT.size == 48
    assert parse_event(event(1, 5, 1234)[:47]) is None
    assert parse_event(b"") is None
    assert parse_event(event(9, 5, 1234)) is None  # no such kind


def publications(*messages: bytes, own: int = 1) -> tuple[ServicePublications, list[tuple[int, bool] | None]]:
    seen = ServicePublications(own)
    changes = []
    for message in messages:
        decoded = parse_event(message)
        assert decoded is not None
        changes.append(seen.apply(decoded))
    return seen, changes


def test_a_node_is_reachable_while_one_of_its_bindings_is() -> None:
    seen, changes = publications(
        event(1, 5, 100),  # node 5 comes
        event(1, 5, 200),  # a second socket with id 5 (a restart; the old one lingers)
        event(2, 5, 100),  # the old one goes: still reachable
        event(2, 5, 300),  # a withdrawal of a binding never seen: nothing
        event(2, 5, 200),  # the last one goes
        event(2, 5, 200),  # twice: nothing
        event(1, 6, 100),
    )
    assert changes == [(5, True), None, None, None, (5, False), None, (6, True)]
    assert seen.reachable == [6] and seen.bindings(6) == 1 and seen.bindings(5) == 0


def test_own_id_ranges_and_timeouts_are_not_nodes() -> None:
    seen, changes = publications(
        event(1, 1, 100),  # our own id
        event(1, 10, 100, upper=20),  # a range: names no node
        event(3, 7, 100),  # a subscription timeout
    )
    assert changes == [None, None, None]
    assert seen.reachable == []


def test_a_binding_made_before_the_host_had_an_address_is_withdrawn_under_the_new_one() -> None:
    _, changes = publications(event(1, 5, 100, node=0), event(2, 5, 100, node=0x1001002))
    assert changes == [(5, True), (5, False)]


# ---------------------------------------------------------------------- the topology reader, on a fake server


class FakeRdm:
    """Stands in for the RDM socket: readable never, addressed as a TIPC socket of host 0."""

    def __init__(self) -> None:
        self.pipe, self.other = socket.socketpair(socket.AF_UNIX, socket.SOCK_DGRAM)

    def fileno(self) -> int:
        return self.pipe.fileno()

    def getsockname(self) -> tuple[int, int, int, int, int]:
        return (3, 0, 4242, 0, 0)

    def close(self) -> None:
        self.pipe.close()
        self.other.close()


@pytest.mark.anyio
async def test_reachability_from_a_fake_topology_server() -> None:
    server, client = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    client.setblocking(False)
    rdm = FakeRdm()
    transport = TipcTransport(
        node_id=1,
        service_type=DEFAULT_SERVICE_TYPE,
        rdm=rdm,  # type: ignore[arg-type]
        topology=client,
        max_datagram=65000,
        buffer_size=8,
    )
    with server:
        server.send(event(1, 2, 100))
        async with transport:
            with anyio.fail_after(5):
                while transport.reachable_nodes != [2]:
                    await anyio.sleep(0.001)
            changes = transport.reachability()
            assert await changes.receive() == (2, True)  # the state so far
            server.send(event(1, 3, 100))
            server.send(b"not an event")
            server.send(event(2, 2, 100))
            node_state = struct.pack("=IIIII", 1, 0x1001003, 0x1001003, 0, 0x1001003) + subscription(0)
            server.send(node_state)
            with anyio.fail_after(5):
                assert [await changes.receive() for _ in range(2)] == [(3, True), (2, False)]
            server.close()  # the topology server goes away: the input ends, the transport stays
            with anyio.fail_after(5):
                assert [change async for change in changes] == []
            counters = transport.counters()
            assert counters["topology_published"] == 2 and counters["topology_withdrawn"] == 1
            assert counters["topology_node_up"] == 1
            assert counters["topology_error"] == 2  # the bad message and the end
            assert not transport.closed
            assert [change async for change in transport.reachability()] == []
        assert transport.closed
