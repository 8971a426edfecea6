"""Newline-delimited messages over a connected stream socket, on anyio's readiness waits.

Both ends of the control socket use this instead of anyio's socket streams: a task
cancelled while it waits in an anyio UNIX stream's ``receive`` can, on asyncio (anyio
4.16), race with the socket turning readable and make the event loop report
``InvalidStateError`` from a reader callback.  :func:`anyio.wait_readable` and
:func:`anyio.wait_writable` handle that race, so the waits here are built on them.
"""

from __future__ import annotations

import socket

import anyio


class LineTooLong(Exception):
    """A line exceeded the reader's limit."""


class LineSocket:
    """One connected, non-blocking stream socket, read and written in whole lines."""

    def __init__(self, sock: socket.socket) -> None:
        sock.setblocking(False)
        self.sock = sock
        self._buffer = bytearray()
        self._eof = False

    async def receive_line(self, limit: int) -> bytes | None:
        """The next line without its newline; None at the end of the stream (a last
        unterminated piece is dropped); :class:`LineTooLong` past ``limit`` bytes."""
        while True:
            end = self._buffer.find(b"\n")
            if end >= 0:
                line = bytes(self._buffer[:end])
                del self._buffer[: end + 1]
                return line
            if len(self._buffer) > limit:
                raise LineTooLong
            if self._eof:
                return None
            await anyio.wait_readable(self.sock)
            try:
                chunk = self.sock.recv(65536)
            except BlockingIOError:
                continue
            except OSError:
                chunk = b""
            if not chunk:
                self._eof = True
            self._buffer += chunk

    async def send(self, data: bytes) -> None:
        """Send all of ``data``; OSError (e.g. BrokenPipeError) once the peer is gone."""
        view = memoryview(data)
        while view:
            try:
                sent = self.sock.send(view)
            except BlockingIOError:
                await anyio.wait_writable(self.sock)
                continue
            view = view[sent:]
        await anyio.lowlevel.checkpoint()

    def close(self) -> None:
        self.sock.close()
