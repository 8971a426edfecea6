"""An in-process network for asyncio or trio programs, with the simulator's fault model.

:class:`MemoryNetwork` connects :class:`MemoryTransport` endpoints inside one process.
Every datagram goes through the same :class:`~pyclm.sim.network.NetworkModel` as in the
simulator (seeded loss, duplication, reordering, latency and jitter, partitions,
one-way links), but in real time: ``anyio.current_time()`` plus the model's delay is
when a copy lands in the destination's receive buffer.

One delivery task per network keeps the copies in flight in a heap ordered by arrival
time and sleeps until the earliest one (a send that makes a new earliest wakes it).
A node's address is its node id; a datagram to :data:`~pyclm.core.GROUP` goes to
every endpoint open at send time except the sender's.  Copies that arrive to a full
receive buffer, or for a node id with no open endpoint, are dropped and counted.

Usage::

    async with MemoryNetwork(NetworkConditions(latency=0.001), seed=7) as net:
        async with Node(config, quorum, net.endpoint(1)) as node:
            ...
            net.partition([[1, 2, 3], [4, 5]])
"""

from __future__ import annotations

import heapq
import math
import random
from collections.abc import Iterable
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc
import anyio.lowlevel

from .._taskgroups import exit_task_group
from ..core import GROUP
from ..errors import UsageError
from ..sim.network import NetworkConditions, NetworkModel

#: Datagrams a receive buffer holds before arrivals are dropped.
DEFAULT_BUFFER_SIZE = 1024
#: The longest datagram a memory network carries by default.
DEFAULT_MAX_DATAGRAM = 65000


class MemoryTransport:
    """One node's endpoint on a :class:`MemoryNetwork`; get it from :meth:`MemoryNetwork.endpoint`.

    Implements :class:`~pyclm.transports.base.Transport`: the address is the node id.
    """

    def __init__(self, network: MemoryNetwork, node_id: int, buffer_size: int) -> None:
        self.network = network
        self.address = node_id
        self.max_datagram = network.max_datagram
        #: Datagrams that arrived while the receive buffer was full (and were dropped).
        self.overflows = 0
        self._in, self._out = anyio.create_memory_object_stream[tuple[bytes, int]](buffer_size)
        self._closed = False

    @property
    def closed(self) -> bool:
        return self._closed

    async def send(self, data: bytes, dest: Any) -> None:
        """Hand ``data`` to the network for ``dest`` (a node id or GROUP); lost copies are not errors."""
        if self._closed:
            raise anyio.ClosedResourceError
        self.network._send(self.address, data, dest)

    async def receive(self) -> tuple[bytes, int]:
        """The next datagram and the sender's node id; :class:`anyio.ClosedResourceError` once closed."""
        try:
            return await self._out.receive()
        except anyio.EndOfStream:
            raise anyio.ClosedResourceError from None

    async def aclose(self) -> None:
        """Leave the network; pending and later receives raise :class:`anyio.ClosedResourceError`."""
        self._close()
        await anyio.lowlevel.checkpoint()

    def _close(self) -> None:
        if self._closed:
            return
        self._closed = True
        self._in.close()
        self._out.close()
        self.network._detach(self)

    def _deliver(self, data: bytes, src: int) -> bool:
        try:
            self._in.send_nowait((data, src))
        except anyio.WouldBlock:
            self.overflows += 1
            return False
        return True

    def __repr__(self) -> str:
        return f"<MemoryTransport node {self.address}{' closed' if self._closed else ''}>"


class MemoryNetwork:
    """An in-process datagram network; use as ``async with MemoryNetwork(...) as net``.

    ``seed`` seeds the fault model's ``random.Random`` (the order in which tasks send
    still depends on the event loop, so runs are alike, not identical).  Exiting the
    ``async with`` closes every endpoint and drops the datagrams in flight.
    """

    def __init__(
        self,
        conditions: NetworkConditions | None = None,
        *,
        seed: int | None = 0,
        max_datagram: int = DEFAULT_MAX_DATAGRAM,
        buffer_size: int = DEFAULT_BUFFER_SIZE,
    ) -> None:
        if not isinstance(max_datagram, int) or max_datagram < 1:
            raise ValueError(f"max_datagram must be a positive number of bytes, got {max_datagram!r}")
        if not isinstance(buffer_size, int) or buffer_size < 1:
            raise ValueError(f"buffer_size must be a positive number of datagrams, got {buffer_size!r}")
        self.model = NetworkModel(conditions or NetworkConditions(), random.Random(seed))
        self.max_datagram = max_datagram
        self.buffer_size = buffer_size
        #: ``tx``: datagrams sent.  Per destination: ``cut`` (link down), ``lost`` (random
        #: loss), ``duplicated`` (extra copies).  Per copy: ``delivered``, ``overflow`` (full
        #: receive buffer), ``undeliverable`` (no open endpoint with that address).
        self.counters: dict[str, int] = {}
        self._endpoints: dict[int, MemoryTransport] = {}
        self._heap: list[tuple[float, int, int, bytes, int]] = []  # (arrival, seq, dst, data, src)
        self._seq = 0
        self._wake: anyio.Event | None = None
        self._task_group: anyio.abc.TaskGroup | None = None
        self._used = False

    # ------------------------------------------------------------------ lifetime

    async def __aenter__(self) -> Self:
        if self._used:
            raise UsageError("a MemoryNetwork runs once: create a new one")
        self._used = True
        self._wake = anyio.Event()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        task_group.start_soon(self._deliver_loop)
        self._task_group = task_group
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        task_group, self._task_group = self._task_group, None
        assert task_group is not None
        for endpoint in list(self._endpoints.values()):
            endpoint._close()
        self._heap.clear()
        task_group.cancel_scope.cancel()
        return await exit_task_group(task_group, exc_type, exc, tb)

    @property
    def running(self) -> bool:
        return self._task_group is not None

    def endpoint(self, node_id: int) -> MemoryTransport:
        """A new endpoint with address ``node_id``; at most one open endpoint per id.

        A restarted node gets a new endpoint once its old one is closed; copies still
        in flight to ``node_id`` then land in the new one, as with a reused UDP port.
        """
        if not self.running:
            raise UsageError("enter `async with MemoryNetwork(...)` before asking for endpoints")
        if not isinstance(node_id, int) or isinstance(node_id, bool) or node_id < 0:
            raise ValueError(f"an endpoint address is a node id (an int >= 0), got {node_id!r}")
        if node_id in self._endpoints:
            raise UsageError(f"node {node_id} already has an open endpoint: close it (its Node exits) first")
        endpoint = self._endpoints[node_id] = MemoryTransport(self, node_id, self.buffer_size)
        return endpoint

    # ------------------------------------------------------------------ faults (delegated to the model)

    def partition(self, groups: Iterable[Iterable[int]]) -> None:
        """Only nodes in the same group hear each other; a node not named is alone."""
        self.model.partition([list(group) for group in groups])

    def heal(self) -> None:
        """Every link up again (ends partitions and one-way cuts)."""
        self.model.heal()

    def set_link(self, src: int, dst: int, up: bool) -> None:
        """Take the one direction ``src -> dst`` down, or up again."""
        self.model.set_link(src, dst, up)

    def set_loss(self, loss: float) -> None:
        """The probability that one copy of a datagram is lost."""
        self.model.set_loss(loss)

    # ------------------------------------------------------------------ delivery

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] = self.counters.get(name, 0) + n

    def _detach(self, endpoint: MemoryTransport) -> None:
        if self._endpoints.get(endpoint.address) is endpoint:
            del self._endpoints[endpoint.address]

    def _send(self, src: int, data: bytes, dest: Any) -> None:
        if not isinstance(data, bytes | bytearray | memoryview):
            raise TypeError(f"a datagram is bytes, got {type(data).__name__}")
        if len(data) > self.max_datagram:
            raise ValueError(f"datagram of {len(data)} bytes is longer than max_datagram={self.max_datagram}")
        if dest is GROUP:
            targets: Iterable[int] = sorted(n for n in self._endpoints if n != src)
        elif isinstance(dest, int) and not isinstance(dest, bool):
            targets = () if dest == src else (dest,)
        else:
            raise ValueError(f"a memory-network destination is a node id or GROUP, got {dest!r}")
        self._count("tx")
        data = bytes(data)
        now = anyio.current_time()
        heap = self._heap
        earliest = heap[0][0] if heap else math.inf
        for dst in targets:
            if not self.model.link_up(src, dst):
                self._count("cut")
                continue
            delays = self.model.delays(src, dst)
            if not delays:
                self._count("lost")
            elif len(delays) > 1:
                self._count("duplicated", len(delays) - 1)
            for delay in delays:
                self._seq += 1
                heapq.heappush(heap, (now + delay, self._seq, dst, data, src))
        if heap and heap[0][0] < earliest and self._wake is not None:
            self._wake.set()

    async def _deliver_loop(self) -> None:
        heap = self._heap
        while True:
            now = anyio.current_time()
            while heap and heap[0][0] <= now:
                _, _, dst, data, src = heapq.heappop(heap)
                endpoint = self._endpoints.get(dst)
                if endpoint is None:
                    self._count("undeliverable")
                elif endpoint._deliver(data, src):
                    self._count("delivered")
                else:
                    self._count("overflow")
            self._wake = anyio.Event()
            with anyio.CancelScope(deadline=heap[0][0] if heap else math.inf):
                await self._wake.wait()
