"""The daemon's control socket, in-process: a ``pyclm node`` over the memory transport."""

from __future__ import annotations

import base64
import contextlib
import os
import stat
import time
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import anyio
import pytest

from pyclm.daemon.client import ControlConnection, ControlError, request
from pyclm.daemon.control import MAX_REQUEST
from pyclm.daemon.service import serve
from pyclm.daemon.settings import NodeSettings, resolve
from pyclm.errors import ConfigError
from pyclm.security import Keyring

pytestmark = pytest.mark.anyio


def _settings(tmp_path: Path, **flags: Any) -> NodeSettings:
    base: dict[str, Any] = {
        "node_id": 1,
        "nodes": "1",
        "transport": "memory",
        "state_dir": str(tmp_path / "state"),
        "heartbeat_interval": 0.02,
        "suspect_timeout": 0.1,
    }
    base.update(flags)
    return resolve(base, environ={})


async def _wait_for_socket(path: Path) -> None:
    with anyio.fail_after(10):
        while True:
            try:
                answer = await request(path, {"op": "status"})
            except ControlError:
                await anyio.sleep(0.01)
                continue
            if answer["status"]["primary"]:
                return
            await anyio.sleep(0.01)


@contextlib.asynccontextmanager
async def running_node(tmp_path: Path) -> AsyncIterator[NodeSettings]:
    """A ``pyclm node`` (memory transport, with a key) serving in this test's task group."""
    key_file = tmp_path / "cluster.key"
    Keyring.generate(1).save(key_file)
    settings = _settings(tmp_path, key_file=str(key_file))
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve, settings)
        await _wait_for_socket(settings.control_socket)
        yield settings
        tg.cancel_scope.cancel()


async def test_status(tmp_path: Path) -> None:
    async with running_node(tmp_path) as running:
        status = (await request(running.control_socket, {"op": "status"}))["status"]
        assert status["node"] == 1 and status["running"]
        assert status["view"] == "1.1" and status["primary"] and status["primary_number"] == 1
        assert [m["node"] for m in status["members"]] == [1]
        assert status["members"][0]["self"] is True
        assert set(status["counters"]) == {"memory", "security", "core"}
        assert status["rejected"] == {}
        mode = stat.S_IMODE(os.stat(running.control_socket).st_mode)
        assert mode == 0o600
        assert stat.S_IMODE(os.stat(running.state_dir).st_mode) == 0o700


async def test_bad_requests_get_one_line_errors(tmp_path: Path) -> None:
    async with running_node(tmp_path) as running:
        async with await ControlConnection.open(running.control_socket) as conn:
            with pytest.raises(ControlError, match="unknown op 'nope'"):
                await conn.request({"op": "nope"})
            # The connection survives an unknown op; a malformed line closes it.
            assert (await conn.request({"op": "status"}))["ok"]
            await conn.send_raw(b"[1, 2]\n")
            assert (await conn.receive())["error"] == "not a JSON object"
            with pytest.raises(ControlError, match="closed"):
                await conn.receive()
        async with await ControlConnection.open(running.control_socket) as conn:
            await conn.send_raw(b"x" * (MAX_REQUEST + 10))
            assert "longer than" in (await conn.receive())["error"]


async def test_key_rotation_is_saved_and_audited(tmp_path: Path) -> None:
    async with running_node(tmp_path) as running:
        path = running.control_socket
        assert running.key_file is not None
        assert (await request(path, {"op": "key.list"}))["ids"] == [1]
        new = Keyring.generate(2)
        secret = new.secret(2)
        assert secret is not None
        answer = await request(path, {"op": "key.install", "id": 2, "secret": base64.b64encode(secret).decode()})
        assert answer["ids"] == [1, 2] and answer["active"] == 1
        assert Keyring.load(running.key_file).ids == (1, 2)  # durable before the answer
        with pytest.raises(ControlError, match="active"):
            await request(path, {"op": "key.remove", "id": 1})  # still in use
        assert (await request(path, {"op": "key.use", "id": 2}))["active"] == 2
        assert (await request(path, {"op": "key.remove", "id": 1}))["ids"] == [2]
        assert Keyring.load(running.key_file).active == 2
        with pytest.raises(ControlError, match="base64"):
            await request(path, {"op": "key.install", "id": 3, "secret": "***"})
        entries = (await request(path, {"op": "audit"}))["entries"]
        ops = [(e["op"], e["ok"]) for e in entries]
        assert ops == [
            ("key.install", True),
            ("key.remove", False),
            ("key.use", True),
            ("key.remove", True),
            ("key.install", False),
        ]
        assert all(e["peer"]["pid"] == os.getpid() for e in entries)
        assert all(abs(e["wall"] - time.time()) < 60 for e in entries)
        audit_text = running.state_dir.joinpath("audit.log").read_text()
        assert base64.b64encode(secret).decode() not in audit_text
        assert all("secret" not in e for e in entries)


async def test_remove_nodes_needs_a_reason(tmp_path: Path) -> None:
    async with running_node(tmp_path) as running:
        with pytest.raises(ControlError, match="reason"):
            await request(running.control_socket, {"op": "remove_nodes", "nodes": [2]})
        with pytest.raises(ControlError, match="nodes"):
            await request(running.control_socket, {"op": "remove_nodes", "nodes": "2", "reason": "x"})


async def test_watch_starts_with_status_and_membership(tmp_path: Path) -> None:
    async with running_node(tmp_path) as running, await ControlConnection.open(running.control_socket) as conn:
        stream = conn.stream({"op": "watch"})
        first = await stream.__anext__()
        assert first["status"]["primary"]
        assert [n["node_id"] for n in first["membership"]["members"]] == [1]


async def test_a_second_node_on_the_same_state_dir_is_refused(tmp_path: Path) -> None:
    async with running_node(tmp_path) as running:
        with pytest.raises(ConfigError, match="in use by another pyclm node"):
            await serve(running)


async def test_a_live_control_socket_is_not_taken_over(tmp_path: Path) -> None:
    async with running_node(tmp_path) as running:
        other = _settings(
            tmp_path, node_id=1, state_dir=str(tmp_path / "other"), control_socket=str(running.control_socket)
        )
        with pytest.raises(ConfigError, match="in use by another running node"):
            await serve(other)


async def test_a_stale_control_socket_is_replaced(tmp_path: Path) -> None:
    import socket

    settings = _settings(tmp_path)
    settings.state_dir.mkdir(parents=True)
    stale = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    stale.bind(os.fspath(settings.control_socket))
    stale.close()  # a socket file nobody listens on: what a killed node leaves
    async with anyio.create_task_group() as tg:
        tg.start_soon(serve, settings)
        await _wait_for_socket(settings.control_socket)
        tg.cancel_scope.cancel()


async def test_bad_node_ids_to_remove_are_refused_and_the_node_stays(tmp_path: Path) -> None:
    async with running_node(tmp_path) as running:
        path = running.control_socket
        for nodes, error in (
            ([-5], "not a node id: -5"),
            ([2**32], "not a node id"),
            ([9], "not in this cluster"),
            ([True], "nodes: must be a non-empty list"),
            ([1], "cannot declare itself removed"),
        ):
            with pytest.raises(ControlError, match=error):
                await request(path, {"op": "remove_nodes", "nodes": nodes, "reason": "typo"})
        status = (await request(path, {"op": "status"}))["status"]
        assert status["running"] and status["primary"] and status["view"] == "1.1"
        entries = (await request(path, {"op": "audit"}))["entries"]
        assert [e["ok"] for e in entries if e["op"] == "remove_nodes"] == [False, False, False, False]


async def test_a_key_file_that_cannot_be_written_changes_nothing(tmp_path: Path) -> None:
    async with running_node(tmp_path) as running:
        assert running.key_file is not None
        blocker = running.key_file.with_name(running.key_file.name + ".tmp")
        blocker.mkdir()  # the atomic write's temporary file cannot be created
        new = Keyring.generate(2).secret(2)
        assert new is not None
        secret = base64.b64encode(new).decode()
        with pytest.raises(ControlError, match=r"could not write the key file .* nothing changed"):
            await request(running.control_socket, {"op": "key.install", "id": 2, "secret": secret})
        assert (await request(running.control_socket, {"op": "key.list"}))["ids"] == [1]
        assert Keyring.load(running.key_file).ids == (1,)
        entries = (await request(running.control_socket, {"op": "audit"}))["entries"]
        assert [(e["op"], e["ok"]) for e in entries] == [("key.install", False)]
