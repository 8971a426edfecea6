"""A hostile sender on the group: members stay up and in their view, and count every drop.

Three ``pyclm node`` processes on loopback multicast (with a cluster key); this test joins
the group itself, captures real datagrams and sends back: random bytes, replays of those
datagrams, datagrams sealed with the wrong key and with the wrong cluster name, truncated
and oversized ones, and a burst of garbage.  Then ``pyclm status --json`` on each node.
"""

from __future__ import annotations

import json
import random
import socket
import struct
import subprocess
import time
from pathlib import Path

from _procs import PYCLM, NodeProcesses, free_udp_port
from pyclm.security import Envelope, Keyring

NODES = [1, 2, 3]
ATTACKER = "127.0.0.9"


def _status(nodes: NodeProcesses, node_id: int) -> dict[str, object]:
    done = subprocess.run(
        [*PYCLM, "status", "--json", "--state-dir", str(nodes.state_dir(node_id))],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    status: dict[str, object] = json.loads(done.stdout)
    return status


def _group_socket(group: str, port: int) -> socket.socket:
    """A socket that hears the group on loopback and sends from the attacker's own address."""
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
    sock.bind((group, port))
    mreq = struct.pack("4s4s", socket.inet_aton(group), socket.inet_aton(ATTACKER))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(ATTACKER))
    sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, 0)
    sock.settimeout(5)
    return sock


def test_members_shrug_off_a_hostile_sender(tmp_path: Path) -> None:
    rng = random.Random(5)
    key = tmp_path / "cluster.key"
    Keyring.generate(1).save(key)
    port = free_udp_port(rng=rng)
    group = f"239.255.{rng.randrange(1, 255)}.{rng.randrange(1, 255)}"
    common = ["--nodes", "1-3", "--multicast", f"{group}:{port}", "--ttl", "0", "--key-file", str(key)]
    common += ["--suspect-timeout", "1.0", "--cluster-name", "prod"]
    with NodeProcesses(tmp_path, common) as nodes:
        for i in NODES:
            nodes.start(i, "--interface", f"127.0.0.{i}")
        nodes.wait_for("one primary view of three", lambda: nodes.agree(NODES, NODES), 60)
        view_before = nodes.nodes[1].state()[0]
        attacker = _group_socket(group, port)
        sent: dict[str, int] = {}
        try:
            captured = [attacker.recv(65536) for _ in range(20)]  # real, correctly sealed datagrams

            def send(kind: str, data: bytes) -> None:
                attacker.sendto(data, (group, port))
                sent[kind] = sent.get(kind, 0) + 1
                time.sleep(0.001)  # (the burst below has no pause: there a kernel buffer may overflow)

            for data in captured:
                send("replay", data)
            for _ in range(50):
                send("random", rng.randbytes(rng.randrange(0, 200)))
            for data in captured[:10]:
                send("truncated", data[: rng.randrange(1, len(data))])
            send("oversized", b"\0" * 2000)
            # Correct framing, wrong secrets: another key, another cluster name.
            inner = captured_inner(captured[0], key)
            sender = int.from_bytes(inner[4:8], "big")  # seal it as its sender would
            wrong_key = Envelope(node_id=sender, cluster_name="prod", keyring=Keyring.generate(1))
            wrong_cluster = Envelope(node_id=sender, cluster_name="test", keyring=Keyring.load(key))
            for _ in range(5):
                send("wrong_key", wrong_key.seal(inner))
                send("wrong_cluster", wrong_cluster.seal(inner))
            # A burst: the members must not stall.
            for _ in range(5000):
                attacker.sendto(rng.randbytes(64), (group, port))
        finally:
            attacker.close()
        time.sleep(1.5)  # longer than the suspect timeout: a stalled node would have been suspected
        for i in NODES:
            assert nodes.nodes[i].alive()
            assert nodes.nodes[i].state()[0] == view_before, nodes.describe()
        rejected = [_status(nodes, i)["rejected"] for i in NODES]
    # Summed over the three members: a datagram sealed as node N's is node N's own echo to N.
    total: dict[str, int] = {}
    for drops in rejected:
        assert isinstance(drops, dict)
        for reason, count in drops.items():
            total[reason] = total.get(reason, 0) + count
    assert total.get("security.replayed", 0) >= 2 * len(captured) // 3, total
    assert total.get("security.forged", 0) >= 2 * 5, total  # the wrong key, at the two other members
    assert total.get("security.foreign_cluster", 0) >= 2 * 5, total
    assert total.get("udp.oversized", 0) == 3, total
    garbage = sum(v for k, v in total.items() if k in ("security.truncated", "security.bad_magic"))
    assert garbage >= 3 * sent["random"], total


def captured_inner(sealed: bytes, key: Path) -> bytes:
    """The wire message inside a captured datagram (opened with the real key)."""
    opener = Envelope(node_id=99, cluster_name="prod", keyring=Keyring.load(key))
    inner = opener.open(sealed)
    assert isinstance(inner, bytes), inner
    return inner
