"""A transport's own reachability events (TIPC's topology service) reach the core through ``Node``.

A memory transport with a ``reachability()`` stream the test writes to stands in for
TIPC: when node 3 crashes and the survivors' transports say so, they install the view
without it long before their failure detectors (suspect timeout 3 s) would.
"""

from __future__ import annotations

import functools
from collections.abc import AsyncIterator
from typing import Any

import anyio
import pytest

from pyclm import MembershipConfig, Node, QuorumConfig, TimingConfig
from pyclm.security import Envelope
from pyclm.transports import MemoryNetwork, MemoryTransport, SecureTransport

pytestmark = pytest.mark.anyio

# A short lease: a new primary without node 3 waits until node 3's lease has run out
# (docs/lease.md), so the lease, not the suspect timeout, bounds how fast the event helps.
TIMING = TimingConfig(heartbeat_interval=0.05, suspect_timeout=3.0, lease=0.2)


class Reporting:
    """A memory endpoint plus the reachability events the test sends it."""

    def __init__(self, inner: MemoryTransport) -> None:
        self.inner = inner
        self.max_datagram = inner.max_datagram
        self.events, self._events = anyio.create_memory_object_stream[tuple[int, bool]](16)

    async def send(self, data: bytes, dest: Any) -> None:
        await self.inner.send(data, dest)

    async def receive(self) -> tuple[bytes, Any]:
        return await self.inner.receive()

    async def aclose(self) -> None:
        await self.inner.aclose()

    async def reachability(self) -> AsyncIterator[tuple[int, bool]]:
        async with self._events:
            async for event in self._events:
                yield event


def _primary_of(node: Node, members: tuple[int, ...]) -> bool:
    return node.is_primary and node.view is not None and node.view.node_ids == members


async def test_unreachable_suspects_at_once_and_reachable_hands_back(tmp_path: object) -> None:
    quorum = QuorumConfig(policy="majority", votes={1: 1, 2: 1, 3: 1})
    async with MemoryNetwork(seed=3) as net:
        ends = {n: Reporting(net.endpoint(n)) for n in (1, 2, 3)}
        # The events pass through the security envelope's wrapper, as over TIPC in the daemon.
        transports = {n: SecureTransport(ends[n], Envelope(node_id=n, cluster_name="t", keyring=None)) for n in ends}
        nodes = {n: Node(MembershipConfig(node_id=n, timing=TIMING), quorum, transports[n]) for n in (1, 2, 3)}
        async with nodes[1], nodes[2]:
            async with nodes[3]:
                with anyio.fail_after(30):  # the first view waits one suspect timeout (start-up grace)
                    for n in (1, 2, 3):
                        await nodes[n].wait_for(functools.partial(_primary_of, nodes[n], (1, 2, 3)))
                nodes[3].abort()  # a crash: nobody hears from it again
            started = anyio.current_time()
            for n in (1, 2):
                await ends[n].events.send((3, False))
            with anyio.fail_after(10):
                for n in (1, 2):
                    await nodes[n].wait_for(functools.partial(_primary_of, nodes[n], (1, 2)))
            assert anyio.current_time() - started < TIMING.suspect_timeout / 4
            # "Reachable" only hands the decision back to the detector: no view change by itself.
            view = nodes[1].view
            await ends[1].events.send((3, True))
            await anyio.sleep(0.3)
            assert nodes[1].view == view
