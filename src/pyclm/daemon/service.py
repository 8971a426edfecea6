"""``pyclm node``: one member in the foreground, until a signal makes it leave.

Theory of operation: :func:`serve` checks the state directory (created with mode 0700
and locked, so two nodes never share it), builds the transport stack
(:mod:`pyclm.daemon.wiring`), and runs a :class:`~pyclm.Node` with
:class:`~pyclm.storage.FileStorage` in ``STATE_DIR/state``.  Beside the node, in one task
group: the control socket (:mod:`pyclm.daemon.control`), the event printer (``--events-json``
lines on stdout and the records ``watch`` streams) and the signal handler.

Signals: the first SIGTERM or SIGINT starts a validated leave (:meth:`pyclm.Node.leave`).
If a member's tracker rejects it, the log says so and the node stays.  Any later signal,
while the validated leave is under way or after it was rejected, leaves without
validation.  The control socket's ``leave`` op does the same as a signal.  After the
leave the process exits 0.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import time
from collections.abc import Iterator, Mapping
from typing import Any, TextIO

import anyio
import anyio.abc

from ..clm.codec import change_to_json, snapshot_to_json
from ..clm.model import MembershipChange
from ..errors import LeaveRejected, UsageError
from ..runtime import EventsLost, Node
from ..sim.report import event_record, json_line
from .attach import attach
from .audit import AuditLog
from .control import Connection, ControlServer, Handler, RequestError
from .embed import make_node
from .keys import KeyOps
from .settings import NodeSettings
from .statedir import locked_state_dir
from .status import build_status
from .wiring import Stack, open_stack

log = logging.getLogger("pyclm.daemon")

#: Seconds a stopped node waits for attached clients to take its last change.
ATTACH_DRAIN = 1.0
#: Records a ``watch`` client may fall behind by before it is told it lost some.
WATCH_BUFFER = 256


class _Watchers:
    """The ``watch`` clients' bounded queues; a full one loses its oldest records, counted."""

    def __init__(self) -> None:
        self._queues: set[_WatchQueue] = set()

    def publish(self, record: Mapping[str, Any]) -> None:
        for queue in list(self._queues):
            queue.put(record)

    @contextlib.contextmanager
    def subscribe(self) -> Iterator[_WatchQueue]:
        queue = _WatchQueue()
        self._queues.add(queue)
        try:
            yield queue
        finally:
            self._queues.discard(queue)


class _WatchQueue:
    def __init__(self) -> None:
        self.items: list[Mapping[str, Any]] = []
        self.lost = 0
        self.ready = anyio.Event()

    def put(self, record: Mapping[str, Any]) -> None:
        if len(self.items) >= WATCH_BUFFER:
            self.items.pop(0)
            self.lost += 1
        self.items.append(record)
        self.ready.set()

    async def take(self) -> list[Mapping[str, Any]]:
        await self.ready.wait()
        self.ready = anyio.Event()
        items, self.items = self.items, []
        if self.lost:
            items.insert(0, {"event": "lost", "count": self.lost})
            self.lost = 0
        return items


class NodeService:
    """One running ``pyclm node``: the node, its stack and what serves them."""

    def __init__(
        self, settings: NodeSettings, stack: Stack, node: Node, task_group: anyio.abc.TaskGroup, *, stdout: TextIO
    ) -> None:
        self.settings = settings
        self.stack = stack
        self.node = node
        self.stdout = stdout
        self.started = anyio.current_time()
        self.audit = AuditLog(settings.state_dir / "audit.log")
        self.watchers = _Watchers()
        self.keys = KeyOps(settings.key_file, stack.keyring, stack.set_keyring, self.audit)
        self._leaving: str | None = None  # None, "validated" or "unvalidated"
        self.rejection = ""  # why the last validated leave was rejected
        self._task_group = task_group
        self._attached = 0  # attach connections open
        self._detached = anyio.Event()  # set (and replaced) when the last one closes

    def handlers(self) -> dict[str, Handler]:
        handlers: dict[str, Handler] = {
            "status": self._status,
            "watch": self._watch,
            "remove_nodes": self._remove_nodes,
            "audit": self._audit_entries,
            "attach": self._attach,
            "leave": self._leave_op,
        }
        handlers.update(self.keys.handlers())
        return handlers

    # ------------------------------------------------------------------ control ops

    def status(self) -> dict[str, Any]:
        stack = self.stack
        return build_status(
            self.node,
            started=self.started,
            transport=stack.description,
            counters=stack.counters(),
            traffic=stack.traffic(),
            drops=stack.drops(),
        )

    async def _status(self, request: Mapping[str, Any], conn: Connection) -> None:
        await conn.send({"ok": True, "status": self.status()})

    async def _watch(self, request: Mapping[str, Any], conn: Connection) -> None:
        with self.watchers.subscribe() as queue:
            snapshot = self.node.membership_snapshot()
            await conn.send({"ok": True, "status": self.status(), "membership": snapshot_to_json(snapshot)})
            while self.node.running:
                for record in await queue.take():
                    await conn.send(record)

    async def _remove_nodes(self, request: Mapping[str, Any], conn: Connection) -> None:
        nodes, reason = request.get("nodes"), request.get("reason")
        if (
            not isinstance(nodes, list)
            or not nodes
            or not all(isinstance(n, int) and not isinstance(n, bool) for n in nodes)
        ):
            raise RequestError("nodes: must be a non-empty list of node ids")
        if not isinstance(reason, str) or not reason.strip():
            raise RequestError("reason: say why the nodes are gone for good (it goes to the audit log)")
        try:
            await self.node.remove_nodes(nodes, reason=reason)
        except (UsageError, ValueError) as exc:
            self.audit.write("remove_nodes", conn.peer, nodes=nodes, reason=reason, ok=False, error=str(exc))
            raise RequestError(str(exc)) from None
        self.audit.write("remove_nodes", conn.peer, nodes=nodes, reason=reason, ok=True)
        await conn.send({"ok": True})

    @property
    def leaving(self) -> bool:
        """True once a leave was asked for (a signal or the control socket)."""
        return self._leaving is not None

    async def _attach(self, request: Mapping[str, Any], conn: Connection) -> None:
        self._attached += 1
        try:
            await attach(self.node, request, conn)
        finally:
            self._attached -= 1
            if not self._attached:
                self._detached.set()
                self._detached = anyio.Event()

    async def drain_attached(self, timeout: float) -> None:
        """After the node stopped: give attached clients up to ``timeout`` seconds to take its last change."""
        with anyio.move_on_after(timeout):
            while self._attached:
                await self._detached.wait()

    async def _audit_entries(self, request: Mapping[str, Any], conn: Connection) -> None:
        await conn.send({"ok": True, "entries": self.audit.read()})

    # ------------------------------------------------------------------ tasks

    async def print_events(self) -> None:
        """Every view / primary / primary_lost event: to stdout (``--events-json``) and to watchers."""
        with self.node.events() as events:
            async for event in events:
                if isinstance(event, EventsLost):
                    log.warning("the event printer fell behind: %d events not printed", event.count)
                    continue
                t = round(anyio.current_time() - self.started, 6)
                record = event_record(t, self.node.node_id, event)
                if record is None:
                    continue
                record["wall"] = round(time.time(), 6)
                log.info("%s", _describe(record), extra={"fields": {"view": record["view"]}})
                if self.settings.events_json:
                    self.stdout.write(json_line(record) + "\n")
                    self.stdout.flush()
                self.watchers.publish(record)

    def on_membership(self, change: MembershipChange) -> None:
        record = {"event": "membership", "wall": round(time.time(), 6), **change_to_json(change)}
        self.watchers.publish(record)

    async def handle_signals(self) -> None:
        with anyio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for signum in signals:
                self.request_leave(signal.Signals(signum).name)

    def request_leave(self, source: str, *, validate: bool = True) -> anyio.Event:
        """Leave as a signal asks: validated the first time, without validation after that
        (or when ``validate`` is False).  The event is set if a validated leave is rejected."""
        rejected = anyio.Event()
        if self._leaving is None and validate:
            log.info("%s: leaving the cluster (validated)", source)
            self._leaving = "validated"
            self._task_group.start_soon(self._leave_validated, rejected)
        else:
            log.warning("%s: leaving without validation", source)
            self._leaving = "unvalidated"
            self._task_group.start_soon(self._leave_unvalidated)
        return rejected

    async def _leave_validated(self, rejected: anyio.Event) -> None:
        try:
            await self.node.leave()
        except LeaveRejected as exc:
            if self._leaving == "validated":
                log.warning("leave rejected, staying in the cluster: %s; signal again to leave anyway", exc)
                self.rejection = str(exc)
                rejected.set()

    async def _leave_unvalidated(self) -> None:
        await self.node.leave(validate=False)

    async def _leave_op(self, request: Mapping[str, Any], conn: Connection) -> None:
        validate = request.get("validate", True)
        if not isinstance(validate, bool):
            raise RequestError("validate: must be true or false")
        self.audit.write("leave", conn.peer, validate=validate)
        rejected = self.request_leave("control socket", validate=validate)
        await conn.send({"ok": True, "validate": validate and self._leaving == "validated"})
        await rejected.wait()  # a successful leave ends the node, and this connection with it
        await conn.send({"event": "leave_rejected", "error": self.rejection})


def _describe(record: Mapping[str, Any]) -> str:
    if record["event"] == "view":
        return f"installed view {record['view']} with members {record['members']}"
    if record["event"] == "primary":
        return f"view {record['view']} is primary #{record['number']}"
    return f"view {record['view']} is no longer primary"


async def serve(settings: NodeSettings, *, stdout: TextIO | None = None) -> int:
    """Run ``pyclm node`` until it has left the cluster; returns the exit code."""
    out = stdout if stdout is not None else sys.stdout
    with locked_state_dir(settings.state_dir):
        async with open_stack(settings) as stack:
            node = make_node(settings, stack)
            in_state_dir = settings.control_socket.parent == settings.state_dir
            control = ControlServer(
                settings.control_socket, {}, group=settings.control_group, share_parent=in_state_dir
            )
            await control.open()
            async with node, anyio.create_task_group() as tg:
                service = NodeService(settings, stack, node, tg, stdout=out)
                control.handlers.update(service.handlers())
                node.add_membership_listener(service.on_membership)
                log.info(
                    "node %d started: incarnation %s, %s, control socket %s",
                    node.node_id,
                    node.incarnation,
                    stack.description,
                    settings.control_socket,
                )
                tg.start_soon(control.serve)
                tg.start_soon(service.print_events)
                tg.start_soon(service.handle_signals)
                with contextlib.suppress(UsageError):
                    await node.wait_for(lambda: False)
                await service.drain_attached(ATTACH_DRAIN)
                tg.cancel_scope.cancel()
    if not service.leaving:
        # Nobody asked it to leave: its transport failed (the network went away).
        log.error("node %d stopped without leaving the cluster: its transport closed", settings.node_id)
        return 1
    log.info("node %d left the cluster", settings.node_id)
    return 0
