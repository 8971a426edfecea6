"""The client side of the control socket: one request, or a stream of answers.

Used by ``pyclm status / watch / key / remove-nodes`` and by programs that attach to a
running ``pyclm node`` (:mod:`pyclm.remote`).  Errors are :class:`ControlError` with a
one-line message: no socket, nobody listening, permission denied, the node refused.
"""

from __future__ import annotations

import json
import os
import socket
from collections.abc import AsyncIterator, Mapping
from pathlib import Path
from typing import Any

import anyio
import anyio.lowlevel

from ..errors import PyclmError
from .lines import LineSocket, LineTooLong

#: The longest answer line the client reads, in bytes (a status of a large cluster fits).
MAX_ANSWER = 16 * 1024 * 1024


class ControlError(PyclmError):
    """The control socket could not be reached, or the node refused the request."""


def connect(path: Path) -> socket.socket:
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        sock.connect(os.fspath(path))  # a Unix socket connects at once (or fails)
    except FileNotFoundError:
        sock.close()
        raise ControlError(f"{path}: no control socket there (is the node running? see --state-dir)") from None
    except PermissionError:
        sock.close()
        raise ControlError(f"{path}: permission denied (the socket is for the node's user and control_group)") from None
    except ConnectionRefusedError:
        sock.close()
        raise ControlError(f"{path}: nobody is listening (the node is not running)") from None
    except OSError as exc:
        sock.close()
        raise ControlError(f"{path}: {exc.strerror or exc}") from None
    return sock


class ControlConnection:
    """One open connection: :meth:`request` for single answers, :meth:`stream` for streams."""

    def __init__(self, sock: socket.socket, path: Path) -> None:
        self._lines = LineSocket(sock)
        self.path = path

    @classmethod
    async def open(cls, path: Path) -> ControlConnection:
        await anyio.lowlevel.checkpoint()
        return cls(connect(path), path)

    async def aclose(self) -> None:
        self._lines.close()
        await anyio.lowlevel.checkpoint()

    async def __aenter__(self) -> ControlConnection:
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.aclose()

    async def send_raw(self, data: bytes) -> None:
        try:
            await self._lines.send(data)
        except OSError:
            raise ControlError(f"{self.path}: the node closed the connection") from None

    async def send(self, request: Mapping[str, Any]) -> None:
        await self.send_raw(json.dumps(request).encode() + b"\n")

    async def receive(self) -> dict[str, Any]:
        """The next answer line; ControlError when the node closed the connection."""
        try:
            line = await self._lines.receive_line(MAX_ANSWER)
        except LineTooLong:
            raise ControlError(f"{self.path}: answer longer than {MAX_ANSWER} bytes") from None
        if line is None:
            raise ControlError(f"{self.path}: the node closed the connection")
        try:
            answer = json.loads(line)
        except ValueError:
            raise ControlError(f"{self.path}: the node sent something that is not JSON") from None
        if not isinstance(answer, dict):
            raise ControlError(f"{self.path}: the node sent something that is not a JSON object")
        return answer

    async def request(self, request: Mapping[str, Any]) -> dict[str, Any]:
        """Send ``request``; its answer, or ControlError with the node's error text."""
        await self.send(request)
        answer = await self.receive()
        if answer.get("ok") is not True:
            raise ControlError(str(answer.get("error", "the node refused the request")))
        return answer

    async def stream(self, request: Mapping[str, Any]) -> AsyncIterator[dict[str, Any]]:
        """Send a streaming ``request``; yields its first answer, then each record, until the node closes."""
        yield await self.request(request)
        while True:
            try:
                yield await self.receive()
            except ControlError:
                return


async def request(path: Path, message: Mapping[str, Any]) -> dict[str, Any]:
    """One request on a connection of its own."""
    async with await ControlConnection.open(path) as conn:
        return await conn.request(message)


def socket_path(control_socket: str | None, state_dir: str | None, node_id: int | None) -> Path:
    """The control socket ``pyclm status`` and friends talk to: the one given, the one in
    the state dir given, or the default state dir of ``--node-id``."""
    if control_socket:
        return Path(control_socket).expanduser()
    if state_dir:
        return Path(state_dir).expanduser() / "control.sock"
    if node_id is not None:
        from .settings import default_state_dir

        return default_state_dir(node_id, os.environ) / "control.sock"
    raise ControlError("which node? give --control-socket PATH, --state-dir DIR or --node-id N")
