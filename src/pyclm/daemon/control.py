"""The control socket of ``pyclm node``: JSON lines over a Unix stream socket.

Protocol (docs/daemon.md, "Control socket"): the client sends one request per line, a
JSON object with an ``"op"``; the server answers with one JSON object per line.  A
plain request gets one answer, ``{"ok": true, ...}`` or ``{"ok": false, "error":
"..."}``; a streaming request (``watch``, ``track``) gets ``{"ok": true}`` and then one
object per change until either side closes.  Several requests may follow each other on
one connection.  A line longer than :data:`MAX_REQUEST` bytes, or one that is not a
JSON object, gets an error answer and closes the connection.

The socket file is created with mode 0600 (0660 and the configured group with
``control_group``): whoever may open it may operate the node.  With a group, the state
directory holding the socket gets group search permission (0710) so that the group can
reach it; a socket elsewhere needs a directory the group can reach.  A stale socket file
(nobody listening) is replaced; a live one means another node uses the path, and the
server refuses to start.  Each connection's peer credentials (pid, uid, gid through
``SO_PEERCRED``) are handed to the handlers, which put them in the audit log.
"""

from __future__ import annotations

import contextlib
import grp
import json
import logging
import os
import socket
import stat
import struct
from collections.abc import Awaitable, Callable, Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import attrs

from ..errors import ConfigError
from .lines import LineSocket, LineTooLong

log = logging.getLogger("pyclm.daemon")

#: The longest request line, in bytes.
MAX_REQUEST = 64 * 1024


@attrs.frozen
class Peer:
    """Who is on the other end of a control connection (``SO_PEERCRED``)."""

    pid: int
    uid: int
    gid: int


class ClientGone(Exception):
    """The client closed its end of the connection (or it broke)."""


class RequestError(Exception):
    """A request the server refuses; its text goes back as ``{"ok": false, "error": ...}``."""


class Connection:
    """One client connection as a handler sees it."""

    def __init__(self, lines: LineSocket, peer: Peer) -> None:
        self.lines = lines
        self.peer = peer

    async def send(self, message: Mapping[str, Any]) -> None:
        """Send one JSON line; :class:`ClientGone` once the client is gone."""
        try:
            await self.lines.send(json.dumps(message, separators=(",", ":")).encode() + b"\n")
        except OSError:
            raise ClientGone from None


#: A handler answers one request on its connection (several lines for a streaming op).
Handler = Callable[[Mapping[str, Any], Connection], Awaitable[None]]


def _peer_of(sock: socket.socket) -> Peer:
    raw = sock.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize("3i"))
    pid, uid, gid = struct.unpack("3i", raw)
    return Peer(pid, uid, gid)


def _remove_stale(path: Path) -> None:
    """Remove a socket file nobody listens on; refuse when somebody does."""
    if not path.exists() and not path.is_symlink():
        return
    if not path.is_socket():
        raise ConfigError("control_socket", f"{path} exists and is not a socket")
    probe = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        probe.connect(os.fspath(path))
    except OSError:
        path.unlink(missing_ok=True)  # stale: its node is gone
        return
    finally:
        probe.close()
    raise ConfigError("control_socket", f"{path} is in use by another running node")


class ControlServer:
    """Serves ``handlers`` (op name -> handler) on a Unix socket at ``path``."""

    def __init__(
        self, path: Path, handlers: Mapping[str, Handler], *, group: str | None = None, share_parent: bool = False
    ) -> None:
        self.path = path
        self.group = group
        #: With a group: give it search (x) permission on the socket's directory (the state dir).
        self.share_parent = share_parent
        self.handlers = dict(handlers)
        self._listener: anyio.abc.SocketListener | None = None

    async def open(self) -> None:
        """Create the socket file (mode 0600, or 0660 with the group); ConfigError if it cannot."""
        gid = None
        if self.group is not None:
            try:
                gid = grp.getgrnam(self.group).gr_gid
            except KeyError:
                raise ConfigError("control_group", f"no such group: {self.group!r}") from None
        self.path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        _remove_stale(self.path)
        old_umask = os.umask(0o177 if gid is None else 0o117)
        try:
            self._listener = await anyio.create_unix_listener(self.path)
        except OSError as exc:
            raise ConfigError("control_socket", f"{self.path}: {exc.strerror or exc}") from None
        finally:
            os.umask(old_umask)
        if gid is not None:
            os.chown(self.path, -1, gid)
            os.chmod(self.path, 0o660)
            if self.share_parent:  # the group must be able to reach the socket: traverse, not list
                parent = self.path.parent
                os.chown(parent, -1, gid)
                os.chmod(parent, stat.S_IMODE(parent.stat().st_mode) | 0o010)
        else:
            os.chmod(self.path, 0o600)

    async def serve(self) -> None:
        """Accept connections until cancelled; the socket file is removed on the way out."""
        listener = self._listener
        assert listener is not None, "open() first"
        try:
            async with listener:
                await listener.serve(self._connection)
        finally:
            with contextlib.suppress(OSError):
                self.path.unlink()

    async def _connection(self, stream: anyio.abc.SocketStream) -> None:
        """One client; nothing it does (or a handler's bug) may take the node down."""
        try:
            await self._converse(stream)
        except Exception:
            log.exception("control connection failed")

    async def _converse(self, stream: anyio.abc.SocketStream) -> None:
        async with stream:  # (only its socket is used, through LineSocket: see pyclm.daemon.lines)
            sock = stream.extra(anyio.abc.SocketAttribute.raw_socket)
            try:
                conn = Connection(LineSocket(sock), _peer_of(sock))
                while True:
                    try:
                        line = await conn.lines.receive_line(MAX_REQUEST)
                    except LineTooLong:
                        await conn.send({"ok": False, "error": f"request longer than {MAX_REQUEST} bytes"})
                        return
                    if line is None:
                        return
                    if line.strip() and not await self._dispatch(line, conn):
                        return
            except (ClientGone, OSError):
                return  # the client went away (OSError: while reading its request)

    async def _dispatch(self, line: bytes, conn: Connection) -> bool:
        """Answer one request; False closes the connection."""
        try:
            request = json.loads(line)
        except (ValueError, UnicodeDecodeError):
            await conn.send({"ok": False, "error": "not a JSON object"})
            return False
        if not isinstance(request, dict):
            await conn.send({"ok": False, "error": "not a JSON object"})
            return False
        op = request.get("op")
        handler = self.handlers.get(op) if isinstance(op, str) else None
        if handler is None:
            known = ", ".join(sorted(self.handlers))
            await conn.send({"ok": False, "error": f"unknown op {op!r} (known: {known})"})
            return True
        try:
            await handler(request, conn)
        except (RequestError, ConfigError) as exc:
            await conn.send({"ok": False, "error": str(exc)})
        except OSError as exc:  # the node's own I/O failed (a disk full, a file it cannot replace)
            log.error("control op %r failed: %s", op, exc)
            await conn.send({"ok": False, "error": f"the node failed to do it: {exc}"})
        return True
