"""Attaching to a running ``pyclm node`` from another process (pyclm.remote), over its control socket."""

from __future__ import annotations

import contextlib
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import pytest

import pyclm.saf
from pyclm.clm import LeaveProposal, LeaveStep, MembershipChange, MembershipSnapshot
from pyclm.daemon.client import ControlConnection, ControlError, request
from pyclm.daemon.service import serve
from pyclm.daemon.settings import NodeSettings, resolve
from pyclm.remote import attach
from pyclm.saf import saAis, saClm

pytestmark = pytest.mark.anyio


def _settings(tmp_path: Path) -> NodeSettings:
    flags: dict[str, Any] = {
        "node_id": 7,
        "nodes": "7",
        "transport": "memory",
        "state_dir": str(tmp_path / "state"),
        "heartbeat_interval": 0.02,
        "suspect_timeout": 0.1,
    }
    return resolve(flags, environ={})


@contextlib.asynccontextmanager
async def daemon(tmp_path: Path) -> AsyncIterator[tuple[NodeSettings, anyio.CancelScope]]:
    """A one-node ``pyclm node`` in this test's task group, primary once this yields."""
    settings = _settings(tmp_path)
    scope = anyio.CancelScope()

    async def run() -> None:
        with scope:
            await serve(settings)

    async with anyio.create_task_group() as tg:
        tg.start_soon(run)
        with anyio.fail_after(10):
            while True:
                try:
                    if (await request(settings.control_socket, {"op": "status"}))["status"]["primary"]:
                        break
                except ControlError:
                    pass
                await anyio.sleep(0.01)
        yield settings, scope
        scope.cancel()


async def test_attach_reads_the_membership(tmp_path: Path) -> None:
    async with daemon(tmp_path) as (settings, _), attach(state_dir=settings.state_dir) as node:
        assert node.node_id == 7 and node.running and not node.stopped
        assert node.view_number == 1 and node.is_member
        assert [n.node_id for n in node.cluster_members()] == [7]
        local = node.local_node()
        assert local is not None and local.name == "node7" and local.member
        assert await node.get_node(7) == local
        assert node.cluster_node(8) is None


async def test_track_and_the_end_of_the_node(tmp_path: Path) -> None:
    seen: list[MembershipChange] = []
    async with daemon(tmp_path) as (settings, _), attach(settings.control_socket) as node:
        node.add_membership_listener(seen.append)
        with node.track() as changes:
            first = await changes.__anext__()
            assert isinstance(first, MembershipSnapshot) and first.view_number == 1
            answer = await request(settings.control_socket, {"op": "leave"})
            assert answer["validate"] is True
            with anyio.fail_after(10):
                rest = [item async for item in changes]
    # The graceful leave's last change reports the node SHUTDOWN; then the tracker ends.
    assert [[n.node_id for n in c.shutdown] for c in rest if isinstance(c, MembershipChange)] == [[7]]
    assert node.stopped and not node.running
    assert seen and not seen[-1].local.member


async def test_a_crashed_daemon_stops_the_remote_node(tmp_path: Path) -> None:
    async with daemon(tmp_path) as (settings, stop_daemon), attach(settings.control_socket) as node:
        with node.track() as changes:
            await changes.__anext__()
            stop_daemon.cancel()  # as a crash: no last change comes, the connection ends
            with anyio.fail_after(10):
                async for _ in changes:
                    pass
        assert node.stopped and not node.running


async def test_no_daemon_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ControlError, match="no control socket"):
        async with attach(state_dir=tmp_path):
            pass


async def test_the_saf_facade_speaks_for_an_attached_node(tmp_path: Path) -> None:
    async with daemon(tmp_path) as (settings, _), attach(state_dir=settings.state_dir) as node:
        with pyclm.saf.bind(node):
            handle = saClm.SaClmHandleT()
            version = saAis.SaVersionT("B", 4, 1)
            assert saClm.saClmInitialize_4(handle, None, version) == saAis.eSaAisErrorT.SA_AIS_OK
            info = saClm.SaClmClusterNodeT_4()
            rc = saClm.saClmClusterNodeGet_4(handle, 7, saAis.saAis.SA_TIME_ONE_SECOND, info)
            assert rc == saAis.eSaAisErrorT.SA_AIS_OK
            assert info.nodeId == 7 and info.member and info.initialViewNumber == 1
            assert saClm.saClmFinalize(handle) == saAis.eSaAisErrorT.SA_AIS_OK


class _Refuse:
    """A leave participant of the attached process that refuses every VALIDATE."""

    def __init__(self) -> None:
        self.asked: list[tuple[LeaveStep, int]] = []

    def begin_leave_step(self, step: LeaveStep, proposal: LeaveProposal, answer: Callable[[bool], None]) -> None:
        self.asked.append((step, proposal.leaving.node_id))
        answer(step is not LeaveStep.VALIDATE)


async def test_an_attached_participant_can_refuse_the_leave(tmp_path: Path) -> None:
    async with daemon(tmp_path) as (settings, _), attach(settings.control_socket) as node:
        refuse = _Refuse()
        remove = node.add_leave_participant(refuse)
        async with await ControlConnection.open(settings.control_socket) as conn:
            assert (await conn.request({"op": "leave"}))["validate"] is True
            with anyio.fail_after(10):
                rejected = await conn.receive()
        assert rejected["event"] == "leave_rejected" and "rejected by node(s) 7" in rejected["error"]
        assert refuse.asked == [(LeaveStep.VALIDATE, 7)]
        assert node.running and node.is_member  # the node stays
        remove()
        # A second request leaves without validation, as a second signal does.
        assert (await request(settings.control_socket, {"op": "leave"}))["validate"] is False
        with anyio.fail_after(10):
            while not node.stopped:
                await anyio.sleep(0.01)
        assert refuse.asked == [(LeaveStep.VALIDATE, 7)]
