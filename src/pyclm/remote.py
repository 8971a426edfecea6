"""Attach to a ``pyclm node`` running on this host: its membership, from another process.

A program chooses one of two ways to be part of a cluster (docs/daemon.md, "Embedded or
daemon"):

* **embedded**: it runs a :class:`pyclm.Node` itself; the node lives and dies with it;
* **daemon**: ``pyclm node`` runs the member and the program attaches to it through
  the control socket with :func:`attach`.  Many programs can share one member, and
  one restarting does not make the node leave the cluster.

::

    async with pyclm.remote.attach(state_dir="/var/lib/pyclm/node-1") as node:
        print(node.view_number, [n.node_id for n in node.cluster_members()])
        async for item in node.track():
            ...

:class:`RemoteNode` has the CLM side of :class:`pyclm.Node`'s API: :attr:`~RemoteNode.view_number`,
:attr:`~RemoteNode.is_member`, :meth:`~RemoteNode.cluster_members`,
:meth:`~RemoteNode.cluster_node`, :meth:`~RemoteNode.local_node`,
:meth:`~RemoteNode.membership_snapshot`, :meth:`~RemoteNode.get_node`,
:meth:`~RemoteNode.track`, :meth:`~RemoteNode.add_membership_listener` and
:meth:`~RemoteNode.add_leave_participant`, so ``pyclm.saf.bind(remote)`` works as with an
embedded node.  It does not run the node: leaving, removing nodes and keys are the
daemon's (its signals and ``pyclm`` commands).

Theory of operation: one connection with the ``attach`` op
(:mod:`pyclm.daemon.attach`).  The daemon sends the snapshot, then every change; a
reader task applies each to the local snapshot (what the accessors read, from any
thread) and hands it to the trackers and listeners, as the node's owner task does in
an embedded node.  The daemon's leave steps are handed to this process's leave
participants (the SAF facade's step trackers) and their combined answer is sent back.
When the connection ends (the node left or stopped, or this client fell too far behind)
the remote node is *stopped*: trackers end, and a SAF binding goes stale.
"""

from __future__ import annotations

import contextlib
import json
import logging
import threading
from collections.abc import AsyncIterator, Callable
from pathlib import Path
from typing import Any

import anyio
import anyio.abc

from ._leaving import LeaveParticipant, LeaveRound
from ._streams import MembershipTrack, Subscribers
from .clm import ClusterNode, LeaveProposal, LeaveStep, MembershipSnapshot
from .clm.codec import change_from_json, node_from_json, snapshot_from_json
from .daemon.client import ControlConnection, ControlError, socket_path

__all__ = ["RemoteNode", "attach"]

log = logging.getLogger("pyclm.remote")

#: Changes a tracker may fall behind by before the oldest are dropped (as for a Node).
DEFAULT_TRACK_BUFFER = 256


class _Step:
    """One leave step of the daemon's, asked of this process's participants."""

    def __init__(self, remote: RemoteNode, round_id: int, step: LeaveStep, proposal: LeaveProposal) -> None:
        self.remote = remote
        self.round_id = round_id
        self.step = step
        self.rounds: list[LeaveRound] = []
        self.pending = 0
        self.answered = False
        self._lock = threading.Lock()

    def start(self, participants: tuple[LeaveParticipant, ...], proposal: LeaveProposal) -> None:
        self.pending = len(participants) + 1  # +1 until every participant was asked
        for participant in participants:
            try:
                round_ = participant.begin_leave_step(self.step, proposal, self._answer)
            except Exception:
                log.exception("leave participant %r raised; counted as OK", participant)
                round_ = None
            if round_ is None:
                self._answer(True)
            else:
                self.rounds.append(round_)
        self._answer(True)

    def _answer(self, ok: bool) -> None:
        """One participant's answer (any thread); the first refusal, or the last OK, goes out."""
        with self._lock:
            if self.answered:
                return
            self.pending -= 1
            if ok and self.pending > 0:
                return
            self.answered = True
        self.remote._send_answer(self.round_id, ok)

    def end(self, aborted: bool) -> None:
        for round_ in self.rounds:
            round_.abort() if aborted else round_.close()


class RemoteNode:
    """A ``pyclm node`` of this host as seen through its control socket; see the module docstring."""

    def __init__(self, path: Path) -> None:
        self.path = path
        self._conn: ControlConnection | None = None
        self._node_id = -1
        self._membership = MembershipSnapshot(view_number=0, members=(), local=None)
        self._subscribers = Subscribers(0)
        self._participants: tuple[LeaveParticipant, ...] = ()
        self._lock = threading.Lock()
        self._steps: dict[int, _Step] = {}
        self._running = False
        self._stopped = False
        self._schedule: Callable[[Callable[[], object]], object] | None = None
        self._answers: list[bytes] = []  # leave answers waiting for the writer task
        self._answer_ready: anyio.Event | None = None

    # ------------------------------------------------------------------ the CLM API of pyclm.Node

    @property
    def node_id(self) -> int:
        return self._node_id

    @property
    def running(self) -> bool:
        """True while attached to a running node."""
        return self._running

    @property
    def stopped(self) -> bool:
        """True once the attachment ended (the node left or stopped, or the connection broke)."""
        return self._stopped

    @property
    def view_number(self) -> int:
        return self._membership.view_number

    @property
    def is_member(self) -> bool:
        return self._membership.is_member

    def membership_snapshot(self) -> MembershipSnapshot:
        return self._membership

    def cluster_members(self) -> tuple[ClusterNode, ...]:
        return self._membership.members

    def local_node(self) -> ClusterNode | None:
        return self._membership.local

    def cluster_node(self, node_id: int) -> ClusterNode | None:
        return self._membership.node(node_id)

    async def get_node(self, node_id: int) -> ClusterNode | None:
        await anyio.lowlevel.checkpoint()
        return self.cluster_node(node_id)

    def track(self, buffer: int = DEFAULT_TRACK_BUFFER) -> MembershipTrack:
        """As :meth:`pyclm.Node.track`: the snapshot, then every change, until detached."""
        if buffer < 1:
            raise ValueError(f"buffer must hold at least one change, got {buffer!r}")
        track = MembershipTrack(self, buffer)
        self._subscribers.subscribe(track, stopped=self._stopped)
        return track

    def add_membership_listener(self, fn: Callable[[Any], None]) -> Callable[[], None]:
        """As :meth:`pyclm.Node.add_membership_listener` (called on this client's event loop)."""
        return self._subscribers.add_listener(fn)

    def add_leave_participant(self, participant: LeaveParticipant) -> Callable[[], None]:
        """Take part in the daemon's validated leaves (the SAF facade's step trackers do)."""
        with self._lock:
            self._participants = (*self._participants, participant)

        def remove() -> None:
            with self._lock:
                self._participants = tuple(p for p in self._participants if p is not participant)

        return remove

    # ------------------------------------------------------------------ the connection

    async def _open(self) -> None:
        conn = self._conn = await ControlConnection.open(self.path)
        try:
            first = await conn.request({"op": "attach", "participate": True})
        except BaseException:
            await conn.aclose()
            self._conn = None
            raise
        self._node_id = int(first["node_id"])
        self._subscribers = Subscribers(self._node_id)
        self._membership = snapshot_from_json(first["membership"])
        self._running = True
        from .runtime import _loop_scheduler

        self._schedule = _loop_scheduler()

    async def _read(self) -> None:
        conn = self._conn
        assert conn is not None
        try:
            while True:
                record = await conn.receive()
                self._handle(record)
        except ControlError:
            pass
        finally:
            self._finish()

    def _handle(self, record: dict[str, Any]) -> None:
        event = record.get("event")
        if event == "membership":
            change = change_from_json(record)
            self._membership = MembershipSnapshot.after(change)
            # False on an abort's last change, as an embedded node's `running` is then.
            self._running = record.get("running") is not False
            self._subscribers.deliver(change)
        elif event == "leave_step":
            proposal_data = record["proposal"]
            proposal = LeaveProposal(
                leaving=node_from_json(proposal_data["leaving"]),
                view_number=int(proposal_data["view_number"]),
                change=change_from_json(proposal_data["change"]),
                time_supervision=proposal_data.get("time_supervision"),
            )
            step = LeaveStep.VALIDATE if record["step"] == "validate" else LeaveStep.START
            pending = _Step(self, int(record["round"]), step, proposal)
            self._steps[pending.round_id] = pending
            pending.start(self._participants, proposal)
        elif event == "leave_round_end":
            ended = self._steps.pop(int(record["round"]), None)
            if ended is not None:
                ended.end(bool(record.get("aborted")))

    def _send_answer(self, round_id: int, ok: bool) -> None:
        """From any thread: queue the answer's line on this client's event loop."""
        schedule = self._schedule
        if schedule is not None and self._conn is not None:
            data = json.dumps({"op": "leave_answer", "round": round_id, "ok": ok}).encode() + b"\n"
            with contextlib.suppress(RuntimeError):  # the loop is gone: nobody is left to tell
                schedule(lambda: self._answers.append(data))
                schedule(self._wake_writer)

    def _wake_writer(self) -> None:
        if self._answer_ready is not None:
            self._answer_ready.set()

    async def _write_answers(self) -> None:
        conn = self._conn
        assert conn is not None
        while True:
            self._answer_ready = ready = anyio.Event()
            if not self._answers:
                await ready.wait()
            answers, self._answers = self._answers, []
            for data in answers:
                try:
                    await conn.send_raw(data)
                except ControlError:
                    return

    def _finish(self) -> None:
        self._running = False
        for step in self._steps.values():
            step.end(aborted=True)
        self._steps.clear()
        self._stopped = True
        self._subscribers.end_trackers()

    async def _run(self) -> None:
        async with anyio.create_task_group() as tg:
            tg.start_soon(self._write_answers)
            await self._read()
            tg.cancel_scope.cancel()


@contextlib.asynccontextmanager
async def attach(
    control_socket: str | Path | None = None, *, state_dir: str | Path | None = None, node_id: int | None = None
) -> AsyncIterator[RemoteNode]:
    """Attach to the ``pyclm node`` whose control socket is given (or in ``state_dir``, or
    the default state dir of ``node_id``); detach on the way out.  Raises
    :class:`~pyclm.daemon.client.ControlError` when no node answers there."""
    path = socket_path(
        None if control_socket is None else str(control_socket),
        None if state_dir is None else str(state_dir),
        node_id,
    )
    remote = RemoteNode(path)
    await remote._open()  # errors here are plain ControlErrors, not in a task group's group
    try:
        async with anyio.create_task_group() as tg:
            tg.start_soon(remote._run)
            try:
                yield remote
            finally:
                tg.cancel_scope.cancel()
    finally:
        if remote._conn is not None:
            await remote._conn.aclose()
        remote._finish()
