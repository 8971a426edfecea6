"""The SAF CLM functions against a test double of the node: handles, versions, decision tables, dispatch.

The double (:class:`FakeNode`) has the part of :class:`pyclm.Node`'s CLM API the facade
uses (``membership_snapshot``, ``add_membership_listener``, ``running``, ``stopped``); tests feed it
:class:`~pyclm.clm.MembershipChange` values by hand, so every case is exact and instant.
The same functions run against a real cluster in ``test_saf_conformance.py``.

Callbacks only record what they were given (an exception inside a ctypes callback never
reaches the test); assertions come after the dispatch.  Every blocking call has a
timeout and every thread is joined with one.
"""

from __future__ import annotations

import asyncio
import ctypes
import re
import select
import sys
import threading
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import anyio
import attrs
import pytest

import pyclm.saf
from pyclm.clm import ClusterNode, MembershipChange, MembershipSnapshot
from pyclm.errors import UsageError
from pyclm.saf import _api, saAis, saClm
from pyclm.saf._steps import ChangeStep, Response
from pyclm.saf.saAis import SaVersionT, eSaAisErrorT, eSaDispatchFlagsT
from pyclm.saf.saClm import eSaClmChangeStepT, eSaClmClusterChangesT, eSaClmResponseT

TIMEOUT = 10.0  # upper bound for anything that should happen at once
DOC = Path(__file__).resolve().parent.parent / "docs" / "saf.md"

E = eSaAisErrorT
D = eSaDispatchFlagsT
C = eSaClmClusterChangesT
T = saAis.saAis
LOCAL_ID = saClm.saClm.SA_CLM_LOCAL_NODE_ID
SECOND = T.SA_TIME_ONE_SECOND
UNKNOWN_TIME = -(2**63)  # SA_TIME_UNKNOWN as a signed SaTimeT holds it


# ---------------------------------------------------------------------- the node double


def life(node_id: int, *, member: bool = True, initial: int = 1, incarnation: int | None = None) -> ClusterNode:
    incarnation = 1000 + node_id if incarnation is None else incarnation
    return ClusterNode(
        node_id=node_id,
        name=f"n{node_id}",
        address=f"10.0.0.{node_id}:7000",
        member=member,
        boot_timestamp=incarnation,
        initial_view_number=initial,
        incarnation=incarnation,
    )


def change(
    view: int,
    members: Iterable[int],
    *,
    local: int = 1,
    joined: Iterable[int] = (),
    left: Iterable[int] = (),
    shutdown: Iterable[int] = (),
) -> MembershipChange:
    """A change to ``view`` with ``members``; the ``joined`` ones have that initial view number."""
    joined = set(joined)
    records = tuple(life(n, initial=view if n in joined else 1) for n in sorted(members))
    by_id = {r.node_id: r for r in records}
    gone = {n: life(n, member=False) for n in (*left, *shutdown)}
    return MembershipChange(
        view_number=view,
        members=records,
        joined=tuple(by_id[n] for n in sorted(joined)),
        left=tuple(gone[n] for n in sorted(left)),
        shutdown=tuple(gone[n] for n in sorted(shutdown)),
        local=by_id.get(local) or gone.get(local) or life(local, member=False),
    )


class FakeNode:
    """The CLM API of :class:`pyclm.Node` the facade needs, driven by hand."""

    def __init__(self, node_id: int = 1) -> None:
        self.node_id = node_id
        self.running = True
        self.stopped = False  # set it after the last change, as pyclm.Node does
        self._snapshot = MembershipSnapshot(view_number=0, members=(), local=life(node_id, member=False, initial=0))
        self._listeners: list[Callable[[MembershipChange], None]] = []

    def membership_snapshot(self) -> MembershipSnapshot:
        return self._snapshot

    def add_membership_listener(self, fn: Callable[[MembershipChange], None]) -> Callable[[], None]:
        self._listeners.append(fn)

        def remove() -> None:
            if fn in self._listeners:
                self._listeners.remove(fn)

        return remove

    @property
    def listeners(self) -> int:
        return len(self._listeners)

    def swap(self, change: MembershipChange) -> None:
        """What the node does first: the accessors show the change."""
        self._snapshot = MembershipSnapshot.after(change)

    def notify(self, change: MembershipChange) -> None:
        """What the node does next: call the listeners."""
        for fn in list(self._listeners):
            fn(change)

    def apply(self, change: MembershipChange) -> None:
        self.swap(change)
        self.notify(change)


def cleanup_handles() -> None:
    for handle_id in list(_api._handles):
        saClm.saClmFinalize(handle_id)
    assert not _api._handles


@pytest.fixture
def node() -> Iterator[FakeNode]:
    """Node 1 of a cluster {1, 2, 3} formed at view 1, bound; every handle finalized afterwards."""
    fake = FakeNode(1)
    fake.apply(change(1, [1, 2, 3], joined=[1, 2, 3]))
    try:
        with pyclm.saf.bind(fake):
            yield fake
    finally:
        cleanup_handles()
        pyclm.saf.unbind()


# ---------------------------------------------------------------------- recording clients


@attrs.frozen(kw_only=True)
class Entry:
    """One node as a callback or an out-parameter showed it."""

    node_id: int
    change: int | None
    member: int
    name: str
    address: str
    family: int
    boot: int
    initial: int

    @classmethod
    def of(cls, node: Any, change: int | None = None) -> Entry:
        return cls(
            node_id=node.nodeId,
            change=change,
            member=node.member,
            name=str(node.nodeName),
            address=str(node.nodeAddress),
            family=node.nodeAddress.family,
            boot=node.bootTimestamp,
            initial=node.initialViewNumber,
        )


@attrs.frozen(kw_only=True)
class TrackCall:
    view_number: int
    entries: tuple[Entry, ...]
    members: int
    error: int
    thread: int
    invocation: int = 0
    root_cause: str = ""
    correlation: tuple[int, int, int] = (0, 0, 0)
    step: int = 0
    time_supervision: int = 0

    @property
    def changes(self) -> list[tuple[int, int | None]]:
        return [(e.node_id, e.change) for e in self.entries]


@attrs.frozen(kw_only=True)
class NodeGetCall:
    invocation: int
    node: Entry
    error: int
    thread: int


def entries_of(buffer: Any) -> tuple[Entry, ...]:
    return tuple(
        Entry.of(buffer.notification[i].clusterNode, buffer.notification[i].clusterChange)
        for i in range(buffer.numberOfItems)
    )


class Client:
    """One handle, with callbacks that record what they get (B.04 unless ``major`` is 1 or 2).

    ``in_track`` / ``in_node_get`` run inside the callback (to call the API from there);
    exceptions they raise are kept in ``errors``, which tests check is empty.
    """

    def __init__(self, major: int = 4, *, track: bool = True, node_get: bool = True) -> None:
        self.major = major
        self.tracks: list[TrackCall] = []
        self.node_gets: list[NodeGetCall] = []
        self.errors: list[BaseException] = []
        self.in_track: Callable[[TrackCall], object] | None = None
        self.in_node_get: Callable[[NodeGetCall], object] | None = None
        self.handle = saClm.SaClmHandleT()
        self.version = SaVersionT("B", major, 1)
        if major >= 4:
            self.callbacks: Any = saClm.SaClmCallbacksT_4()
            if track:
                self.callbacks.saClmClusterTrackCallback = saClm.SaClmClusterTrackCallbackT_4(self._track_4)
            if node_get:
                self.callbacks.saClmClusterNodeGetCallback = saClm.SaClmClusterNodeGetCallbackT_4(self._node_get)
            self.rc = saClm.saClmInitialize_4(self.handle, self.callbacks, self.version)
        else:
            self.callbacks = saClm.SaClmCallbacksT()
            if track:
                self.callbacks.saClmClusterTrackCallback = saClm.SaClmClusterTrackCallbackT(self._track_1)
            if node_get:
                self.callbacks.saClmClusterNodeGetCallback = saClm.SaClmClusterNodeGetCallbackT(self._node_get)
            self.rc = saClm.saClmInitialize(self.handle, self.callbacks, self.version)

    @property
    def id(self) -> int:
        return self.handle.value

    @property
    def fd(self) -> int:
        selection = saAis.SaSelectionObjectT()
        assert saClm.saClmSelectionObjectGet(self.handle, selection) == E.SA_AIS_OK
        return selection.value

    def track(self, flags: int, buffer: Any = None) -> int:
        if self.major >= 4:
            return saClm.saClmClusterTrack_4(self.handle, flags, buffer)
        return saClm.saClmClusterTrack(self.handle, flags, buffer)

    def dispatch(self, flags: int = D.SA_DISPATCH_ALL) -> int:
        return saClm.saClmDispatch(self.handle, flags)

    def _track_1(self, buffer: Any, members: int, error: int) -> None:
        call = TrackCall(
            view_number=buffer.contents.viewNumber,
            entries=entries_of(buffer.contents),
            members=members,
            error=error,
            thread=threading.get_ident(),
        )
        self._record_track(call)

    def _track_4(
        self,
        buffer: Any,
        members: int,
        invocation: int,
        root_cause: Any,
        correlation: Any,
        step: int,
        time_supervision: int,
        error: int,
    ) -> None:
        ids = correlation.contents
        call = TrackCall(
            view_number=buffer.contents.viewNumber,
            entries=entries_of(buffer.contents),
            members=members,
            error=error,
            thread=threading.get_ident(),
            invocation=invocation,
            root_cause=str(root_cause.contents),
            correlation=(ids.rootCorrelationId, ids.parentCorrelationId, ids.notificationId),
            step=step,
            time_supervision=time_supervision,
        )
        self._record_track(call)

    def _record_track(self, call: TrackCall) -> None:
        self.tracks.append(call)
        if self.in_track is not None:
            try:
                self.in_track(call)
            except BaseException as error:
                self.errors.append(error)

    def _node_get(self, invocation: int, node: Any, error: int) -> None:
        call = NodeGetCall(
            invocation=invocation, node=Entry.of(node.contents), error=error, thread=threading.get_ident()
        )
        self.node_gets.append(call)
        if self.in_node_get is not None:
            try:
                self.in_node_get(call)
            except BaseException as error:
                self.errors.append(error)


def opened(major: int = 4, **kwargs: bool) -> Client:
    client = Client(major, **kwargs)
    assert client.rc == E.SA_AIS_OK, E.whatis(client.rc)
    return client


def readable(fd: int, timeout: float = 0) -> bool:
    ready, _, _ = select.select([fd], [], [], timeout)
    return fd in ready


def join(thread: threading.Thread) -> None:
    thread.join(TIMEOUT)
    assert not thread.is_alive(), f"{thread.name} did not finish within {TIMEOUT} s"


def current_buffer(client: Client, size: int | None) -> Any:
    """A notification buffer for ``client``'s version: with a caller array of ``size`` (None: NULL array)."""
    buffer: Any = (
        saClm.SaClmClusterNotificationBufferT_4() if client.major >= 4 else saClm.SaClmClusterNotificationBufferT()
    )
    if size is not None:
        element = saClm.SaClmClusterNotificationT_4 if client.major >= 4 else saClm.SaClmClusterNotificationT
        array = (element * max(size, 1))()
        buffer.notification = ctypes.cast(array, ctypes.POINTER(element))
        buffer.numberOfItems = size
    return buffer


# ---------------------------------------------------------------------- versions and life cycle


@pytest.mark.parametrize(
    ("function", "requested", "expected", "written"),
    [
        ("saClmInitialize", ("B", 1, 1), E.SA_AIS_OK, ("B", 1, 1)),
        ("saClmInitialize", ("B", 1, 0), E.SA_AIS_OK, ("B", 1, 1)),  # a lower minor is fine
        ("saClmInitialize", ("B", 1, 9), E.SA_AIS_OK, ("B", 1, 1)),
        ("saClmInitialize", ("B", 2, 1), E.SA_AIS_OK, ("B", 2, 1)),
        ("saClmInitialize", ("B", 3, 1), E.SA_AIS_ERR_VERSION, ("B", 2, 1)),
        ("saClmInitialize", ("B", 4, 1), E.SA_AIS_ERR_VERSION, ("B", 2, 1)),
        ("saClmInitialize", ("B", 5, 1), E.SA_AIS_ERR_VERSION, ("B", 2, 1)),
        ("saClmInitialize", ("C", 1, 1), E.SA_AIS_ERR_VERSION, ("B", 2, 1)),
        ("saClmInitialize", ("A", 1, 1), E.SA_AIS_ERR_VERSION, ("B", 1, 1)),
        ("saClmInitialize", ("B", 0, 0), E.SA_AIS_ERR_VERSION, ("B", 1, 1)),
        ("saClmInitialize", (0, 0, 0), E.SA_AIS_ERR_VERSION, ("B", 1, 1)),
        ("saClmInitialize_4", ("B", 4, 1), E.SA_AIS_OK, ("B", 4, 1)),
        ("saClmInitialize_4", ("B", 4, 0), E.SA_AIS_OK, ("B", 4, 1)),
        ("saClmInitialize_4", ("B", 2, 1), E.SA_AIS_OK, ("B", 4, 1)),
        ("saClmInitialize_4", ("B", 3, 1), E.SA_AIS_OK, ("B", 4, 1)),
        ("saClmInitialize_4", ("B", 1, 1), E.SA_AIS_ERR_VERSION, ("B", 4, 1)),
        ("saClmInitialize_4", ("B", 5, 1), E.SA_AIS_ERR_VERSION, ("B", 4, 1)),
        ("saClmInitialize_4", ("C", 4, 1), E.SA_AIS_ERR_VERSION, ("B", 4, 1)),
        ("saClmInitialize_4", ("B", 0, 0), E.SA_AIS_ERR_VERSION, ("B", 4, 1)),
        ("saClmInitialize_4", (0, 0, 0), E.SA_AIS_ERR_VERSION, ("B", 4, 1)),
    ],
)
def test_version_negotiation_writes_back_the_granted_or_closest_version(
    node: FakeNode, function: str, requested: tuple[Any, int, int], expected: int, written: tuple[str, int, int]
) -> None:
    handle = saClm.SaClmHandleT()
    version = SaVersionT(*requested)
    rc = getattr(saClm, function)(handle, None, version)
    assert rc == expected, E.whatis(rc)
    assert (version.releaseCode.decode(), version.majorVersion, version.minorVersion) == written
    assert (handle.value != 0) == (expected == E.SA_AIS_OK)


@pytest.mark.parametrize("function", ["saClmInitialize", "saClmInitialize_4"])
def test_null_handle_or_version_is_invalid_param_and_null_callbacks_are_fine(node: FakeNode, function: str) -> None:
    initialize = getattr(saClm, function)
    major = 4 if function.endswith("_4") else 1
    assert initialize(None, None, SaVersionT("B", major, 1)) == E.SA_AIS_ERR_INVALID_PARAM
    handle = saClm.SaClmHandleT()
    assert initialize(handle, None, None) == E.SA_AIS_ERR_INVALID_PARAM
    assert handle.value == 0
    version = SaVersionT("B", major, 1)
    assert initialize(handle, None, version) == E.SA_AIS_OK
    assert saClm.saClmFinalize(handle) == E.SA_AIS_OK


@pytest.mark.parametrize("requested", [("B", 3, 1), ("B", 4, 1), ("B", 1, 1)])
def test_initialize_3_is_version_with_b04_written_back(node: FakeNode, requested: tuple[str, int, int]) -> None:
    # B.03.01 is not supported; pyosaf's utils.clm only needs the function to exist.
    callbacks = saClm.SaClmCallbacksT_3()
    callbacks.saClmClusterTrackCallback = saClm.SaClmClusterTrackCallbackT(lambda *args: None)
    handle, version = saClm.SaClmHandleT(), SaVersionT(*requested)
    assert saClm.saClmInitialize_3(handle, callbacks, version) == E.SA_AIS_ERR_VERSION
    assert (version.releaseCode, version.majorVersion, version.minorVersion) == (b"B", 4, 1)
    assert handle.value == 0 and not _api._handles
    assert saClm.saClmInitialize_3(ctypes.byref(handle), None, ctypes.pointer(version)) == E.SA_AIS_ERR_VERSION
    assert saClm.saClmInitialize_3(None, None, SaVersionT(*requested)) == E.SA_AIS_ERR_INVALID_PARAM
    assert saClm.saClmInitialize_3(handle, None, None) == E.SA_AIS_ERR_INVALID_PARAM
    with pytest.raises(TypeError, match="SaClmCallbacksT_3"):
        saClm.saClmInitialize_3(handle, saClm.SaClmCallbacksT_4(), version)  # type: ignore[arg-type]


def test_handles_are_distinct_and_never_reused(node: FakeNode) -> None:
    first = [opened(4) for _ in range(3)]
    ids = [c.id for c in first]
    assert len(set(ids)) == 3 and 0 not in ids
    for client in first:
        assert saClm.saClmFinalize(client.handle) == E.SA_AIS_OK
    again = opened(1)
    assert again.id > max(ids)
    for handle_id in ids:
        assert saClm.saClmFinalize(handle_id) == E.SA_AIS_ERR_BAD_HANDLE


BAD_HANDLE_CALLS: dict[str, Callable[[int], int]] = {
    "SelectionObjectGet": lambda h: saClm.saClmSelectionObjectGet(h, saAis.SaSelectionObjectT()),
    "Dispatch": lambda h: saClm.saClmDispatch(h, D.SA_DISPATCH_ALL),
    "Finalize": lambda h: saClm.saClmFinalize(h),
    "ClusterTrack": lambda h: saClm.saClmClusterTrack(h, T.SA_TRACK_CURRENT, None),
    "ClusterTrack_4": lambda h: saClm.saClmClusterTrack_4(h, T.SA_TRACK_CURRENT, None),
    "ClusterTrackStop": lambda h: saClm.saClmClusterTrackStop(h),
    "ClusterNodeGet": lambda h: saClm.saClmClusterNodeGet(h, LOCAL_ID, SECOND, saClm.SaClmClusterNodeT()),
    "ClusterNodeGet_4": lambda h: saClm.saClmClusterNodeGet_4(h, LOCAL_ID, SECOND, saClm.SaClmClusterNodeT_4()),
    "ClusterNodeGetAsync": lambda h: saClm.saClmClusterNodeGetAsync(h, 7, LOCAL_ID),
    "ClusterNotificationFree": lambda h: saClm.saClmClusterNotificationFree(h, saClm.SaClmClusterNotificationT()),
    "ClusterNotificationFree_4": lambda h: saClm.saClmClusterNotificationFree_4(h, saClm.SaClmClusterNotificationT_4()),
    "Response_4": lambda h: saClm.saClmResponse_4(h, 7, eSaClmResponseT.SA_CLM_CALLBACK_RESPONSE_OK),
}


@pytest.mark.parametrize("call", list(BAD_HANDLE_CALLS.values()), ids=list(BAD_HANDLE_CALLS))
def test_every_function_answers_bad_handle_for_unknown_and_finalized_handles(
    node: FakeNode, call: Callable[[int], int]
) -> None:
    client = opened(4)
    assert saClm.saClmFinalize(client.handle) == E.SA_AIS_OK
    for handle in (0, -1, 2**64 - 1, 987654321, client.id):
        assert call(handle) == E.SA_AIS_ERR_BAD_HANDLE, handle


#: Every function a B.04 handle calls but Initialize and Finalize, with arguments valid in any membership.
B04_CALLS: dict[str, Callable[[int], int]] = {
    "saClmSelectionObjectGet": BAD_HANDLE_CALLS["SelectionObjectGet"],
    "saClmDispatch": BAD_HANDLE_CALLS["Dispatch"],
    "saClmClusterTrack_4": lambda h: saClm.saClmClusterTrack_4(
        h, T.SA_TRACK_CURRENT | T.SA_TRACK_CHANGES | T.SA_TRACK_VALIDATE_STEP, saClm.SaClmClusterNotificationBufferT_4()
    ),
    "saClmClusterTrackStop": BAD_HANDLE_CALLS["ClusterTrackStop"],
    "saClmClusterNotificationFree_4": BAD_HANDLE_CALLS["ClusterNotificationFree_4"],
    "saClmClusterNodeGet_4": BAD_HANDLE_CALLS["ClusterNodeGet_4"],
    "saClmClusterNodeGetAsync": BAD_HANDLE_CALLS["ClusterNodeGetAsync"],
    "saClmResponse_4": BAD_HANDLE_CALLS["Response_4"],
}


def test_the_docs_name_exactly_the_functions_that_return_unavailable() -> None:
    # Every B.04 function, on a node that is a member and on one that is not; then
    # initialize with no node bound and with the bound node stopped.
    unavailable = set()
    for member in (True, False):
        fake = FakeNode(1)
        if member:
            fake.apply(change(1, [1, 2], joined=[1, 2]))
        with pyclm.saf.bind(fake):
            client = opened(4)
            for name, call in B04_CALLS.items():
                if call(client.id) == E.SA_AIS_ERR_UNAVAILABLE:
                    unavailable.add(name)
            cleanup_handles()
            fake.running, fake.stopped = False, True
            if saClm.saClmInitialize_4(saClm.SaClmHandleT(), None, SaVersionT("B", 4, 1)) == E.SA_AIS_ERR_UNAVAILABLE:
                unavailable.add("saClmInitialize_4")
    assert saClm.saClmInitialize_4(saClm.SaClmHandleT(), None, SaVersionT("B", 4, 1)) == E.SA_AIS_ERR_UNAVAILABLE
    text = " ".join(DOC.read_text(encoding="utf-8").split())
    found = re.search(r"UNAVAILABLE comes only from (.*?)\. Never from (.*?), which B\.04 allows", text)
    assert found, "docs/saf.md no longer says which functions return UNAVAILABLE"
    only, never = ({name for name in re.findall(r"`(\w+)`", part)} for part in found.groups())
    assert only == unavailable == {"saClmInitialize_4", "saClmClusterNodeGet_4", "saClmClusterNodeGetAsync"}
    assert never == set(B04_CALLS) - unavailable


def test_initialize_without_a_running_node_is_an_error_code_not_an_exception(node: FakeNode) -> None:
    pyclm.saf.unbind()
    handle = saClm.SaClmHandleT()
    assert saClm.saClmInitialize_4(handle, None, SaVersionT("B", 4, 1)) == E.SA_AIS_ERR_UNAVAILABLE
    assert saClm.saClmInitialize(handle, None, SaVersionT("B", 1, 1)) == E.SA_AIS_ERR_TRY_AGAIN
    assert saClm.saClmInitialize(handle, None, SaVersionT("B", 2, 1)) == E.SA_AIS_ERR_TRY_AGAIN
    not_yet = FakeNode(1)
    not_yet.running = False
    with pyclm.saf.bind(not_yet):
        assert saClm.saClmInitialize_4(handle, None, SaVersionT("B", 4, 1)) == E.SA_AIS_ERR_TRY_AGAIN
        assert saClm.saClmInitialize(handle, None, SaVersionT("B", 1, 1)) == E.SA_AIS_ERR_TRY_AGAIN
        not_yet.running = True
        assert saClm.saClmInitialize_4(handle, None, SaVersionT("B", 4, 1)) == E.SA_AIS_OK
    assert handle.value != 0
    assert saClm.saClmFinalize(handle) == E.SA_AIS_OK


def test_initialize_on_a_node_that_stopped_is_unavailable_to_b04(node: FakeNode) -> None:
    # A Node never runs again: B.04 gets UNAVAILABLE; B.01/B.02 have no such code.
    handle = saClm.SaClmHandleT()
    node.running = False  # stopping: its last change may still be on the way
    assert saClm.saClmInitialize_4(handle, None, SaVersionT("B", 4, 1)) == E.SA_AIS_ERR_TRY_AGAIN
    node.stopped = True
    assert saClm.saClmInitialize_4(handle, None, SaVersionT("B", 4, 1)) == E.SA_AIS_ERR_UNAVAILABLE
    assert saClm.saClmInitialize(handle, None, SaVersionT("B", 2, 1)) == E.SA_AIS_ERR_TRY_AGAIN
    assert handle.value == 0
    # A binding closed directly (not through unbind) counts as no node bound.
    node.running, node.stopped = True, False
    binding = pyclm.saf.bind(node)
    binding.close()
    assert saClm.saClmInitialize_4(handle, None, SaVersionT("B", 4, 1)) == E.SA_AIS_ERR_UNAVAILABLE
    assert saClm.saClmInitialize(handle, None, SaVersionT("B", 1, 1)) == E.SA_AIS_ERR_TRY_AGAIN


def test_arguments_may_be_ints_ctypes_scalars_pointers_or_byref(node: FakeNode) -> None:
    handle = saClm.SaClmHandleT()
    version = SaVersionT("B", 4, 1)
    assert saClm.saClmInitialize_4(ctypes.pointer(handle), None, ctypes.byref(version)) == E.SA_AIS_OK
    selection = saAis.SaSelectionObjectT()
    assert saClm.saClmSelectionObjectGet(handle.value, ctypes.byref(selection)) == E.SA_AIS_OK
    out = saClm.SaClmClusterNodeT_4()
    node_id = saClm.SaClmNodeIdT(LOCAL_ID)
    timeout = saAis.SaTimeT(SECOND)
    assert saClm.saClmClusterNodeGet_4(handle, node_id, timeout, ctypes.pointer(out)) == E.SA_AIS_OK
    assert out.nodeId == 1
    null = ctypes.POINTER(saClm.SaClmClusterNodeT_4)()
    assert saClm.saClmClusterNodeGet_4(handle, 1, SECOND, null) == E.SA_AIS_ERR_INVALID_PARAM
    flags = saAis.SaDispatchFlagsT(D.SA_DISPATCH_ONE)
    assert saClm.saClmDispatch(handle, flags) == E.SA_AIS_OK
    # A value is truncated to its C type, as ctypes does: flags 0x101 is 0x01 as an SaUint8T.
    buffer = saClm.SaClmClusterNotificationBufferT_4()
    assert saClm.saClmClusterTrack_4(handle, 0x101, buffer) == E.SA_AIS_OK
    assert buffer.numberOfItems == 3


@pytest.mark.parametrize(
    "call",
    [
        lambda h: saClm.saClmDispatch(h, "all"),  # type: ignore[arg-type]
        lambda h: saClm.saClmDispatch(1.5, D.SA_DISPATCH_ALL),  # type: ignore[arg-type]
        lambda h: saClm.saClmClusterTrack_4(h, T.SA_TRACK_CURRENT, saClm.SaClmClusterNotificationBufferT()),  # type: ignore[arg-type]
        lambda h: saClm.saClmClusterNodeGet(h, 1, SECOND, saClm.SaClmClusterNodeT_4()),  # type: ignore[arg-type]
        lambda h: saClm.saClmInitialize_4(saClm.SaClmHandleT(), saClm.SaClmCallbacksT(), SaVersionT("B", 4, 1)),  # type: ignore[arg-type]
        lambda h: saClm.saClmInitialize_4(7, None, SaVersionT("B", 4, 1)),  # type: ignore[arg-type]
        lambda h: saClm.saClmSelectionObjectGet(h, 3),  # type: ignore[arg-type]
    ],
)
def test_arguments_of_the_wrong_type_raise_type_error(node: FakeNode, call: Callable[[int], object]) -> None:
    client = opened(4)
    with pytest.raises(TypeError, match="must be"):
        call(client.id)


def test_callbacks_are_copied_at_initialize(node: FakeNode) -> None:
    client = opened(4)
    replaced: list[int] = []
    # The application changes (and drops the function of) its structure after initialize.
    client.callbacks.saClmClusterNodeGetCallback = saClm.SaClmClusterNodeGetCallbackT_4(
        lambda invocation, cluster_node, error: replaced.append(invocation)
    )
    assert saClm.saClmClusterNodeGetAsync(client.handle, 5, LOCAL_ID) == E.SA_AIS_OK
    assert client.dispatch() == E.SA_AIS_OK
    assert [c.invocation for c in client.node_gets] == [5]
    assert replaced == []


def test_finalize_twice_is_bad_handle_and_closes_the_selection_object(node: FakeNode) -> None:
    client = opened(4)
    fd = client.fd
    assert saClm.saClmClusterTrack_4(client.handle, T.SA_TRACK_CHANGES, None) == E.SA_AIS_OK
    assert saClm.saClmFinalize(client.handle) == E.SA_AIS_OK
    assert saClm.saClmFinalize(client.handle) == E.SA_AIS_ERR_BAD_HANDLE
    with pytest.raises(OSError):
        select.select([fd], [], [], 0)
    node.apply(change(2, [1, 2], left=[3]))  # no longer tracked: nothing queued, nothing raised
    assert client.tracks == []


# ---------------------------------------------------------------------- selection object and dispatch


def test_selection_object_is_readable_exactly_while_callbacks_are_pending(node: FakeNode) -> None:
    client = opened(4)
    other = opened(4)
    assert client.fd != other.fd
    assert not readable(client.fd)
    for invocation in (1, 2):
        assert saClm.saClmClusterNodeGetAsync(client.handle, invocation, 2) == E.SA_AIS_OK
    assert readable(client.fd) and not readable(other.fd)
    assert client.dispatch(D.SA_DISPATCH_ONE) == E.SA_AIS_OK
    assert readable(client.fd)
    assert client.dispatch(D.SA_DISPATCH_ONE) == E.SA_AIS_OK
    assert not readable(client.fd)
    assert [c.invocation for c in client.node_gets] == [1, 2]
    selection = saAis.SaSelectionObjectT()
    assert saClm.saClmSelectionObjectGet(client.handle, None) == E.SA_AIS_ERR_INVALID_PARAM
    assert saClm.saClmSelectionObjectGet(client.handle, selection) == E.SA_AIS_OK
    assert selection.value == client.fd  # the same descriptor until finalize


@pytest.mark.parametrize("flags", [0, 4, -1, 100])
def test_dispatch_flags_are_checked_before_the_handle(node: FakeNode, flags: int) -> None:
    client = opened(4)
    assert saClm.saClmDispatch(client.handle, flags) == E.SA_AIS_ERR_INVALID_PARAM
    assert saClm.saClmDispatch(0, flags) == E.SA_AIS_ERR_INVALID_PARAM


def test_dispatch_one_with_nothing_pending_returns_at_once(node: FakeNode) -> None:
    client = opened(1)
    done = threading.Event()
    results: list[int] = []

    def run() -> None:
        results.append(client.dispatch(D.SA_DISPATCH_ONE))
        results.append(client.dispatch(D.SA_DISPATCH_ALL))
        done.set()

    thread = threading.Thread(target=run, name="dispatch-one")
    thread.start()
    assert done.wait(TIMEOUT), "DISPATCH_ONE/ALL blocked with nothing pending"
    join(thread)
    assert results == [E.SA_AIS_OK, E.SA_AIS_OK]


def test_dispatch_all_runs_only_the_callbacks_pending_when_it_starts(node: FakeNode) -> None:
    client = opened(4)
    # Each first answer asks again: a dispatch that took every pending callback would run those
    # too (and, were every answer to ask again, never end).
    client.in_node_get = lambda call: (
        saClm.saClmClusterNodeGetAsync(client.handle, call.invocation + 10, 2) if call.invocation < 10 else None
    )
    for invocation in (1, 2, 3):
        assert saClm.saClmClusterNodeGetAsync(client.handle, invocation, 2) == E.SA_AIS_OK
    assert client.dispatch(D.SA_DISPATCH_ALL) == E.SA_AIS_OK
    assert [c.invocation for c in client.node_gets] == [1, 2, 3]
    assert readable(client.fd)
    client.in_node_get = None
    assert client.dispatch(D.SA_DISPATCH_ALL) == E.SA_AIS_OK
    assert [c.invocation for c in client.node_gets] == [1, 2, 3, 11, 12, 13]
    assert not readable(client.fd) and not client.errors


def test_dispatch_blocking_runs_callbacks_on_its_thread_until_finalize_from_another(node: FakeNode) -> None:
    client = opened(4)
    assert client.track(T.SA_TRACK_CHANGES_ONLY) == E.SA_AIS_OK
    got_two = threading.Event()
    client.in_node_get = lambda call: got_two.set() if len(client.node_gets) == 2 else None
    results: list[int] = []
    thread = threading.Thread(target=lambda: results.append(client.dispatch(D.SA_DISPATCH_BLOCKING)), name="blocking")
    thread.start()
    for invocation in (1, 2):
        assert saClm.saClmClusterNodeGetAsync(client.handle, invocation, 3) == E.SA_AIS_OK
    assert got_two.wait(TIMEOUT)
    assert thread.is_alive()  # still waiting for more
    assert saClm.saClmFinalize(client.handle) == E.SA_AIS_OK
    join(thread)
    assert results == [E.SA_AIS_OK]
    assert {c.thread for c in client.node_gets} == {thread.ident}
    assert not client.errors


def test_two_blocking_dispatchers_share_the_callbacks(node: FakeNode) -> None:
    client = opened(4)
    count = 40
    all_done = threading.Event()
    client.in_node_get = lambda call: all_done.set() if len(client.node_gets) == count else None
    results: list[int] = []
    threads = [
        threading.Thread(target=lambda: results.append(client.dispatch(D.SA_DISPATCH_BLOCKING)), name=f"b{i}")
        for i in range(2)
    ]
    for thread in threads:
        thread.start()
    for invocation in range(1, count + 1):
        assert saClm.saClmClusterNodeGetAsync(client.handle, invocation, 2) == E.SA_AIS_OK
    assert all_done.wait(TIMEOUT)
    assert saClm.saClmFinalize(client.handle) == E.SA_AIS_OK
    for thread in threads:
        join(thread)
    assert sorted(c.invocation for c in client.node_gets) == list(range(1, count + 1))
    assert results == [E.SA_AIS_OK, E.SA_AIS_OK]


def test_finalize_inside_a_callback_ends_dispatch_all(node: FakeNode) -> None:
    client = opened(4)
    codes: list[int] = []
    client.in_node_get = lambda call: codes.append(saClm.saClmFinalize(client.handle))
    for invocation in (1, 2, 3):
        assert saClm.saClmClusterNodeGetAsync(client.handle, invocation, 2) == E.SA_AIS_OK
    assert client.dispatch(D.SA_DISPATCH_ALL) == E.SA_AIS_OK
    assert [c.invocation for c in client.node_gets] == [1]
    assert codes == [E.SA_AIS_OK]
    assert client.dispatch(D.SA_DISPATCH_ALL) == E.SA_AIS_ERR_BAD_HANDLE


def test_track_stop_from_inside_the_track_callback(node: FakeNode) -> None:
    client = opened(4)
    codes: list[int] = []
    client.in_track = lambda call: codes.append(saClm.saClmClusterTrackStop(client.handle))
    assert client.track(T.SA_TRACK_CHANGES_ONLY) == E.SA_AIS_OK
    node.apply(change(2, [1, 2], left=[3]))
    node.apply(change(3, [1], left=[2]))
    assert client.dispatch() == E.SA_AIS_OK
    assert codes == [E.SA_AIS_OK]  # the second change's callback was purged by the stop
    assert [c.view_number for c in client.tracks] == [2]
    assert not client.errors


def test_an_exception_in_a_callback_is_reported_by_ctypes_and_does_not_reach_dispatch(
    node: FakeNode, monkeypatch: pytest.MonkeyPatch
) -> None:
    unraisable: list[Any] = []
    monkeypatch.setattr(sys, "unraisablehook", unraisable.append)

    def broken(invocation: int, cluster_node: Any, error: int) -> None:
        raise RuntimeError("bug in the application's callback")

    callbacks = saClm.SaClmCallbacksT_4()
    callbacks.saClmClusterNodeGetCallback = saClm.SaClmClusterNodeGetCallbackT_4(broken)
    handle = saClm.SaClmHandleT()
    assert saClm.saClmInitialize_4(handle, callbacks, SaVersionT("B", 4, 1)) == E.SA_AIS_OK
    for invocation in (1, 2):
        assert saClm.saClmClusterNodeGetAsync(handle, invocation, 2) == E.SA_AIS_OK
    assert saClm.saClmDispatch(handle, D.SA_DISPATCH_ALL) == E.SA_AIS_OK
    assert [type(u.exc_value) for u in unraisable] == [RuntimeError, RuntimeError]


def test_an_unset_callback_slot_is_never_called(node: FakeNode) -> None:
    client = opened(4, track=False)
    assert not client.callbacks.saClmClusterTrackCallback  # the NULL slot
    assert client.track(T.SA_TRACK_CURRENT) == E.SA_AIS_ERR_INIT
    assert client.track(T.SA_TRACK_CHANGES) == E.SA_AIS_ERR_INIT
    buffer = current_buffer(client, None)
    assert client.track(T.SA_TRACK_CURRENT, buffer) == E.SA_AIS_OK  # answered in the buffer: no callback
    assert not readable(client.fd)
    nothing = opened(4, track=False, node_get=False)
    assert saClm.saClmClusterNodeGetAsync(nothing.handle, 1, 2) == E.SA_AIS_ERR_INIT


# ---------------------------------------------------------------------- track: the decision table

ALLOC = "library allocates"  # a buffer whose notification pointer is NULL


@pytest.mark.parametrize(
    ("major", "flags", "buffer", "callback", "expected"),
    [
        # flags
        (4, 0, None, True, E.SA_AIS_ERR_BAD_FLAGS),
        (1, 0, None, True, E.SA_AIS_ERR_BAD_FLAGS),
        (4, T.SA_TRACK_LOCAL, None, True, E.SA_AIS_ERR_BAD_FLAGS),
        (4, T.SA_TRACK_CHANGES | T.SA_TRACK_CHANGES_ONLY, None, True, E.SA_AIS_ERR_BAD_FLAGS),
        (1, T.SA_TRACK_CHANGES | T.SA_TRACK_CHANGES_ONLY, None, True, E.SA_AIS_ERR_BAD_FLAGS),
        (4, T.SA_TRACK_START_STEP, None, True, E.SA_AIS_ERR_BAD_FLAGS),
        (4, T.SA_TRACK_VALIDATE_STEP, None, True, E.SA_AIS_ERR_BAD_FLAGS),
        (4, T.SA_TRACK_CURRENT | T.SA_TRACK_START_STEP, None, True, E.SA_AIS_ERR_BAD_FLAGS),
        (4, 0x40, None, True, E.SA_AIS_ERR_BAD_FLAGS),
        (4, 0xFF, None, True, E.SA_AIS_ERR_BAD_FLAGS),
        (1, T.SA_TRACK_CURRENT | T.SA_TRACK_LOCAL, None, True, E.SA_AIS_ERR_BAD_FLAGS),  # B.04 bits
        (1, T.SA_TRACK_CHANGES | T.SA_TRACK_START_STEP, None, True, E.SA_AIS_ERR_BAD_FLAGS),
        (2, T.SA_TRACK_CHANGES | T.SA_TRACK_VALIDATE_STEP, None, True, E.SA_AIS_ERR_BAD_FLAGS),
        (1, 0xFF, None, True, E.SA_AIS_ERR_BAD_FLAGS),
        # an empty caller array
        (4, T.SA_TRACK_CURRENT, 0, True, E.SA_AIS_ERR_INVALID_PARAM),
        (1, T.SA_TRACK_CURRENT, 0, True, E.SA_AIS_ERR_INVALID_PARAM),
        # no track callback where one is needed
        (4, T.SA_TRACK_CURRENT, None, False, E.SA_AIS_ERR_INIT),
        (1, T.SA_TRACK_CURRENT, None, False, E.SA_AIS_ERR_INIT),
        (4, T.SA_TRACK_CHANGES, ALLOC, False, E.SA_AIS_ERR_INIT),
        (4, T.SA_TRACK_CHANGES_ONLY, None, False, E.SA_AIS_ERR_INIT),
        (1, T.SA_TRACK_CURRENT | T.SA_TRACK_CHANGES, ALLOC, False, E.SA_AIS_ERR_INIT),
        # space
        (4, T.SA_TRACK_CURRENT, 2, True, E.SA_AIS_ERR_NO_SPACE),
        (1, T.SA_TRACK_CURRENT, 2, True, E.SA_AIS_ERR_NO_SPACE),
        # accepted
        (4, T.SA_TRACK_CURRENT, 3, True, E.SA_AIS_OK),
        (4, T.SA_TRACK_CURRENT, 3, False, E.SA_AIS_OK),
        (4, T.SA_TRACK_CURRENT, ALLOC, False, E.SA_AIS_OK),
        (4, T.SA_TRACK_CURRENT | T.SA_TRACK_LOCAL, 1, True, E.SA_AIS_OK),
        (4, T.SA_TRACK_CURRENT, None, True, E.SA_AIS_OK),
        (4, T.SA_TRACK_CHANGES | T.SA_TRACK_LOCAL, None, True, E.SA_AIS_OK),
        (4, T.SA_TRACK_CHANGES_ONLY | T.SA_TRACK_START_STEP | T.SA_TRACK_VALIDATE_STEP, None, True, E.SA_AIS_OK),
        (4, T.SA_TRACK_CURRENT | T.SA_TRACK_CHANGES | T.SA_TRACK_START_STEP, ALLOC, True, E.SA_AIS_OK),
        (1, T.SA_TRACK_CURRENT | T.SA_TRACK_CHANGES, 10, True, E.SA_AIS_OK),
        (2, T.SA_TRACK_CHANGES_ONLY, None, True, E.SA_AIS_OK),
    ],
)
def test_track_decision_table(
    node: FakeNode, major: int, flags: int, buffer: int | str | None, callback: bool, expected: int
) -> None:
    client = opened(major, track=callback)
    argument = None if buffer is None else current_buffer(client, None if buffer == ALLOC else int(buffer))
    rc = client.track(flags, argument)
    assert rc == expected, E.whatis(rc)
    tracking = rc == E.SA_AIS_OK and bool(flags & (T.SA_TRACK_CHANGES | T.SA_TRACK_CHANGES_ONLY))
    stop = saClm.saClmClusterTrackStop(client.handle)
    assert stop == (E.SA_AIS_OK if tracking else E.SA_AIS_ERR_NOT_EXIST)


@pytest.mark.parametrize(
    ("major", "function"), [(1, "saClmClusterTrack_4"), (2, "saClmClusterTrack_4"), (4, "saClmClusterTrack")]
)
def test_track_of_the_other_version_is_version(node: FakeNode, major: int, function: str) -> None:
    client = opened(major)
    buffer = (
        saClm.SaClmClusterNotificationBufferT_4()
        if function.endswith("_4")
        else saClm.SaClmClusterNotificationBufferT()
    )
    assert getattr(saClm, function)(client.handle, T.SA_TRACK_CURRENT, buffer) == E.SA_AIS_ERR_VERSION
    assert getattr(saClm, function)(client.handle, T.SA_TRACK_CHANGES, None) == E.SA_AIS_ERR_VERSION
    assert getattr(saClm, function)(client.handle, 0, None) == E.SA_AIS_ERR_BAD_FLAGS  # checked first


@pytest.mark.parametrize("major", [1, 4])
def test_current_with_a_null_buffer_gives_exactly_one_callback_per_call(node: FakeNode, major: int) -> None:
    client = opened(major)
    for _ in range(3):
        assert client.track(T.SA_TRACK_CURRENT) == E.SA_AIS_OK
    assert readable(client.fd)
    assert client.dispatch() == E.SA_AIS_OK
    assert not readable(client.fd)
    assert len(client.tracks) == 3
    for call in client.tracks:
        assert call.view_number == 1 and call.members == 3 and call.error == E.SA_AIS_OK
        assert call.changes == [
            (1, C.SA_CLM_NODE_NO_CHANGE),
            (2, C.SA_CLM_NODE_NO_CHANGE),
            (3, C.SA_CLM_NODE_NO_CHANGE),
        ]
        assert {e.member for e in call.entries} == {saAis.eSaBoolT.SA_TRUE}
    # CURRENT does not start tracking.
    assert saClm.saClmClusterTrackStop(client.handle) == E.SA_AIS_ERR_NOT_EXIST
    node.apply(change(2, [1, 2], left=[3]))
    assert not readable(client.fd)


@pytest.mark.parametrize("major", [1, 2, 4])
def test_current_into_the_callers_array(node: FakeNode, major: int) -> None:
    client = opened(major)
    small = current_buffer(client, 2)
    assert client.track(T.SA_TRACK_CURRENT, small) == E.SA_AIS_ERR_NO_SPACE
    assert small.numberOfItems == 3  # the size needed
    big = current_buffer(client, 10)
    assert client.track(T.SA_TRACK_CURRENT, big) == E.SA_AIS_OK
    assert (big.numberOfItems, big.viewNumber) == (3, 1)
    assert [(e.node_id, e.change, e.name) for e in entries_of(big)] == [
        (n, C.SA_CLM_NODE_NO_CHANGE, f"n{n}") for n in (1, 2, 3)
    ]
    assert not readable(client.fd)  # answered in the buffer, no callback


@pytest.mark.parametrize("major", [1, 2, 4])
def test_current_with_a_null_array_is_allocated_by_the_library_and_freed_once(node: FakeNode, major: int) -> None:
    client = opened(major)
    buffer = current_buffer(client, None)
    assert client.track(T.SA_TRACK_CURRENT, buffer) == E.SA_AIS_OK
    assert bool(buffer.notification) and (buffer.numberOfItems, buffer.viewNumber) == (3, 1)
    assert [e.node_id for e in entries_of(buffer)] == [1, 2, 3]
    if major == 4:
        # B.04 frees with _4; the B.02 function is not its version's.
        assert saClm.saClmClusterNotificationFree(client.handle, saClm.SaClmClusterNotificationT()) == (
            E.SA_AIS_ERR_VERSION
        )
        assert saClm.saClmClusterNotificationFree_4(client.handle, buffer.notification) == E.SA_AIS_OK
        return
    assert saClm.saClmClusterNotificationFree_4(client.handle, saClm.SaClmClusterNotificationT_4()) == (
        E.SA_AIS_ERR_VERSION
    )
    free = saClm.saClmClusterNotificationFree(client.handle, buffer.notification)
    if major == 2:
        assert free == E.SA_AIS_OK
    else:
        assert free == E.SA_AIS_ERR_VERSION  # B.01 has no free function: the array is the caller's


def test_notification_free_needs_a_pointer_and_accepts_any_array(node: FakeNode) -> None:
    client = opened(4)
    assert saClm.saClmClusterNotificationFree_4(client.handle, None) == E.SA_AIS_ERR_INVALID_PARAM
    null = ctypes.POINTER(saClm.SaClmClusterNotificationT_4)()
    assert saClm.saClmClusterNotificationFree_4(client.handle, null) == E.SA_AIS_ERR_INVALID_PARAM
    assert saClm.saClmClusterNotificationFree_4(0, None) == E.SA_AIS_ERR_INVALID_PARAM  # NULL before the handle
    # As OpenSAF's free(): an array the caller allocated is accepted too (its apitest does that).
    mine = (saClm.SaClmClusterNotificationT_4 * 3)()
    assert saClm.saClmClusterNotificationFree_4(client.handle, mine) == E.SA_AIS_OK
    buffer = current_buffer(client, None)
    assert client.track(T.SA_TRACK_CURRENT, buffer) == E.SA_AIS_OK
    assert saClm.saClmClusterNotificationFree_4(client.handle, buffer.notification.contents) == E.SA_AIS_OK
    assert saClm.saClmClusterNotificationFree_4(client.handle, ctypes.byref(mine)) == E.SA_AIS_OK


def test_changes_lists_every_member_and_changes_only_the_changed_ones(node: FakeNode) -> None:
    full = opened(4)
    only = opened(4)
    assert full.track(T.SA_TRACK_CHANGES) == E.SA_AIS_OK
    assert only.track(T.SA_TRACK_CHANGES_ONLY) == E.SA_AIS_OK
    node.apply(change(2, [1, 2, 4], joined=[4], left=[3]))
    node.apply(change(3, [1, 2, 4]))  # only the view number changed
    for client in (full, only):
        assert client.dispatch() == E.SA_AIS_OK
    assert [c.changes for c in full.tracks] == [
        [
            (1, C.SA_CLM_NODE_NO_CHANGE),
            (2, C.SA_CLM_NODE_NO_CHANGE),
            (3, C.SA_CLM_NODE_LEFT),
            (4, C.SA_CLM_NODE_JOINED),
        ],
        [(1, C.SA_CLM_NODE_NO_CHANGE), (2, C.SA_CLM_NODE_NO_CHANGE), (4, C.SA_CLM_NODE_NO_CHANGE)],
    ]
    assert [c.changes for c in only.tracks] == [[(3, C.SA_CLM_NODE_LEFT), (4, C.SA_CLM_NODE_JOINED)], []]
    for client in (full, only):
        assert [c.view_number for c in client.tracks] == [2, 3]
        assert [c.members for c in client.tracks] == [3, 3]  # LEFT entries do not count
        left = next(e for e in client.tracks[0].entries if e.node_id == 3)
        assert left.member == saAis.eSaBoolT.SA_FALSE
        joined = next(e for e in client.tracks[0].entries if e.node_id == 4)
        assert (joined.member, joined.initial) == (saAis.eSaBoolT.SA_TRUE, 2)


def test_shutdown_is_reported_as_left_to_b01_and_b02_handles(node: FakeNode) -> None:
    clients = {major: opened(major) for major in (1, 2, 4)}
    for client in clients.values():
        assert client.track(T.SA_TRACK_CHANGES_ONLY) == E.SA_AIS_OK
    node.apply(change(2, [1, 2], shutdown=[3]))
    for client in clients.values():
        assert client.dispatch() == E.SA_AIS_OK
    assert clients[1].tracks[0].changes == [(3, C.SA_CLM_NODE_LEFT)]
    assert clients[2].tracks[0].changes == [(3, C.SA_CLM_NODE_LEFT)]
    assert clients[4].tracks[0].changes == [(3, C.SA_CLM_NODE_SHUTDOWN)]


def test_a_renamed_node_is_reconfigured_for_every_version(node: FakeNode) -> None:
    clients = [opened(1), opened(4)]
    for client in clients:
        assert client.track(T.SA_TRACK_CHANGES_ONLY) == E.SA_AIS_OK
    renamed = attrs.evolve(life(2), name="n2-new", address="10.0.0.22:7000")
    members = (life(1), renamed, life(3))
    node.apply(MembershipChange(view_number=2, members=members, reconfigured=(renamed,), local=members[0]))
    for client in clients:
        assert client.dispatch() == E.SA_AIS_OK
        [call] = client.tracks
        assert call.changes == [(2, C.SA_CLM_NODE_RECONFIGURED)]
        assert (call.entries[0].name, call.entries[0].address) == ("n2-new", "10.0.0.22:7000")


def test_b04_callbacks_are_completed_steps_without_a_response(node: FakeNode) -> None:
    client = opened(4)
    assert client.track(T.SA_TRACK_CURRENT | T.SA_TRACK_CHANGES_ONLY) == E.SA_AIS_OK
    node.apply(change(2, [1, 2], left=[3]))
    node.apply(change(3, [1, 2, 3, 4], joined=[3, 4]))
    assert client.dispatch() == E.SA_AIS_OK
    assert [c.step for c in client.tracks] == [eSaClmChangeStepT.SA_CLM_CHANGE_COMPLETED] * 3
    assert {(c.invocation, c.time_supervision, c.correlation, c.error) for c in client.tracks} == {
        (0, UNKNOWN_TIME, (0, 0, 0), E.SA_AIS_OK)
    }
    # The root cause names the node a change is about when there is one.
    assert [c.root_cause for c in client.tracks] == ["", "n3", ""]


def test_current_and_changes_in_one_call_give_the_snapshot_first(node: FakeNode) -> None:
    client = opened(4)
    assert client.track(T.SA_TRACK_CURRENT | T.SA_TRACK_CHANGES_ONLY) == E.SA_AIS_OK
    node.apply(change(2, [1, 2], left=[3]))
    assert client.dispatch(D.SA_DISPATCH_ONE) == E.SA_AIS_OK
    assert client.tracks[0].view_number == 1 and len(client.tracks[0].entries) == 3
    assert client.dispatch(D.SA_DISPATCH_ONE) == E.SA_AIS_OK
    assert client.tracks[1].changes == [(3, C.SA_CLM_NODE_LEFT)]


def test_tracking_again_switches_the_mode(node: FakeNode) -> None:
    client = opened(4)
    assert client.track(T.SA_TRACK_CHANGES) == E.SA_AIS_OK
    node.apply(change(2, [1, 2], left=[3]))
    assert client.track(T.SA_TRACK_CHANGES_ONLY) == E.SA_AIS_OK
    node.apply(change(3, [1], left=[2]))
    assert client.dispatch() == E.SA_AIS_OK
    assert [len(c.entries) for c in client.tracks] == [3, 1]


def test_local_flag_reports_only_the_local_node(node: FakeNode) -> None:
    client = opened(4)
    buffer = current_buffer(client, 1)
    assert client.track(T.SA_TRACK_CURRENT | T.SA_TRACK_LOCAL, buffer) == E.SA_AIS_OK
    assert [(e.node_id, e.change) for e in entries_of(buffer)] == [(1, C.SA_CLM_NODE_NO_CHANGE)]
    assert client.track(T.SA_TRACK_CHANGES_ONLY | T.SA_TRACK_LOCAL) == E.SA_AIS_OK
    node.apply(change(2, [1, 2], left=[3]))  # not about the local node: no callback
    assert not readable(client.fd)
    node.apply(change(2, [2], left=[1], local=1))  # the local node is reported out
    assert client.dispatch() == E.SA_AIS_OK
    assert [c.changes for c in client.tracks] == [[(1, C.SA_CLM_NODE_LEFT)]]


def test_a_non_member_sees_only_itself_as_left(node: FakeNode) -> None:
    client = opened(4)
    node.apply(change(1, [], left=[1], local=1))  # reported out, view number kept
    buffer = current_buffer(client, 5)
    assert client.track(T.SA_TRACK_CURRENT, buffer) == E.SA_AIS_OK
    assert [(e.node_id, e.change, e.member) for e in entries_of(buffer)] == [
        (1, C.SA_CLM_NODE_LEFT, saAis.eSaBoolT.SA_FALSE)
    ]
    assert buffer.viewNumber == 1


def test_track_stop_purges_track_callbacks_but_keeps_node_get_answers(node: FakeNode) -> None:
    client = opened(4)
    assert client.track(T.SA_TRACK_CURRENT | T.SA_TRACK_CHANGES) == E.SA_AIS_OK
    assert saClm.saClmClusterNodeGetAsync(client.handle, 9, 2) == E.SA_AIS_OK
    node.apply(change(2, [1, 2], left=[3]))
    assert saClm.saClmClusterTrackStop(client.handle) == E.SA_AIS_OK
    assert saClm.saClmClusterTrackStop(client.handle) == E.SA_AIS_ERR_NOT_EXIST
    assert readable(client.fd)
    assert client.dispatch() == E.SA_AIS_OK
    assert client.tracks == [] and [c.invocation for c in client.node_gets] == [9]
    assert not readable(client.fd)


def test_a_tracker_that_reads_the_swapped_snapshot_does_not_get_that_change_twice() -> None:
    fake = FakeNode(1)
    with pyclm.saf.bind(fake):
        try:
            early = opened(4)
            assert early.track(T.SA_TRACK_CHANGES_ONLY) == E.SA_AIS_OK
            first = change(1, [1, 2, 3], joined=[1, 2, 3])
            fake.swap(first)  # the node shows the change; its listeners have not run yet
            late = opened(4)
            assert late.track(T.SA_TRACK_CURRENT | T.SA_TRACK_CHANGES_ONLY) == E.SA_AIS_OK
            fake.notify(first)
            fake.apply(change(2, [1, 2], left=[3]))
            for client in (early, late):
                assert client.dispatch() == E.SA_AIS_OK
            assert [c.view_number for c in early.tracks] == [1, 2]
            assert [c.view_number for c in late.tracks] == [1, 2]  # its CURRENT, then the next change only
            assert len(late.tracks[0].entries) == 3
        finally:
            cleanup_handles()


# ---------------------------------------------------------------------- node get


@pytest.mark.parametrize(
    ("node_id", "timeout", "expected"),
    [
        (LOCAL_ID, SECOND, E.SA_AIS_OK),
        (1, SECOND, E.SA_AIS_OK),
        (3, SECOND, E.SA_AIS_OK),
        (3, T.SA_TIME_END, E.SA_AIS_OK),
        (3, 1, E.SA_AIS_OK),
        (255, SECOND, E.SA_AIS_ERR_NOT_EXIST),
        (0, SECOND, E.SA_AIS_ERR_NOT_EXIST),  # node 0 is a valid pyclm id: looked up, not refused
        (3, 0, E.SA_AIS_ERR_TIMEOUT),
        (3, -1, E.SA_AIS_ERR_INVALID_PARAM),
    ],
)
@pytest.mark.parametrize("major", [1, 4])
def test_node_get_table(node: FakeNode, major: int, node_id: int, timeout: int, expected: int) -> None:
    client = opened(major)
    out: Any = saClm.SaClmClusterNodeT_4() if major == 4 else saClm.SaClmClusterNodeT()
    get = saClm.saClmClusterNodeGet_4 if major == 4 else saClm.saClmClusterNodeGet
    rc = get(client.handle, node_id, timeout, out)
    assert rc == expected, E.whatis(rc)
    assert get(client.handle, node_id, timeout, None) == E.SA_AIS_ERR_INVALID_PARAM
    if rc == E.SA_AIS_OK:
        assert out.nodeId == (1 if node_id == LOCAL_ID else node_id)


def test_node_get_fills_every_field(node: FakeNode) -> None:
    client = opened(4)
    out = saClm.SaClmClusterNodeT_4()
    assert saClm.saClmClusterNodeGet_4(client.handle, 2, SECOND, out) == E.SA_AIS_OK
    assert Entry.of(out) == Entry(
        node_id=2,
        change=None,
        member=saAis.eSaBoolT.SA_TRUE,
        name="n2",
        address="10.0.0.2:7000",
        family=saClm.eSaClmNodeAddressFamilyT.SA_CLM_AF_INET,
        boot=1002,
        initial=1,
    )
    assert out.executionEnvironment.length == 0


@pytest.mark.parametrize(("major", "function"), [(1, "saClmClusterNodeGet_4"), (4, "saClmClusterNodeGet")])
def test_node_get_of_the_other_version_is_version(node: FakeNode, major: int, function: str) -> None:
    client = opened(major)
    out = saClm.SaClmClusterNodeT_4() if function.endswith("_4") else saClm.SaClmClusterNodeT()
    assert getattr(saClm, function)(client.handle, LOCAL_ID, SECOND, out) == E.SA_AIS_ERR_VERSION


def test_node_get_on_a_node_outside_the_membership(node: FakeNode) -> None:
    b04 = opened(4)
    b01 = opened(1)
    node.apply(change(1, [], left=[1], local=1))
    assert saClm.saClmClusterNodeGet_4(b04.handle, LOCAL_ID, SECOND, saClm.SaClmClusterNodeT_4()) == (
        E.SA_AIS_ERR_UNAVAILABLE
    )
    assert saClm.saClmClusterNodeGetAsync(b04.handle, 1, LOCAL_ID) == E.SA_AIS_ERR_UNAVAILABLE
    out = saClm.SaClmClusterNodeT()
    assert saClm.saClmClusterNodeGet(b01.handle, LOCAL_ID, SECOND, out) == E.SA_AIS_OK
    assert (out.nodeId, out.member) == (1, saAis.eSaBoolT.SA_FALSE)  # B.01: read the member field
    assert saClm.saClmClusterNodeGet(b01.handle, 2, SECOND, out) == E.SA_AIS_ERR_NOT_EXIST
    assert saClm.saClmClusterNodeGetAsync(b01.handle, 1, 2) == E.SA_AIS_OK
    assert b01.dispatch() == E.SA_AIS_OK
    assert [(c.invocation, c.error) for c in b01.node_gets] == [(1, E.SA_AIS_ERR_INVALID_PARAM)]


@pytest.mark.parametrize(("major", "missing"), [(1, E.SA_AIS_ERR_INVALID_PARAM), (4, E.SA_AIS_ERR_NOT_EXIST)])
def test_node_get_async_answers_in_the_callback(node: FakeNode, major: int, missing: int) -> None:
    client = opened(major)
    assert saClm.saClmClusterNodeGetAsync(client.handle, 0, 2) == E.SA_AIS_ERR_INVALID_PARAM
    assert saClm.saClmClusterNodeGetAsync(0, 0, 2) == E.SA_AIS_ERR_INVALID_PARAM  # before the handle
    for invocation, node_id in ((7, LOCAL_ID), (7, 3), (8, 255)):  # an invocation may repeat
        assert saClm.saClmClusterNodeGetAsync(client.handle, invocation, node_id) == E.SA_AIS_OK
    assert readable(client.fd)
    assert client.dispatch() == E.SA_AIS_OK
    assert [(c.invocation, c.node.node_id, c.error) for c in client.node_gets] == [
        (7, 1, E.SA_AIS_OK),
        (7, 3, E.SA_AIS_OK),
        (8, 0, missing),  # the node structure is all zero on an error, never NULL
    ]
    assert client.node_gets[1].node.name == "n3"


# ---------------------------------------------------------------------- three-step tracking


def step_change() -> MembershipChange:
    """Node 3 is about to leave: the view number is still the current one."""
    return change(1, [1, 2], shutdown=[3])


def test_a_step_round_asks_only_the_handles_that_track_that_step(node: FakeNode) -> None:
    validate = opened(4)
    start = opened(4)
    both = opened(4)
    plain = opened(4)
    old = opened(1)
    assert validate.track(T.SA_TRACK_CHANGES_ONLY | T.SA_TRACK_VALIDATE_STEP) == E.SA_AIS_OK
    assert start.track(T.SA_TRACK_CHANGES | T.SA_TRACK_START_STEP) == E.SA_AIS_OK
    assert both.track(T.SA_TRACK_CHANGES_ONLY | T.SA_TRACK_START_STEP | T.SA_TRACK_VALIDATE_STEP) == E.SA_AIS_OK
    assert plain.track(T.SA_TRACK_CHANGES_ONLY) == E.SA_AIS_OK
    assert old.track(T.SA_TRACK_CHANGES_ONLY) == E.SA_AIS_OK
    round_ = _api.start_step(node, ChangeStep.VALIDATE, step_change(), root_cause="n3")
    assert round_.outstanding == {validate.id, both.id}
    for client in (validate, start, both, plain, old):
        assert client.dispatch() == E.SA_AIS_OK
    for client in (validate, both):
        [call] = client.tracks
        assert call.step == eSaClmChangeStepT.SA_CLM_CHANGE_VALIDATE and call.invocation != 0
        assert (call.time_supervision, call.root_cause, call.view_number) == (UNKNOWN_TIME, "n3", 1)
        assert call.changes == [(3, C.SA_CLM_NODE_SHUTDOWN)]
    assert validate.tracks[0].invocation != both.tracks[0].invocation
    assert start.tracks == [] and plain.tracks == [] and old.tracks == []
    start_round = _api.start_step(node, ChangeStep.START, step_change(), time_supervision=5 * SECOND)
    assert start_round.outstanding == {start.id, both.id}
    assert start.dispatch() == E.SA_AIS_OK
    [call] = start.tracks
    assert (call.step, call.time_supervision) == (eSaClmChangeStepT.SA_CLM_CHANGE_START, 5 * SECOND)
    assert len(call.entries) == 3  # CHANGES: the members and the leaving node


def test_validate_answered_ok_by_all_completes_the_round(node: FakeNode) -> None:
    clients = [opened(4) for _ in range(2)]
    for client in clients:
        assert client.track(T.SA_TRACK_CHANGES_ONLY | T.SA_TRACK_VALIDATE_STEP) == E.SA_AIS_OK
    answered: list[int] = []
    round_ = _api.start_step(node, ChangeStep.VALIDATE, step_change(), on_answer=lambda r: answered.append(1))
    assert not round_.complete
    for client in clients:
        client.in_track = lambda call, h=client.handle: saClm.saClmResponse_4(
            h, call.invocation, eSaClmResponseT.SA_CLM_CALLBACK_RESPONSE_OK
        )
        assert client.dispatch() == E.SA_AIS_OK
    assert round_.complete and not round_.rejected and len(answered) == 2
    assert dict(round_.answers) == {c.id: Response.OK for c in clients}
    assert round_.wait(0)
    round_.close()
    # Answering again, or after the round, is not allowed.
    invocation = clients[0].tracks[0].invocation
    assert saClm.saClmResponse_4(clients[0].handle, invocation, 1) == E.SA_AIS_ERR_INVALID_PARAM


def test_a_rejected_validate_is_aborted(node: FakeNode) -> None:
    refuser = opened(4)
    other = opened(4)
    for client in (refuser, other):
        assert client.track(T.SA_TRACK_CHANGES | T.SA_TRACK_VALIDATE_STEP) == E.SA_AIS_OK
        assert client.dispatch() == E.SA_AIS_OK
    round_ = _api.start_step(node, ChangeStep.VALIDATE, step_change())
    for client in (refuser, other):
        assert client.dispatch() == E.SA_AIS_OK
    rejected = eSaClmResponseT.SA_CLM_CALLBACK_RESPONSE_REJECTED
    assert saClm.saClmResponse_4(refuser.handle, refuser.tracks[0].invocation, rejected) == E.SA_AIS_OK
    assert round_.rejected and round_.outstanding == {other.id}
    _api.abort_step(round_)
    assert round_.closed
    # The other one's answer comes too late: the round is over.
    assert saClm.saClmResponse_4(other.handle, other.tracks[0].invocation, 1) == E.SA_AIS_ERR_INVALID_PARAM
    for client in (refuser, other):
        assert client.dispatch() == E.SA_AIS_OK
        assert [c.step for c in client.tracks] == [
            eSaClmChangeStepT.SA_CLM_CHANGE_VALIDATE,
            eSaClmChangeStepT.SA_CLM_CHANGE_ABORTED,
        ]
        assert client.tracks[1].invocation == 0
        assert client.tracks[1].changes == client.tracks[0].changes
    with pytest.raises(UsageError):
        _api.abort_step(_api.start_step(node, ChangeStep.START, step_change()))


def test_start_accepts_ok_and_error_but_not_rejected(node: FakeNode) -> None:
    clients = [opened(4) for _ in range(2)]
    for client in clients:
        assert client.track(T.SA_TRACK_CHANGES_ONLY | T.SA_TRACK_START_STEP) == E.SA_AIS_OK
    round_ = _api.start_step(node, ChangeStep.START, step_change())
    for client in clients:
        assert client.dispatch() == E.SA_AIS_OK
    first, second = (c.tracks[0].invocation for c in clients)
    R = eSaClmResponseT
    assert saClm.saClmResponse_4(clients[0].handle, first, R.SA_CLM_CALLBACK_RESPONSE_REJECTED) == (
        E.SA_AIS_ERR_INVALID_PARAM
    )
    assert saClm.saClmResponse_4(clients[0].handle, second, R.SA_CLM_CALLBACK_RESPONSE_OK) == (
        E.SA_AIS_ERR_INVALID_PARAM  # another handle's invocation
    )
    assert saClm.saClmResponse_4(clients[0].handle, first, R.SA_CLM_CALLBACK_RESPONSE_ERROR) == E.SA_AIS_OK
    assert saClm.saClmResponse_4(clients[0].handle, first, R.SA_CLM_CALLBACK_RESPONSE_OK) == (
        E.SA_AIS_ERR_INVALID_PARAM  # answered already
    )
    assert saClm.saClmResponse_4(clients[1].handle, second, R.SA_CLM_CALLBACK_RESPONSE_OK) == E.SA_AIS_OK
    assert dict(round_.close()) == {clients[0].id: Response.ERROR, clients[1].id: Response.OK}


def test_response_argument_rules(node: FakeNode) -> None:
    b04 = opened(4)
    b01 = opened(1)
    R = eSaClmResponseT
    assert saClm.saClmResponse_4(b04.handle, 0, R.SA_CLM_CALLBACK_RESPONSE_OK) == E.SA_AIS_ERR_INVALID_PARAM
    for response in (0, 4, 10):
        assert saClm.saClmResponse_4(b04.handle, 100, response) == E.SA_AIS_ERR_INVALID_PARAM
    assert saClm.saClmResponse_4(0, 0, R.SA_CLM_CALLBACK_RESPONSE_OK) == E.SA_AIS_ERR_INVALID_PARAM  # before the handle
    assert saClm.saClmResponse_4(-1, 200, R.SA_CLM_CALLBACK_RESPONSE_REJECTED) == E.SA_AIS_ERR_BAD_HANDLE
    assert saClm.saClmResponse_4(b04.handle, 100, R.SA_CLM_CALLBACK_RESPONSE_OK) == E.SA_AIS_ERR_INVALID_PARAM
    assert saClm.saClmResponse_4(b01.handle, 100, R.SA_CLM_CALLBACK_RESPONSE_OK) == E.SA_AIS_ERR_VERSION
    # A COMPLETED callback needs no answer: its invocation is 0, and no other number is owed.
    assert b04.track(T.SA_TRACK_CURRENT) == E.SA_AIS_OK
    assert b04.dispatch() == E.SA_AIS_OK
    assert b04.tracks[0].invocation == 0


def test_track_stop_and_finalize_withdraw_the_answers_a_handle_owes(node: FakeNode) -> None:
    stopper = opened(4)
    finalizer = opened(4)
    for client in (stopper, finalizer):
        assert client.track(T.SA_TRACK_CHANGES_ONLY | T.SA_TRACK_START_STEP) == E.SA_AIS_OK
    round_ = _api.start_step(node, ChangeStep.START, step_change())
    assert round_.outstanding == {stopper.id, finalizer.id}
    invocation = 0

    def stop(call: TrackCall) -> None:
        nonlocal invocation
        invocation = call.invocation
        assert saClm.saClmClusterTrackStop(stopper.handle) == E.SA_AIS_OK

    stopper.in_track = stop
    assert stopper.dispatch() == E.SA_AIS_OK
    assert saClm.saClmResponse_4(stopper.handle, invocation, 1) == E.SA_AIS_ERR_INVALID_PARAM
    assert round_.outstanding == {finalizer.id}
    assert saClm.saClmFinalize(finalizer.handle) == E.SA_AIS_OK
    assert round_.complete and round_.withdrawn == {stopper.id, finalizer.id} and not round_.answers
    assert not stopper.errors


def test_a_round_can_be_waited_for_from_another_thread(node: FakeNode) -> None:
    client = opened(4)
    assert client.track(T.SA_TRACK_CHANGES_ONLY | T.SA_TRACK_VALIDATE_STEP) == E.SA_AIS_OK
    round_ = _api.start_step(node, ChangeStep.VALIDATE, step_change())
    assert not round_.wait(0.01)
    finished: list[bool] = []
    waiter = threading.Thread(target=lambda: finished.append(round_.wait(TIMEOUT)), name="round-waiter")
    waiter.start()
    client.in_track = lambda call: saClm.saClmResponse_4(client.handle, call.invocation, 1)
    assert client.dispatch() == E.SA_AIS_OK
    join(waiter)
    assert finished == [True] and dict(round_.answers) == {client.id: Response.OK}


def test_on_answer_runs_after_the_facades_lock_is_released(node: FakeNode) -> None:
    client = opened(4)
    other = opened(4)
    assert client.track(T.SA_TRACK_CHANGES_ONLY | T.SA_TRACK_START_STEP) == E.SA_AIS_OK
    codes: list[int] = []

    def on_answer(round_: Any) -> None:
        # Another thread needs the facade's lock: this would hang if the lock were held here.
        helper = threading.Thread(target=lambda: codes.append(saClm.saClmClusterNodeGetAsync(other.handle, 1, 2)))
        helper.start()
        join(helper)

    _api.start_step(node, ChangeStep.START, step_change(), on_answer=on_answer)
    client.in_track = lambda call: saClm.saClmResponse_4(client.handle, call.invocation, 1)
    assert client.dispatch() == E.SA_AIS_OK
    assert codes == [E.SA_AIS_OK] and not client.errors


def test_a_step_for_a_node_the_facade_does_not_speak_for_is_complete_at_once(node: FakeNode) -> None:
    client = opened(4)
    assert client.track(T.SA_TRACK_CHANGES_ONLY | T.SA_TRACK_VALIDATE_STEP) == E.SA_AIS_OK
    round_ = _api.start_step(FakeNode(2), ChangeStep.VALIDATE, step_change())
    assert round_.complete and not round_.asked
    assert not readable(client.fd)


def test_a_local_tracker_is_asked_only_about_its_own_node(node: FakeNode) -> None:
    client = opened(4)
    assert client.track(T.SA_TRACK_CHANGES_ONLY | T.SA_TRACK_LOCAL | T.SA_TRACK_START_STEP) == E.SA_AIS_OK
    assert _api.start_step(node, ChangeStep.START, step_change()).complete  # node 3 leaves: not ours
    round_ = _api.start_step(node, ChangeStep.START, change(1, [2, 3], shutdown=[1]))
    assert round_.outstanding == {client.id}


# ---------------------------------------------------------------------- bindings and stale handles


def test_unbind_makes_handles_stale_after_their_pending_callbacks(node: FakeNode) -> None:
    client = opened(4)
    assert saClm.saClmClusterNodeGetAsync(client.handle, 1, 2) == E.SA_AIS_OK
    assert client.track(T.SA_TRACK_CHANGES_ONLY) == E.SA_AIS_OK
    fd = client.fd
    pyclm.saf.unbind()
    assert node.listeners == 0
    assert readable(fd)
    assert saClm.saClmClusterTrack_4(client.handle, T.SA_TRACK_CURRENT, None) == E.SA_AIS_ERR_BAD_HANDLE
    assert client.dispatch(D.SA_DISPATCH_ONE) == E.SA_AIS_OK  # the answer that was pending
    assert [c.invocation for c in client.node_gets] == [1]
    assert client.dispatch(D.SA_DISPATCH_ONE) == E.SA_AIS_ERR_BAD_HANDLE
    assert client.dispatch(D.SA_DISPATCH_ONE) == E.SA_AIS_ERR_BAD_HANDLE
    assert saClm.saClmFinalize(client.handle) == E.SA_AIS_ERR_BAD_HANDLE  # released by the dispatch


def test_a_stale_handle_can_be_finalized(node: FakeNode) -> None:
    client = opened(1)
    pyclm.saf.unbind()
    assert saClm.saClmSelectionObjectGet(client.handle, saAis.SaSelectionObjectT()) == E.SA_AIS_ERR_BAD_HANDLE
    assert saClm.saClmFinalize(client.handle) == E.SA_AIS_OK
    assert saClm.saClmFinalize(client.handle) == E.SA_AIS_ERR_BAD_HANDLE


@pytest.mark.parametrize("how", ["leave", "abort"])
def test_the_nodes_last_change_is_delivered_then_its_handles_go_stale(node: FakeNode, how: str) -> None:
    b04 = opened(4)
    b01 = opened(1)
    fds = {}
    for client in (b04, b01):
        assert client.track(T.SA_TRACK_CHANGES_ONLY) == E.SA_AIS_OK
        fds[client.id] = client.fd
    if how == "leave":
        node.apply(change(1, [], shutdown=[1], local=1))  # a graceful leave, reported while running
    else:
        node.running = False  # an abort is reported LEFT once the node no longer runs
        node.apply(change(1, [], left=[1], local=1))
        node.stopped = True  # ... and the node says it stopped only after that
    gone = C.SA_CLM_NODE_SHUTDOWN if how == "leave" else C.SA_CLM_NODE_LEFT
    for client, expected in ((b04, gone), (b01, C.SA_CLM_NODE_LEFT)):
        assert readable(fds[client.id])
        assert client.dispatch() == E.SA_AIS_ERR_BAD_HANDLE
        assert [c.changes for c in client.tracks] == [[(1, expected)]]
    # The node left: it never runs again.
    assert saClm.saClmInitialize_4(saClm.SaClmHandleT(), None, SaVersionT("B", 4, 1)) == E.SA_AIS_ERR_UNAVAILABLE
    assert saClm.saClmInitialize(saClm.SaClmHandleT(), None, SaVersionT("B", 1, 1)) == E.SA_AIS_ERR_TRY_AGAIN


def test_a_call_while_the_node_hands_out_its_last_change_does_not_lose_it(node: FakeNode) -> None:
    # The node no longer runs but has not said it stopped: its last change is on the way.
    b04, b01 = opened(4), opened(1)
    for client in (b04, b01):
        assert client.track(T.SA_TRACK_CHANGES_ONLY) == E.SA_AIS_OK
    node.running = False
    for client in (b04, b01):  # every call still works: the handle is open
        assert client.fd >= 0
        assert saClm.saClmClusterNodeGetAsync(client.handle, 1, 2) == E.SA_AIS_OK
        assert client.dispatch() == E.SA_AIS_OK
    node.apply(change(1, [], left=[1], local=1))
    node.stopped = True
    for client in (b04, b01):
        assert client.dispatch() == E.SA_AIS_ERR_BAD_HANDLE  # after the last change
        assert [c.changes for c in client.tracks] == [[(1, C.SA_CLM_NODE_LEFT)]]
        assert len(client.node_gets) == 1


def test_a_node_that_stopped_silently_is_found_out_at_the_next_call(node: FakeNode) -> None:
    client = opened(4)
    fd = client.fd
    node.running = False
    node.stopped = True  # with no last change: the node was not a member, say
    assert saClm.saClmClusterNodeGetAsync(client.handle, 1, 2) == E.SA_AIS_ERR_BAD_HANDLE
    assert readable(fd)
    assert client.dispatch() == E.SA_AIS_ERR_BAD_HANDLE


def test_binding_another_node_ends_the_previous_binding(node: FakeNode) -> None:
    client = opened(4)
    assert pyclm.saf.bind(node) is pyclm.saf.bind(node)  # the same node: the same binding
    other = FakeNode(7)
    binding = pyclm.saf.bind(other)
    try:
        assert node.listeners == 0 and other.listeners == 1
        assert client.dispatch() == E.SA_AIS_ERR_BAD_HANDLE
        fresh = opened(4)
        out = saClm.SaClmClusterNodeT_4()
        node_get = saClm.saClmClusterNodeGet_4(fresh.handle, LOCAL_ID, SECOND, out)
        assert node_get == E.SA_AIS_ERR_UNAVAILABLE  # node 7 has not joined anything
    finally:
        cleanup_handles()
        binding.close()
    assert other.listeners == 0
    with pytest.raises(TypeError, match=r"pyclm\.Node"):
        pyclm.saf.bind(object())  # type: ignore[arg-type]


# ---------------------------------------------------------------------- event loops


@pytest.mark.asyncio
async def test_attach_asyncio_runs_callbacks_on_the_loop(node: FakeNode) -> None:
    client = opened(4)
    assert client.track(T.SA_TRACK_CHANGES_ONLY) == E.SA_AIS_OK
    reader = pyclm.saf.attach_asyncio(client.handle)
    done = asyncio.Event()
    client.in_node_get = lambda call: done.set()
    node.apply(change(2, [1, 2], left=[3]))
    assert saClm.saClmClusterNodeGetAsync(client.handle, 4, 2) == E.SA_AIS_OK
    await asyncio.wait_for(done.wait(), TIMEOUT)
    assert [c.changes for c in client.tracks] == [[(3, C.SA_CLM_NODE_LEFT)]]
    assert {c.thread for c in client.tracks} | {c.thread for c in client.node_gets} == {threading.get_ident()}
    assert saClm.saClmFinalize(client.handle) == E.SA_AIS_OK
    for _ in range(100):
        if not reader.attached:
            break
        await asyncio.sleep(0)
    assert not reader.attached  # detached itself once the handle was finalized
    with pytest.raises(UsageError, match="not an open CLM handle"):
        pyclm.saf.attach_asyncio(client.handle)


@pytest.mark.anyio
async def test_serve_anyio_runs_callbacks_in_its_task_until_finalize(node: FakeNode) -> None:
    client = opened(4)
    assert client.track(T.SA_TRACK_CURRENT | T.SA_TRACK_CHANGES) == E.SA_AIS_OK
    seen = anyio.Event()
    client.in_track = lambda call: seen.set() if len(client.tracks) == 2 else None
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tasks:
            tasks.start_soon(pyclm.saf.serve_anyio, client.handle)
            node.apply(change(2, [1, 2], left=[3]))
            await seen.wait()
            assert saClm.saClmFinalize(client.handle) == E.SA_AIS_OK  # ends serve_anyio
    assert [c.view_number for c in client.tracks] == [1, 2]
    assert {c.thread for c in client.tracks} == {threading.get_ident()}
