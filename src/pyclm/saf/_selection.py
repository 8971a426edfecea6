"""The selection object of a SAF handle: a file descriptor readable exactly while callbacks are pending.

Theory of operation
-------------------
``saClmSelectionObjectGet`` hands the application an operating-system handle it can give
to ``select``/``poll`` (or an event loop): it is readable while callbacks are pending for
the handle, and stops being readable once they have all been dispatched (level-triggered).
:class:`SelectionObject` is that handle, a counting semaphore the kernel can see:
:meth:`~SelectionObject.signal` adds one, :meth:`~SelectionObject.consume` takes one, and
the descriptor is readable exactly while the count is positive.  The callback queue
(:mod:`pyclm.saf._callbacks`) signals once per queued callback and consumes once per
callback taken or purged, so "readable" and "something is queued" never disagree.

Two implementations:

* ``"eventfd"`` (Linux): ``eventfd(EFD_SEMAPHORE | EFD_NONBLOCK)``.  The kernel keeps the
  count; each ``read`` returns 1 and decrements it, and fails with ``EAGAIN`` at 0.
* ``"socketpair"`` (everywhere else): a nonblocking socket pair.  The count lives here
  and the socket holds *one* byte while it is positive.  One byte per signal would not
  do: a Unix stream socket takes only a few hundred one-byte writes before ``EAGAIN``
  (every write is a separate buffer charged at its full overhead), far fewer than the
  callbacks a busy handle can have queued.

Closing (``saClmFinalize``) while an event loop is watching the descriptor
(:meth:`SelectionObject.begin_watch`, used by :mod:`pyclm.saf._loop`) does not close the
descriptor at once: closing it under a loop's feet would leave a registration on a
number the kernel may hand to the next handle.  Instead the object is marked closed, the
descriptor is made readable so the watcher wakes up, and the watcher closes it when it
stops watching (:meth:`SelectionObject.end_watch`).
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
from types import TracebackType
from typing import Literal, Self

from ..errors import UsageError

__all__ = ["Backend", "SelectionObject"]

Backend = Literal["eventfd", "socketpair"]


class _EventfdCounter:
    """The count is the kernel's (an ``EFD_SEMAPHORE`` eventfd)."""

    def __init__(self) -> None:
        self.fd = os.eventfd(0, os.EFD_SEMAPHORE | os.EFD_NONBLOCK | os.EFD_CLOEXEC)

    def signal(self) -> None:
        os.eventfd_write(self.fd, 1)

    def consume(self) -> bool:
        try:
            os.eventfd_read(self.fd)  # EFD_SEMAPHORE: always reads 1 and subtracts 1
        except BlockingIOError:
            return False
        return True

    def wake(self) -> None:
        self.signal()

    def close(self) -> None:
        os.close(self.fd)


class _SocketpairCounter:
    """The count is ours; the socket holds one byte while it is positive."""

    def __init__(self) -> None:
        self._reader, self._writer = socket.socketpair()
        self._reader.setblocking(False)
        self._writer.setblocking(False)
        self.fd = self._reader.fileno()
        self._count = 0
        self._unread = 0  # bytes written and not read back (0 or 1)

    def signal(self) -> None:
        self._count += 1
        self._settle()

    def consume(self) -> bool:
        if self._count == 0:
            self._settle()
            return False
        self._count -= 1
        self._settle()
        return True

    def wake(self) -> None:
        if self._unread == 0:
            self._writer.send(b"\0")
            self._unread = 1

    def _settle(self) -> None:
        """Make the socket hold a byte exactly while the count is positive."""
        if self._count > 0 and self._unread == 0:
            self._writer.send(b"\0")
            self._unread = 1
        elif self._count == 0 and self._unread > 0:
            # Where the pair is emulated over TCP (Windows) a byte may still be in
            # flight; it is read back at the next call, and meanwhile the worst case is
            # a wakeup that finds nothing to dispatch.
            with contextlib.suppress(BlockingIOError):
                self._unread -= len(self._reader.recv(self._unread))

    def close(self) -> None:
        self._reader.close()
        self._writer.close()


class SelectionObject:
    """A file descriptor that is readable exactly while its count is positive.

    ``backend`` picks the implementation: ``"eventfd"`` (Linux only), ``"socketpair"``, or
    ``None`` for eventfd where the platform has it.  Every method is thread-safe.

    Give :meth:`fileno` to ``select``/``poll``/an event loop; do not read the descriptor
    yourself (that would take counts the callback queue relies on).  :meth:`close` ends
    it; it is idempotent, and :meth:`fileno` raises :class:`~pyclm.errors.UsageError`
    afterwards.
    """

    def __init__(self, *, backend: Backend | None = None) -> None:
        if backend is None:
            backend = "eventfd" if hasattr(os, "eventfd") else "socketpair"
        self._counter: _EventfdCounter | _SocketpairCounter
        if backend == "eventfd":
            if not hasattr(os, "eventfd"):
                raise UsageError('os.eventfd is not available on this platform; use backend="socketpair" or None')
            self._counter = _EventfdCounter()
        elif backend == "socketpair":
            self._counter = _SocketpairCounter()
        else:
            raise UsageError(f'unknown selection backend {backend!r}; use "eventfd", "socketpair" or None')
        self._backend: Backend = backend
        self._fd = self._counter.fd
        self._lock = threading.Lock()
        self._closed = False
        self._watched = False
        self._pending = 0
        self._consumed = 0

    @property
    def backend(self) -> Backend:
        """Which implementation this object uses."""
        return self._backend

    @property
    def closed(self) -> bool:
        """True once :meth:`close` was called."""
        return self._closed

    @property
    def pending(self) -> int:
        """Signals not yet consumed: the descriptor is readable iff this is positive (while open)."""
        return self._pending

    @property
    def consumed(self) -> int:
        """How many signals were ever consumed; a loop watcher compares it to see progress."""
        return self._consumed

    def fileno(self) -> int:
        """The descriptor to poll.  It stays the same until :meth:`close`."""
        if self._closed:
            raise UsageError("the selection object is closed (its handle was finalized); initialize a new handle")
        return self._fd

    def signal(self) -> None:
        """Add one to the count: the descriptor is readable from now until it is consumed."""
        with self._lock:
            self._check_open("signal")
            self._counter.signal()
            self._pending += 1

    def consume(self) -> bool:
        """Take one from the count without blocking; False if it was already 0."""
        with self._lock:
            self._check_open("consume")
            if not self._counter.consume():
                return False
            self._pending -= 1
            self._consumed += 1
            return True

    def close(self) -> None:
        """Mark the object closed and close its descriptor, now or when the loop watching it lets go.

        Idempotent.  If an event loop watches the descriptor (:meth:`begin_watch`), the
        descriptor is made readable so the watcher wakes up and sees :attr:`closed`; it is
        closed by :meth:`end_watch`.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            if self._watched:
                self._counter.wake()
            else:
                self._counter.close()

    def begin_watch(self) -> int:
        """Claim the descriptor for one event-loop watcher; return it.

        Until :meth:`end_watch`, :meth:`close` leaves the descriptor open (and readable),
        so the loop never holds a registration for a closed descriptor.  A loop keeps one
        reader per descriptor, so there can be one watcher at a time.
        """
        with self._lock:
            self._check_open("watch")
            if self._watched:
                raise UsageError("the selection object is already watched by an event loop; detach that watcher first")
            self._watched = True
            return self._fd

    def end_watch(self) -> None:
        """Release the claim of :meth:`begin_watch`; closes the descriptor if :meth:`close` came first."""
        with self._lock:
            if not self._watched:
                return
            self._watched = False
            if self._closed:
                self._counter.close()

    def _check_open(self, action: str) -> None:
        if self._closed:
            raise UsageError(f"cannot {action} a closed selection object (its handle was finalized)")

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        self.close()

    def __repr__(self) -> str:
        state = "closed" if self._closed else f"fd={self._fd} pending={self._pending}"
        return f"<SelectionObject {self._backend} {state}>"
