"""The UDP transport on real sockets, on loopback only (and IPv6 inside a network namespace).

IPv4 multicast runs on ``lo`` in the root namespace, which needs no privileges and no
configuration change: every transport sets IP_MULTICAST_IF to its ``127.0.0.x`` address
and uses TTL 0, so nothing follows the default route out of the host.  Each test takes a
random group in 239.255.0.0/16 and a free port, so parallel runs do not hear each other.

Linux carries no IPv6 multicast on ``lo``, so the IPv6 test starts this file as a script
in a fresh network namespace (``unshare -n``, root) with a veth pair, and checks what it
prints.  The namespace dies with the process.  Every wait is bounded.
"""

from __future__ import annotations

import errno
import json
import os
import random
import shutil
import socket
import sys
from collections.abc import AsyncIterator, Callable
from contextlib import AsyncExitStack, asynccontextmanager
from typing import Any

import anyio
import pytest

from pyclm import GROUP, ConfigError, MembershipConfig, Node, QuorumConfig, TimingConfig, UsageError
from pyclm.storage import MemoryStorage
from pyclm.transports import Transport
from pyclm.transports.udp import UdpTransport, parse_endpoint, parse_peers

LIMIT = 3.0  # seconds any one wait may take: generous, it only bounds a hang


def random_group() -> str:
    return f"239.255.{random.randrange(256)}.{random.randrange(1, 255)}"


def free_port(family: socket.AddressFamily = socket.AF_INET, host: str = "127.0.0.1") -> int:
    with socket.socket(family, socket.SOCK_DGRAM) as probe:
        probe.bind((host, 0))
        port: int = probe.getsockname()[1]
        return port


@asynccontextmanager
async def multicast(interfaces: list[str], **options: Any) -> AsyncIterator[list[UdpTransport]]:
    """Entered transports on one fresh group, one per interface."""
    group, port = options.pop("group", random_group()), free_port()
    options.setdefault("ttl", 0)
    async with AsyncExitStack() as stack:
        transports = []
        for interface in interfaces:
            transport = await UdpTransport.open_multicast(group, port, interface=interface, **options)
            transports.append(await stack.enter_async_context(transport))
        yield transports


async def receive(transport: UdpTransport) -> tuple[bytes, Any]:
    with anyio.fail_after(LIMIT):
        return await transport.receive()


async def nothing_arrives(transport: UdpTransport, within: float = 0.05) -> bool:
    with anyio.move_on_after(within):
        await transport.receive()
        return False
    return True


async def poll_until(condition: Callable[[], bool], what: str, limit: float = LIMIT) -> None:
    try:
        with anyio.fail_after(limit):
            while not condition():
                await anyio.sleep(0.005)
    except TimeoutError:
        raise AssertionError(f"timed out waiting until {what}") from None


# ---------------------------------------------------------------------- multicast on lo


@pytest.mark.anyio
async def test_group_reaches_every_other_node_from_its_unicast_address() -> None:
    async with multicast(["127.0.0.1", "127.0.0.2", "127.0.0.3"]) as nodes:
        assert isinstance(nodes[0], Transport)
        assert [n.address[0] for n in nodes] == ["127.0.0.1", "127.0.0.2", "127.0.0.3"]
        for sender in nodes:
            await sender.send(sender.address[0].encode(), GROUP)
        for node in nodes:
            got = {await receive(node) for _ in range(2)}
            assert got == {(other.address[0].encode(), other.address) for other in nodes if other is not node}
            assert await nothing_arrives(node)  # not its own copy
        await poll_until(lambda: all(n.counters()["own"] == 1 for n in nodes), "every node dropped its own echo")
        for node in nodes:
            counters = node.counters()
            assert counters["datagrams_out"] == 1 and counters["datagrams_in"] == 3
            assert counters["oversized"] == counters["buffer_full"] == counters["send_error"] == 0


@pytest.mark.anyio
async def test_a_reply_to_the_source_reaches_the_sender_only() -> None:
    async with multicast(["127.0.0.1", "127.0.0.2", "127.0.0.3"]) as (a, b, c):
        await a.send(b"hello", GROUP)
        data, source = await receive(b)
        assert (data, source) == (b"hello", a.address)
        await b.send(b"back", source)
        assert await receive(a) == (b"back", b.address)
        await receive(c)
        assert await nothing_arrives(c)


@pytest.mark.anyio
async def test_nodes_sharing_one_address_stay_distinct() -> None:
    # All on 127.0.0.1, one given by interface name: the unicast ports tell them apart.
    async with multicast(["127.0.0.1", "127.0.0.1", "lo"], ttl=1) as nodes:
        assert len({n.address for n in nodes}) == 3
        assert {n.address[0] for n in nodes} == {"127.0.0.1"}
        await nodes[2].send(b"x", GROUP)
        assert await receive(nodes[0]) == (b"x", nodes[2].address)
        assert await receive(nodes[1]) == (b"x", nodes[2].address)
        assert await nothing_arrives(nodes[2])
        await poll_until(lambda: nodes[2].counters()["own"] == 1, "the echo was counted")


@pytest.mark.anyio
async def test_a_configured_unicast_port_is_the_address() -> None:
    port = free_port()
    async with multicast(["127.0.0.2"], unicast_port=port) as (node,):
        assert node.address == ("127.0.0.2", port)


@pytest.mark.anyio
async def test_oversized_datagrams_are_dropped_and_counted() -> None:
    async with multicast(["127.0.0.1"], max_datagram=600) as (node,):
        assert node.max_datagram == 600
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as raw:
            raw.bind(("127.0.0.1", 0))
            raw.sendto(b"x" * 601, node.address)
            raw.sendto(b"y" * 600, node.address)
            assert await receive(node) == (b"y" * 600, raw.getsockname())
        assert node.counters()["oversized"] == 1
        with pytest.raises(ValueError, match="max_datagram=600"):
            await node.send(b"z" * 601, GROUP)


@pytest.mark.anyio
async def test_default_max_datagram_is_one_ethernet_mtu() -> None:
    async with multicast(["127.0.0.1"]) as (node,):
        assert node.max_datagram == 1472


@pytest.mark.anyio
async def test_a_full_receive_buffer_drops_and_counts() -> None:
    async with multicast(["127.0.0.1", "127.0.0.2"], buffer_size=2) as (a, b):
        for i in range(5):
            await a.send(bytes([i]), b.address)
        await poll_until(lambda: b.counters()["datagrams_in"] == 5, "all five were read")
        assert b.counters()["buffer_full"] == 3
        assert [await receive(b) for _ in range(2)] == [(b"\0", a.address), (b"\1", a.address)]


# ---------------------------------------------------------------------- sending never raises for the network


@pytest.mark.anyio
async def test_a_refused_send_is_counted_not_raised() -> None:
    async with multicast(["127.0.0.1"]) as (node,):
        await node.send(b"x", ("255.255.255.255", 9))  # EACCES: no SO_BROADCAST; refused locally
        assert node.counters()["send_error"] == 1
        assert node.counters()["datagrams_out"] == 0


class FailingSocket:
    """Stands in for the unicast socket: every sendto fails with ``code``."""

    def __init__(self, real: socket.socket, code: int) -> None:
        self.real, self.code = real, code

    def sendto(self, data: bytes, address: Any) -> int:
        raise OSError(self.code, os.strerror(self.code))


@pytest.mark.anyio
@pytest.mark.parametrize("code", [errno.EAGAIN, errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ECONNREFUSED])
async def test_network_errors_on_send_are_swallowed(code: int) -> None:
    async with multicast(["127.0.0.1", "127.0.0.2"]) as (a, b):
        real = a._unicast
        a._unicast = FailingSocket(real, code)  # type: ignore[assignment]
        await a.send(b"lost", GROUP)
        await a.send(b"lost", b.address)
        assert a.counters()["send_error"] == 2
        a._unicast = real
        await a.send(b"kept", b.address)
        assert await receive(b) == (b"kept", a.address)


@pytest.mark.anyio
@pytest.mark.parametrize(
    "dest", [("127.0.0.1",), ("localhost", 5), ("127.0.0.1", 0), ("::1", 5), 7, ("127.0.0.1", True)]
)
async def test_a_destination_that_is_not_an_address_is_misuse(dest: object) -> None:
    async with multicast(["127.0.0.1"]) as (node,):
        with pytest.raises(ValueError, match="destination"):
            await node.send(b"x", dest)


# ---------------------------------------------------------------------- closing


@pytest.mark.anyio
async def test_aclose_wakes_a_pending_receive_and_is_idempotent() -> None:
    async with multicast(["127.0.0.1"]) as (node,):
        port = node.address[1]
        outcome: list[BaseException] = []

        async def waiter() -> None:
            try:
                await node.receive()
            except anyio.ClosedResourceError as exc:
                outcome.append(exc)

        with anyio.fail_after(LIMIT):
            async with anyio.create_task_group() as tasks:
                tasks.start_soon(waiter)
                await anyio.sleep(0.02)
                await node.aclose()
                await node.aclose()
        assert [type(exc) for exc in outcome] == [anyio.ClosedResourceError]
    assert node.closed
    with pytest.raises(anyio.ClosedResourceError):
        await node.receive()
    with pytest.raises(anyio.ClosedResourceError):
        await node.send(b"x", GROUP)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as again:
        again.bind(("127.0.0.1", port))  # aclose returned: the sockets are closed


@pytest.mark.anyio
async def test_closing_and_reopening_quickly_keeps_working() -> None:
    # A new transport may get the old sockets' file descriptors: it must still receive.
    for _ in range(5):
        async with multicast(["127.0.0.1", "127.0.0.2"]) as (a, b):
            await a.send(b"ping", GROUP)
            assert await receive(b) == (b"ping", a.address)
            await a.aclose()


@pytest.mark.anyio
async def test_lifecycle_misuse_names_the_fix() -> None:
    transport = await UdpTransport.open_multicast(random_group(), free_port(), interface="127.0.0.1", ttl=0)
    with pytest.raises(UsageError, match="async with transport"):
        await transport.receive()
    async with transport:
        with pytest.raises(UsageError, match="enter it once"):
            await transport.__aenter__()
    with pytest.raises(UsageError, match="open a new one"):
        await transport.__aenter__()
    unused = await UdpTransport.open_multicast(random_group(), free_port(), interface="127.0.0.1", ttl=0)
    await unused.aclose()  # never entered: closes its sockets all the same
    with pytest.raises(anyio.ClosedResourceError):
        await unused.receive()


# ---------------------------------------------------------------------- unicast mode


@pytest.mark.anyio
async def test_unicast_group_goes_to_every_listed_peer_but_itself_and_late_nodes_join() -> None:
    ports = [free_port() for _ in range(3)]
    peers = ", ".join(f"127.0.0.1:{port}" for port in ports)
    async with AsyncExitStack() as stack:
        a, b = [
            await stack.enter_async_context(await UdpTransport.open_unicast(f"127.0.0.1:{port}", peers))
            for port in ports[:2]
        ]
        await a.send(b"early", GROUP)  # c is not up yet: lost, not an error
        assert await receive(b) == (b"early", a.address)
        c = await stack.enter_async_context(await UdpTransport.open_unicast(("127.0.0.1", ports[2]), peers))
        await a.send(b"later", GROUP)
        assert await receive(b) == (b"later", a.address)
        assert await receive(c) == (b"later", a.address)
        await c.send(b"reply", a.address)
        assert await receive(a) == (b"reply", c.address)
        assert await nothing_arrives(a)
        assert a.counters()["datagrams_out"] == 4 and a.counters()["own"] == 0


@pytest.mark.anyio
async def test_unicast_wildcard_listen_still_finds_its_own_entry() -> None:
    own, other = free_port(), free_port()
    async with (
        await UdpTransport.open_unicast(f"0.0.0.0:{own}", [f"127.0.0.1:{own}", ("127.0.0.1", other)]) as node,
        await UdpTransport.open_unicast(f"127.0.0.1:{other}", f"127.0.0.1:{own} 127.0.0.1:{other}") as peer,
    ):
        await node.send(b"x", GROUP)
        assert await receive(peer) == (b"x", ("127.0.0.1", own))
        assert node.counters()["datagrams_out"] == 1


@pytest.mark.anyio
async def test_unicast_resolves_host_names_at_open() -> None:
    port, other = free_port(), free_port()
    async with await UdpTransport.open_unicast(f"localhost:{port}", [f"localhost:{port}", f"localhost:{other}"]) as t:
        assert t.address[1] == port
        assert t.address[0] in ("127.0.0.1", "::1")


@pytest.mark.anyio
async def test_unicast_over_ipv6_loopback() -> None:
    ports = [free_port(socket.AF_INET6, "::1") for _ in range(2)]
    peers = [f"[::1]:{port}" for port in ports]
    async with (
        await UdpTransport.open_unicast(peers[0], peers) as a,
        await UdpTransport.open_unicast(peers[1], peers) as b,
    ):
        assert a.max_datagram == 1452
        await a.send(b"six", GROUP)
        assert await receive(b) == (b"six", ("::1", ports[0]))
        await b.send(b"back", ("::1", ports[0]))
        assert await receive(a) == (b"back", ("::1", ports[1]))


# ---------------------------------------------------------------------- settings


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        ("239.1.2.3:5405", ("239.1.2.3", 5405)),
        ("[ff15::1]:5405", ("ff15::1", 5405)),
        (" node-1.example:5405 ", ("node-1.example", 5405)),
        ("[fe80::1%eth0]:7", ("fe80::1%eth0", 7)),
    ],
)
def test_parse_endpoint(text: str, expected: tuple[str, int]) -> None:
    assert parse_endpoint(text, "--group") == expected


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("239.1.2.3", "missing the port"),
        ("ff15::1:5405", "brackets"),
        ("[ff15::1]5405", r"\[address\]:port"),
        ("[239.1.2.3]:5405", "not an IPv6 address"),
        ("host:port", "port must be a number"),
        ("host:0", "1..65535"),
        ("host:65536", "1..65535"),
        ("300.1.2.3:5", "neither an IP address nor a host name"),
        ("bad host:5", "neither an IP address nor a host name"),
        (":5405", "host must be"),
        (5405, "expected host:port"),
    ],
)
def test_parse_endpoint_rejects(text: Any, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as caught:
        parse_endpoint(text, "--group")
    assert caught.value.setting == "--group"


def test_parse_peers() -> None:
    assert parse_peers("a:1, b:2 [::1]:3", "--peers") == (("a", 1), ("b", 2), ("::1", 3))
    assert parse_peers(["a:1", ("10.0.0.1", 2)], "--peers") == (("a", 1), ("10.0.0.1", 2))
    for bad, problem in [("", "no peers"), ([], "no peers"), ("a:1 a:1", "twice"), (["a"], "missing the port")]:
        with pytest.raises(ConfigError, match=problem) as caught:
            parse_peers(bad, "--peers")
        assert caught.value.setting == "--peers"


MULTICAST_ERRORS = [
    ({"group": "10.0.0.1"}, "group", "not a multicast address"),
    ({"group": "not-an-address"}, "group", "must be a multicast address"),
    ({"port": 0}, "port", "1..65535"),
    ({"port": 70000}, "port", "1..65535"),
    ({"unicast_port": -1}, "unicast_port", "0..65535"),
    ({"ttl": 256}, "ttl", "0..255"),
    ({"ttl": -1}, "ttl", "0..255"),
    ({"interface": "nosuchif0"}, "interface", "unknown interface"),
    ({"interface": ""}, "interface", "address or an interface name"),
    ({"interface": "::1"}, "interface", "IPv6 address but the group is IPv4"),
    ({"group": "ff15::1", "interface": "127.0.0.1"}, "interface", "IPv4 address but the group is IPv6"),
    ({"group": "ff15::1", "interface": "lo"}, "interface", "loopback"),
    ({"group": "ff15::1", "interface": "fd00::dead:beef"}, "interface", "no interface .* has the address"),
    ({"interface": "198.51.100.7"}, "interface", "no interface .* has that address"),
    ({"max_datagram": 100}, "max_datagram", "512..65507"),
    ({"max_datagram": 65508}, "max_datagram", "512..65507"),
    ({"buffer_size": 0}, "buffer_size", "positive"),
]


@pytest.mark.anyio
@pytest.mark.parametrize(("change", "setting", "problem"), MULTICAST_ERRORS)
async def test_multicast_settings_are_checked(change: dict[str, Any], setting: str, problem: str) -> None:
    options: dict[str, Any] = {"group": random_group(), "port": free_port(), "interface": "127.0.0.1", "ttl": 0}
    options.update(change)
    with pytest.raises(ConfigError, match=problem) as caught:
        await UdpTransport.open_multicast(**options)
    assert caught.value.setting == setting


@pytest.mark.anyio
async def test_a_unicast_port_in_use_is_a_config_error() -> None:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        with pytest.raises(ConfigError, match="in use") as caught:
            await UdpTransport.open_multicast(random_group(), free_port(), interface="127.0.0.1", unicast_port=port)
        assert caught.value.setting == "interface"
        with pytest.raises(ConfigError, match="in use") as caught:
            await UdpTransport.open_unicast(f"127.0.0.1:{port}", f"127.0.0.1:{port}")
        assert caught.value.setting == "listen"


@pytest.mark.anyio
@pytest.mark.parametrize(
    ("listen", "peers", "setting", "problem"),
    [
        ("127.0.0.1:5", "", "peers", "no peers"),
        ("127.0.0.1", "127.0.0.1:5", "listen", "missing the port"),
        (("127.0.0.1", 70000), "127.0.0.1:5", "listen", "0..65535"),
        ("127.0.0.1:0", "[::1]:5", "peers", "IPv6, unlike the listen address"),
        ("127.0.0.1:0", "no-such-host.invalid:5", "peers", "cannot resolve 'no-such-host.invalid'"),
        ("198.51.100.7:0", "127.0.0.1:5", "listen", "no interface .* has that address"),
    ],
)
async def test_unicast_settings_are_checked(listen: Any, peers: Any, setting: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem) as caught:
        await UdpTransport.open_unicast(listen, peers)
    assert caught.value.setting == setting


# ---------------------------------------------------------------------- the runtime, unchanged, over UDP


@pytest.mark.anyio
async def test_three_nodes_over_multicast_on_lo_form_one_view_and_a_primary() -> None:
    timing = TimingConfig(heartbeat_interval=0.05, suspect_timeout=0.3)
    quorum = QuorumConfig(policy="majority", votes={1: 1, 2: 1, 3: 1})
    async with multicast(["127.0.0.1", "127.0.0.2", "127.0.0.3"], ttl=1) as transports, AsyncExitStack() as stack:
        nodes = [
            await stack.enter_async_context(
                Node(MembershipConfig(node_id=n, timing=timing), quorum, transport, MemoryStorage())
            )
            for n, transport in zip((1, 2, 3), transports, strict=True)
        ]

        def settled() -> bool:
            views = {node.view for node in nodes}
            numbers = {node.primary_number for node in nodes}
            view = views.pop() if len(views) == 1 else None
            return view is not None and view.node_ids == (1, 2, 3) and len(numbers) == 1 and None not in numbers

        await poll_until(settled, "the three nodes agree on one view and one primary", limit=5.0)
        assert all(node.is_primary for node in nodes)
        assert all(t.counters()["own"] > 0 and t.counters()["datagrams_in"] > 0 for t in transports)
    assert all(t.closed for t in transports)


@pytest.mark.anyio
async def test_closing_the_transport_does_not_cancel_its_user() -> None:
    """A node's leave closes its transport; the code after the leave, in the same task, still runs."""
    timing = TimingConfig(heartbeat_interval=0.05, suspect_timeout=0.3)
    quorum = QuorumConfig(policy="majority", votes={1: 1})
    reached = []
    async with multicast(["127.0.0.1"], ttl=0) as (transport,):
        async with Node(MembershipConfig(node_id=1, timing=timing), quorum, transport, MemoryStorage()) as node:
            await poll_until(lambda: node.is_primary, "node 1 primary", limit=5.0)
            await node.leave()
            assert transport.closed
            await anyio.sleep(0.01)  # a checkpoint: a stray cancellation would strike here
            reached.append("after the leave")
        reached.append("after the node")
    assert reached == ["after the leave", "after the node"]


# ---------------------------------------------------------------------- IPv6 multicast, in a network namespace

NETNS_SETUP = """set -e
ip link set lo up
ip link add d0 type veth peer name d1
ip link set d1 up
ip link set d0 up
for a in fd99::1 fd99::2 fd99::3 fe80::99; do ip addr add $a/64 dev d0 nodad; done
"""


async def ipv6_child() -> dict[str, Any]:
    """Runs inside the namespace: two IPv6 groups, interfaces given as addresses, a name, a link-local address."""
    report: dict[str, Any] = {}
    cases = {"ff15::42:1": ["fd99::1", "fd99::2", "d0"], "ff12::42:2": ["fe80::99%d0", "fd99::3", "fd99::2"]}
    for group, interfaces in cases.items():
        async with AsyncExitStack() as stack:
            port = free_port(socket.AF_INET6, "::1")
            nodes = [
                await stack.enter_async_context(
                    await UdpTransport.open_multicast(group, port, interface=interface, ttl=1)
                )
                for interface in interfaces
            ]
            for node in nodes:
                await node.send(b"hello", GROUP)
            received = {}
            for node in nodes:
                received[str(node.address)] = sorted([str((await receive(node))[1]), str((await receive(node))[1])])
            await nodes[1].send(b"reply", nodes[0].address)
            reply = await receive(nodes[0])
            await poll_until(lambda: all(n.counters()["own"] == 1 for n in nodes), "own echoes counted")  # noqa: B023 (awaited at once)
            report[group] = {
                "addresses": [str(n.address) for n in nodes],
                "received": received,
                "reply": [reply[0].decode(), str(reply[1])],
                "max_datagram": nodes[0].max_datagram,
            }
    return report


@pytest.mark.anyio
async def test_ipv6_multicast_in_a_network_namespace(anyio_backend: str) -> None:
    if os.geteuid() != 0:
        pytest.skip("IPv6 multicast needs a network namespace with a veth pair: run as root")
    if not (shutil.which("unshare") and shutil.which("ip")):
        pytest.skip("needs unshare (util-linux) and ip (iproute2)")
    script = NETNS_SETUP + f'exec "{sys.executable}" "{__file__}" ipv6-child {anyio_backend}\n'
    with anyio.fail_after(30):
        done = await anyio.run_process(["unshare", "--net", "sh", "-c", script], check=False)
    assert done.returncode == 0, done.stderr.decode()
    report = json.loads(done.stdout)
    for group, interfaces in (
        ("ff15::42:1", ["fd99::1", "fd99::2", "fd99::"]),
        ("ff12::42:2", ["fe80::99%", "fd99::3", "fd99::2"]),
    ):
        result = report[group]
        addresses = result["addresses"]
        assert all(address.startswith(f"('{prefix}") for address, prefix in zip(addresses, interfaces, strict=True))
        assert len(set(addresses)) == 3
        for own, sources in result["received"].items():
            assert sources == sorted(a for a in addresses if a != own)
        assert result["reply"] == ["reply", addresses[1]]
        assert result["max_datagram"] == 1452


if __name__ == "__main__" and sys.argv[1:2] == ["ipv6-child"]:
    print(json.dumps(anyio.run(ipv6_child, backend=sys.argv[2])))
