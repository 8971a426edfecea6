"""The receive side the socket transports (UDP, TIPC) share: one reader task per socket, one bounded stream.

Each reader waits with :func:`anyio.wait_readable` and calls its transport's *drain*
function, which reads what the socket holds and :meth:`SocketReaders.offer`-s each
datagram; what does not fit in the stream is the transport's to count.  The readers run
in a task group the transport enters in its caller's task (``async with transport``).
Each reader has a cancel scope of its own, and closing cancels those, not the task
group's: that scope also holds whatever the caller entered after the transport (a Node,
the caller's code after a leave).  A reader closes its socket on its way out, after it
left the event loop's watch list: closing first could let a new socket reuse the file
descriptor and lose its registration to the old reader's clean-up.
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from types import TracebackType
from typing import Any

import anyio
import anyio.abc
import anyio.lowlevel

from .._taskgroups import exit_task_group
from ..errors import UsageError

#: What a drain function does with one socket's waiting datagrams; False once the socket failed.
Drain = Callable[[], bool]


class SocketReaders:
    """The reader tasks of ``sockets`` and the stream of what they received; see the module docstring."""

    def __init__(self, what: str, sockets: Sequence[socket.socket], buffer_size: int) -> None:
        self.what = what
        self.sockets = tuple(sockets)
        self._in, self._out = anyio.create_memory_object_stream[tuple[bytes, Any]](buffer_size)
        self._task_group: anyio.abc.TaskGroup | None = None
        self._scopes: list[anyio.CancelScope] = []
        self._left = 0
        self._done: anyio.Event | None = None
        #: True once :meth:`close` ran (the transport is closed).
        self.closed = False

    async def enter(self, drains: Sequence[Drain], close: Callable[[], None]) -> None:
        """Start one reader per socket, with its drain function; ``close`` closes the transport on failure."""
        if self.closed:
            raise UsageError(f"this {self.what} is closed: open a new one")
        if self._task_group is not None:
            raise UsageError(f"this {self.what} is already entered: enter it once")
        self._done = anyio.Event()
        task_group = anyio.create_task_group()
        await task_group.__aenter__()
        self._task_group = task_group
        try:
            for sock, drain in zip(self.sockets, drains, strict=True):
                await task_group.start(self._read, sock, drain)  # running (inside its try) before we go on
        except BaseException as exc:
            close()
            try:
                await exit_task_group(task_group, type(exc), exc, exc.__traceback__)
            finally:
                self._done.set()  # the readers that started have finished
            raise

    async def exit(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
        close: Callable[[], None],
    ) -> bool | None:
        """Leave the task group after ``close`` (the transport's)."""
        close()
        assert self._task_group is not None
        try:
            return await exit_task_group(self._task_group, exc_type, exc, tb)
        finally:
            for sock in self.sockets:
                sock.close()

    def close(self) -> bool:
        """End the stream and stop the readers (idempotent); False if it was closed already."""
        if self.closed:
            return False
        self.closed = True
        self._in.close()
        self._out.close()
        if self._task_group is None:
            for sock in self.sockets:
                sock.close()
        else:
            for scope in self._scopes:
                scope.cancel()
        return True

    async def wait_closed(self) -> None:
        """Return once the readers have closed their sockets (after :meth:`close`)."""
        if self._done is not None and self._task_group is not None:
            await self._done.wait()
        else:
            await anyio.lowlevel.checkpoint()

    def offer(self, item: tuple[bytes, Any]) -> str | None:
        """Queue a received datagram: None if queued, ``"buffer_full"`` or ``"closed"`` if not."""
        try:
            self._in.send_nowait(item)
        except anyio.WouldBlock:
            return "buffer_full"
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            return "closed"
        return None

    async def receive(self) -> tuple[bytes, Any]:
        """The next datagram and its source; :class:`anyio.ClosedResourceError` once closed."""
        if self._task_group is None and not self.closed:
            raise UsageError("enter `async with transport:` first: it starts the reader tasks")
        try:
            return await self._out.receive()
        except anyio.EndOfStream:
            raise anyio.ClosedResourceError from None

    async def _read(self, sock: socket.socket, drain: Drain, *, task_status: anyio.abc.TaskStatus[None]) -> None:
        self._left += 1
        try:
            with anyio.CancelScope() as scope:
                self._scopes.append(scope)
                task_status.started()
                while not self.closed:
                    await anyio.wait_readable(sock)
                    if not drain():
                        return
        finally:
            sock.close()
            self._left -= 1
            if self._left == 0 and self._done is not None:
                self._done.set()
