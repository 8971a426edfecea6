"""The control socket's ``attach`` op: another process on the host follows this node's membership.

:mod:`pyclm.remote` (and through it the SAF facade) is the client.  The server side:

1. answers ``{"ok": true, "node_id": N, "membership": <snapshot>}`` and from then on sends
   every membership change as ``{"event": "membership", ...change}`` (pyclm.clm.codec),
   in order and none missed: the snapshot is read and the listener added with no
   ``await`` between;
2. with ``"participate": true`` it registers the client as one of the node's leave
   participants: each step of a validated leave is sent as ``{"event": "leave_step",
   "round": R, "step": "validate" | "start", "proposal": {...}}``, the client answers
   with a line ``{"op": "leave_answer", "round": R, "ok": bool}``, and the end of the
   round is sent as ``{"event": "leave_round_end", "round": R, "aborted": bool}``;
3. ends when the client closes the connection or the node stops (after the node's last
   change).  A client more than :data:`ATTACH_BUFFER` records behind is disconnected
   (it would otherwise miss changes); it sees the end of the stream and re-attaches.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
from collections.abc import Callable, Mapping
from typing import Any

import anyio

from ..clm import LeaveProposal, LeaveStep, MembershipChange
from ..clm.codec import change_to_json, node_to_json, snapshot_to_json
from ..errors import UsageError
from ..runtime import Node
from .control import ClientGone, Connection, RequestError
from .lines import LineTooLong

log = logging.getLogger("pyclm.daemon")

#: Records an attached client may fall behind by before it is disconnected.
ATTACH_BUFFER = 1024
#: Longest answer line an attached client may send.
MAX_ANSWER_LINE = 4096


def proposal_to_json(proposal: LeaveProposal) -> dict[str, Any]:
    return {
        "leaving": node_to_json(proposal.leaving),
        "view_number": proposal.view_number,
        "change": change_to_json(proposal.change),
        "time_supervision": proposal.time_supervision,
    }


class _Round:
    def __init__(self, client: _Client, round_id: int) -> None:
        self._client = client
        self.round_id = round_id

    def close(self) -> None:
        self._client.end_round(self.round_id, aborted=False)

    def abort(self) -> None:
        self._client.end_round(self.round_id, aborted=True)


class _Client:
    """One attached connection: its outgoing queue and its open leave rounds."""

    _ids = itertools.count(1)

    def __init__(self, node: Node) -> None:
        self.node = node
        self.send, self.receive = anyio.create_memory_object_stream[Mapping[str, Any]](ATTACH_BUFFER)
        self.answers: dict[int, Callable[[bool], None]] = {}
        self.overflowed = False

    def push(self, record: Mapping[str, Any]) -> None:
        try:
            self.send.send_nowait(record)
        except anyio.WouldBlock:
            self.overflowed = True
            self.send.close()
        except (anyio.ClosedResourceError, anyio.BrokenResourceError):
            pass

    def on_change(self, change: MembershipChange) -> None:
        self.push({"event": "membership", "running": self.node.running, **change_to_json(change)})

    def begin_leave_step(
        self, step: LeaveStep, proposal: LeaveProposal, answer: Callable[[bool], None]
    ) -> _Round | None:
        round_id = next(self._ids)
        self.answers[round_id] = answer
        self.push(
            {
                "event": "leave_step",
                "round": round_id,
                "step": step.name.lower(),
                "proposal": proposal_to_json(proposal),
            }
        )
        return _Round(self, round_id)

    def end_round(self, round_id: int, *, aborted: bool) -> None:
        if self.answers.pop(round_id, None) is not None:
            self.push({"event": "leave_round_end", "round": round_id, "aborted": aborted})

    def answer(self, round_id: object, ok: object) -> None:
        if isinstance(round_id, int) and isinstance(ok, bool):
            answer = self.answers.get(round_id)
            if answer is not None:
                answer(ok)

    def gone(self) -> None:
        """The client left: its open rounds count as answered OK (nobody is left to ask)."""
        answers, self.answers = self.answers, {}
        for answer in answers.values():
            answer(True)


async def attach(node: Node, request: Mapping[str, Any], conn: Connection) -> None:
    """The ``attach`` handler (see the module docstring)."""
    participate = request.get("participate", False)
    if not isinstance(participate, bool):
        raise RequestError("participate: must be true or false")
    if not node.running:
        raise RequestError("the node is stopping")
    client = _Client(node)
    snapshot = node.membership_snapshot()  # with the listener below: no await in between
    remove_listener = node.add_membership_listener(client.on_change)
    remove_participant = node.add_leave_participant(client) if participate else None
    try:
        await conn.send({"ok": True, "node_id": node.node_id, "membership": snapshot_to_json(snapshot)})
        async with anyio.create_task_group() as tg:

            async def read_answers() -> None:
                await _read_answers(conn, client)
                tg.cancel_scope.cancel()  # the client closed its end

            async def end_with_node() -> None:
                with contextlib.suppress(UsageError):
                    await node.wait_for(lambda: False)  # raises once the node stopped: its last change is queued
                client.send.close()

            tg.start_soon(read_answers)
            tg.start_soon(end_with_node)
            async with client.receive:
                with contextlib.suppress(ClientGone):  # the client closed its end: detach
                    async for record in client.receive:
                        await conn.send(record)
            if client.overflowed:
                log.warning("an attached client fell %d records behind: disconnected", ATTACH_BUFFER)
            tg.cancel_scope.cancel()
    finally:
        remove_listener()
        if remove_participant is not None:
            remove_participant()
        client.gone()


async def _read_answers(conn: Connection, client: _Client) -> None:
    while True:
        try:
            line = await conn.lines.receive_line(MAX_ANSWER_LINE)
        except (OSError, LineTooLong):
            return
        if line is None:
            return
        try:
            message = json.loads(line)
        except ValueError:
            continue
        if isinstance(message, dict) and message.get("op") == "leave_answer":
            client.answer(message.get("round"), message.get("ok"))
