"""The kernel under the TIPC tests really does TIPC: sockets, node addresses, two nodes talking.

This is the harness's own check (``scripts/tipc-tests.sh`` boots a qemu guest for it, see
``scripts/tipc-vm/run.sh``).  When it passes, the guest kernel, its module loading, the
``tipc`` tool and network namespaces all work, so whatever fails in the other TIPC tests is
theirs.  On the host it is skipped (see ``conftest.py``).

Two TIPC nodes on one kernel are two network namespaces joined by a veth pair, each with an
Ethernet bearer on its end.  Sockets are made in a namespace by switching the calling thread
into it (``setns``) just for the ``socket()`` call: a socket stays in the namespace it was
created in.
"""

from __future__ import annotations

import os
import secrets
import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from netns import in_namespace

# Python 3.11 has no os.setns (3.12 does).

# Service types 0..63 are TIPC's own; this one spells "pycl".
_SERVICE_TYPE = 0x7079636C
_CLUSTER_ID = 4711
_SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"


def tipc_socket(namespace: str) -> socket.socket:
    with in_namespace(namespace):
        return socket.socket(socket.AF_TIPC, socket.SOCK_RDM)


def node_address(sock: socket.socket) -> int:
    """The 32-bit address of the node ``sock`` lives on; 0 until the node has one."""
    # getsockname() of an RDM socket is (TIPC_ADDR_ID, node, port reference, 0, scope).
    kind, node, _ref, _, _ = sock.getsockname()
    assert kind == socket.TIPC_ADDR_ID
    return int(node)


def _tool(name: str) -> str:
    path = shutil.which(name, path=f"{os.environ.get('PATH', '')}:{_SBIN_PATH}")
    if path is None:
        pytest.skip(f"{name} is missing (iproute2)")
    return path


def _run(*argv: str) -> None:
    done = subprocess.run(argv, capture_output=True, text=True, timeout=30, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(argv)} failed ({done.returncode}): {done.stderr.strip()}")


@dataclass(frozen=True)
class TwoNodes:
    """Two TIPC nodes: namespace names, their veth ends and their node identities."""

    namespaces: tuple[str, str]
    devices: tuple[str, str]
    identities: tuple[str, str]


@pytest.fixture(scope="module")
def two_nodes() -> Iterator[TwoNodes]:
    if os.geteuid() != 0:
        pytest.skip("needs root (network namespaces, TIPC bearers)")
    ip, tipc = _tool("ip"), _tool("tipc")
    # Random names: where the host itself has TIPC, /run/netns is shared with everyone else.
    prefix = f"pcltipc{secrets.token_hex(3)}"
    nodes = TwoNodes(
        namespaces=(f"{prefix}-a", f"{prefix}-b"),
        devices=("tipca", "tipcb"),
        identities=(f"{prefix}-a", f"{prefix}-b"),
    )
    created: list[str] = []
    try:
        for namespace in nodes.namespaces:
            _run(ip, "netns", "add", namespace)
            created.append(namespace)
        (ns_a, ns_b), (dev_a, dev_b) = nodes.namespaces, nodes.devices
        _run(ip, "link", "add", dev_a, "netns", ns_a, "type", "veth", "peer", "name", dev_b, "netns", ns_b)
        for namespace, device, identity in zip(nodes.namespaces, nodes.devices, nodes.identities, strict=True):
            _run(ip, "-n", namespace, "link", "set", device, "up")
            # The cluster id must be set before the identity: setting the identity fixes the node.
            _run(ip, "netns", "exec", namespace, tipc, "node", "set", "clusterid", str(_CLUSTER_ID))
            _run(ip, "netns", "exec", namespace, tipc, "node", "set", "identity", identity)
            _run(ip, "netns", "exec", namespace, tipc, "bearer", "enable", "media", "eth", "device", device)
        yield nodes
    finally:
        for namespace in created:
            subprocess.run([ip, "netns", "delete", namespace], capture_output=True, timeout=30, check=False)


def test_a_tipc_socket_can_be_made() -> None:
    with socket.socket(socket.AF_TIPC, socket.SOCK_RDM) as sock:
        kind, _node, ref, _, _ = sock.getsockname()
        assert kind == socket.TIPC_ADDR_ID
        assert ref != 0  # every socket gets a port reference at once, even without a network


def test_each_node_gets_an_address_once_its_bearer_is_up(two_nodes: TwoNodes) -> None:
    # The address is settled about 1 s after the first bearer comes up (the node first makes
    # sure no other node claims it), so wait for it.
    addresses: list[int] = []
    for namespace in two_nodes.namespaces:
        with tipc_socket(namespace) as sock:
            deadline = time.monotonic() + 15
            while (address := node_address(sock)) == 0 and time.monotonic() < deadline:
                time.sleep(0.1)
        assert address != 0, f"node {namespace} has no TIPC address 15 s after its bearer was enabled"
        addresses.append(address)
    assert addresses[0] != addresses[1]


def test_two_nodes_exchange_datagrams_by_service_name(two_nodes: TwoNodes) -> None:
    ns_a, ns_b = two_nodes.namespaces
    instance = secrets.randbelow(1 << 31)
    with tipc_socket(ns_a) as server, tipc_socket(ns_b) as client:
        server.bind((socket.TIPC_ADDR_NAMESEQ, _SERVICE_TYPE, instance, instance, socket.TIPC_CLUSTER_SCOPE))
        server.settimeout(0.5)
        client.settimeout(5)
        # The name reaches node b only once the link is up and the name table has been
        # replicated; until then sending to it fails or goes nowhere, so keep trying.
        service = (socket.TIPC_ADDR_NAME, _SERVICE_TYPE, instance, 0)
        deadline = time.monotonic() + 20
        received: tuple[bytes, object] | None = None
        while received is None and time.monotonic() < deadline:
            try:
                client.sendto(b"ping", service)
                received = server.recvfrom(64)
            except OSError:  # no route to the name yet (EHOSTUNREACH), or the datagram was lost
                time.sleep(0.2)
        assert received is not None, "no datagram arrived by service name within 20 s"
        data, sender = received
        assert data == b"ping"
        # The sender's address is its socket's (node, port) id: answer it directly.
        assert isinstance(sender, tuple)
        assert sender[0] == socket.TIPC_ADDR_ID
        assert sender[1] == node_address(client) != node_address(server)
        server.sendto(b"pong", sender)
        assert client.recv(64) == b"pong"
