"""The TIPC transport on a real TIPC kernel, in single-node mode (one TIPC host, no bearer).

These tests need AF_TIPC, which the usual host kernel lacks: they run inside a qemu guest
with the tipc module loaded (``scripts/tipc-tests.sh``).  Every transport opens with
``wait_for_address=None``: the guest has no bearer, so TIPC reaches the sockets of this
host only, which is all these tests need.  Each test takes its own random service type,
so nothing it binds is seen by another test.  Every wait is bounded; the guest runs
Python about 15 times slower than the host, so the bounds are generous.
"""

from __future__ import annotations

import random
import socket
import sys
import time
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest
from anyio.streams.memory import MemoryObjectReceiveStream

from pyclm import GROUP, ConfigError, MembershipConfig, Node, QuorumConfig, TimingConfig, UsageError
from pyclm.transports import Transport
from pyclm.transports.tipc import (
    DEFAULT_MAX_DATAGRAM,
    DEFAULT_SERVICE_TYPE,
    TipcPortId,
    TipcTransport,
)

LIMIT = 10.0  # seconds any one wait may take: generous, it only bounds a hang
QUIET = 0.3  # seconds of silence that count as "nothing arrives"


def service_type() -> int:
    return random.randrange(0x10000, 0x7FFFFFFF)


@asynccontextmanager
async def transports(*node_ids: int, **options: Any) -> AsyncIterator[list[TipcTransport]]:
    """Entered transports, one per node id, on one fresh service type, in single-node mode."""
    options.setdefault("service_type", service_type())
    options.setdefault("wait_for_address", None)
    async with AsyncExitStack() as stack:
        opened = []
        for node_id in node_ids:
            transport = await TipcTransport.open(node_id, **options)
            opened.append(await stack.enter_async_context(transport))
        yield opened


async def receive(transport: TipcTransport) -> tuple[bytes, TipcPortId]:
    with anyio.fail_after(LIMIT):
        return await transport.receive()


async def nothing_arrives(transport: TipcTransport, within: float = QUIET) -> bool:
    with anyio.move_on_after(within):
        await transport.receive()
        return False
    return True


async def next_change(changes: MemoryObjectReceiveStream[tuple[int, bool]]) -> tuple[int, bool]:
    with anyio.fail_after(LIMIT):
        return await changes.receive()


async def no_change(changes: MemoryObjectReceiveStream[tuple[int, bool]], within: float = QUIET) -> bool:
    with anyio.move_on_after(within):
        await changes.receive()
        return False
    return True


async def poll_until(condition: Callable[[], bool], what: str, limit: float = LIMIT) -> None:
    try:
        with anyio.fail_after(limit):
            while not condition():
                await anyio.sleep(0.01)
    except TimeoutError:
        raise AssertionError(f"timed out waiting until {what}") from None


def raw_socket() -> socket.socket:
    """A plain TIPC datagram socket, bound to nothing: a stranger on the network."""
    return socket.socket(socket.AF_TIPC, socket.SOCK_RDM)


# ---------------------------------------------------------------------- datagrams


@pytest.mark.anyio
async def test_group_reaches_the_others_and_a_reply_reaches_the_sender() -> None:
    async with transports(1, 2, 3) as (a, b, c):
        assert isinstance(a, Transport)
        assert len({a.address, b.address, c.address}) == 3
        assert a.address.node == 0  # no bearer: this host has no TIPC node address
        await a.send(b"hello", GROUP)
        assert await receive(b) == (b"hello", a.address)
        assert await receive(c) == (b"hello", a.address)
        await b.send(b"back", a.address)
        assert await receive(a) == (b"back", b.address)
        assert await nothing_arrives(a)  # TIPC delivered a's multicast to a as well: dropped
        assert await nothing_arrives(c)  # the reply went to a only
        assert a.counters()["own"] == 1
        assert b.counters()["own"] == c.counters()["own"] == 0
        assert a.counters()["datagrams_out"] == 1 and a.counters()["datagrams_in"] == 2
        assert a.counters()["bytes_out"] == 5 and b.counters()["bytes_in"] == 5


@pytest.mark.anyio
async def test_limits_and_misuse() -> None:
    async with transports(1, 2, max_datagram=66000) as (a, b):
        assert a.max_datagram == 66000
        await a.send(b"x" * 66000, b.address)  # TIPC's own limit
        data, _ = await receive(b)
        assert len(data) == 66000
        with pytest.raises(ValueError, match="max_datagram=66000"):
            await a.send(b"x" * 66001, GROUP)
        for wrong in [("127.0.0.1", 5405), 2, (3, 0, b.address.port, 0, 0), TipcPortId(node=-1, port=1)]:
            with pytest.raises(ValueError, match="TipcPortId"):
                await a.send(b"x", wrong)
        with pytest.raises(TypeError):
            await a.send("text", GROUP)  # type: ignore[arg-type]
    async with transports(1) as (d,):
        assert d.max_datagram == DEFAULT_MAX_DATAGRAM


@pytest.mark.anyio
async def test_oversized_datagrams_and_a_full_buffer_are_dropped_and_counted() -> None:
    async with transports(1, 2, max_datagram=600, buffer_size=2) as (a, b):
        with raw_socket() as raw:
            raw.sendto(b"x" * 601, b.address.sockaddr)
            await poll_until(lambda: b.counters()["oversized"] == 1, "the oversized datagram was dropped")
        for i in range(5):
            await a.send(bytes([i]), b.address)
        await poll_until(lambda: b.counters()["datagrams_in"] == 6, "all six were read")
        assert b.counters()["buffer_full"] == 3
        assert [await receive(b) for _ in range(2)] == [(b"\0", a.address), (b"\1", a.address)]


@pytest.mark.anyio
async def test_a_lost_destination_is_not_an_error_for_the_caller() -> None:
    async with transports(1, 2) as (a, b):
        gone = b.address
        await b.aclose()
        await a.send(b"to a closed socket", gone)  # TIPC drops it (we set TIPC_DEST_DROPPABLE)
        await a.send(b"to no such host", TipcPortId(node=0x1234, port=gone.port))  # EHOSTUNREACH
        counters = a.counters()
        assert counters["send_error"] == 1 and counters["datagrams_out"] == 1
        await a.send(b"to nobody", GROUP)  # no socket is left in the group but a's own
        await poll_until(lambda: a.counters()["own"] == 1, "a dropped its own echo")
        assert a.counters()["returned"] == 0


@pytest.mark.anyio
async def test_garbage_is_delivered_as_datagrams_and_the_transport_keeps_working() -> None:
    rng = random.Random(6)
    async with transports(1, 2) as (a, b):
        garbage = [rng.randbytes(rng.randrange(1, 1500)) for _ in range(50)]
        with raw_socket() as raw:
            stranger = TipcPortId.from_sockaddr(raw.getsockname())
            for blob in garbage:
                raw.sendto(blob, a.address.sockaddr)
            raw.sendto(b"\xff" * 3, (1, a.service_type, 0, 0xFFFFFFFF, 2))  # a multicast to the group
            got = [await receive(a) for _ in range(len(garbage) + 1)]
            assert sorted(data for data, _ in got) == sorted([*garbage, b"\xff" * 3])
            assert {source for _, source in got} == {stranger}
            assert b.counters()["datagrams_in"] == 1  # the multicast reached b too
        await b.send(b"still here", a.address)
        assert await receive(a) == (b"still here", b.address)


# ---------------------------------------------------------------------- topology


@pytest.mark.anyio
async def test_reachability_follows_the_bindings_of_the_service() -> None:
    kind = service_type()
    async with transports(2, service_type=kind) as (b,):
        changes = b.reachability()
        assert await no_change(changes)  # nobody else yet, and never b itself
        async with transports(1, 3, service_type=kind) as (a, c):
            assert {await next_change(changes) for _ in range(2)} == {(1, True), (3, True)}
            assert b.reachable_nodes == [1, 3]
            late = b.reachability()  # a late subscriber starts with the current state
            assert [await next_change(late) for _ in range(2)] == [(1, True), (3, True)]
            await a.aclose()
            assert await next_change(changes) == (1, False)
            assert await next_change(late) == (1, False)
            assert b.reachable_nodes == [3]
            # A second socket with one node id (a restart whose old socket lingers):
            # reported once, and unreachable only when the last one is gone.
            async with transports(3, service_type=kind) as (c_again,):
                assert await no_change(changes)
                await c.aclose()
                assert await no_change(changes)
                await c_again.aclose()
                assert await next_change(changes) == (3, False)
        counters = b.counters()
        assert counters["topology_published"] == 4  # 1, 3, 3 again and b's own
        assert counters["topology_withdrawn"] == 3
        assert counters["topology_node_up"] == counters["topology_node_down"] == 0  # one TIPC host
        assert counters["topology_ignored"] == counters["topology_error"] == 0


@pytest.mark.anyio
async def test_a_binding_of_a_range_is_not_a_node() -> None:
    async with transports(1) as (a,):
        changes = a.reachability()
        with raw_socket() as raw:
            raw.bind((1, a.service_type, 10, 20, 2))
            await poll_until(lambda: a.counters()["topology_ignored"] == 1, "the range was ignored")
        assert await no_change(changes)
        await poll_until(lambda: a.reachable_nodes == [], "a saw b's binding withdrawn")


@pytest.mark.anyio
async def test_a_process_that_dies_is_withdrawn_at_once() -> None:
    """SIGKILL: the kernel closes the process's sockets, and its binding goes with them."""
    async with transports(1) as (a,):
        changes = a.reachability()
        child = await anyio.open_process(
            [
                sys.executable,
                "-c",
                "import socket, sys, time\n"
                "s = socket.socket(socket.AF_TIPC, socket.SOCK_RDM)\n"
                f"s.bind((1, {a.service_type}, 7, 7, 2))\n"
                "print('bound', flush=True)\n"
                "time.sleep(60)\n",
            ]
        )
        try:
            assert await next_change(changes) == (7, True)
            killed_at = time.monotonic()
            child.kill()
            assert await next_change(changes) == (7, False)
            print(f"node 7 unreachable {time.monotonic() - killed_at:.3f} s after SIGKILL")
        finally:
            child.kill()
            with anyio.fail_after(LIMIT):
                await child.wait()
            await child.aclose()


# ---------------------------------------------------------------------- lifetime


@pytest.mark.anyio
async def test_aclose_ends_receives_sends_and_reachability() -> None:
    async with transports(1, 2) as (a, b):
        changes = a.reachability()
        assert await next_change(changes) == (2, True)
        got: list[BaseException] = []

        async def waiter() -> None:
            try:
                await a.receive()
            except anyio.ClosedResourceError as exc:
                got.append(exc)

        async with anyio.create_task_group() as tg:
            tg.start_soon(waiter)
            await anyio.sleep(0.05)
            await a.aclose()
        assert len(got) == 1 and a.closed
        with pytest.raises(anyio.ClosedResourceError):
            await a.receive()
        with pytest.raises(anyio.ClosedResourceError):
            await a.send(b"x", GROUP)
        await a.aclose()  # idempotent
        with anyio.fail_after(LIMIT):
            assert [change async for change in changes] == []  # the iteration ends
        assert [change async for change in a.reachability()] == []
        await poll_until(lambda: b.reachable_nodes == [], "b saw a's binding withdrawn")


@pytest.mark.anyio
async def test_closing_a_transport_cancels_nothing_else() -> None:
    """aclose stops the transport's own readers only: not what was entered after it."""
    reached = []
    async with transports(1, 2) as (a, b):
        await a.aclose()
        await anyio.sleep(0.05)
        reached.append("after a.aclose")
        await b.send(b"x", GROUP)
        await poll_until(lambda: b.counters()["own"] == 1, "b still reads")
        reached.append("b works")
    assert reached == ["after a.aclose", "b works"]


@pytest.mark.anyio
async def test_entering_is_required_and_done_once() -> None:
    transport = await TipcTransport.open(1, service_type=service_type(), wait_for_address=None)
    with pytest.raises(UsageError, match="async with transport"):
        await transport.receive()
    async with transport:
        with pytest.raises(UsageError, match="already entered"):
            await transport.__aenter__()
    with pytest.raises(UsageError, match="closed"):
        await transport.__aenter__()
    never_entered = await TipcTransport.open(2, service_type=service_type(), wait_for_address=None)
    await never_entered.aclose()
    assert never_entered.closed


@pytest.mark.anyio
async def test_without_a_bearer_there_is_no_node_address() -> None:
    started = time.monotonic()
    with pytest.raises(ConfigError, match="no TIPC bearer is enabled") as caught:
        await TipcTransport.open(1, service_type=service_type(), wait_for_address=0.2)
    assert caught.value.setting == "transport"
    assert "wait_for_address=None" in caught.value.problem
    assert 0.2 <= time.monotonic() - started < LIMIT


@pytest.mark.anyio
async def test_the_default_service_type_binds() -> None:
    async with transports(1, 2, service_type=DEFAULT_SERVICE_TYPE) as (a, b):
        assert a.service_type == 0x50434C4D
        await a.send(b"x", GROUP)
        assert await receive(b) == (b"x", a.address)


# ---------------------------------------------------------------------- nodes


@pytest.mark.anyio
async def test_nodes_on_one_host_form_a_primary_view() -> None:
    """Single-node mode carries a whole cluster whose nodes all run on this host."""
    timing = TimingConfig(heartbeat_interval=0.1, suspect_timeout=1.0)
    quorum = QuorumConfig(policy="majority", votes={1: 1, 2: 1})
    async with transports(1, 2) as (a, b), AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(Node(MembershipConfig(node_id=t.node_id, timing=timing), quorum, t))
            for t in (a, b)
        ]
        await poll_until(
            lambda: all(n.is_primary and n.view is not None and len(n.view.members) == 2 for n in nodes),
            "one primary view of both nodes",
            limit=30,
        )
        assert nodes[0].view == nodes[1].view
        member = nodes[0].cluster_node(2)
        assert member is not None and member.address == str(b.address)
        # A graceful leave closes b's transport; the code after it still runs.
        await nodes[1].leave()
        assert b.closed
        await poll_until(lambda: nodes[0].view is not None and len(nodes[0].view.members) == 1, "1 alone", limit=30)
        await poll_until(lambda: a.reachable_nodes == [], "a saw b's binding withdrawn")
