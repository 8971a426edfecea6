"""The anyio runtime: :class:`Node` runs one membership core over a transport.

Theory of operation
-------------------
A node owns ONE :class:`~pyclm.core.Membership` core, ONE transport and ONE storage,
and follows aioquic's protocol pump.  A single *owner task* makes every call into the
core; it takes its inputs from an inbox (datagrams, put there by the receive task, and
API calls such as :meth:`Node.leave`) and from one timer.  After every input it drains
the core at once (no ``await`` between the call and the draining), then acts on the
outputs in the order the core's contract asks for:

1. persist every storage write, one after the other, each complete before the next
   step (writes to any storage but :class:`~pyclm.storage.MemoryStorage` run in a
   worker thread, so the event loop keeps running meanwhile);
2. send every datagram;
3. publish every event: update :attr:`Node.view` and :attr:`Node.is_primary`, hand the
   event to each subscriber of :meth:`Node.events`, and feed it to the node's CLM layer
   (:class:`~pyclm.clm.ClusterMembership`) and to its validated leave, in the core's
   order;
4. deliver the CLM layer's changes (after firing its settle timer if that came due):
   for each one, swap the membership snapshot the accessors read
   (:meth:`Node.cluster_members` and the others), then hand the change to each
   :meth:`Node.track` subscriber, then call each membership listener;
5. drive the validated leave (:mod:`pyclm._leaving`): it may hand the core CLM messages
   (``send_clm``) or this node's own leave (``leave``); if the core got anything to
   send, drain it again from step 1;
6. re-arm the one timer at the earliest of the core's, the CLM layer's and the leave's
   deadlines.

So nothing that follows a write (a datagram, an event, the node's visible state) is
seen before the write is durable.  CLM changes come last because they are derived from
the events: when a listener runs, :attr:`Node.view` and :attr:`Node.primary_number`
already show the event that caused the change, and the membership accessors show the
change itself.  Steps 3 and 4 have no ``await`` between them, so a tracker's snapshot
and the changes after it never miss or repeat one.  With one owner and an inbox there is
no lock.  The subscribers' bounded streams and the listeners (:mod:`pyclm._streams`)
and the validated leave's driver (:mod:`pyclm._leaving`) have modules of their own,
each with its theory of operation.

Threads: the membership accessors (:attr:`Node.view_number`, :attr:`Node.is_member`,
:meth:`Node.cluster_members`, :meth:`Node.local_node`, :meth:`Node.cluster_node`,
:meth:`Node.membership_snapshot`) may be called from any thread.  The owner task
replaces one immutable :class:`~pyclm.clm.MembershipSnapshot` per change; readers only
load that reference.  Listeners and leave participants may be added and removed from any
thread (copy-on-write, under a lock).  Work handed to the owner task from another thread
(a leave participant's answer, :meth:`Node._post`) is appended to the inbox and the owner
is woken through the event loop's thread-safe entry (``loop.call_soon_threadsafe`` on
asyncio, ``TrioToken.run_sync_soon`` on trio).  Everything else is for the event loop's
tasks.

Time is ``anyio.current_time()``; the wall clock that seeds the incarnation is
``time.time_ns()``.  The core itself never reads a clock.

Stopping: :meth:`Node.leave` asks the members first (the validated leave) and, unless
it is refused, tells the cluster and stops; ``leave(validate=False)`` (also leaving the
``async with`` block normally) tells the cluster and stops without asking;
:meth:`Node.abort` (or an exception out of the block) stops at once, which the cluster
sees as a crash.  Either way the node closes its transport.  A graceful leave reports
the local node SHUTDOWN, an abort reports it LEFT (if it was a member); then every
tracker's iteration ends.  The abort's LEFT is handed out after :attr:`Node.running` turned
False (so a listener knows it is the last change) and before :attr:`Node.stopped` turns
True: a thread that sees ``stopped`` knows every listener has seen the last change.
"""

from __future__ import annotations

import asyncio
import enum
import logging
import math
import random
import time
from collections import deque
from collections.abc import AsyncIterator, Awaitable, Callable, Mapping
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.abc
import anyio.lowlevel
import anyio.to_thread
import attrs

from ._leaving import LEAVE_ATTEMPTS as LEAVE_ATTEMPTS
from ._leaving import LeaveDriver
from ._leaving import LeaveParticipant as LeaveParticipant
from ._leaving import LeaveRound as LeaveRound
from ._streams import EventsLost as EventsLost
from ._streams import EventSubscription as EventSubscription
from ._streams import MembershipTrack as MembershipTrack
from ._streams import Subscribers
from ._taskgroups import exit_task_group
from .clm import ClusterMembership, ClusterNode, MembershipChange, MembershipSnapshot
from .clm.leave import DEFAULT_START_SUPERVISION, DEFAULT_VALIDATE_TIMEOUT, LeaveProposal
from .config import MembershipConfig
from .core import Membership, PeerState
from .errors import ConfigError, UsageError
from .events import Event, PrimaryFormed, PrimaryLost, Stopped, ViewInstalled
from .ids import View
from .storage import MemoryStorage, Storage
from .transports.base import Transport
from .voting import QuorumConfig

log = logging.getLogger("pyclm.runtime")

#: Datagrams the inbox holds between the receive task and the owner task; more are dropped.
DEFAULT_INBOX_SIZE = 1024
#: Events a subscriber may fall behind by before the oldest are dropped.
DEFAULT_EVENT_BUFFER = 256
#: Membership changes a tracker may fall behind by before the oldest are dropped.
DEFAULT_TRACK_BUFFER = 256
#: The default settle timeout of the CLM layer, in suspect timeouts (see :class:`Node`).
SETTLE_SUSPECT_TIMEOUTS = 4


class _Call:
    """An API call waiting in the inbox for the owner task."""

    __slots__ = ("done", "error", "fn")

    def __init__(self, fn: Callable[[Membership, float], None]) -> None:
        self.fn = fn
        self.done = anyio.Event()
        self.error: UsageError | None = None


class _Post:
    """Work for the owner task handed in from any thread (a participant's answer); nobody awaits it."""

    __slots__ = ("fn",)

    def __init__(self, fn: Callable[[Membership, float], None]) -> None:
        self.fn = fn


def _loop_scheduler() -> Callable[[Callable[[], object]], object]:
    """A function that runs ``fn()`` soon on the running event loop, callable from any thread."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        import trio  # anyio's only other backend

        return trio.lowlevel.current_trio_token().run_sync_soon
    return loop.call_soon_threadsafe


def _seconds(setting: str, value: object, *, most: float = math.inf) -> float:
    if (
        not isinstance(value, int | float)
        or isinstance(value, bool)
        or not math.isfinite(value)
        or not 0 < value <= most
    ):
        raise ConfigError(setting, f"must be a positive number of seconds (at most {most:g}), got {value!r}")
    return float(value)


class _Phase(enum.Enum):
    NEW = "new"
    RUNNING = "running"
    STOPPING = "stopping"  # stopped running, handing out its last membership change
    STOPPED = "stopped"


#: The phases in which a node no longer runs: new subscribers get nothing more.
_ENDED = frozenset({_Phase.STOPPING, _Phase.STOPPED})


class Node:
    """A cluster member: one membership core driven over ``transport``, persisting to ``storage``.

    Use as ``async with Node(config, quorum, transport, storage) as node:``.  Entering
    creates the core (a new incarnation, durable before it returns) and starts the
    node's tasks; leaving the block normally leaves the cluster gracefully (see
    :meth:`leave`), leaving it with an exception stops at once like :meth:`abort`.  The
    node closes ``transport`` when it stops.  A Node runs once: to rejoin, build a new
    one with the same storage (it gets a higher incarnation).

    ``storage`` defaults to a fresh :class:`~pyclm.storage.MemoryStorage` (nothing
    survives the process).  ``rng`` feeds the core's random choices (default: unseeded).
    If ``config.max_datagram`` exceeds ``transport.max_datagram`` the core is built with
    the transport's limit.

    The node also reports SA Forum style cluster membership through its CLM layer
    (:mod:`pyclm.clm`, docs/clm.md): :meth:`track`, :meth:`add_membership_listener`
    and the accessors :attr:`view_number`, :attr:`is_member`, :meth:`cluster_members`,
    :meth:`cluster_node`, :meth:`local_node`.  ``names`` maps node ids to the names it
    reports (default ``"node<id>"``).  ``settle_timeout`` is how long, in seconds, the
    local node stays in the reported membership while a view change is under way (no
    primary has it) before it is reported LEFT.  None derives it from the timing:
    ``SETTLE_SUSPECT_TIMEOUTS`` (4) x ``config.timing.suspect_timeout``, which is
    :data:`pyclm.clm.DEFAULT_SETTLE_TIMEOUT` (2 s) at the default timing.  Why four: the
    wait starts when the primary is lost; before a new primary takes this node back, the
    failure detectors may need up to one suspect timeout to suspect the lost nodes (the
    lease can run out first), the lease hold keeps this node out of views without its
    former prober for up to one lease (shorter than a suspect timeout), the agreement
    gathers rows and runs its rounds (settle delays, each shorter than a suspect timeout,
    plus message delays), and the new primary waits about one heartbeat interval for its
    lease.  Four suspect timeouts cover each step once, with room to spare.  A shorter
    one reports a minority node out sooner, but a member whose view change is slow then
    reports itself LEFT and JOINED again.

    :meth:`leave` is validated (docs/clm.md, "Validated leave"): the node first asks
    every member's leave participants (:meth:`add_leave_validator`, and the SAF
    facade's VALIDATE_STEP / START_STEP trackers), and the node serves those questions
    for the others' leaves by itself.  ``leave_validate_timeout`` (default
    :data:`pyclm.clm.DEFAULT_VALIDATE_TIMEOUT`, 5 s) is how long it waits for every
    member's VALIDATE answer before it calls its leave off; ``leave_start_supervision``
    (default :data:`pyclm.clm.DEFAULT_START_SUPERVISION`, 10 s) is the time it gives the
    START trackers (their ``timeSupervision``).  Both are answer times of applications,
    not of the network, so they do not follow the timing; a failed validation costs at
    most the first, a successful leave at most both.  Requests are sent again every
    ``timing.heartbeat_interval``.
    """

    def __init__(
        self,
        config: MembershipConfig,
        quorum: QuorumConfig,
        transport: Transport,
        storage: Storage | None = None,
        rng: random.Random | None = None,
        *,
        inbox_size: int = DEFAULT_INBOX_SIZE,
        names: Mapping[int, str] | None = None,
        settle_timeout: float | None = None,
        leave_validate_timeout: float = DEFAULT_VALIDATE_TIMEOUT,
        leave_start_supervision: float = DEFAULT_START_SUPERVISION,
    ) -> None:
        if not isinstance(transport, Transport):
            raise TypeError(f"transport must implement pyclm.transports.Transport, got {type(transport).__name__}")
        if inbox_size < 1:
            raise ValueError(f"inbox_size must hold at least one datagram, got {inbox_size!r}")
        if settle_timeout is None:
            settle_timeout = SETTLE_SUSPECT_TIMEOUTS * config.timing.suspect_timeout
        elif (
            not isinstance(settle_timeout, int | float)
            or isinstance(settle_timeout, bool)
            or not math.isfinite(settle_timeout)
            or settle_timeout <= 0
        ):
            raise ConfigError("settle_timeout", f"must be a positive number of seconds, got {settle_timeout!r}")
        validate_timeout = _seconds("leave_validate_timeout", leave_validate_timeout, most=(2**32 - 1) / 1000)
        start_supervision = _seconds("leave_start_supervision", leave_start_supervision, most=2**63 / 1e9)
        if config.max_datagram > transport.max_datagram:
            config = attrs.evolve(config, max_datagram=transport.max_datagram)
        self.config = config
        self.quorum = quorum
        self.transport = transport
        self.storage: Storage = storage if storage is not None else MemoryStorage()
        self._rng = rng if rng is not None else random.Random()
        self._inbox_size = inbox_size
        self.names: Mapping[int, str] = dict(names) if names is not None else {}
        #: Seconds the local node stays a member without a primary (see the class docstring).
        self.settle_timeout = float(settle_timeout)
        #: Seconds a validated leave waits for the VALIDATE answers (see the class docstring).
        self.leave_validate_timeout = validate_timeout
        #: Seconds a validated leave gives the START trackers.
        self.leave_start_supervision = start_supervision
        self._storage_blocks = not isinstance(self.storage, MemoryStorage)
        self._phase = _Phase.NEW
        self._core: Membership | None = None
        self._view: View | None = None
        self._primary_number: int | None = None
        self._inbox: deque[tuple[bytes, Any] | _Call | _Post] = deque()
        self._timer_at: float | None = None  # the earlier of the two below
        self._core_timer_at: float | None = None
        # Event subscribers, membership trackers and listeners (pyclm._streams).
        self._subscribers = Subscribers(config.node_id)
        # The CLM layer (created with the core) and what its accessors read.
        self._clm: ClusterMembership | None = None
        self._membership = MembershipSnapshot(view_number=0, members=(), local=None)
        # The validated leave (pyclm._leaving): this node's part, its participants, the
        # steps they are taking part in, and this node's own request.
        self._leave = LeaveDriver(
            self,
            validate_timeout=validate_timeout,
            start_supervision=start_supervision,
            retry_interval=config.timing.heartbeat_interval,
        )
        self._schedule: Callable[[Callable[[], object]], object] | None = None  # set on entry
        self._dropped_inbox_full = 0
        self._task_group: anyio.abc.TaskGroup | None = None
        # Created on entry (they need a running event loop).
        self._scope: anyio.CancelScope | None = None  # the owner task's: abort() cancels it
        self._receive_scope: anyio.CancelScope | None = None
        self._reachability_scope: anyio.CancelScope | None = None  # the transport's reachability events
        self._wake: anyio.Event | None = None
        self._changed: anyio.Event | None = None
        self._stopped: anyio.Event | None = None

    # ------------------------------------------------------------------ state

    @property
    def node_id(self) -> int:
        return self.config.node_id

    @property
    def incarnation(self) -> int | None:
        """This life's incarnation (None before the node started)."""
        return self._core.incarnation if self._core is not None else None

    @property
    def view(self) -> View | None:
        """The view this node has installed (None before the first one and once stopped)."""
        return self._view

    @property
    def primary_number(self) -> int | None:
        """The primary number while the current view is the primary component, else None."""
        return self._primary_number

    @property
    def fencing_token(self) -> int | None:
        """The primary number, as a fencing token for resources outside the cluster.

        Primary numbers only grow along the chain of primaries, and with the lease on
        no two primaries act at once (docs/lease.md).  A resource that remembers the
        highest token it has seen and refuses requests carrying a lower one also stops
        a primary whose messages were delayed past the end of its lease.  None while this
        node is not acting as primary.
        """
        return self._primary_number

    @property
    def is_primary(self) -> bool:
        return self._primary_number is not None

    @property
    def running(self) -> bool:
        return self._phase is _Phase.RUNNING

    @property
    def stopped(self) -> bool:
        """True once the node stopped (left or aborted), closed its transport and handed out
        its last membership change.  :attr:`running` turns False before that last change is
        handed out (so a listener can tell it is the last one), this only after it."""
        return self._phase is _Phase.STOPPED

    @property
    def counters(self) -> dict[str, int]:
        """The core's counters (its policy's prefixed ``quorum_``), the validated leave's
        (``leave_*``), plus ``rx_dropped_inbox_full`` (datagrams the owner task could not
        keep up with)."""
        out = self._core.all_counters() if self._core is not None else {}
        out.update(self._leave.counters)
        if self._dropped_inbox_full:
            out["rx_dropped_inbox_full"] = self._dropped_inbox_full
        return out

    def peers(self) -> list[PeerState]:
        """Every other node this one has heard of, by ascending id (empty before it started).

        ``last_heard`` is in :func:`anyio.current_time` seconds.  Call it from the node's
        event loop.
        """
        return self._core.peer_states() if self._core is not None else []

    # ------------------------------------------------------------------ cluster membership (any thread)

    @property
    def view_number(self) -> int:
        """The cluster membership's view number: the number of the last primary this node
        reported (0 before any).  Unlike :attr:`primary_number` it stays while a view change
        is under way and after this node is reported out."""
        return self._membership.view_number

    @property
    def is_member(self) -> bool:
        """Whether the local node is in the cluster membership as last reported.

        It stays True during a view change, up to the settle timeout; for fencing use
        :attr:`is_primary` and :attr:`fencing_token`.
        """
        return self._membership.is_member

    def cluster_members(self) -> tuple[ClusterNode, ...]:
        """The members, ascending by id; empty while the local node is not a member."""
        return self._membership.members

    def local_node(self) -> ClusterNode | None:
        """The local node's record (``member`` says whether it is in); None before the node started."""
        return self._membership.local

    def cluster_node(self, node_id: int) -> ClusterNode | None:
        """The member ``node_id``; the local node also when it is not a member; else None."""
        return self._membership.node(node_id)

    def membership_snapshot(self) -> MembershipSnapshot:
        """The view number, members and local node as one value (read together, they can
        straddle a change when another thread reads them one by one)."""
        return self._membership

    def __repr__(self) -> str:
        view = self._view.view_id if self._view is not None else None
        return f"<Node {self.node_id} {self._phase.value} view={view} primary={self._primary_number}>"

    # ------------------------------------------------------------------ API

    def events(self, buffer: int = DEFAULT_EVENT_BUFFER) -> EventSubscription:
        """Subscribe to this node's events from now on: ``async for event in node.events():``.

        Yields :class:`~pyclm.events.ViewInstalled`, :class:`~pyclm.events.PrimaryFormed`,
        :class:`~pyclm.events.PrimaryLost`, :class:`~pyclm.events.ClmMessage` and, after a
        graceful leave, a last :class:`~pyclm.events.Stopped`; the iteration ends when the
        node stops.  Each subscriber has its own buffer of ``buffer`` events: when it is
        full the oldest is dropped and the next item yielded is an :class:`EventsLost`
        marker with the count.  Use ``with node.events() as events:`` to unsubscribe on
        the way out.
        """
        if buffer < 1:
            raise ValueError(f"buffer must hold at least one event, got {buffer!r}")
        subscription = EventSubscription(self, buffer)
        self._subscribers.subscribe(subscription, stopped=self._phase in _ENDED)
        return subscription

    def track(self, buffer: int = DEFAULT_TRACK_BUFFER) -> MembershipTrack:
        """Track the cluster membership: ``async for item in node.track():``.

        Yields first a :class:`~pyclm.clm.MembershipSnapshot` of the membership now, then
        every :class:`~pyclm.clm.MembershipChange` after it, in order, none missed or
        repeated.  Each tracker buffers up to ``buffer`` changes: when it is full the
        oldest is dropped and the next item yielded is a :class:`~pyclm.clm.ChangesLost`
        marker with the count (the snapshot is never dropped).  The iteration ends when
        the node stops, after the last change (the local node SHUTDOWN after a graceful
        leave, LEFT after an abort).  ``with node.track() as changes:`` unsubscribes on
        the way out.  Call it from the node's event loop.
        """
        if buffer < 1:
            raise ValueError(f"buffer must hold at least one change, got {buffer!r}")
        track = MembershipTrack(self, buffer)
        self._subscribers.subscribe(track, stopped=self._phase in _ENDED)
        return track

    def add_membership_listener(self, fn: Callable[[MembershipChange], None]) -> Callable[[], None]:
        """Call ``fn(change)`` for every later membership change; returns the function that removes it.

        ``fn`` runs on the node's event loop, synchronously, right after the change is
        produced and the accessors show it, in order; it must not block.  An exception
        from it is logged (logger ``pyclm.runtime``) and does not stop the node or the
        other listeners.  Adding and removing work from any thread; removing is
        idempotent, and once it returns no new call of ``fn`` starts (one the loop is
        already making may still finish).  A listener added from another thread while a
        change is being delivered may miss that change, but then the accessors already
        show it: read them after adding, and use the view numbers to drop a change seen
        twice.
        """
        return self._subscribers.add_listener(fn)

    async def get_node(self, node_id: int) -> ClusterNode | None:
        """:meth:`cluster_node` for async callers (``saClmClusterNodeGetAsync``'s shape).

        The answer is the membership as last reported; it does not wait for a view change
        under way.  It is a checkpoint: cancellation is honoured here.
        """
        await anyio.lowlevel.checkpoint()
        return self.cluster_node(node_id)

    async def wait_for(self, predicate: Callable[[], object], timeout: float | None = None) -> None:
        """Return once ``predicate()`` is true; it is re-checked after every input this node handles.

        Raises :class:`TimeoutError` after ``timeout`` seconds, and
        :class:`~pyclm.errors.UsageError` if the node stops while the predicate is false.
        """
        self._require_started()
        with anyio.fail_after(timeout):
            while not predicate():
                if self._phase in _ENDED:
                    raise UsageError(f"node {self.node_id} stopped before the condition held")
                assert self._changed is not None
                await self._changed.wait()

    async def leave(self, *, validate: bool = True) -> None:
        """Leave the cluster gracefully and stop; returns once the node stopped.

        With ``validate`` (the default) the leave is validated first (docs/clm.md,
        "Validated leave"): every member of this node's primary, this node included,
        asks its leave participants (validators, SAF trackers with VALIDATE_STEP).  If
        one refuses, or a member does not answer within ``leave_validate_timeout``, the
        leave is called off: :class:`~pyclm.errors.LeaveRejected` is raised, naming the
        nodes, and the node keeps running as before.  Otherwise the START trackers are
        told (within ``leave_start_supervision``) and the node leaves.  A node that is
        not a member of a primary has nothing to validate and leaves at once.  If the
        view changes during the validation, it is asked again in the new view (up to
        :data:`LEAVE_ATTEMPTS` times).  Cancelling the call during VALIDATE calls the
        leave off; during START the leave goes on.

        ``validate=False`` leaves at once without asking anyone; it also cuts short a
        validated leave under way (whose callers then return).  Leaving the ``async
        with`` block normally does this, so that it cannot be refused.

        The core tells the group it leaves (the others remove it at once, without
        waiting for their failure detectors), the node sends that, then closes its
        transport.  Calling it after the node stopped (after a leave or :meth:`abort`)
        does nothing.
        """
        self._require_started()
        if not isinstance(validate, bool):
            raise TypeError(f"validate must be True or False, got {validate!r}")
        if self._phase is _Phase.RUNNING:
            if validate:
                await self._leave.leave()
            else:
                await self._call(lambda core, now: None if core.stopped else core.leave(now))
        assert self._stopped is not None
        await self._stopped.wait()

    def add_leave_validator(self, fn: Callable[[LeaveProposal], bool | Awaitable[bool]]) -> Callable[[], None]:
        """Ask ``fn`` before any member (this node included) leaves; returns the function that removes it.

        ``fn(proposal)`` gets a :class:`~pyclm.clm.LeaveProposal`: the node that asks to
        leave (``proposal.leaving``), the view number, and the change as it will be
        reported.  It returns True to let the leave happen and False to refuse it, or an
        awaitable of that (run as a task of the node; it is cancelled if the leaver's
        ``leave_validate_timeout`` passes first, which calls the leave off).  A
        synchronous ``fn`` runs on the event loop and must not block.  An exception from
        it is logged (``pyclm.runtime``) and does not refuse, as
        ``SA_CLM_CALLBACK_RESPONSE_ERROR`` does not.  The leave itself is then reported
        as usual, to membership listeners and trackers.  Like
        :meth:`add_membership_listener`, adding and removing work from any thread; a
        validator added while a leave is being validated is asked from the next one on.
        """
        return self._leave.add_validator(fn)

    def add_leave_participant(self, participant: LeaveParticipant) -> Callable[[], None]:
        """Register a :class:`LeaveParticipant` (the SAF facade's binding uses this); returns
        the function that removes it.  Thread-safe; removing is idempotent."""
        return self._leave.add_participant(participant)

    def abort(self) -> None:
        """Stop at once without telling the cluster (it sees a crash); the transport gets closed.

        Usable from any task, also synchronously.  The node has stopped by the time
        its ``async with`` block is left (or :attr:`stopped` is true).
        """
        self._require_started()
        assert self._scope is not None
        self._scope.cancel()

    async def remove_nodes(self, node_ids: list[int], *, reason: str) -> None:
        """Operator recovery: declare ``node_ids`` permanently gone (see docs/voting.md first).

        Recorded durably, audited (log line and the ``audit`` record) and spread to the
        other members with the next view; raises :class:`UsageError` when the quorum policy
        has no such notion.
        """
        self._require_started()
        wall = time.time_ns()

        def remove(core: Membership, now: float) -> None:
            core.remove_nodes(node_ids, now, wall_clock_ns=wall, reason=reason)

        await self._call(remove)

    async def set_reachable(self, node_id: int, reachable: bool) -> None:
        """External connectivity input (see :meth:`pyclm.core.Membership.set_reachable`)."""
        self._require_started()
        await self._call(lambda core, now: core.set_reachable(node_id, reachable, now))

    # ------------------------------------------------------------------ lifetime

    async def __aenter__(self) -> Self:
        if self._phase is not _Phase.NEW:
            raise UsageError("a Node runs once: create a new Node (with the same storage) to rejoin")
        stored: Mapping[str, bytes] = await self._storage_call(self.storage.load)
        self._core = Membership(
            self.config,
            self.quorum,
            stored=stored,
            wall_clock_ns=time.time_ns(),
            now=anyio.current_time(),
            rng=self._rng,
        )
        self._clm = ClusterMembership(
            self.node_id,
            names=self.names,
            address_of=self._address_of,
            incarnation=self._core.incarnation,
            settle_timeout=self.settle_timeout,
        )
        self._membership = self._clm.snapshot()
        self._schedule = _loop_scheduler()
        self._scope = anyio.CancelScope()
        self._receive_scope = anyio.CancelScope()
        self._reachability_scope = anyio.CancelScope()
        self._wake = anyio.Event()
        self._changed = anyio.Event()
        self._stopped = anyio.Event()
        self._phase = _Phase.RUNNING
        task_group = self._task_group = anyio.create_task_group()
        await task_group.__aenter__()
        try:
            await task_group.start(self._main)
        except BaseException as error:
            await self._exit_task_group(type(error), error, error.__traceback__)
            raise
        return self

    async def __aexit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        try:
            if exc is None and self._phase is _Phase.RUNNING:
                await self.leave(validate=False)  # leaving the block cannot be refused
        finally:
            self.abort()  # nothing left to stop after a leave; at once otherwise
            suppress = await self._exit_task_group(exc_type, exc, tb)
        return suppress

    async def _exit_task_group(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> bool | None:
        task_group = self._task_group
        assert task_group is not None
        return await exit_task_group(task_group, exc_type, exc, tb)

    async def _main(self, *, task_status: anyio.abc.TaskStatus[None] = anyio.TASK_STATUS_IGNORED) -> None:
        assert self._scope is not None and self._receive_scope is not None and self._task_group is not None
        try:
            with self._scope:
                await self._pump()  # the new incarnation is durable before entering returns
                task_status.started()
                self._task_group.start_soon(self._receive_loop)
                reachability = getattr(self.transport, "reachability", None)
                if callable(reachability):  # e.g. TIPC's topology service (docs/tipc.md)
                    self._task_group.start_soon(self._reachability_loop, reachability)
                await self._serve()
        finally:
            self._receive_scope.cancel()
            if self._reachability_scope is not None:
                self._reachability_scope.cancel()
            with anyio.CancelScope(shield=True):
                await self.transport.aclose()
            self._finish()

    def _finish(self) -> None:
        # STOPPING until the last change is handed out: a listener sees ``running`` False
        # (it is the last change), and another thread does not see ``stopped`` before it
        # (the SAF facade would otherwise take the node for one that stopped silently).
        self._phase = _Phase.STOPPING
        self._view = None
        self._primary_number = None
        self._subscribers.end_events()
        clm = self._clm
        assert clm is not None
        clm.handle_abort()  # after a graceful leave it already reported SHUTDOWN: nothing more
        self._deliver_changes(anyio.current_time())
        self._subscribers.end_trackers()
        for item in self._inbox:
            if isinstance(item, _Call):
                item.done.set()
        self._inbox.clear()
        self._leave.finish()
        self._phase = _Phase.STOPPED
        assert self._stopped is not None
        self._stopped.set()
        self._notify()

    # ------------------------------------------------------------------ the owner task

    async def _serve(self) -> None:
        """The owner task: one input at a time, each followed by a pump, until the core stops."""
        core = self._core
        assert core is not None
        inbox = self._inbox
        while not core.stopped:
            if inbox:
                item = inbox.popleft()
                if isinstance(item, _Call):
                    try:
                        item.fn(core, anyio.current_time())
                    except UsageError as error:
                        item.error = error
                    try:
                        await self._pump()
                    finally:
                        item.done.set()
                elif isinstance(item, _Post):
                    item.fn(core, anyio.current_time())
                    await self._pump()
                else:
                    core.receive_datagram(item[0], item[1], anyio.current_time())
                    await self._pump()
                await anyio.lowlevel.checkpoint()
            timer_at = self._timer_at
            now = anyio.current_time()
            if timer_at is not None and not core.stopped and now >= timer_at:
                if self._core_timer_at is not None and now >= self._core_timer_at:
                    core.handle_timer(now)
                await self._pump()  # also fires the CLM layer's and the leave's timers if due
            elif not inbox and not core.stopped:
                self._wake = anyio.Event()
                with anyio.CancelScope(deadline=math.inf if timer_at is None else timer_at):
                    await self._wake.wait()

    async def _pump(self) -> None:
        """Drain the core (no await in between), then persist, send, publish, deliver the
        membership changes, drive the validated leave and re-arm: in that order (see the
        module docstring).  Driving the leave may hand the core CLM messages or its own
        leave: then the core is drained again."""
        core = self._core
        clm = self._clm
        assert core is not None and clm is not None
        while True:
            writes = core.writes_to_persist()
            datagrams = core.datagrams_to_send()
            events: list[Event] = []
            while (event := core.next_event()) is not None:
                events.append(event)
            drained_at = anyio.current_time()  # the CLM layer's "now" for these events
            for write in writes:
                await self._storage_call(self.storage.write, write.key, write.data)
            try:
                for data, dest in datagrams:
                    await self.transport.send(data, dest)
            except anyio.ClosedResourceError:
                log.debug("node %d: its transport was closed under it; stopping", self.node_id)
                self.abort()
                await anyio.sleep_forever()  # the abort's cancellation lands here
            for event in events:
                self._publish(event, drained_at)
            now = anyio.current_time()
            self._deliver_changes(now)
            if not self._leave.drive(core, clm, now):
                break
        self._core_timer_at = core_timer_at = core.get_timer()
        timers = [t for t in (core_timer_at, clm.get_timer(), self._leave.get_timer()) if t is not None]
        self._timer_at = min(timers, default=None)
        self._notify()

    def _publish(self, event: Event, now: float) -> None:
        if isinstance(event, ViewInstalled):
            self._view = event.view
            self._primary_number = None
        elif isinstance(event, PrimaryFormed):
            self._primary_number = event.number
        elif isinstance(event, PrimaryLost | Stopped):
            self._primary_number = None
        self._subscribers.publish(event)
        assert self._clm is not None
        self._clm.handle_event(event, now)
        self._leave.handle_event(event, now)

    def _deliver_changes(self, now: float) -> None:
        """Fire the CLM layer's timer if due, then hand out its changes: for each, swap the
        snapshot the accessors read, then trackers, then listeners.  No await: a tracker
        created in between could otherwise miss a change or see one twice."""
        clm = self._clm
        assert clm is not None
        deadline = clm.get_timer()
        if deadline is not None and now >= deadline:
            clm.handle_timer(now)
        while (change := clm.next_change()) is not None:
            self._membership = MembershipSnapshot.after(change)
            self._subscribers.deliver(change)

    # ------------------------------------------------------------------ the inbox: inputs for the owner task

    async def _receive_loop(self) -> None:
        """Move datagrams from the transport to the inbox (dropping them when it is full)."""
        inbox = self._inbox
        assert self._receive_scope is not None
        with self._receive_scope:
            try:
                while True:
                    datagram = await self.transport.receive()
                    if len(inbox) >= self._inbox_size:
                        self._dropped_inbox_full += 1
                        continue
                    inbox.append(datagram)
                    assert self._wake is not None
                    self._wake.set()
            except (anyio.ClosedResourceError, anyio.EndOfStream, anyio.BrokenResourceError):
                log.debug("node %d: its transport was closed under it; stopping", self.node_id)
                self.abort()

    async def _reachability_loop(self, source: Callable[[], AsyncIterator[tuple[int, bool]]]) -> None:
        """Feed the transport's view of who is reachable into the core (``set_reachable``).

        In heartbeat mode "unreachable" suspects the node at once and "reachable" hands the
        decision back to the failure detector: the transport's own link supervision only
        speeds detection up.  Ends with the receive loop (the node stops).
        """
        assert self._reachability_scope is not None
        with self._reachability_scope:
            try:
                async for node_id, reachable in source():
                    self._post_from_loop(_reachable_call(node_id, reachable))
            except (anyio.ClosedResourceError, anyio.EndOfStream, anyio.BrokenResourceError):
                log.debug("node %d: the transport's reachability events ended", self.node_id)

    async def _call(self, fn: Callable[[Membership, float], None]) -> None:
        """Run ``fn(core, now)`` on the owner task, followed by a pump; re-raise its UsageError."""
        if self._phase is not _Phase.RUNNING:
            raise UsageError(f"node {self.node_id} has stopped: create a new Node to rejoin")
        call = _Call(fn)
        self._inbox.append(call)
        assert self._wake is not None
        self._wake.set()
        await call.done.wait()
        if call.error is not None:
            raise call.error

    def _post(self, fn: Callable[[Membership, float], None]) -> None:
        """Run ``fn(core, now)`` on the owner task soon, followed by a pump.  From any thread."""
        schedule = self._schedule
        if self._phase is not _Phase.RUNNING or schedule is None:
            return
        self._inbox.append(_Post(fn))  # deque.append is atomic
        try:
            schedule(self._wake_owner)
        except Exception:  # the event loop has finished: the node stopped
            log.debug("node %d: an answer came after the event loop ended", self.node_id)

    def _post_from_loop(self, fn: Callable[[Membership, float], None]) -> None:
        """:meth:`_post` from the event loop's own tasks: it wakes the owner task at once."""
        self._inbox.append(_Post(fn))
        assert self._wake is not None
        self._wake.set()

    def _wake_owner(self) -> None:
        if self._wake is not None:
            self._wake.set()

    # ------------------------------------------------------------------ helpers

    async def _storage_call(self, fn: Callable[..., Any], *args: Any) -> Any:
        if self._storage_blocks:
            return await anyio.to_thread.run_sync(fn, *args)
        return fn(*args)

    def _address_of(self, node_id: int) -> str | None:
        """The address the CLM layer reports for ``node_id``: the transport's own for the
        local node, the one the core last heard the node from for the others."""
        if node_id == self.node_id:
            return address_text(getattr(self.transport, "address", None))
        assert self._core is not None
        return address_text(self._core.peer_address(node_id))

    def _notify(self) -> None:
        changed = self._changed
        if changed is not None and changed.statistics().tasks_waiting:
            changed.set()
            self._changed = anyio.Event()

    def _require_started(self) -> None:
        if self._phase is _Phase.NEW:
            raise UsageError("start the node first: `async with Node(...) as node:`")


def _reachable_call(node_id: int, reachable: bool) -> Callable[[Membership, float], None]:
    def call(core: Membership, now: float) -> None:
        core.set_reachable(node_id, reachable, now)

    return call


def address_text(address: object) -> str | None:
    """A transport address as the CLM layer reports it: ``host:port`` (``[host]:port`` for
    IPv6) for socket addresses, ``str()`` of anything else, None for None."""
    if address is None:
        return None
    if isinstance(address, tuple) and len(address) >= 2 and isinstance(address[0], str):
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    return str(address)
