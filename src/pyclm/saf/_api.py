"""The SAF CLM functions over the bound node: handles, version gating, the decision tables, dispatch.

Theory of operation
-------------------
``saClmInitialize`` (B.01.01 or B.02.01) and ``saClmInitialize_4`` (B.04.01) open a
*handle* on the node the facade is bound to (:mod:`pyclm.saf._binding`).  A handle is a
number, unique in the process and never reused, and a :class:`_Handle` record: the
negotiated major version, a copy of the application's callback pointers, its callback
queue (whose selection object is the handle's file descriptor, see
:mod:`pyclm.saf._callbacks`), and its change-tracking flags.

Every function checks its arguments in OpenSAF's order (NULL pointers and values that are
wrong whatever the handle first, then the handle, then the version, then the rest) and
returns an ``SaAisErrorT``; see the decision table of each function below.  The handle's
version decides two things: which variant it may call (``_4`` functions need a B.04
handle, the others a B.01/B.02 one, else ``SA_AIS_ERR_VERSION``), and which codes it may
get (``SA_AIS_ERR_UNAVAILABLE``, ``SA_AIS_ERR_NOT_EXIST`` in a callback and
``SA_CLM_NODE_SHUTDOWN`` are B.04 only).

Membership changes reach the handles through their binding, on the node's event loop:
each tracking handle turns the change into its callback buffer
(:func:`pyclm.clm.track_changes` with its flags) and queues it.  ``saClmDispatch`` runs
queued callbacks on the calling thread, never under the facade's lock, so a callback may
call any ``saClm*`` function, including ``saClmFinalize``.

The entry points for the leave protocol are :func:`start_step` and :func:`abort_step`:
they deliver VALIDATE, START and ABORTED callbacks to the handles that asked for them,
and collect the answers given with ``saClmResponse_4`` (:mod:`pyclm.saf._steps`).
:func:`leave_step` is what the binding, as the node's leave participant, does with each
step of a validated leave (``pyclm.clm.leave``): it drives them.
"""

from __future__ import annotations

import asyncio
import ctypes
import itertools
from collections.abc import Callable
from typing import Any

from ..clm import (
    LeaveProposal,
    LeaveStep,
    MembershipChange,
    MembershipSnapshot,
    NotificationBuffer,
    TrackMode,
    track_changes,
    track_current,
)
from ..errors import UsageError
from . import _loop
from ._args import address, integer, target
from ._binding import LOCK, Binding, ClmNode, binding_for, current
from ._callbacks import CallbackKind, CallbackQueue, PendingCallback
from ._convert import B04, NodeStruct, copy_into, notification_array, point_at, set_node
from ._invoke import STALE, NodeGetDelivery, Stale, TrackDelivery, run_node_get, run_track
from ._steps import ChangeStep, Response, StepRound, answer, withdraw
from .saAis import SaDispatchFlagsT, SaInvocationT, SaSelectionObjectT, SaTimeT, SaUint8T, SaVersionT, saAis
from .saClm import (
    SaClmCallbacksT,
    SaClmCallbacksT_3,
    SaClmCallbacksT_4,
    SaClmClusterNodeT,
    SaClmClusterNodeT_4,
    SaClmClusterNotificationBufferT,
    SaClmClusterNotificationBufferT_4,
    SaClmClusterNotificationT,
    SaClmClusterNotificationT_4,
    SaClmHandleT,
    SaClmNodeIdT,
    SaClmResponseT,
    saClm,
)

__all__ = [
    "abort_step",
    "attach_asyncio",
    "cluster_node_get",
    "cluster_node_get_async",
    "cluster_track",
    "cluster_track_stop",
    "dispatch",
    "finalize",
    "initialize",
    "initialize_b03",
    "leave_step",
    "notification_free",
    "response",
    "selection_object_get",
    "serve_anyio",
    "start_step",
]

# SaAisErrorT values (saAis.eSaAisErrorT), as plain ints.
OK = 1
ERR_VERSION = 3
ERR_INIT = 4
ERR_TIMEOUT = 5
ERR_TRY_AGAIN = 6
ERR_INVALID_PARAM = 7
ERR_BAD_HANDLE = 9
ERR_NOT_EXIST = 12
ERR_NO_SPACE = 15
ERR_BAD_FLAGS = 25
ERR_UNAVAILABLE = 31

DISPATCH_ONE, DISPATCH_ALL, DISPATCH_BLOCKING = 1, 2, 3

B01_API = 1
"""``variant`` of the functions without a suffix (B.01.01 / B.02.01)."""
B04_API = 4
"""``variant`` of the ``_4`` functions."""

CURRENT = saAis.SA_TRACK_CURRENT
CHANGES = saAis.SA_TRACK_CHANGES
CHANGES_ONLY = saAis.SA_TRACK_CHANGES_ONLY
LOCAL = saAis.SA_TRACK_LOCAL
START_STEP = saAis.SA_TRACK_START_STEP
VALIDATE_STEP = saAis.SA_TRACK_VALIDATE_STEP
_B01_FLAGS = CURRENT | CHANGES | CHANGES_ONLY
_B04_FLAGS = _B01_FLAGS | LOCAL | START_STEP | VALIDATE_STEP

_Payload = TrackDelivery | NodeGetDelivery | Stale


# ---------------------------------------------------------------------- versions


def _negotiate(variant: int, version: SaVersionT) -> int | None:
    """The major version granted for ``version``, written back into it; None (and the closest) if none is.

    ``saClmInitialize`` grants B.01.01 and B.02.01 (the same calls; B.02 adds
    ``saClmClusterNotificationFree``); ``saClmInitialize_4`` grants B.04.01 for a
    requested B.02-B.04, as OpenSAF does.  The minor version is never a reason to refuse:
    the one released for each is 1.  On refusal the closest supported version is written
    back: the lowest for an older request, the highest for a newer one.
    """
    code = version.releaseCode
    major = version.majorVersion
    low, high = (1, 2) if variant == B01_API else (2, 4)
    granted: int | None = None
    if code == b"B" and low <= major <= high:
        granted = major if variant == B01_API else B04
        written = granted
    elif code < b"B" or (code == b"B" and major < low):
        written = 1 if variant == B01_API else B04
    else:
        written = high
    version.releaseCode = b"B"
    version.majorVersion = written
    version.minorVersion = 1
    return granted


def _variant_fits(variant: int, handle: _Handle) -> bool:
    """Whether a handle may call this variant (``_4`` needs B.04, the others need B.01/B.02)."""
    return (variant == B04_API) == (handle.major >= B04)


# ---------------------------------------------------------------------- handles


class _Handle:
    """One open handle.  Its mutable state is guarded by :data:`LOCK`."""

    def __init__(self, handle_id: int, major: int, callbacks: ctypes.Structure | None, binding: Binding) -> None:
        self.id = handle_id
        self.major = major
        self.binding = binding
        # A copy of the application's callbacks structure, and the ctypes thunks it points
        # at: the application may change or drop its own structure afterwards.
        self.track_callback: Any = None
        self.node_get_callback: Any = None
        self._thunks: dict[Any, Any] = {}
        if callbacks is not None:
            copy = type(callbacks)()
            ctypes.memmove(ctypes.addressof(copy), ctypes.addressof(callbacks), ctypes.sizeof(copy))
            self._thunks = dict(getattr(callbacks, "_objects", None) or {})
            self.track_callback = copy.saClmClusterTrackCallback or None
            self.node_get_callback = copy.saClmClusterNodeGetCallback or None
        self.queue: CallbackQueue[_Payload] = CallbackQueue()
        self.flags = 0  # the change-tracking flags; 0 while not tracking changes
        # The node's own snapshot this handle started tracking from, while its binding had
        # not passed on a change yet: the first change is skipped if the snapshot shows it.
        self.baseline: MembershipSnapshot | None = None
        self.stale = False  # the binding ended: the next dispatch releases the handle
        self.dropped = False  # released by dispatch because it was stale

    @property
    def mode(self) -> TrackMode:
        return TrackMode.CHANGES_ONLY if self.flags & CHANGES_ONLY else TrackMode.CHANGES

    # The binding's observer interface (called with LOCK held, on the node's loop).

    def membership_changed(self, change: MembershipChange) -> None:
        baseline, self.baseline = self.baseline, None
        if self.stale or not self.flags or baseline == MembershipSnapshot.after(change):
            return
        shown = track_changes(change, self.mode, local=bool(self.flags & LOCAL))
        if shown is None:
            return
        delivery = TrackDelivery(buffer=shown, step=ChangeStep.COMPLETED, root_cause=_root_cause(change))
        self.queue.put(PendingCallback(kind=CallbackKind.TRACK, payload=delivery))

    def binding_closed(self) -> None:
        self.go_stale()

    def go_stale(self) -> None:
        """The binding ended: stop tracking, owe no answers, and let the selection object wake the application."""
        if self.stale:
            return
        self.stale = True
        self.flags = 0
        withdraw(self.id)
        # Not a TRACK item: saClmClusterTrackStop must not purge it.
        self.queue.put(PendingCallback(kind=CallbackKind.NODE_GET, payload=STALE))

    def release(self) -> None:
        """Finalize: forget the handle everywhere and close its queue (and selection object)."""
        self.flags = 0
        withdraw(self.id)
        self.binding.unobserve(self.id)
        self.queue.close()

    def __repr__(self) -> str:
        return f"<handle {self.id} B.0{self.major} flags={self.flags:#x}{' stale' if self.stale else ''}>"


def _root_cause(change: MembershipChange) -> str:
    """The name of the node a change is about, when it is about one node only (else empty)."""
    changed = {n.node_id: n.name for n in (*change.joined, *change.reconfigured, *change.left, *change.shutdown)}
    return next(iter(changed.values())) if len(changed) == 1 else ""


_handles: dict[int, _Handle] = {}
_handle_numbers = itertools.count(1)


def _open(value: object) -> _Handle | None:
    """The open handle ``value`` names, or None (BAD_HANDLE): unknown, finalized or stale.  Under LOCK."""
    handle = _dispatchable(value)
    return None if handle is None or handle.stale else handle


def _dispatchable(value: object) -> _Handle | None:
    """Like :func:`_open`, but a stale handle is returned too: dispatch still runs its callbacks."""
    handle = _handles.get(integer(value, SaClmHandleT, "clmHandle"))
    if handle is not None and not handle.stale and (handle.binding.closed or handle.binding.stopped):
        # Its node stopped with no last change to pass on (it was not a member): found out
        # now.  Not merely because the node no longer runs: its last change may still be on
        # the way, and must reach this handle before it goes stale.
        handle.go_stale()
    return handle


def _release(handle: _Handle) -> None:
    """Under LOCK."""
    if _handles.get(handle.id) is handle:
        del _handles[handle.id]
        handle.release()


def _handle_for_loop(value: object) -> _Handle:
    with LOCK:
        handle = _open(value)
    if handle is None:
        raise UsageError(f"{value!r} is not an open CLM handle: call saClmInitialize_4 (or saClmInitialize) first")
    return handle


# ---------------------------------------------------------------------- life cycle


def initialize(variant: int, handle_out: object, callbacks: object, version: object) -> int:
    """``saClmInitialize`` (``variant`` B01_API) and ``saClmInitialize_4`` (B04_API).

    NULL handle or version: INVALID_PARAM.  Version not supported: VERSION (the closest
    supported one written back).  NULL callbacks: OK (no callback registered).  No node
    bound, or the bound node has stopped (left or aborted: a Node never runs again):
    UNAVAILABLE for B.04, TRY_AGAIN for B.01/B.02 (which have no UNAVAILABLE).  A bound
    node not running yet (or handing out its last change): TRY_AGAIN.  On success the
    granted version is written back and the new handle into ``handle_out``.
    """
    callbacks_type = SaClmCallbacksT if variant == B01_API else SaClmCallbacksT_4
    out = target(handle_out, SaClmHandleT, "clmHandle")
    registered = target(callbacks, callbacks_type, "clmCallbacks")
    wanted = target(version, SaVersionT, "version")
    if out is None or wanted is None:
        return ERR_INVALID_PARAM
    major = _negotiate(variant, wanted)
    if major is None:
        return ERR_VERSION
    with LOCK:
        binding = current()
        if binding is None or binding.closed or binding.stopped:
            return ERR_UNAVAILABLE if major >= B04 else ERR_TRY_AGAIN
        if not binding.live:
            return ERR_TRY_AGAIN
        handle = _Handle(next(_handle_numbers), major, registered, binding)
        _handles[handle.id] = handle
        binding.observe(handle.id, handle)
    out.value = handle.id
    return OK


def initialize_b03(handle_out: object, callbacks: object, version: object) -> int:
    """``saClmInitialize_3``: B.03.01, which B.04 deprecates, is not supported.

    NULL handle or version: INVALID_PARAM.  Otherwise VERSION, with B.04.01 written back
    (the version to ask ``saClmInitialize_4`` for) and no handle opened.  pyosaf's
    ``utils.clm`` wraps this function when it is imported.
    """
    out = target(handle_out, SaClmHandleT, "clmHandle")
    target(callbacks, SaClmCallbacksT_3, "clmCallbacks")  # the argument types are checked all the same
    wanted = target(version, SaVersionT, "version")
    if out is None or wanted is None:
        return ERR_INVALID_PARAM
    wanted.releaseCode = b"B"
    wanted.majorVersion = B04
    wanted.minorVersion = 1
    return ERR_VERSION


def selection_object_get(handle_value: object, selection_out: object) -> int:
    """``saClmSelectionObjectGet``: NULL out → INVALID_PARAM; bad handle → BAD_HANDLE; else the fd."""
    out = target(selection_out, SaSelectionObjectT, "selectionObject")
    if out is None:
        return ERR_INVALID_PARAM
    with LOCK:
        handle = _open(handle_value)
        if handle is None:
            return ERR_BAD_HANDLE
        out.value = handle.queue.selection.fileno()
    return OK


def finalize(handle_value: object) -> int:
    """``saClmFinalize``: stops tracking, drops pending callbacks, closes the selection object.

    A stale handle is finalized too (OK); a finalized or unknown one is BAD_HANDLE.
    Dispatchers blocked on the handle return.
    """
    with LOCK:
        handle = _handles.get(integer(handle_value, SaClmHandleT, "clmHandle"))
        if handle is None:
            return ERR_BAD_HANDLE
        _release(handle)
    return OK


def dispatch(handle_value: object, flags_value: object) -> int:
    """``saClmDispatch``: run pending callbacks on this thread.

    ONE runs at most one (OK at once when none is pending); ALL runs the callbacks that
    were pending when it started (those they queue wait for the next dispatch);
    BLOCKING runs callbacks as they come until the handle is finalized (then OK).  A
    stale handle runs its remaining callbacks, then returns BAD_HANDLE and is released.
    Flags checked before the handle, as OpenSAF does.
    """
    flags = integer(flags_value, SaDispatchFlagsT, "dispatchFlags")
    if flags not in (DISPATCH_ONE, DISPATCH_ALL, DISPATCH_BLOCKING):
        return ERR_INVALID_PARAM
    with LOCK:
        handle = _dispatchable(handle_value)
    if handle is None:
        return ERR_BAD_HANDLE
    queue = handle.queue
    if flags == DISPATCH_ONE:
        item = queue.take()
        return OK if item is None else _run(handle, item)
    if flags == DISPATCH_ALL:
        for _ in range(len(queue)):
            item = queue.take()
            if item is None:
                break  # another thread took it, or a callback finalized the handle
            code = _run(handle, item)
            if code != OK:
                return code
        return OK
    while queue.wait(None):
        item = queue.take()
        if item is not None and (code := _run(handle, item)) != OK:
            return code
    return ERR_BAD_HANDLE if handle.dropped else OK


def _run(handle: _Handle, item: PendingCallback[_Payload]) -> int:
    """Run one queued callback, outside the lock."""
    payload = item.payload
    if isinstance(payload, Stale):
        with LOCK:
            handle.dropped = True
            _release(handle)
        return ERR_BAD_HANDLE
    if isinstance(payload, TrackDelivery):
        if handle.track_callback is not None:
            run_track(handle.track_callback, handle.major, payload)
    elif handle.node_get_callback is not None:
        run_node_get(handle.node_get_callback, handle.major, payload)
    return OK


# ---------------------------------------------------------------------- tracking


def cluster_track(variant: int, handle_value: object, flags_value: object, buffer_value: object) -> int:
    """``saClmClusterTrack`` / ``_4``: the decision table (SAF reference §3.3).

    1. flags 0 → BAD_FLAGS (before the handle, as OpenSAF); bad handle → BAD_HANDLE;
       the other version's variant → VERSION.
    2. BAD_FLAGS: bits the version does not define, no CURRENT/CHANGES/CHANGES_ONLY,
       CHANGES with CHANGES_ONLY, a step flag without CHANGES or CHANGES_ONLY.
    3. CURRENT with a caller array (``notification`` set) of ``numberOfItems`` 0 → INVALID_PARAM.
    4. A callback needed (CURRENT with a NULL buffer, CHANGES, CHANGES_ONLY) and none
       registered → INIT.
    5. CURRENT with a buffer: filled now (NO_SPACE, with ``numberOfItems`` set to the
       count needed, if the caller's array is too small; the library allocates the array
       when ``notification`` is NULL).  CURRENT with a NULL buffer: exactly one callback.
    6. CHANGES / CHANGES_ONLY start (or change) tracking, atomically with 5: no change is
       lost or repeated between the snapshot and the first change callback.  Changing
       it without VALIDATE_STEP or START_STEP withdraws the answers the handle owes for
       that step, as TrackStop does (:func:`_withdraw_steps`).
    """
    buffer_type = SaClmClusterNotificationBufferT if variant == B01_API else SaClmClusterNotificationBufferT_4
    flags = integer(flags_value, SaUint8T, "trackFlags")
    buffer = target(buffer_value, buffer_type, "notificationBuffer")
    if flags == 0:
        return ERR_BAD_FLAGS
    with LOCK:
        handle = _open(handle_value)
        if handle is None:
            return ERR_BAD_HANDLE
        if not _variant_fits(variant, handle):
            return ERR_VERSION
        code = _check_track(handle, flags, buffer)
        if code != OK:
            return code
        state = handle.binding.state
        if flags & CURRENT:
            shown = track_current(state, local=bool(flags & LOCAL))
            if buffer is not None:
                code = _answer_current(handle, buffer, shown)
                if code != OK:
                    return code
            else:
                delivery = TrackDelivery(buffer=shown, step=ChangeStep.COMPLETED)
                handle.queue.put(PendingCallback(kind=CallbackKind.TRACK, payload=delivery))
        if flags & (CHANGES | CHANGES_ONLY):
            if not handle.flags:
                handle.baseline = None if handle.binding.seen_change else state
            dropped = handle.flags & ~flags
            handle.flags = flags & ~CURRENT
            _withdraw_steps(handle, dropped)
    return OK


def _withdraw_steps(handle: _Handle, dropped: int) -> None:
    """``handle`` tracks on without the step flags in ``dropped``: it owes those steps no answer.

    As TrackStop does for every step: the rounds stop waiting for it (a leave is not held
    up until its timeout), and the step callbacks still queued for it are dropped, since
    nobody waits for their invocations any more.  Under LOCK.
    """
    withdrawn: set[int] = set()
    for flag, step in ((VALIDATE_STEP, ChangeStep.VALIDATE), (START_STEP, ChangeStep.START)):
        if dropped & flag:
            withdrawn.update(withdraw(handle.id, step))
    if withdrawn:
        handle.queue.purge(
            lambda item: isinstance(item.payload, TrackDelivery) and item.payload.invocation in withdrawn
        )


def _check_track(handle: _Handle, flags: int, buffer: Any) -> int:
    known = _B04_FLAGS if handle.major >= B04 else _B01_FLAGS
    changes = flags & (CHANGES | CHANGES_ONLY)
    if (
        flags & ~known
        or not flags & (CURRENT | CHANGES | CHANGES_ONLY)
        or changes == CHANGES | CHANGES_ONLY
        or (flags & (START_STEP | VALIDATE_STEP) and not changes)
    ):
        return ERR_BAD_FLAGS
    if flags & CURRENT and buffer is not None and buffer.notification and buffer.numberOfItems == 0:
        return ERR_INVALID_PARAM
    needs_callback = (flags & CURRENT and buffer is None) or changes
    if needs_callback and handle.track_callback is None:
        return ERR_INIT
    return OK


def _answer_current(handle: _Handle, buffer: Any, shown: NotificationBuffer) -> int:
    needed = len(shown.notifications)
    if buffer.notification:
        if buffer.numberOfItems < needed:
            buffer.numberOfItems = needed  # tells the caller how big an array to pass
            return ERR_NO_SPACE
        copy_into(buffer, shown, handle.major)
        return OK
    # The library allocates: the buffer keeps the array alive, the garbage collector frees
    # it; saClmClusterNotificationFree(_4) is accepted and has nothing left to do.
    point_at(buffer, notification_array(shown, handle.major), shown.view_number)
    return OK


def cluster_track_stop(handle_value: object) -> int:
    """``saClmClusterTrackStop``: NOT_EXIST unless tracking CHANGES or CHANGES_ONLY.

    Stopping drops the pending track callbacks (NodeGetAsync answers stay) and withdraws
    any step answer the handle still owes.
    """
    with LOCK:
        handle = _open(handle_value)
        if handle is None:
            return ERR_BAD_HANDLE
        if not handle.flags:
            return ERR_NOT_EXIST
        handle.flags = 0
        withdraw(handle.id)
        handle.queue.purge(lambda item: item.kind is CallbackKind.TRACK)
    return OK


def notification_free(variant: int, handle_value: object, notification: object) -> int:
    """``saClmClusterNotificationFree`` (B.02) / ``_4`` (B.04): release an array the library allocated.

    NULL → INVALID_PARAM; bad handle → BAD_HANDLE; ``_4`` on a B.01/B.02 handle or the
    plain one on a B.01 or B.04 handle → VERSION; otherwise OK.  Python frees the array
    once nothing refers to it, so there is nothing to do; like OpenSAF's ``free()``, any
    array is accepted (its apitest frees arrays the caller allocated).
    """
    element = SaClmClusterNotificationT if variant == B01_API else SaClmClusterNotificationT_4
    where = address(notification, element, "notification")
    if not where:
        return ERR_INVALID_PARAM
    with LOCK:
        handle = _open(handle_value)
        if handle is None:
            return ERR_BAD_HANDLE
        if not _variant_fits(variant, handle) or handle.major == 1:
            return ERR_VERSION
    return OK


# ---------------------------------------------------------------------- node get


def cluster_node_get(
    variant: int, handle_value: object, node_id_value: object, timeout_value: object, node_out: object
) -> int:
    """``saClmClusterNodeGet`` / ``_4``: the node ``nodeId`` (``SA_CLM_LOCAL_NODE_ID``: this one).

    NULL out or negative timeout → INVALID_PARAM; bad handle → BAD_HANDLE; other
    version's variant → VERSION; B.04 and this node not a member → UNAVAILABLE; timeout
    0 → TIMEOUT (nothing completes in no time; OpenSAF answers OK); not a member →
    NOT_EXIST, except that a B.01 caller may read its own node with ``member`` false.
    The answer is local, so any positive timeout is enough.
    """
    node_type: type[NodeStruct] = SaClmClusterNodeT if variant == B01_API else SaClmClusterNodeT_4
    node_id = integer(node_id_value, SaClmNodeIdT, "nodeId")
    timeout = integer(timeout_value, SaTimeT, "timeout")
    out = target(node_out, node_type, "clusterNode")
    if out is None or timeout < 0:
        return ERR_INVALID_PARAM
    with LOCK:
        handle = _open(handle_value)
        if handle is None:
            return ERR_BAD_HANDLE
        if not _variant_fits(variant, handle):
            return ERR_VERSION
        state = handle.binding.state
        if handle.major >= B04 and not state.is_member:
            return ERR_UNAVAILABLE
        if timeout == 0:
            return ERR_TIMEOUT
        node = state.node(handle.binding.node_id if node_id == saClm.SA_CLM_LOCAL_NODE_ID else node_id)
        if node is None:
            return ERR_NOT_EXIST
        set_node(out, node)
    return OK


def cluster_node_get_async(handle_value: object, invocation_value: object, node_id_value: object) -> int:
    """``saClmClusterNodeGetAsync``: the answer comes in the NodeGet callback.

    Invocation 0 → INVALID_PARAM (as OpenSAF; it is echoed back, and may repeat);
    bad handle → BAD_HANDLE; no NodeGet callback → INIT; B.04 and this node not a
    member → UNAVAILABLE.  A node that is not a member is reported in the callback:
    NOT_EXIST for B.04, INVALID_PARAM for B.01/B.02 (which have no NOT_EXIST there).
    """
    invocation = integer(invocation_value, SaInvocationT, "invocation")
    node_id = integer(node_id_value, SaClmNodeIdT, "nodeId")
    if invocation == 0:
        return ERR_INVALID_PARAM
    with LOCK:
        handle = _open(handle_value)
        if handle is None:
            return ERR_BAD_HANDLE
        if handle.node_get_callback is None:
            return ERR_INIT
        state = handle.binding.state
        if handle.major >= B04 and not state.is_member:
            return ERR_UNAVAILABLE
        node = state.node(handle.binding.node_id if node_id == saClm.SA_CLM_LOCAL_NODE_ID else node_id)
        missing = ERR_NOT_EXIST if handle.major >= B04 else ERR_INVALID_PARAM
        delivery = NodeGetDelivery(invocation=invocation, node=node, error=OK if node is not None else missing)
        handle.queue.put(PendingCallback(kind=CallbackKind.NODE_GET, payload=delivery))
    return OK


# ---------------------------------------------------------------------- three-step tracking


def response(handle_value: object, invocation_value: object, response_value: object) -> int:
    """``saClmResponse_4``: answer a VALIDATE or START callback.

    Invocation 0 or a response outside OK/REJECTED/ERROR → INVALID_PARAM (before the
    handle, as OpenSAF); bad handle → BAD_HANDLE; B.01/B.02 handle → VERSION; an
    invocation this handle does not owe an answer for (unknown, another handle's,
    answered, its round over, or a step that needs none) or REJECTED to a START →
    INVALID_PARAM.
    """
    invocation = integer(invocation_value, SaInvocationT, "invocation")
    answer_code = integer(response_value, SaClmResponseT, "response")
    if invocation == 0 or answer_code not in tuple(Response):
        return ERR_INVALID_PARAM
    with LOCK:
        handle = _open(handle_value)
        if handle is None:
            return ERR_BAD_HANDLE
        if handle.major < B04:
            return ERR_VERSION
        if not answer(handle.id, invocation, answer_code):
            return ERR_INVALID_PARAM
    return OK


def start_step(
    node: ClmNode,
    step: ChangeStep,
    change: MembershipChange,
    *,
    time_supervision: int | None = None,
    root_cause: str = "",
    on_answer: Callable[[StepRound], None] | None = None,
) -> StepRound:
    """Deliver a VALIDATE or START callback for the prospective ``change`` to ``node``'s trackers.

    For the leave protocol.  Every live B.04 handle on ``node`` that tracks CHANGES or
    CHANGES_ONLY with ``SA_TRACK_VALIDATE_STEP`` (for VALIDATE) or
    ``SA_TRACK_START_STEP`` (for START) gets one callback: its buffer is
    ``track_changes(change, its mode, local=its LOCAL flag)`` (no callback where that is
    None), with a fresh invocation and ``time_supervision`` (ns; None:
    ``SA_TIME_UNKNOWN``).  ``change`` describes the change as it will be: the view
    number still the current one, the leaving node in ``left`` or ``shutdown``.

    Returns the round: wait until :attr:`StepRound.complete` (or until the time
    supervision ends), then :meth:`StepRound.close` it and read the answers.  A node the
    facade is not bound to has no trackers: the round is complete at once.
    """
    ts = saAis.SA_TIME_UNKNOWN if time_supervision is None else time_supervision
    step_round = StepRound(step, time_supervision=ts, on_answer=on_answer)
    wanted = VALIDATE_STEP if step is ChangeStep.VALIDATE else START_STEP
    with LOCK:
        binding = binding_for(node)
        if binding is None or not binding.live:
            return step_round
        for observer in binding.observers():
            if not isinstance(observer, _Handle) or observer.stale or not observer.flags & wanted:
                continue
            shown = track_changes(change, observer.mode, local=bool(observer.flags & LOCAL))
            if shown is None:
                continue
            invocation = step_round.expect(observer.id, shown)
            delivery = TrackDelivery(
                buffer=shown, step=step, invocation=invocation, time_supervision=ts, root_cause=root_cause
            )
            observer.queue.put(PendingCallback(kind=CallbackKind.TRACK, payload=delivery))
    return step_round


def abort_step(step_round: StepRound, *, root_cause: str = "") -> None:
    """End a VALIDATE round with an ABORTED callback to each handle it asked (no answer expected).

    Closes the round.  Handles that have stopped tracking since are skipped.
    """
    if step_round.step is not ChangeStep.VALIDATE:
        raise UsageError("only a VALIDATE round can be aborted; a START round ends with the change (COMPLETED)")
    with LOCK:
        step_round.close()
        for handle_id, shown in step_round.asked.items():
            handle = _handles.get(handle_id)
            if handle is None or handle.stale or not handle.flags & VALIDATE_STEP:
                continue
            delivery = TrackDelivery(buffer=shown, step=ChangeStep.ABORTED, root_cause=root_cause)
            handle.queue.put(PendingCallback(kind=CallbackKind.TRACK, payload=delivery))


class _LeaveRound:
    """A :class:`StepRound` as the node's leave protocol ends it (``pyclm.runtime.LeaveRound``)."""

    def __init__(self, step_round: StepRound, root_cause: str) -> None:
        self.step_round = step_round
        self._root_cause = root_cause

    def close(self) -> None:
        """The step is over (answered, supervision over, or the leave went on): later answers get INVALID_PARAM."""
        self.step_round.close()

    def abort(self) -> None:
        """The leave was called off: ABORTED to every handle the VALIDATE asked."""
        if self.step_round.step is ChangeStep.VALIDATE:
            abort_step(self.step_round, root_cause=self._root_cause)
        else:
            self.step_round.close()

    def __repr__(self) -> str:
        return f"<leave round {self.step_round!r}>"


def leave_step(
    binding: Binding, step: LeaveStep, proposal: LeaveProposal, answer: Callable[[bool], None]
) -> _LeaveRound | None:
    """One step of a validated leave, delivered to the handles of ``binding``'s node.

    VALIDATE goes to the B.04 handles tracking with ``SA_TRACK_VALIDATE_STEP``, with
    ``timeSupervision`` ``SA_TIME_UNKNOWN``; START to those with ``SA_TRACK_START_STEP``,
    with the leaver's time supervision in ns.  Each shows ``proposal.change`` (the
    leaving node SHUTDOWN), ``rootCauseEntity`` the leaving node's name.  ``answer(ok)``
    is called once every asked handle answered or was withdrawn (stopped tracking,
    finalized), or with False as soon as one REJECTED.  ``SA_CLM_CALLBACK_RESPONSE_ERROR``
    does not refuse: it counts as an answer (docs/saf.md).  None when no handle was asked.
    """
    if step is LeaveStep.VALIDATE:
        change_step, supervision = ChangeStep.VALIDATE, None
    else:
        change_step = ChangeStep.START
        seconds = proposal.time_supervision
        supervision = None if seconds is None else min(round(seconds * 1e9), 2**63 - 1)

    def on_answer(step_round: StepRound) -> None:
        if step_round.rejected:
            answer(False)
        elif step_round.complete:
            answer(True)

    root_cause = proposal.leaving.name
    step_round = start_step(
        binding.node,
        change_step,
        proposal.change,
        time_supervision=supervision,
        root_cause=root_cause,
        on_answer=on_answer,
    )
    if not step_round.asked:
        step_round.close()
        return None
    return _LeaveRound(step_round, root_cause)


# ---------------------------------------------------------------------- event loops


def attach_asyncio(handle_value: object, loop: asyncio.AbstractEventLoop | None = None) -> _loop.AsyncioReader:
    """Run ``handle``'s callbacks on the asyncio loop (``loop``, default: the running one).

    The loop watches the handle's selection object and calls
    ``saClmDispatch(handle, SA_DISPATCH_ALL)`` whenever it is readable: no thread, no
    polling.  Call it from the loop's thread.  The reader detaches itself when the handle
    is finalized (or goes stale); ``reader.detach()`` stops it earlier.
    """
    handle = _handle_for_loop(handle_value)
    return _loop.attach_asyncio(handle.queue, lambda: dispatch(handle.id, DISPATCH_ALL), loop)


async def serve_anyio(handle_value: object) -> None:
    """Run ``handle``'s callbacks in this task (asyncio or trio) until the handle is finalized.

    ``tg.start_soon(pyclm.saf.serve_anyio, handle)``; cancelling the task stops it too.
    """
    handle = _handle_for_loop(handle_value)
    await _loop.serve_anyio(handle.queue, lambda: dispatch(handle.id, DISPATCH_ALL))
