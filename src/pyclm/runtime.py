"""The anyio runtime: :class:`Node` runs one membership core over a transport.

Theory of operation
-------------------
A node owns ONE :class:`~pyclm.core.Membership` core, ONE transport and ONE storage,
and follows aioquic's protocol pump.  A single *owner task* makes every call into the
core; it takes its inputs from an inbox (datagrams, put there by the receive task, and
API calls such as :meth:`Node.leave`) and from the core's one timer.  After every input
it drains the core at once (no ``await`` between the call and the draining), then acts
on the outputs in the order the core's contract asks for:

1. persist every storage write, one after the other, each complete before the next
   step (writes to any storage but :class:`~pyclm.storage.MemoryStorage` run in a
   worker thread, so the event loop keeps running meanwhile);
2. send every datagram;
3. publish every event: update :attr:`Node.view` and :attr:`Node.is_primary` and hand
   the event to each subscriber of :meth:`Node.events`;
4. re-arm the timer from :meth:`~pyclm.core.Membership.get_timer`.

So nothing that follows a write (a datagram, an event, the node's visible state) is
seen before the write is durable.  With one owner and an inbox there is no lock.

Time is ``anyio.current_time()``; the wall clock that seeds the incarnation is
``time.time_ns()``.  The core itself never reads a clock.

Stopping: :meth:`Node.leave` (or leaving the ``async with`` block normally) tells the
cluster and stops; :meth:`Node.abort` (or an exception out of the block) stops at once,
which the cluster sees as a crash.  Either way the node closes its transport.
"""

from __future__ import annotations

import enum
import logging
import math
import random
import time
from collections import deque
from collections.abc import Callable, Mapping
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread
import attrs

from ._taskgroups import exit_task_group
from .config import MembershipConfig
from .core import Membership
from .errors import UsageError
from .events import Event, PrimaryFormed, PrimaryLost, Stopped, ViewInstalled
from .ids import View
from .storage import MemoryStorage, Storage
from .transports.base import Transport
from .voting import QuorumConfig

log = logging.getLogger("pyclm.runtime")

#: Datagrams the inbox holds between the receive task and the owner task; more are dropped.
DEFAULT_INBOX_SIZE = 1024
#: Events a subscriber may fall behind by before the oldest are dropped.
DEFAULT_EVENT_BUFFER = 256


@attrs.frozen(kw_only=True)
class EventsLost:
    """Yielded by :meth:`Node.events` in place of ``count`` events this subscriber was too slow to take.

    The lost events are the oldest ones that were waiting: everything yielded after the
    marker is newer.  Read :attr:`Node.view` and :attr:`Node.is_primary` to catch up.
    """

    count: int


class EventSubscription:
    """One subscriber's stream of a node's events: an async iterator; see :meth:`Node.events`."""

    def __init__(self, node: Node, buffer: int) -> None:
        self._node = node
        self._buffer = buffer
        self._queue: deque[Event] = deque()
        self._lost = 0
        self._ended = False
        self._wake = anyio.Event()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> Event | EventsLost:
        await anyio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self._lost:
                lost, self._lost = self._lost, 0
                return EventsLost(count=lost)
            if self._queue:
                return self._queue.popleft()
            if self._ended:
                raise StopAsyncIteration
            await self._wake.wait()
            self._wake = anyio.Event()

    def close(self) -> None:
        """Unsubscribe now: what is still buffered is discarded and the iteration ends."""
        self._queue.clear()
        self._lost = 0
        self._end()
        self._node._subscriptions.discard(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _put(self, event: Event) -> None:
        if len(self._queue) >= self._buffer:
            self._queue.popleft()
            self._lost += 1
        self._queue.append(event)
        self._wake.set()

    def _end(self) -> None:
        self._ended = True
        self._wake.set()


class _Call:
    """An API call waiting in the inbox for the owner task."""

    __slots__ = ("done", "error", "fn")

    def __init__(self, fn: Callable[[Membership, float], None]) -> None:
        self.fn = fn
        self.done = anyio.Event()
        self.error: UsageError | None = None


class _Phase(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPED = "stopped"


class Node:
    """A cluster member: one membership core driven over ``transport``, persisting to ``storage``.

    Use as ``async with Node(config, quorum, transport, storage) as node:``.  Entering
    creates the core (a new incarnation, durable before it returns) and starts the
    node's tasks; leaving the block normally leaves the cluster gracefully (see
    :meth:`leave`), leaving it with an exception stops at once like :meth:`abort`.  The
    node closes ``transport`` when it stops.  A Node runs once: to rejoin, build a new
    one with the same storage (it gets a higher incarnation).

    ``storage`` defaults to a fresh :class:`~pyclm.storage.MemoryStorage` (nothing
    survives the process).  ``rng`` feeds the core's random choices (default: unseeded).
    If ``config.max_datagram`` exceeds ``transport.max_datagram`` the core is built with
    the transport's limit.
    """

    def __init__(
        self,
        config: MembershipConfig,
        quorum: QuorumConfig,
        transport: Transport,
        storage: Storage | None = None,
        rng: random.Random | None = None,
        *,
        inbox_size: int = DEFAULT_INBOX_SIZE,
    ) -> None:
        if not isinstance(transport, Transport):
            raise TypeError(f"transport must implement pyclm.transports.Transport, got {type(transport).__name__}")
        if inbox_size < 1:
            raise ValueError(f"inbox_size must hold at least one datagram, got {inbox_size!r}")
        if config.max_datagram > transport.max_datagram:
            config = attrs.evolve(config, max_datagram=transport.max_datagram)
        self.config = config
        self.quorum = quorum
        self.transport = transport
        self.storage: Storage = storage if storage is not None else MemoryStorage()
        self._rng = rng if rng is not None else random.Random()
        self._inbox_size = inbox_size
        self._storage_blocks = not isinstance(self.storage, MemoryStorage)
        self._phase = _Phase.NEW
        self._core: Membership | None = None
        self._view: View | None = None
        self._primary_number: int | None = None
        self._inbox: deque[tuple[bytes, Any] | _Call] = deque()
        self._timer_at: float | None = None
        self._subscriptions: set[EventSubscription] = set()
        self._dropped_inbox_full = 0
        self._task_group: anyio.abc.TaskGroup | None = None
        # Created on entry (they need a running event loop).
        self._scope: anyio.CancelScope | None = None  # the owner task's: abort() cancels it
        self._receive_scope: anyio.CancelScope | None = None
        self._wake: anyio.Event | None = None
        self._changed: anyio.Event | None = None
        self._stopped: anyio.Event | None = None

    # ------------------------------------------------------------------ state

    @property
    def node_id(self) -> int:
        return self.config.node_id

    @property
    def incarnation(self) -> int | None:
        """This life's incarnation (None before the node started)."""
        return self._core.incarnation if self._core is not None else None

    @property
    def view(self) -> View | None:
        """The view this node has installed (None before the first one and once stopped)."""
        return self._view

    @property
    def primary_number(self) -> int | None:
        """The primary number while the current view is the primary component, else None."""
        return self._primary_number

    @property
    def fencing_token(self) -> int | None:
        """The primary number, as a fencing token for resources outside the cluster.

        Primary numbers only grow along the chain of primaries, and with the lease on
        no two primaries act at once (docs/lease.md).  A resource that remembers the
        highest token it has seen and refuses requests carrying a lower one also stops
        a primary whose messages were delayed past the end of its lease.  None while this
        node is not acting as primary.
        """
        return self._primary_number

    @property
    def is_primary(self) -> bool:
        return self._primary_number is not None

    @property
    def running(self) -> bool:
        return self._phase is _Phase.RUNNING

    @property
    def stopped(self) -> bool:
        """True once the node stopped (left or aborted) and closed its transport."""
        return self._phase is _Phase.STOPPED

    @property
    def counters(self) -> dict[str, int]:
        """The core's counters (its policy's prefixed ``quorum_``), plus ``rx_dropped_inbox_full``
        (datagrams the owner task could not keep up with)."""
        out = self._core.all_counters() if self._core is not None else {}
        if self._dropped_inbox_full:
            out["rx_dropped_inbox_full"] = self._dropped_inbox_full
        return out

    def __repr__(self) -> str:
        view = self._view.view_id if self._view is not None else None
        return f"<Node {self.node_id} {self._phase.value} view={view} primary={self._primary_number}>"

    # ------------------------------------------------------------------ API

    def events(self, buffer: int = DEFAULT_EVENT_BUFFER) -> EventSubscription:
        """Subscribe to this node's events from now on: ``async for event in node.events():``.

        Yields :class:`~pyclm.events.ViewInstalled`, :class:`~pyclm.events.PrimaryFormed`,
        :class:`~pyclm.events.PrimaryLost`, :class:`~pyclm.events.ClmMessage` and, after a
        graceful leave, a last :class:`~pyclm.events.Stopped`; the iteration ends when the
        node stops.  Each subscriber has its own buffer of ``buffer`` events: when it is
        full the oldest is dropped and the next item yielded is an :class:`EventsLost`
        marker with the count.  Use ``with node.events() as events:`` to unsubscribe on
        the way out.
        """
        if buffer < 1:
            raise ValueError(f"buffer must hold at least one event, got {buffer!r}")
        subscription = EventSubscription(self, buffer)
        if self._phase is _Phase.STOPPED:
            subscription._end()
        else:
            self._subscriptions.add(subscription)
        return subscription

    async def wait_for(self, predicate: Callable[[], object], timeout: float | None = None) -> None:
        """Return once ``predicate()`` is true; it is re-checked after every input this node handles.

        Raises :class:`TimeoutError` after ``timeout`` seconds, and
        :class:`~pyclm.errors.UsageError` if the node stops while the predicate is false.
        """
        self._require_started()
        with anyio.fail_after(timeout):
            while not predicate():
                if self._phase is _Phase.STOPPED:
                    raise UsageError(f"node {self.node_id} stopped before the condition held")
                assert self._changed is not None
                await self._changed.wait()

    async def leave(self) -> None:
        """Leave the cluster gracefully and stop; returns once the node stopped.

        The core tells the group it leaves (the others remove it at once, without
        waiting for their failure detectors), the node sends that, then closes its
        transport.  Calling it again, or after :meth:`abort`, does nothing.
        """
        self._require_started()
        if self._phase is _Phase.RUNNING:
            await self._call(lambda core, now: None if core.stopped else core.leave(now))
        assert self._stopped is not None
        await self._stopped.wait()

    def abort(self) -> None:
        """Stop at once without telling the cluster (it sees a crash); the transport gets closed.

        Usable from any task, also synchronously.  The node has stopped by the time
        its ``async with`` block is left (or :attr:`stopped` is true).
        """
        self._require_started()
        assert self._scope is not None
        self._scope.cancel()

    async def remove_nodes(self, node_ids: list[int], *, reason: str) -> None:
        """Operator recovery: declare ``node_ids`` permanently gone (see docs/voting.md first).

        Recorded durably, audited (log line and the ``audit`` record) and spread to the
        other members with the next view; raises :class:`UsageError` when the quorum policy
        has no such notion.
        """
        self._require_started()
        wall = time.time_ns()

        def remove(core: Membership, now: float) -> None:
            core.remove_nodes(node_ids, now, wall_clock_ns=wall, reason=reason)

        await self._call(remove)

    async def set_reachable(self, node_id: int, reachable: bool) -> None:
        """External connectivity input (see :meth:`pyclm.core.Membership.set_reachable`)."""
        self._require_started()
        await self._call(lambda core, now: core.set_reachable(node_id, reachable, now))

    # ------------------------------------------------------------------ lifetime

    async def __aenter__(self) -> Self:
        if self._phase is not _Phase.NEW:
            raise UsageError("a Node runs once: create a new Node (with the same storage) to rejoin")
        stored: Mapping[str, bytes] = await self._storage_call(self.storage.load)
        self._core = Membership(
            self.config,
            self.quorum,
            stored=stored,
            wall_clock_ns=time.time_ns(),
            now=anyio.current_time(),
            rng=self._rng,
        )
        self._scope = anyio.CancelScope()
        self._receive_scope = anyio.CancelScope()
        self._wake = anyio.Event()
        self._changed = anyio.Event()
        self._stopped = anyio.Event()
        self._phase = _Phase.RUNNING
        task_group = self._task_group = anyio.create_task_group()
        await task_group.__aenter__()
        try:
            await task_group.start(self._main)
        except BaseException as error:
            await self._exit_task_group(type(error), error, error.__traceback__)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        try:
            if exc is None and self._phase is _Phase.RUNNING:
                await self.leave()
        finally:
            self.abort()  # nothing left to stop after a leave; at once otherwise
            suppress = await self._exit_task_group(exc_type, exc, tb)
        return suppress

    async def _exit_task_group(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        task_group = self._task_group
        assert task_group is not None
        return await exit_task_group(task_group, exc_type, exc, tb)

    async def _main(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        assert self._scope is not None and self._receive_scope is not None and self._task_group is not None
        try:
            with self._scope:
                await self._pump()  # the new incarnation is durable before entering returns
                task_status.started()
                self._task_group.start_soon(self._receive_loop)
                await self._serve()
        finally:
            self._receive_scope.cancel()
            with anyio.CancelScope(shield=True):
                await self.transport.aclose()
            self._finish()

    def _finish(self) -> None:
        self._phase = _Phase.STOPPED
        self._view = None
        self._primary_number = None
        for subscription in self._subscriptions:
            subscription._end()
        self._subscriptions.clear()
        for item in self._inbox:
            if isinstance(item, _Call):
                item.done.set()
        self._inbox.clear()
        assert self._stopped is not None
        self._stopped.set()
        self._notify()

    # ------------------------------------------------------------------ the owner task

    async def _serve(self) -> None:
        """The owner task: one input at a time, each followed by a pump, until the core stops."""
        core = self._core
        assert core is not None
        inbox = self._inbox
        while not core.stopped:
            if inbox:
                item = inbox.popleft()
                if isinstance(item, _Call):
                    try:
                        item.fn(core, anyio.current_time())
                    except UsageError as error:
                        item.error = error
                    try:
                        await self._pump()
                    finally:
                        item.done.set()
                else:
                    core.receive_datagram(item[0], item[1], anyio.current_time())
                    await self._pump()
                await anyio.lowlevel.checkpoint()
            timer_at = self._timer_at
            now = anyio.current_time()
            if timer_at is not None and not core.stopped and now >= timer_at:
                core.handle_timer(now)
                await self._pump()
            elif not inbox and not core.stopped:
                self._wake = anyio.Event()
                with anyio.CancelScope(deadline=math.inf if timer_at is None else timer_at):
                    await self._wake.wait()

    async def _pump(self) -> None:
        """Drain the core (no await in between), then persist, send, publish, re-arm: in that order."""
        core = self._core
        assert core is not None
        writes = core.writes_to_persist()
        datagrams = core.datagrams_to_send()
        events: list[Event] = []
        while (event := core.next_event()) is not None:
            events.append(event)
        timer_at = core.get_timer()
        for write in writes:
            await self._storage_call(self.storage.write, write.key, write.data)
        try:
            for data, dest in datagrams:
                await self.transport.send(data, dest)
        except anyio.ClosedResourceError:
            log.debug("node %d: its transport was closed under it; stopping", self.node_id)
            self.abort()
            await anyio.sleep_forever()  # the abort's cancellation lands here
        for event in events:
            self._publish(event)
        self._timer_at = timer_at
        self._notify()

    def _publish(self, event: Event) -> None:
        if isinstance(event, ViewInstalled):
            self._view = event.view
            self._primary_number = None
        elif isinstance(event, PrimaryFormed):
            self._primary_number = event.number
        elif isinstance(event, PrimaryLost | Stopped):
            self._primary_number = None
        for subscription in self._subscriptions:
            subscription._put(event)

    async def _receive_loop(self) -> None:
        """Move datagrams from the transport to the inbox (dropping them when it is full)."""
        inbox = self._inbox
        assert self._receive_scope is not None
        with self._receive_scope:
            try:
                while True:
                    datagram = await self.transport.receive()
                    if len(inbox) >= self._inbox_size:
                        self._dropped_inbox_full += 1
                        continue
                    inbox.append(datagram)
                    assert self._wake is not None
                    self._wake.set()
            except (anyio.ClosedResourceError, anyio.EndOfStream, anyio.BrokenResourceError):
                log.debug("node %d: its transport was closed under it; stopping", self.node_id)
                self.abort()

    # ------------------------------------------------------------------ helpers

    async def _call(self, fn: Callable[[Membership, float], None]) -> None:
        """Run ``fn(core, now)`` on the owner task, followed by a pump; re-raise its UsageError."""
        if self._phase is not _Phase.RUNNING:
            raise UsageError(f"node {self.node_id} has stopped: create a new Node to rejoin")
        call = _Call(fn)
        self._inbox.append(call)
        assert self._wake is not None
        self._wake.set()
        await call.done.wait()
        if call.error is not None:
            raise call.error

    async def _storage_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._storage_blocks:
            return await anyio.to_thread.run_sync(fn, *args)
        return fn(*args)

    def _notify(self) -> None:
        changed = self._changed
        if changed is not None and changed.statistics().tasks_waiting:
            changed.set()
            self._changed = anyio.Event()

    def _require_started(self) -> None:
        if self._phase is _Phase.NEW:
            raise UsageError("start the node first: `async with Node(...) as node:`")
