"""SecureTransport over a MemoryNetwork: good datagrams through, bad ones counted, a cluster forms."""

from __future__ import annotations

import anyio
import pytest

from pyclm import GROUP, wire
from pyclm.security import Envelope, Key, Keyring
from pyclm.transports import MemoryNetwork, MemoryTransport, Transport
from pyclm.transports.secure import SecureTransport
from test_runtime import QUICK, cluster

pytestmark = pytest.mark.anyio

RING = Keyring(active=1, keys=(Key(id=1, secret=bytes(range(32))),))
ROTATED = RING.install(2, bytes(range(50, 90)))
CLUSTER = "test"


def secure(net: MemoryNetwork, node_id: int, keyring: Keyring | None = RING, **kwargs: bool) -> SecureTransport:
    envelope = Envelope(node_id=node_id, cluster_name=CLUSTER, keyring=keyring, **kwargs)
    return SecureTransport(net.endpoint(node_id), envelope)


def message(sender: int, body: bytes = b"") -> bytes:
    return wire.encode_leave(sender, 5) + body


async def nothing_arrives(transport: SecureTransport, within: float = 0.03) -> bool:
    with anyio.move_on_after(within):
        await transport.receive()
        return False
    return True


@pytest.mark.parametrize("encrypt", [False, True], ids=["hmac", "gcm"])
async def test_round_trip_unicast_and_group(encrypt: bool) -> None:
    async with MemoryNetwork(QUICK) as net:
        a, b, c = (secure(net, n, encrypt=encrypt) for n in (1, 2, 3))
        await a.send(message(1, b"hello"), 2)
        await a.send(message(1, b"all"), GROUP)
        with anyio.fail_after(1):
            got = {await b.receive(), await b.receive()}  # jitter may reorder them: the window allows that
            assert got == {(message(1, b"hello"), 1), (message(1, b"all"), 1)}
            assert await c.receive() == (message(1, b"all"), 1)
        assert a.counters()["tx_sealed"] == 2
        assert b.counters()["rx_ok"] == 2


async def test_max_datagram_leaves_room_for_the_envelope() -> None:
    async with MemoryNetwork(QUICK, max_datagram=1000) as net:
        a, b = secure(net, 1), secure(net, 2, encrypt=True)
        insecure = secure(net, 3, keyring=None)
        assert (a.max_datagram, b.max_datagram, insecure.max_datagram) == (1000 - 61, 1000 - 45, 1000 - 29)
        transport: Transport = a  # mypy: SecureTransport satisfies the protocol
        assert isinstance(transport, Transport)
        await a.send(message(1, bytes(a.max_datagram - 16)), 2)  # exactly the limit fits once sealed
        with pytest.raises(ValueError, match=r"max_datagram=939 .*61 bytes of envelope"):
            await a.send(message(1, bytes(a.max_datagram - 15)), 2)
    with pytest.raises(ValueError, match="leaves no room"):
        async with MemoryNetwork(QUICK, max_datagram=61) as net:
            secure(net, 1)


async def test_bad_datagrams_are_counted_and_skipped_never_raised() -> None:
    async with MemoryNetwork(QUICK) as net:
        a, b = secure(net, 1), secure(net, 2)
        attacker = net.endpoint(66)  # no key: sends raw bytes
        stranger = secure(net, 7, keyring=None)
        other_cluster = SecureTransport(net.endpoint(8), Envelope(node_id=8, cluster_name="other", keyring=RING))
        for junk in (b"", b"\xc1\x53", bytes(100), wire.encode_leave(66, 1)):
            await attacker.send(junk, 2)
        await stranger.send(message(7), 2)
        await other_cluster.send(message(8), 2)
        good = message(1, b"good")
        await a.send(good, 2)
        with anyio.fail_after(1):
            assert await b.receive() == (good, 1)
        counters = b.counters()
        assert counters["rx_ok"] == 1
        assert counters["rx_dropped_truncated"] == 3  # a bare LEAVE is 16 bytes: shorter than an envelope
        assert counters["rx_dropped_bad_magic"] == 1
        assert counters["rx_dropped_unauthenticated"] == 1
        assert counters["rx_dropped_foreign_cluster"] == 1


async def test_a_flood_of_bad_datagrams_does_not_hide_a_good_one() -> None:
    async with MemoryNetwork(QUICK, buffer_size=2048) as net:
        a, b = secure(net, 1), secure(net, 2)
        attacker = net.endpoint(66)
        for i in range(1000):
            await attacker.send(i.to_bytes(4, "big") * 20, 2)
        await a.send(message(1, b"through"), 2)
        with anyio.fail_after(2):
            assert await b.receive() == (message(1, b"through"), 1)
        assert b.counters()["rx_dropped_bad_magic"] == 1000


async def test_a_replay_on_the_network_is_dropped() -> None:
    async with MemoryNetwork(QUICK) as net:
        a, b = secure(net, 1), secure(net, 2)
        tap = net.endpoint(66)
        sealed = a.envelope.seal(message(1, b"once"))
        await tap.send(sealed, 2)
        await tap.send(sealed, 2)  # the same bytes again
        with anyio.fail_after(1):
            assert (await b.receive())[0] == message(1, b"once")
        assert await nothing_arrives(b)
        assert b.counters()["rx_dropped_replayed"] == 1
        assert a.counters()["tx_sealed"] == 1


async def test_rotation_at_runtime_loses_nothing() -> None:
    async with MemoryNetwork(QUICK) as net:
        a, b = secure(net, 1, keyring=ROTATED), secure(net, 2, keyring=ROTATED)
        a.envelope.set_keyring(ROTATED.use(2))  # b still sends with key 1
        await a.send(message(1), 2)
        await b.send(message(2), 1)
        with anyio.fail_after(1):
            assert (await b.receive())[0] == message(1)
            assert (await a.receive())[0] == message(2)
        for transport in (a, b):
            transport.envelope.set_keyring(ROTATED.use(2).remove(1))
        await a.send(message(1), 2)
        with anyio.fail_after(1):
            assert (await b.receive())[0] == message(1)
        assert sum(value for name, value in b.counters().items() if name.startswith("rx_dropped")) == 0


async def test_aclose_closes_the_inner_transport() -> None:
    async with MemoryNetwork(QUICK) as net:
        a = secure(net, 1)
        assert isinstance(a.inner, MemoryTransport)
        await a.aclose()
        assert a.inner.closed
        await a.aclose()  # idempotent
        with pytest.raises(anyio.ClosedResourceError):
            await a.receive()
        with pytest.raises(anyio.ClosedResourceError):
            await a.send(message(1), 2)


async def test_a_cluster_forms_over_secure_transports_with_an_attacker_on_the_network() -> None:
    async with cluster([1, 2, 3], start=False) as group:
        attacker = group.net.endpoint(66)
        transports = {}
        for node_id in (1, 2, 3):
            transports[node_id] = secure(group.net, node_id, encrypt=node_id == 3)  # mixed modes on purpose
            await group.start(node_id, transport=transports[node_id])
        await attacker.send(b"\xc1\x53" + bytes(80), GROUP)
        await group.wait_until(lambda: group.settled([1, 2, 3], primary=True), "1, 2, 3 form a primary")
        for node_id, transport in transports.items():
            counters = transport.counters()
            assert counters["rx_ok"] > 0 and counters["tx_sealed"] > 0
            assert counters["rx_dropped_bad_version"] == 1, node_id  # the attacker's datagram
            assert counters["rx_dropped_replayed"] == 0
