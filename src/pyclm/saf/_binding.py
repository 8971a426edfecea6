"""Which node the SAF facade speaks for: the node running in this process, bound by :func:`bind`.

Theory of operation
-------------------
A SAF CLM library answers for the node it runs on.  In pyclm that node is embedded: a
:class:`pyclm.Node` in the same process, possibly running its event loop in another
thread.  :func:`bind` names it; every handle opened afterwards speaks for it.  There is
one binding per process, as there is one CLM node per OpenSAF host.

A :class:`Binding` registers one membership listener on the node
(``node.add_membership_listener``).  The node calls it on its own event loop, right
after each :class:`~pyclm.clm.MembershipChange`.  The binding keeps the membership as
of the last change it saw (:attr:`Binding.state`) and passes the change on to its
observers (the handles, see :mod:`pyclm.saf._api`), which queue callbacks.  Reading the
state and subscribing happen under the same lock as this fan-out, so a handle that asks
for the current membership and starts tracking changes in one call gets the snapshot
and then exactly the changes after it.  Until the first change arrives the state is the
node's own snapshot (``node.membership_snapshot()``); the node swaps that just before it
calls the listeners, so a handle that read it in between already saw the next change,
and skips it (see ``_Handle.baseline`` in :mod:`pyclm.saf._api`).

The binding is also the node's *leave participant* (``node.add_leave_participant``):
when a member asks to leave, the node hands each step of the validated leave to
:meth:`Binding.begin_leave_step`, which delivers VALIDATE or START callbacks to the B.04
handles that track with ``SA_TRACK_VALIDATE_STEP`` or ``SA_TRACK_START_STEP``
(:func:`pyclm.saf._api.start_step`) and reports their ``saClmResponse_4`` answers back
to the node.  Those answers come from application threads; the node takes them over to
its own event loop.

A binding ends when it is replaced (:func:`bind` with another node), by :func:`unbind`,
or when its node stops: a graceful leave reports the local node SHUTDOWN, an abort
reports it LEFT, and that is the node's last change.  The binding's handles then go
*stale*, as OpenSAF's do when its server restarts: their pending callbacks (that last
change among them) stay, their selection object becomes readable, and the dispatch after
those callbacks returns ``SA_AIS_ERR_BAD_HANDLE`` and releases the handle.

The node reports the abort's LEFT once it no longer runs (``node.running`` False), which
is how the binding knows it is the last change, and only then says it has stopped
(``node.stopped``).  So a handle used from another thread in between is still open: its
last change is on the way.  A node that stops without a last change (it was not a
member) is found out by the first call after ``node.stopped`` (:attr:`Binding.stopped`).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Protocol, Self

from ..clm import LeaveProposal, LeaveStep, MembershipChange, MembershipSnapshot

if TYPE_CHECKING:
    from ._api import _LeaveRound

__all__ = ["LOCK", "Binding", "ClmNode", "FacadeLock", "MembershipObserver", "bind", "binding_for", "current", "unbind"]

log = logging.getLogger("pyclm.saf")


class FacadeLock:
    """A re-entrant lock that runs deferred hooks once its holder lets go of it.

    Foreign code must not run under the facade's lock (it could wait for a thread that
    waits for the lock).  What must happen because of a change made under the lock (a
    step round telling the leave protocol about an answer) is :meth:`defer`-red and runs
    right after the outermost ``with`` block of the thread that made it.
    """

    def __init__(self) -> None:
        self._lock = threading.RLock()
        self._depth = 0  # only the holder touches it
        self._deferred: list[Callable[[], None]] = []

    def __enter__(self) -> None:
        self._lock.acquire()
        self._depth += 1

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self._depth -= 1
        deferred: list[Callable[[], None]] = []
        if self._depth == 0:
            deferred, self._deferred = self._deferred, []
        self._lock.release()
        for hook in deferred:
            try:
                hook()
            except Exception:
                log.exception("a deferred hook of the SAF facade raised: %r", hook)

    def defer(self, hook: Callable[[], None]) -> None:
        """Run ``hook`` once the lock is released by its holder.  Call with the lock held."""
        self._deferred.append(hook)

    def condition(self) -> threading.Condition:
        """A condition over this lock, to wait in (not while holding it through ``with``)."""
        return threading.Condition(self._lock)


LOCK = FacadeLock()
"""The facade's one lock: the handle table, the bindings and the step rounds.

Held only for bookkeeping and queueing, never while an application callback or other
foreign code runs.
"""


class ClmNode(Protocol):
    """What the facade needs of a node: of :class:`pyclm.Node`'s CLM API, the snapshot and the listener.

    A node that also has ``add_leave_participant`` (:class:`pyclm.Node` does) gets the
    binding as its leave participant: its validated leaves reach the step trackers.
    """

    @property
    def node_id(self) -> int: ...

    @property
    def running(self) -> bool: ...

    @property
    def stopped(self) -> bool:
        """True once the node stopped and handed its listeners its last change (it never runs again)."""
        ...

    def membership_snapshot(self) -> MembershipSnapshot: ...

    def add_membership_listener(self, fn: Callable[[MembershipChange], None]) -> Callable[[], None]: ...


class MembershipObserver(Protocol):
    """A handle, as a binding sees it.  Both methods are called with :data:`LOCK` held."""

    def membership_changed(self, change: MembershipChange) -> None: ...

    def binding_closed(self) -> None: ...


class Binding:
    """The node the facade speaks for; made by :func:`bind`.

    ``with pyclm.saf.bind(node):`` unbinds on the way out.  Thread-safe.
    """

    def __init__(self, node: ClmNode) -> None:
        methods = ("membership_snapshot", "add_membership_listener")
        if not all(hasattr(node, name) for name in ("node_id", "running", "stopped")) or not all(
            callable(getattr(node, name, None)) for name in methods
        ):
            raise TypeError(f"bind() takes a pyclm.Node, got {type(node).__name__}")
        self.node = node
        self.node_id = node.node_id
        self._observers: dict[int, MembershipObserver] = {}
        self._state: MembershipSnapshot | None = None  # after the last change; None: none seen yet
        self._closed = False
        self._left = False
        self._remove = node.add_membership_listener(self._membership_changed)
        add_participant = getattr(node, "add_leave_participant", None)
        self._remove_participant: Callable[[], None] = (
            add_participant(self) if callable(add_participant) else lambda: None
        )

    @property
    def state(self) -> MembershipSnapshot:
        """The membership as this binding reports it: as of the last change it passed on."""
        with LOCK:
            return self._state if self._state is not None else self.node.membership_snapshot()

    @property
    def seen_change(self) -> bool:
        """Whether :attr:`state` comes from a change this binding passed on (else from the node)."""
        return self._state is not None

    @property
    def live(self) -> bool:
        """True while this is the bound node and it runs (and has not left)."""
        return not self._closed and not self._left and self.node.running

    @property
    def stopped(self) -> bool:
        """True once the node left (its last change passed on) or stopped: it never runs again.

        Not while it is still handing out its last change (``node.running`` False,
        ``node.stopped`` not yet): its handles are open until that change reaches them.
        """
        return self._left or self.node.stopped

    @property
    def closed(self) -> bool:
        """True once unbound or replaced."""
        return self._closed

    def observe(self, key: int, observer: MembershipObserver) -> None:
        """Pass every change on to ``observer`` (a handle) from now on.  Call with :data:`LOCK` held."""
        self._observers[key] = observer

    def unobserve(self, key: int) -> None:
        """Stop passing changes to the observer ``key``.  Call with :data:`LOCK` held."""
        self._observers.pop(key, None)

    def observers(self) -> list[MembershipObserver]:
        """The observers, in the order they started.  Call with :data:`LOCK` held."""
        return list(self._observers.values())

    def close(self) -> None:
        """End this binding: its handles go stale, the node's listener is removed.  Idempotent."""
        with LOCK:
            if self._closed:
                return
            self._closed = True
            self._end()
        # Outside the lock: the node may be calling our listener, which waits for it.
        self._remove()
        self._remove_participant()

    def begin_leave_step(
        self, step: LeaveStep, proposal: LeaveProposal, answer: Callable[[bool], None]
    ) -> _LeaveRound | None:
        """The node's leave participant (``pyclm.runtime.LeaveParticipant``): deliver ``step``
        of ``proposal`` to the step trackers of this node, on the node's event loop.

        Returns the round (None when no handle tracks with that step's flag); ``answer``
        is called, from the answering thread, once every asked handle answered or was
        withdrawn, or as soon as one REJECTED a VALIDATE.  See
        :func:`pyclm.saf._api.leave_step`.
        """
        from . import _api  # _api builds on this module

        return _api.leave_step(self, step, proposal, answer)

    def _membership_changed(self, change: MembershipChange) -> None:
        """The node's listener: on the node's event loop, right after each change."""
        with LOCK:
            if self._closed:
                return
            self._state = MembershipSnapshot.after(change)
            for observer in self.observers():
                observer.membership_changed(change)
            # A graceful leave reports the local node SHUTDOWN while the node still runs;
            # an abort reports it LEFT once stopped.  Either is the node's last change.
            if any(n.node_id == self.node_id for n in change.shutdown) or not self.node.running:
                self._left = True
                self._end()

    def _end(self) -> None:
        observers = self.observers()
        self._observers.clear()
        for observer in observers:
            observer.binding_closed()

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        unbind(self)

    def __repr__(self) -> str:
        state = "closed" if self._closed else ("live" if self.live else "not running")
        return f"<Binding node {self.node_id} {state}>"


_current: Binding | None = None


def bind(node: ClmNode) -> Binding:
    """Make the SAF facade speak for ``node``, the node running in this process.

    Handles opened from now on (``saClmInitialize``) answer from this node's membership.
    Binding the node that is already bound returns its binding; binding another node
    ends the previous binding (its handles go stale: the next dispatch returns
    ``SA_AIS_ERR_BAD_HANDLE``).  The node may run its event loop in another thread.  A
    node not running yet may be bound: ``saClmInitialize`` answers
    ``SA_AIS_ERR_TRY_AGAIN`` until it runs.
    """
    global _current
    with LOCK:
        if _current is not None and _current.node is node and not _current.closed:
            return _current
    binding = Binding(node)  # registers the node's listener: not under our lock
    with LOCK:
        previous, _current = _current, binding
    if previous is not None:
        previous.close()
    return binding


def unbind(binding: Binding | None = None) -> None:
    """End the binding (``binding``, or whichever is current): its handles go stale.

    Afterwards ``saClmInitialize_4`` returns ``SA_AIS_ERR_UNAVAILABLE`` (B.01:
    ``SA_AIS_ERR_TRY_AGAIN``) until :func:`bind` is called again.  Idempotent.
    """
    global _current
    with LOCK:
        target = _current if binding is None else binding
        if target is not None and target is _current:
            _current = None
    if target is not None:
        target.close()


def current() -> Binding | None:
    """The binding handles are opened on now, or None."""
    with LOCK:
        return _current


def binding_for(node: object) -> Binding | None:
    """The live binding of ``node``, or None if the facade does not speak for it."""
    with LOCK:
        if _current is not None and _current.node is node and not _current.closed:
            return _current
        return None
