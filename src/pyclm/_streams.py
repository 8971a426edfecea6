"""A node's subscribers: bounded event and membership streams, and membership listeners.

Theory of operation
-------------------
What :meth:`Node.events <pyclm.runtime.Node.events>` and :meth:`Node.track
<pyclm.runtime.Node.track>` hand out is one bounded buffer per subscriber
(:class:`_BoundedStream`), read as an async iterator.  The node's owner task is the only
one that fills it, and it never waits for a reader: when ``buffer`` items wait and
another comes, the oldest is dropped, and the next item yielded is a marker with the
count (:class:`EventsLost`, :class:`~pyclm.clm.ChangesLost`), followed by the newer
items.  So a slow subscriber loses its oldest items, never the node's progress.  A
tracker's first item is the membership snapshot, taken in the same step as the
subscription (no change falls between the two); it is never dropped.

:class:`Subscribers` is a node's registry of them and of its membership listeners.  The
owner task hands it every event (:meth:`Subscribers.publish`) and every membership
change (:meth:`Subscribers.deliver`: each tracker, then each listener, in order), and
ends the streams when the node stops; after that a stream handed out ends at once.
Streams are for the event loop's tasks.  Listeners may be added and removed from any
thread: under a lock, copy-on-write, so the owner task reads the tuple without one; a
removed listener is marked inactive, so a delivery already under way skips it.  An
exception from a listener is logged (logger ``pyclm.runtime``, the node's) and the
delivery goes on.
"""

from __future__ import annotations

import logging
import threading
from collections import deque
from collections.abc import Callable
from typing import TYPE_CHECKING, Any, Generic, Protocol, Self, TypeVar

import anyio
import anyio.lowlevel
import attrs

from .clm import ChangesLost, MembershipChange, MembershipSnapshot
from .events import Event

if TYPE_CHECKING:
    from .runtime import Node

log = logging.getLogger("pyclm.runtime")  # the node's logger: where listener errors are documented to go

ItemT = TypeVar("ItemT")
MarkerT = TypeVar("MarkerT")


@attrs.frozen(kw_only=True)
class EventsLost:
    """Yielded by :meth:`Node.events` in place of ``count`` events this subscriber was too slow to take.

    The lost events are the oldest ones that were waiting: everything yielded after the
    marker is newer.  Read :attr:`Node.view` and :attr:`Node.is_primary` to catch up.
    """

    count: int


class _BoundedStream(Generic[ItemT, MarkerT]):
    """One subscriber's bounded buffer, read as an async iterator; the owner task fills it.

    ``first`` (if given) is yielded before anything else and does not count against
    ``buffer``.  When ``buffer`` items wait and another comes, the oldest is dropped and
    the next item yielded is ``lost(count)``, followed by the newer items.  The iteration
    ends once the stream is ended and drained.  ``subscribers`` is the owner's set this
    stream sits in; :meth:`close` takes it out.
    """

    def __init__(
        self,
        buffer: int,
        lost: Callable[[int], MarkerT],
        subscribers: set[Any],
        first: ItemT | None = None,
    ) -> None:
        self._buffer = buffer
        self._lost_marker = lost
        self._subscribers = subscribers
        self._first = first
        self._queue: deque[ItemT] = deque()
        self._lost = 0
        self._ended = False
        self._wake = anyio.Event()

    def __aiter__(self) -> Self:
        return self

    async def __anext__(self) -> ItemT | MarkerT:
        await anyio.lowlevel.checkpoint_if_cancelled()
        while True:
            if self._first is not None:
                first, self._first = self._first, None
                return first
            if self._lost:
                lost, self._lost = self._lost, 0
                return self._lost_marker(lost)
            if self._queue:
                return self._queue.popleft()
            if self._ended:
                raise StopAsyncIteration
            await self._wake.wait()
            self._wake = anyio.Event()

    def close(self) -> None:
        """Unsubscribe now: what is still buffered is discarded and the iteration ends."""
        self._first = None
        self._queue.clear()
        self._lost = 0
        self._end()
        self._subscribers.discard(self)

    def __enter__(self) -> Self:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _put(self, item: ItemT) -> None:
        if len(self._queue) >= self._buffer:
            self._queue.popleft()
            self._lost += 1
        self._queue.append(item)
        self._wake.set()

    def _end(self) -> None:
        self._ended = True
        self._wake.set()


class EventSubscription(_BoundedStream[Event, EventsLost]):
    """One subscriber's stream of a node's events: an async iterator; see :meth:`Node.events`."""

    def __init__(self, node: Node, buffer: int) -> None:
        super().__init__(buffer, lambda count: EventsLost(count=count), node._subscribers.events)


class Tracked(Protocol):
    """What a tracker is taken from: a :class:`~pyclm.runtime.Node` or a :class:`~pyclm.remote.RemoteNode`."""

    _subscribers: Subscribers

    def membership_snapshot(self) -> MembershipSnapshot: ...


class MembershipTrack(_BoundedStream[MembershipSnapshot | MembershipChange, ChangesLost]):
    """One tracker of a node's membership: an async iterator; see :meth:`Node.track`."""

    def __init__(self, node: Tracked, buffer: int) -> None:
        # Taken in the same step as the subscription: no change falls between the two.
        first = node.membership_snapshot()
        super().__init__(buffer, lambda count: ChangesLost(count=count), node._subscribers.trackers, first)


class _Listener:
    """One registered membership listener; ``active`` goes False when it is removed."""

    __slots__ = ("active", "fn")

    def __init__(self, fn: Callable[[MembershipChange], None]) -> None:
        self.fn = fn
        self.active = True


class Subscribers:
    """A node's event subscriptions, membership trackers and membership listeners.

    The Node's API methods add them (:meth:`subscribe`, :meth:`add_listener`); its owner
    task feeds them (:meth:`publish`, :meth:`deliver`) and ends the streams when the
    node stops (:meth:`end_events`, then after the last change :meth:`end_trackers`).
    """

    def __init__(self, node_id: int) -> None:
        self._node_id = node_id
        self.events: set[EventSubscription] = set()
        self.trackers: set[MembershipTrack] = set()
        self._listeners: tuple[_Listener, ...] = ()
        self._listeners_lock = threading.Lock()

    def subscribe(self, stream: EventSubscription | MembershipTrack, *, stopped: bool) -> None:
        """Feed ``stream`` from now on; once the node ``stopped``, end it at once instead."""
        if stopped:
            stream._end()
        elif isinstance(stream, EventSubscription):
            self.events.add(stream)
        else:
            self.trackers.add(stream)

    def add_listener(self, fn: Callable[[MembershipChange], None]) -> Callable[[], None]:
        """Call ``fn(change)`` for every later change (see :meth:`Node.add_membership_listener`);
        returns the function that removes it.  Both from any thread."""
        listener = _Listener(fn)
        with self._listeners_lock:
            self._listeners = (*self._listeners, listener)

        def remove() -> None:
            with self._listeners_lock:
                listener.active = False
                self._listeners = tuple(entry for entry in self._listeners if entry is not listener)

        return remove

    def publish(self, event: Event) -> None:
        """Hand ``event`` to every event subscription (owner task)."""
        for subscription in self.events:
            subscription._put(event)

    def deliver(self, change: MembershipChange) -> None:
        """Hand ``change`` to every tracker, then call every listener (owner task)."""
        for track in self.trackers:
            track._put(change)
        for listener in self._listeners:
            if not listener.active:
                continue  # removed (from another thread) after this loop began
            try:
                listener.fn(change)
            except Exception:
                log.exception("node %d: membership listener %r raised; it stays registered", self._node_id, listener.fn)

    def end_events(self) -> None:
        """The node stopped: every event subscription ends once drained."""
        for subscription in self.events:
            subscription._end()
        self.events.clear()

    def end_trackers(self) -> None:
        """The node stopped and delivered its last change: every tracker ends once drained."""
        for track in self.trackers:
            track._end()
        self.trackers.clear()
