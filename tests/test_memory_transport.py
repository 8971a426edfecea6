"""The in-memory transport: delivery, the shared fault model, buffers, closing, misuse."""

from __future__ import annotations

import anyio
import pytest

from pyclm import GROUP, UsageError
from pyclm.sim.network import NetworkConditions, NetworkModel
from pyclm.transports import MemoryNetwork, MemoryTransport, Transport

pytestmark = pytest.mark.anyio

QUICK = NetworkConditions(latency=0.001, jitter=0.0)


async def nothing_arrives(endpoint: MemoryTransport, within: float = 0.03) -> bool:
    with anyio.move_on_after(within):
        await endpoint.receive()
        return False
    return True


async def test_unicast_arrives_with_the_sender_id_as_source() -> None:
    async with MemoryNetwork(QUICK) as net:
        a, b = net.endpoint(1), net.endpoint(2)
        await a.send(b"hello", 2)
        with anyio.fail_after(1):
            assert await b.receive() == (b"hello", 1)
        await b.send(b"back", 1)
        with anyio.fail_after(1):
            assert await a.receive() == (b"back", 2)


async def test_group_reaches_every_open_endpoint_but_the_sender() -> None:
    async with MemoryNetwork(QUICK) as net:
        endpoints = [net.endpoint(n) for n in (1, 2, 3)]
        await endpoints[0].send(b"all", GROUP)
        with anyio.fail_after(1):
            for endpoint in endpoints[1:]:
                assert await endpoint.receive() == (b"all", 1)
        assert await nothing_arrives(endpoints[0])
        assert net.counters["delivered"] == 2


async def test_a_copy_never_arrives_before_the_latency() -> None:
    latency = 0.02
    async with MemoryNetwork(NetworkConditions(latency=latency, jitter=0.0)) as net:
        a, b = net.endpoint(1), net.endpoint(2)
        sent_at = anyio.current_time()
        await a.send(b"x", 2)
        with anyio.fail_after(1):
            await b.receive()
        assert anyio.current_time() - sent_at >= latency


async def test_uses_the_simulators_fault_model() -> None:
    async with MemoryNetwork(QUICK, seed=3) as net:
        assert isinstance(net.model, NetworkModel)
        assert net.model.conditions == QUICK


async def test_loss_drops_everything_at_probability_one() -> None:
    async with MemoryNetwork(QUICK) as net:
        a, b = net.endpoint(1), net.endpoint(2)
        net.set_loss(1.0)
        for _ in range(5):
            await a.send(b"gone", 2)
        assert await nothing_arrives(b)
        assert net.counters["lost"] == 5
        net.set_loss(0.0)
        await a.send(b"back", 2)
        with anyio.fail_after(1):
            assert await b.receive() == (b"back", 1)


async def test_duplicate_delivers_two_copies() -> None:
    async with MemoryNetwork(NetworkConditions(latency=0.001, duplicate=1.0)) as net:
        a, b = net.endpoint(1), net.endpoint(2)
        await a.send(b"twice", 2)
        with anyio.fail_after(1):
            assert await b.receive() == (b"twice", 1)
            assert await b.receive() == (b"twice", 1)
        assert net.counters["duplicated"] == 1


async def test_reorder_lets_later_datagrams_overtake() -> None:
    async with MemoryNetwork(NetworkConditions(latency=0.001, jitter=0.0, reorder=0.5), seed=11) as net:
        a, b = net.endpoint(1), net.endpoint(2)
        sent = [i.to_bytes(2, "big") for i in range(50)]
        for data in sent:
            await a.send(data, 2)
        with anyio.fail_after(1):
            received = [(await b.receive())[0] for _ in sent]
        assert sorted(received) == sent
        assert received != sent


async def test_partition_one_way_link_and_heal() -> None:
    async with MemoryNetwork(QUICK) as net:
        a, b, c = net.endpoint(1), net.endpoint(2), net.endpoint(3)
        net.partition([[1, 2], [3]])
        await a.send(b"in", GROUP)
        with anyio.fail_after(1):
            assert await b.receive() == (b"in", 1)
        assert await nothing_arrives(c)
        net.heal()
        net.set_link(1, 2, up=False)
        await a.send(b"one-way", 2)
        await b.send(b"other-way", 1)
        with anyio.fail_after(1):
            assert await a.receive() == (b"other-way", 2)
        assert await nothing_arrives(b)
        net.set_link(1, 2, up=True)
        await a.send(b"up", 2)
        with anyio.fail_after(1):
            assert await b.receive() == (b"up", 1)
        assert net.counters["cut"] == 2


async def test_full_receive_buffer_drops_and_counts_without_blocking_the_sender() -> None:
    async with MemoryNetwork(QUICK, buffer_size=4) as net:
        a, b = net.endpoint(1), net.endpoint(2)
        with anyio.fail_after(1):
            for i in range(10):
                await a.send(bytes([i]), 2)
            while net.counters.get("overflow", 0) < 6:
                await anyio.sleep(0.002)
            got = [(await b.receive())[0] for _ in range(4)]
        assert got == [bytes([i]) for i in range(4)]
        assert await nothing_arrives(b)
        assert b.overflows == 6
        assert net.counters["overflow"] == 6


async def test_misuse_raises() -> None:
    with pytest.raises(UsageError, match="async with"):
        MemoryNetwork().endpoint(1)
    async with MemoryNetwork(QUICK, max_datagram=600) as net:
        a = net.endpoint(1)
        with pytest.raises(UsageError, match="already has an open endpoint"):
            net.endpoint(1)
        with pytest.raises(ValueError, match="max_datagram"):
            await a.send(bytes(601), 2)
        await a.send(bytes(600), 2)  # exactly the limit is fine
        with pytest.raises(ValueError, match="node id or GROUP"):
            await a.send(b"x", ("10.0.0.1", 7000))


async def test_unknown_destination_is_lost_not_an_error() -> None:
    async with MemoryNetwork(QUICK) as net:
        a = net.endpoint(1)
        await a.send(b"nobody", 99)
        with anyio.fail_after(1):
            while "undeliverable" not in net.counters:
                await anyio.sleep(0.002)
        assert net.counters["undeliverable"] == 1


async def test_aclose_wakes_a_pending_receive_and_frees_the_address() -> None:
    async with MemoryNetwork(QUICK) as net:
        a = net.endpoint(1)
        raised: list[BaseException] = []

        async def receiver() -> None:
            try:
                await a.receive()
            except anyio.ClosedResourceError as error:
                raised.append(error)

        async with anyio.create_task_group() as tg:
            tg.start_soon(receiver)
            await anyio.sleep(0.005)
            await a.aclose()
        assert len(raised) == 1
        await a.aclose()  # idempotent
        with pytest.raises(anyio.ClosedResourceError):
            await a.receive()
        with pytest.raises(anyio.ClosedResourceError):
            await a.send(b"x", 2)
        again = net.endpoint(1)
        assert not again.closed


async def test_leaving_the_network_closes_its_endpoints() -> None:
    async with MemoryNetwork(QUICK) as net:
        a = net.endpoint(1)
    assert a.closed
    with pytest.raises(anyio.ClosedResourceError):
        await a.receive()


async def test_body_exception_is_not_wrapped_in_a_group() -> None:
    with pytest.raises(KeyError):
        async with MemoryNetwork(QUICK):
            raise KeyError("mine")


async def test_endpoint_is_a_transport() -> None:
    async with MemoryNetwork(QUICK, max_datagram=1400) as net:
        endpoint: Transport = net.endpoint(1)  # mypy: MemoryTransport satisfies the protocol
        assert isinstance(endpoint, Transport)
        assert endpoint.max_datagram == 1400
