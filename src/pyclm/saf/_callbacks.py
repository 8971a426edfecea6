"""The callback queue of a SAF handle: pending callbacks in order, mirrored by its selection object.

Theory of operation
-------------------
The library produces callbacks (a track notification, the answer to
``saClmClusterNodeGetAsync``) on whatever thread runs the cluster; the application
runs them on its own thread(s) through ``saClmDispatch``.  Between the two sits a
:class:`CallbackQueue`: a FIFO of :class:`PendingCallback` tied to one
:class:`~pyclm.saf._selection.SelectionObject`.  Under the queue's one lock every
``put`` signals the selection object and every callback taken or purged consumes one
count, so the descriptor is readable exactly while the queue is not empty.

**Callbacks never run under the lock.**  The queue hands items out; a dispatcher takes
one (:meth:`CallbackQueue.take` returns with the lock released) and only then runs it.
A callback may therefore call back into the API (``saClmClusterTrackStop``,
``saClmResponse``, even ``saClmFinalize``), which needs this same lock, without
deadlock.  The one piece of foreign code run under the lock is the predicate given to
:meth:`CallbackQueue.purge`; it must only look at the item.

The dispatch modes map onto the queue so:

* ``SA_DISPATCH_ONE``: :meth:`~CallbackQueue.take` once; run the item if there was one.
* ``SA_DISPATCH_ALL``: take and run until :meth:`~CallbackQueue.take` returns None (or up
  to the number pending at the start, so callbacks that queue more cannot keep it going).
* ``SA_DISPATCH_BLOCKING``: loop ``while queue.wait(None): item = queue.take(); ...``.
  :meth:`~CallbackQueue.wait` returns False once the queue is closed, so finalizing the
  handle from another thread ends the loop.  Several threads may do this at once: each
  item goes to exactly one of them, and ``take`` may come back empty-handed after
  ``wait`` said True, because another thread was quicker.
"""

from __future__ import annotations

import enum
import threading
from collections import deque
from collections.abc import Callable
from typing import Generic, TypeVar

import attrs

from ..errors import UsageError
from ._selection import Backend, SelectionObject

__all__ = ["CallbackKind", "CallbackQueue", "PendingCallback"]

P = TypeVar("P")


class CallbackKind(enum.Enum):
    """Which SAF callback an item will become; ``saClmClusterTrackStop`` purges by kind."""

    TRACK = "track"
    """``saClmClusterTrackCallback``: purged by ``saClmClusterTrackStop``."""

    NODE_GET = "node_get"
    """``saClmClusterNodeGetCallback`` (the answer to ``NodeGetAsync``): survives TrackStop."""


@attrs.frozen(kw_only=True)
class PendingCallback(Generic[P]):
    """One queued callback: its kind and an opaque payload the dispatcher knows how to run."""

    kind: CallbackKind = attrs.field(validator=attrs.validators.instance_of(CallbackKind))
    payload: P


class CallbackQueue(Generic[P]):
    """A thread-safe FIFO of pending callbacks whose selection object is readable iff it is not empty.

    ``selection`` is a fresh :class:`SelectionObject` (of ``backend``) unless given; the
    queue owns it and closes it in :meth:`close`.
    """

    def __init__(self, *, selection: SelectionObject | None = None, backend: Backend | None = None) -> None:
        if selection is not None and backend is not None:
            raise UsageError("pass either selection= or backend=, not both: backend= only picks a new selection object")
        self._selection = SelectionObject(backend=backend) if selection is None else selection
        self._items: deque[PendingCallback[P]] = deque()
        self._lock = threading.Lock()
        self._changed = threading.Condition(self._lock)
        self._closed = False

    @property
    def selection(self) -> SelectionObject:
        """The selection object that mirrors this queue (``saClmSelectionObjectGet``)."""
        return self._selection

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called (the handle was finalized)."""
        return self._closed

    def __len__(self) -> int:
        return len(self._items)

    def put(self, item: PendingCallback[P]) -> bool:
        """Queue ``item`` last; the selection object is readable from now until it is taken.

        Returns False, dropping the item, if the queue is closed: producers race with
        ``saClmFinalize`` and must not fail because of it.
        """
        with self._lock:
            if self._closed:
                return False
            self._items.append(item)
            self._selection.signal()
            self._changed.notify_all()
            return True

    def take(self) -> PendingCallback[P] | None:
        """Remove and return the oldest item, or None at once if there is none (or the queue is closed).

        Never blocks.  Run the item after this returns: the lock is released by then.
        """
        with self._lock:
            if not self._items:
                return None
            item = self._items.popleft()
            consumed = self._selection.consume()
            assert consumed, "selection count fell behind the queue (was the descriptor read directly?)"
            return item

    def purge(self, predicate: Callable[[PendingCallback[P]], bool]) -> int:
        """Remove every queued item for which ``predicate`` is true; return how many.

        The order of the others is kept.  ``predicate`` runs under the queue's lock: it
        must only inspect the item (for TrackStop: ``lambda p: p.kind is CallbackKind.TRACK``).
        """
        with self._lock:
            kept: deque[PendingCallback[P]] = deque()
            removed = 0
            for item in self._items:
                if predicate(item):
                    removed += 1
                else:
                    kept.append(item)
            self._items = kept
            for _ in range(removed):
                consumed = self._selection.consume()
                assert consumed, "selection count fell behind the queue (was the descriptor read directly?)"
            return removed

    def wait(self, timeout: float | None) -> bool:
        """Block until an item is pending or the queue is closed, or ``timeout`` seconds pass.

        Returns True if an item is pending (another thread may still take it first),
        False if the queue is closed or the time ran out.  ``None`` waits without limit:
        :meth:`close`, from any thread, ends the wait.
        """
        with self._lock:
            self._changed.wait_for(lambda: self._closed or bool(self._items), timeout)
            return not self._closed and bool(self._items)

    def close(self) -> int:
        """Finalize: drop every pending item, wake every :meth:`wait`, close the selection object.

        Returns how many items were dropped.  Idempotent (0 the second time).  Detach any
        event-loop watcher first when you can; if one is still attached, the descriptor
        stays open, readable, until that watcher lets go (see :mod:`pyclm.saf._selection`).
        """
        with self._lock:
            if self._closed:
                return 0
            self._closed = True
            dropped = len(self._items)
            self._items.clear()
            self._selection.close()
            self._changed.notify_all()
            return dropped

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"{len(self._items)} pending"
        return f"<CallbackQueue {state} {self._selection!r}>"
