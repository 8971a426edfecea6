"""SAF CLM conformance: OpenSAF's apitest catalogue, run against a real in-process cluster.

The suites and case numbers are OpenSAF's (``src/clm/apitest``, SAF reference §4.3):
1 initialize, 2 selection object and finalize, 3 dispatch, 5 node get, 6 node get
async, 7 track, 8 response, 9 track stop, 10 notification free.  Where pyclm's choice
differs from what OpenSAF's apitest expects, the case says so and docs/saf.md gives the
reason.  Cases 21-28 of suite 7 lock, unlock and shut down a node through IMM; pyclm
has no administrative operations, so here the cluster itself changes: a node leaves,
crashes, restarts, or ends up in a minority partition.

The cluster (3 or 5 nodes on the memory transport) runs its event loop in a background
thread, as it would under a synchronous pyosaf program; the tests are that program:
they call ``saClm*``, ``select()`` on the selection object and dispatch.  Every return
code goes through a check that it is one the function may return to a handle of that
version (reference §1.3), and so does every callback's content.

Every wait has a timeout; every thread is joined with one.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import ctypes
import functools
import select
import threading
import time
from collections.abc import AsyncIterator, Callable, Iterator
from pathlib import Path
from typing import Any

import anyio
import anyio.abc
import anyio.from_thread
import attrs
import pytest

import pyclm.saf
from _doc_examples import run_example
from pyclm import LeaveRejected, MembershipConfig, Node
from pyclm.clm import MembershipChange
from pyclm.saf import _api, saAis, saClm
from pyclm.saf._steps import ChangeStep, Response
from pyclm.saf.saAis import SaVersionT, eSaAisErrorT, eSaDispatchFlagsT
from pyclm.saf.saClm import eSaClmChangeStepT, eSaClmClusterChangesT, eSaClmResponseT
from pyclm.transports import MemoryNetwork
from test_runtime import FAST, QUICK, majority, poll_until
from test_saf_api import (
    UNKNOWN_TIME,
    Client,
    TrackCall,
    cleanup_handles,
    current_buffer,
    entries_of,
    join,
    readable,
)

DOC = Path(__file__).resolve().parent.parent / "docs" / "saf.md"

E = eSaAisErrorT
D = eSaDispatchFlagsT
C = eSaClmClusterChangesT
R = eSaClmResponseT
T = saAis.saAis
LOCAL_ID = saClm.saClm.SA_CLM_LOCAL_NODE_ID
SECOND = T.SA_TIME_ONE_SECOND
LIMIT = 10.0  # seconds any one cluster condition may take: it only bounds a hang
SETTLE = 2.0  # the settle timeout where the bound node stays in the majority: no spurious LEFT
QUICK_SETTLE = 0.5  # where the bound node itself ends up outside the membership


# ---------------------------------------------------------------------- the return codes allowed (reference §1.3)

_COMMON = {E.SA_AIS_OK, E.SA_AIS_ERR_LIBRARY, E.SA_AIS_ERR_TIMEOUT, E.SA_AIS_ERR_TRY_AGAIN}
_RESOURCES = {E.SA_AIS_ERR_NO_MEMORY, E.SA_AIS_ERR_NO_RESOURCES}
_TRACK = _COMMON | _RESOURCES | {E.SA_AIS_ERR_BAD_HANDLE, E.SA_AIS_ERR_INVALID_PARAM, E.SA_AIS_ERR_INIT}
_TRACK |= {E.SA_AIS_ERR_BAD_FLAGS, E.SA_AIS_ERR_NO_SPACE, E.SA_AIS_ERR_VERSION}
_NODE_GET = _COMMON | _RESOURCES | {E.SA_AIS_ERR_BAD_HANDLE, E.SA_AIS_ERR_INVALID_PARAM, E.SA_AIS_ERR_NOT_EXIST}
_FREE = {E.SA_AIS_OK, E.SA_AIS_ERR_LIBRARY, E.SA_AIS_ERR_BAD_HANDLE, E.SA_AIS_ERR_INVALID_PARAM}
_FREE |= {E.SA_AIS_ERR_NO_MEMORY, E.SA_AIS_ERR_VERSION}
UNAVAILABLE = {E.SA_AIS_ERR_UNAVAILABLE}

#: function -> (codes for any handle, codes B.04 handles may get on top)
ALLOWED: dict[str, tuple[set[int], set[int]]] = {
    "saClmInitialize": (_COMMON | _RESOURCES | {E.SA_AIS_ERR_INVALID_PARAM, E.SA_AIS_ERR_VERSION}, set()),
    "saClmInitialize_4": (_COMMON | _RESOURCES | {E.SA_AIS_ERR_INVALID_PARAM, E.SA_AIS_ERR_VERSION}, UNAVAILABLE),
    "saClmSelectionObjectGet": (
        _COMMON | _RESOURCES | {E.SA_AIS_ERR_BAD_HANDLE, E.SA_AIS_ERR_INVALID_PARAM},
        UNAVAILABLE,
    ),
    "saClmDispatch": (_COMMON | {E.SA_AIS_ERR_BAD_HANDLE, E.SA_AIS_ERR_INVALID_PARAM}, UNAVAILABLE),
    "saClmFinalize": (_COMMON | {E.SA_AIS_ERR_BAD_HANDLE}, set()),
    "saClmClusterTrack": (_TRACK, UNAVAILABLE),
    "saClmClusterTrack_4": (_TRACK, UNAVAILABLE),
    "saClmClusterTrackStop": (_COMMON | _RESOURCES | {E.SA_AIS_ERR_BAD_HANDLE, E.SA_AIS_ERR_NOT_EXIST}, UNAVAILABLE),
    "saClmClusterNotificationFree": (_FREE, UNAVAILABLE),
    "saClmClusterNotificationFree_4": (_FREE, UNAVAILABLE),
    "saClmClusterNodeGet": (_NODE_GET | {E.SA_AIS_ERR_VERSION}, UNAVAILABLE),
    "saClmClusterNodeGet_4": (_NODE_GET | {E.SA_AIS_ERR_VERSION}, UNAVAILABLE),
    "saClmClusterNodeGetAsync": (
        _COMMON | _RESOURCES | {E.SA_AIS_ERR_BAD_HANDLE, E.SA_AIS_ERR_INVALID_PARAM, E.SA_AIS_ERR_INIT},
        UNAVAILABLE | {E.SA_AIS_ERR_NOT_EXIST},
    ),
    "saClmResponse_4": (
        _COMMON | _RESOURCES | {E.SA_AIS_ERR_BAD_HANDLE, E.SA_AIS_ERR_INVALID_PARAM, E.SA_AIS_ERR_VERSION},
        UNAVAILABLE,
    ),
}

#: The changes and callback errors a handle of each version may see (B.02 tags included).
CHANGES_ALLOWED = {
    1: {C.SA_CLM_NODE_NO_CHANGE, C.SA_CLM_NODE_JOINED, C.SA_CLM_NODE_LEFT, C.SA_CLM_NODE_RECONFIGURED},
    4: {C.SA_CLM_NODE_NO_CHANGE, C.SA_CLM_NODE_JOINED, C.SA_CLM_NODE_LEFT, C.SA_CLM_NODE_RECONFIGURED}
    | {C.SA_CLM_NODE_UNLOCK, C.SA_CLM_NODE_SHUTDOWN},
}
NODE_GET_ERRORS = {
    1: {E.SA_AIS_OK, E.SA_AIS_ERR_LIBRARY, E.SA_AIS_ERR_TIMEOUT, E.SA_AIS_ERR_INVALID_PARAM} | _RESOURCES,
    4: {E.SA_AIS_OK, E.SA_AIS_ERR_LIBRARY, E.SA_AIS_ERR_TIMEOUT, E.SA_AIS_ERR_INVALID_PARAM}
    | _RESOURCES
    | {E.SA_AIS_ERR_BAD_HANDLE, E.SA_AIS_ERR_NOT_EXIST, E.SA_AIS_ERR_UNAVAILABLE},
}

clients_made: list[Client] = []


def _checked(name: str, function: Callable[..., int]) -> Callable[..., int]:
    base, b04 = ALLOWED[name]

    def call(*args: Any) -> int:
        if name.startswith("saClmInitialize"):
            major: int | None = 4 if name.endswith("_4") else 1
        else:
            handle = args[0]
            value = handle.value if isinstance(handle, ctypes.c_ulonglong) else handle
            record = _api._handles.get(value % 2**64) if isinstance(value, int) else None
            major = record.major if record is not None else None
        rc = function(*args)
        allowed = base | b04 if major is not None and major >= 4 else base
        assert rc in allowed, f"{name} returned {E.whatis(rc)} to a B.0{major} handle"
        return rc

    return call


@pytest.fixture(autouse=True)
def codes_are_checked(monkeypatch: pytest.MonkeyPatch) -> Iterator[None]:
    """Every saClm call returns a code its function may return to the handle's version;
    every callback any client got is one its version knows.  Handles are finalized after."""
    for name in ALLOWED:
        monkeypatch.setattr(saClm, name, _checked(name, getattr(saClm, name)))
    clients_made.clear()
    yield
    for client in clients_made:
        major = 4 if client.major >= 4 else 1
        for call in client.tracks:
            assert {e.change for e in call.entries} <= CHANGES_ALLOWED[major], call
            assert call.error == E.SA_AIS_OK
        for answer in client.node_gets:
            assert answer.error in NODE_GET_ERRORS[major], answer
        assert not client.errors, client.errors
    cleanup_handles()


def client(major: int = 4, **kwargs: bool) -> Client:
    made = Client(major, **kwargs)
    assert made.rc == E.SA_AIS_OK, E.whatis(made.rc)
    clients_made.append(made)
    return made


def pump(client: Client, fd: int, done: Callable[[], bool], what: str) -> None:
    """Wait on the selection object and dispatch until ``done()``, for at most LIMIT seconds."""
    deadline = time.monotonic() + LIMIT
    while not done():
        remaining = deadline - time.monotonic()
        assert remaining > 0, f"timed out waiting for {what}; got {client.tracks} {client.node_gets}"
        if readable(fd, min(remaining, 0.5)):
            assert client.dispatch() == E.SA_AIS_OK


def has(client: Client, *wanted: tuple[int, int]) -> Callable[[], bool]:
    """True once one callback of ``client`` showed all of ``wanted`` (node id, change)."""
    return lambda: any(set(wanted) <= set(call.changes) for call in client.tracks)


def callbacks(client: Client, count: int) -> Callable[[], bool]:
    """True once ``client`` got ``count`` track callbacks."""
    return lambda: len(client.tracks) >= count


def callback_with(client: Client, *wanted: tuple[int, int]) -> TrackCall:
    return next(call for call in client.tracks if set(wanted) <= set(call.changes))


# ---------------------------------------------------------------------- the cluster


class ClusterRun:
    """Nodes on one MemoryNetwork, each served by its own task; ``run()`` is an async context."""

    def __init__(self, node_ids: list[int], *, settle: float = SETTLE, **node_options: Any) -> None:
        self.ids = node_ids
        self.settle = settle
        self.node_options = node_options  # more Node keyword arguments (the leave's timeouts)
        self.nodes: dict[int, Node] = {}
        self.net: MemoryNetwork | None = None
        self._tasks: anyio.abc.TaskGroup | None = None
        self._stop: anyio.Event | None = None

    @contextlib.asynccontextmanager
    async def run(self) -> AsyncIterator[ClusterRun]:
        async with MemoryNetwork(QUICK, seed=1) as net, anyio.create_task_group() as tasks:
            self.net, self._tasks, self._stop = net, tasks, anyio.Event()
            try:
                for node_id in self.ids:
                    await self.start(node_id)
                await self.until(lambda: self.formed(self.ids), f"{self.ids} are all members")
                yield self
            finally:
                self._stop.set()

    async def start(self, node_id: int) -> Node:
        """Start (or start again) ``node_id``; returns once it runs."""
        assert self._tasks is not None
        node: Node = await self._tasks.start(self._serve, node_id)
        return node

    async def _serve(self, node_id: int, *, task_status: anyio.abc.TaskStatus[Node]) -> None:
        assert self.net is not None and self._stop is not None
        config = MembershipConfig(node_id=node_id, timing=FAST)
        names = {n: f"n{n}" for n in self.ids}
        node = Node(
            config,
            majority(self.ids),
            self.net.endpoint(node_id),
            names=names,
            settle_timeout=self.settle,
            **self.node_options,
        )
        async with node:
            self.nodes[node_id] = node
            task_status.started(node)
            await self._stop.wait()

    async def abort(self, node_id: int) -> None:
        node = self.nodes[node_id]
        node.abort()
        await self.until(lambda: node.stopped, f"node {node_id} stopped")

    def formed(self, node_ids: list[int]) -> bool:
        """These nodes are members of one membership of exactly them."""
        wanted = sorted(node_ids)
        return all(
            self.nodes[n].running
            and self.nodes[n].is_member
            and [m.node_id for m in self.nodes[n].cluster_members()] == wanted
            for n in node_ids
        )

    async def until(self, condition: Callable[[], bool], what: str) -> None:
        await poll_until(condition, what, self.nodes.values(), limit=LIMIT)


class BackgroundCluster:
    """A :class:`ClusterRun` whose event loop runs in a background thread; methods for the test's thread."""

    def __init__(
        self, node_ids: list[int], *, backend: str = "asyncio", settle: float = SETTLE, **node_options: Any
    ) -> None:
        self.run = ClusterRun(node_ids, settle=settle, **node_options)
        self.backend = backend
        self._stack = contextlib.ExitStack()

    def __enter__(self) -> BackgroundCluster:
        with self._stack as stack:
            self.portal = stack.enter_context(anyio.from_thread.start_blocking_portal(self.backend))
            stack.enter_context(self.portal.wrap_async_context_manager(self.run.run()))
            self._stack = stack.pop_all()
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._stack.close()

    @property
    def nodes(self) -> dict[int, Node]:
        return self.run.nodes

    def partition(self, groups: list[list[int]]) -> None:
        assert self.run.net is not None
        self.portal.call(self.run.net.partition, groups)

    def heal(self) -> None:
        assert self.run.net is not None
        self.portal.call(self.run.net.heal)

    def leave(self, node_id: int, *, validate: bool = True) -> None:
        self.portal.call(functools.partial(self.nodes[node_id].leave, validate=validate))

    def leave_soon(self, node_id: int) -> concurrent.futures.Future[None]:
        """Start a validated leave of ``node_id`` and return at once: the test's thread answers the steps."""
        return self.portal.start_task_soon(self.nodes[node_id].leave)

    def abort(self, node_id: int) -> None:
        self.portal.call(self.run.abort, node_id)

    def start(self, node_id: int) -> Node:
        return self.portal.call(self.run.start, node_id)

    def until(self, condition: Callable[[], bool], what: str) -> None:
        self.portal.call(self.run.until, condition, what)


@pytest.fixture(scope="module")
def cluster3() -> Iterator[BackgroundCluster]:
    with BackgroundCluster([1, 2, 3]) as cluster:
        yield cluster


@pytest.fixture
def catalog(cluster3: BackgroundCluster) -> Iterator[BackgroundCluster]:
    """The shared 3-node cluster, with node 1 bound: for the cases that do not change it."""
    assert cluster3.run.formed([1, 2, 3])
    with pyclm.saf.bind(cluster3.nodes[1]):
        yield cluster3


@pytest.fixture(params=["asyncio", "trio"])
def cluster5(request: pytest.FixtureRequest) -> Iterator[BackgroundCluster]:
    """A fresh 5-node cluster (its loop on asyncio or trio), node 1 bound: for the cases that change it."""
    with BackgroundCluster([1, 2, 3, 4, 5], backend=request.param) as cluster, pyclm.saf.bind(cluster.nodes[1]):
        yield cluster


# ====================================================================== suite 1: life cycle (saClmInitialize)


@pytest.mark.parametrize("major", [1, 4])
def test_saClmInitialize_01_02_ok_and_the_version_is_written_back(catalog: BackgroundCluster, major: int) -> None:
    made = client(major)
    assert made.id != 0
    assert (made.version.releaseCode, made.version.majorVersion, made.version.minorVersion) == (b"B", major, 1)


@pytest.mark.parametrize("function", ["saClmInitialize", "saClmInitialize_4"])
def test_saClmInitialize_03_04_null_handle(catalog: BackgroundCluster, function: str) -> None:
    major = 4 if function.endswith("_4") else 1
    assert getattr(saClm, function)(None, None, SaVersionT("B", major, 1)) == E.SA_AIS_ERR_INVALID_PARAM


@pytest.mark.parametrize("function", ["saClmInitialize", "saClmInitialize_4"])
def test_saClmInitialize_05_06_null_callbacks_are_ok(catalog: BackgroundCluster, function: str) -> None:
    major = 4 if function.endswith("_4") else 1
    handle = saClm.SaClmHandleT()
    assert getattr(saClm, function)(handle, None, SaVersionT("B", major, 1)) == E.SA_AIS_OK
    assert saClm.saClmFinalize(handle) == E.SA_AIS_OK


@pytest.mark.parametrize("function", ["saClmInitialize", "saClmInitialize_4"])
def test_saClmInitialize_07_null_callbacks_and_version(catalog: BackgroundCluster, function: str) -> None:
    assert getattr(saClm, function)(saClm.SaClmHandleT(), None, None) == E.SA_AIS_ERR_INVALID_PARAM


@pytest.mark.parametrize(
    ("case", "requested"),
    [
        ("08 uninitialized", SaVersionT()),
        ("09 too high release", SaVersionT("C", 1, 1)),
        ("10 too high major", SaVersionT("B", 5, 1)),
        ("12 B.0.0", SaVersionT("B", 0, 0)),
    ],
    ids=lambda value: value if isinstance(value, str) else "",
)
@pytest.mark.parametrize("function", ["saClmInitialize", "saClmInitialize_4"])
def test_saClmInitialize_08_to_12_unsupported_versions(
    catalog: BackgroundCluster, function: str, case: str, requested: SaVersionT
) -> None:
    handle = saClm.SaClmHandleT()
    version = SaVersionT(requested.releaseCode, requested.majorVersion, requested.minorVersion)
    assert getattr(saClm, function)(handle, None, version) == E.SA_AIS_ERR_VERSION
    assert handle.value == 0
    assert version.releaseCode == b"B" and version.minorVersion == 1  # a supported version written back


@pytest.mark.parametrize("function", ["saClmInitialize", "saClmInitialize_4"])
def test_saClmInitialize_11_lower_minor_is_ok(catalog: BackgroundCluster, function: str) -> None:
    major = 4 if function.endswith("_4") else 1
    handle = saClm.SaClmHandleT()
    version = SaVersionT("B", major, 0)
    assert getattr(saClm, function)(handle, None, version) == E.SA_AIS_OK
    assert version.minorVersion == 1


def test_saClmInitialize_13_multiple_instances(catalog: BackgroundCluster) -> None:
    handles = [saClm.SaClmHandleT() for _ in range(3)]
    for handle in handles:
        assert saClm.saClmInitialize(handle, None, SaVersionT("B", 1, 1)) == E.SA_AIS_OK
    assert len({h.value for h in handles}) == 3
    for handle in handles:
        assert saClm.saClmFinalize(handle) == E.SA_AIS_OK


def test_saClmInitialize_14_no_node_is_try_again_or_unavailable(catalog: BackgroundCluster) -> None:
    # OpenSAF's disabled case 14 expects TRY_AGAIN while its server is down.
    pyclm.saf.unbind()
    handle = saClm.SaClmHandleT()
    assert saClm.saClmInitialize(handle, None, SaVersionT("B", 1, 1)) == E.SA_AIS_ERR_TRY_AGAIN
    assert saClm.saClmInitialize_4(handle, None, SaVersionT("B", 4, 1)) == E.SA_AIS_ERR_UNAVAILABLE
    assert handle.value == 0


# ====================================================================== suite 2: selection object, finalize


def test_saClmSelectionObjectGet_01_ok(catalog: BackgroundCluster) -> None:
    made = client(4)
    selection = saAis.SaSelectionObjectT()
    assert saClm.saClmSelectionObjectGet(made.handle, selection) == E.SA_AIS_OK
    assert selection.value > 2 and not readable(selection.value)


@pytest.mark.parametrize("handle", [0, -1], ids=["02 handle 0", "03 handle -1"])
def test_saClmSelectionObjectGet_02_03_bad_handle(catalog: BackgroundCluster, handle: int) -> None:
    assert saClm.saClmSelectionObjectGet(handle, saAis.SaSelectionObjectT()) == E.SA_AIS_ERR_BAD_HANDLE


def test_saClmSelectionObjectGet_04_null_selection_object(catalog: BackgroundCluster) -> None:
    made = client(4)
    assert saClm.saClmSelectionObjectGet(made.handle, None) == E.SA_AIS_ERR_INVALID_PARAM


@pytest.mark.parametrize("major", [1, 4])
def test_saClmFinalize_01_ok_then_02_03_bad_handle(catalog: BackgroundCluster, major: int) -> None:
    made = client(major)
    fd = made.fd
    assert saClm.saClmFinalize(made.handle) == E.SA_AIS_OK
    with pytest.raises(OSError):
        select.select([fd], [], [], 0)  # the selection object is closed
    assert saClm.saClmFinalize(made.handle) == E.SA_AIS_ERR_BAD_HANDLE
    assert saClm.saClmFinalize(-1) == E.SA_AIS_ERR_BAD_HANDLE


def test_saClmFinalize_a_finalized_handle_is_bad_for_every_call(catalog: BackgroundCluster) -> None:
    made = client(4)
    assert saClm.saClmFinalize(made.handle) == E.SA_AIS_OK
    h = made.handle
    assert saClm.saClmDispatch(h, D.SA_DISPATCH_ALL) == E.SA_AIS_ERR_BAD_HANDLE
    assert saClm.saClmSelectionObjectGet(h, saAis.SaSelectionObjectT()) == E.SA_AIS_ERR_BAD_HANDLE
    assert saClm.saClmClusterTrack_4(h, T.SA_TRACK_CURRENT, None) == E.SA_AIS_ERR_BAD_HANDLE
    assert saClm.saClmClusterTrackStop(h) == E.SA_AIS_ERR_BAD_HANDLE
    assert saClm.saClmClusterNodeGet_4(h, LOCAL_ID, SECOND, saClm.SaClmClusterNodeT_4()) == E.SA_AIS_ERR_BAD_HANDLE
    assert saClm.saClmClusterNodeGetAsync(h, 1, LOCAL_ID) == E.SA_AIS_ERR_BAD_HANDLE
    assert saClm.saClmResponse_4(h, 1, R.SA_CLM_CALLBACK_RESPONSE_OK) == E.SA_AIS_ERR_BAD_HANDLE


# ====================================================================== suite 3: dispatch


@pytest.mark.parametrize("flags", [D.SA_DISPATCH_ALL, D.SA_DISPATCH_ONE], ids=["01 ALL", "04 ONE"])
def test_saClmDispatch_01_04_after_poll(catalog: BackgroundCluster, flags: int) -> None:
    made = client(4)
    assert saClm.saClmClusterNodeGetAsync(made.handle, 100, LOCAL_ID) == E.SA_AIS_OK
    assert readable(made.fd, 1.0)  # poll(fd, 1000 ms) == 1
    assert made.dispatch(flags) == E.SA_AIS_OK
    assert [(c.invocation, c.node.node_id, c.error) for c in made.node_gets] == [(100, 1, E.SA_AIS_OK)]
    assert not readable(made.fd)


def test_saClmDispatch_02_bad_handle(catalog: BackgroundCluster) -> None:
    assert saClm.saClmDispatch(0, D.SA_DISPATCH_ALL) == E.SA_AIS_ERR_BAD_HANDLE


def test_saClmDispatch_03_invalid_flags(catalog: BackgroundCluster) -> None:
    made = client(4)
    assert saClm.saClmDispatch(made.handle, 0) == E.SA_AIS_ERR_INVALID_PARAM


def test_saClmDispatch_one_and_all_return_at_once_with_nothing_pending(catalog: BackgroundCluster) -> None:
    made = client(1)
    start = time.monotonic()
    assert made.dispatch(D.SA_DISPATCH_ONE) == E.SA_AIS_OK
    assert made.dispatch(D.SA_DISPATCH_ALL) == E.SA_AIS_OK
    assert time.monotonic() - start < 1.0


def test_saClmDispatch_blocking_is_ended_by_finalize_from_another_thread(cluster5: BackgroundCluster) -> None:
    made = client(4)
    assert made.track(T.SA_TRACK_CHANGES_ONLY) == E.SA_AIS_OK
    got = threading.Event()
    made.in_track = lambda call: got.set()
    results: list[int] = []
    thread = threading.Thread(target=lambda: results.append(made.dispatch(D.SA_DISPATCH_BLOCKING)), name="blocking")
    thread.start()
    cluster5.leave(5)
    assert got.wait(LIMIT), "no track callback in the blocking dispatcher"
    assert thread.is_alive()
    assert saClm.saClmFinalize(made.handle) == E.SA_AIS_OK
    join(thread)
    assert results == [E.SA_AIS_OK]
    assert [c.changes for c in made.tracks] == [[(5, C.SA_CLM_NODE_SHUTDOWN)]]
    assert {c.thread for c in made.tracks} == {thread.ident}


# ====================================================================== suite 5: saClmClusterNodeGet


def test_saClmClusterNodeGet_01_02_09_the_local_node(catalog: BackgroundCluster) -> None:
    b01, b04 = client(1), client(4)
    node1 = catalog.nodes[1].local_node()
    assert node1 is not None
    cases: list[tuple[Client, Any, Callable[..., int]]] = [
        (b01, saClm.SaClmClusterNodeT(), saClm.saClmClusterNodeGet),
        (b04, saClm.SaClmClusterNodeT_4(), saClm.saClmClusterNodeGet_4),
    ]
    for made, out, get in cases:
        for node_id in (1, LOCAL_ID):
            assert get(made.handle, node_id, 10 * SECOND, out) == E.SA_AIS_OK
            assert (out.nodeId, str(out.nodeName), out.member) == (1, "n1", saAis.eSaBoolT.SA_TRUE)
            assert (out.bootTimestamp, out.initialViewNumber) == (node1.boot_timestamp, node1.initial_view_number)


def test_saClmClusterNodeGet_every_member_as_the_node_reports_it(catalog: BackgroundCluster) -> None:
    made = client(4)
    for member in catalog.nodes[1].cluster_members():
        out = saClm.SaClmClusterNodeT_4()
        assert saClm.saClmClusterNodeGet_4(made.handle, member.node_id, SECOND, out) == E.SA_AIS_OK
        assert (out.nodeId, str(out.nodeName), str(out.nodeAddress)) == (
            member.node_id,
            member.name,
            member.address or "",
        )
        assert (out.bootTimestamp, out.initialViewNumber, out.member) == (
            member.boot_timestamp,
            member.initial_view_number,
            saAis.eSaBoolT.SA_TRUE,
        )
        assert out.nodeAddress.family == saClm.eSaClmNodeAddressFamilyT.SA_CLM_AF_INET
        assert out.executionEnvironment.length == 0


@pytest.mark.parametrize("handle", [0, -1])
def test_saClmClusterNodeGet_03_bad_handle(catalog: BackgroundCluster, handle: int) -> None:
    assert saClm.saClmClusterNodeGet(handle, LOCAL_ID, SECOND, saClm.SaClmClusterNodeT()) == E.SA_AIS_ERR_BAD_HANDLE


def test_saClmClusterNodeGet_04_timeout_0_is_timeout(catalog: BackgroundCluster) -> None:
    # OpenSAF's apitest expects OK (its agent raises short timeouts); openais and SAF Test: TIMEOUT.
    made = client(1)
    assert saClm.saClmClusterNodeGet(made.handle, LOCAL_ID, 0, saClm.SaClmClusterNodeT()) == E.SA_AIS_ERR_TIMEOUT
    assert saClm.saClmClusterNodeGet(made.handle, LOCAL_ID, -5, saClm.SaClmClusterNodeT()) == (
        E.SA_AIS_ERR_INVALID_PARAM
    )


def test_saClmClusterNodeGet_05_null_cluster_node(catalog: BackgroundCluster) -> None:
    b01, b04 = client(1), client(4)
    assert saClm.saClmClusterNodeGet(b01.handle, LOCAL_ID, SECOND, None) == E.SA_AIS_ERR_INVALID_PARAM
    assert saClm.saClmClusterNodeGet_4(b04.handle, LOCAL_ID, SECOND, None) == E.SA_AIS_ERR_INVALID_PARAM


def test_saClmClusterNodeGet_06_unknown_node_id(catalog: BackgroundCluster) -> None:
    b01, b04 = client(1), client(4)
    assert saClm.saClmClusterNodeGet(b01.handle, 255, SECOND, saClm.SaClmClusterNodeT()) == E.SA_AIS_ERR_NOT_EXIST
    assert saClm.saClmClusterNodeGet_4(b04.handle, 255, SECOND, saClm.SaClmClusterNodeT_4()) == (E.SA_AIS_ERR_NOT_EXIST)


def test_saClmClusterNodeGet_08_other_version(catalog: BackgroundCluster) -> None:
    b01, b04 = client(1), client(4)
    assert saClm.saClmClusterNodeGet_4(b01.handle, LOCAL_ID, SECOND, saClm.SaClmClusterNodeT_4()) == (
        E.SA_AIS_ERR_VERSION
    )
    assert saClm.saClmClusterNodeGet(b04.handle, LOCAL_ID, SECOND, saClm.SaClmClusterNodeT()) == E.SA_AIS_ERR_VERSION


# ====================================================================== suite 6: saClmClusterNodeGetAsync


@pytest.mark.parametrize("major", [1, 4])
def test_saClmClusterNodeGetAsync_01_02_08_ok_with_poll_and_dispatch(catalog: BackgroundCluster, major: int) -> None:
    made = client(major)
    assert saClm.saClmClusterNodeGetAsync(made.handle, 1, 2) == E.SA_AIS_OK
    assert saClm.saClmClusterNodeGetAsync(made.handle, 2, LOCAL_ID) == E.SA_AIS_OK
    assert readable(made.fd, 1.0)
    assert made.dispatch() == E.SA_AIS_OK
    assert [(c.invocation, c.node.node_id, c.node.name, c.error) for c in made.node_gets] == [
        (1, 2, "n2", E.SA_AIS_OK),
        (2, 1, "n1", E.SA_AIS_OK),
    ]


@pytest.mark.parametrize("handle", [0, -1])
def test_saClmClusterNodeGetAsync_03_bad_handle(catalog: BackgroundCluster, handle: int) -> None:
    assert saClm.saClmClusterNodeGetAsync(handle, 1, LOCAL_ID) == E.SA_AIS_ERR_BAD_HANDLE


def test_saClmClusterNodeGetAsync_04_invocation_0(catalog: BackgroundCluster) -> None:
    made = client(4)
    assert saClm.saClmClusterNodeGetAsync(made.handle, 0, LOCAL_ID) == E.SA_AIS_ERR_INVALID_PARAM


@pytest.mark.parametrize(("major", "missing"), [(1, E.SA_AIS_ERR_INVALID_PARAM), (4, E.SA_AIS_ERR_NOT_EXIST)])
def test_saClmClusterNodeGetAsync_05_06_node_0_and_an_unknown_node_answer_in_the_callback(
    catalog: BackgroundCluster, major: int, missing: int
) -> None:
    # OpenSAF refuses nodeId 0 (INVALID_PARAM from the call); 0 is a valid pyclm node id.
    made = client(major)
    assert saClm.saClmClusterNodeGetAsync(made.handle, 5, 0) == E.SA_AIS_OK
    assert saClm.saClmClusterNodeGetAsync(made.handle, 6, 255) == E.SA_AIS_OK
    pump(made, made.fd, lambda: len(made.node_gets) == 2, "two NodeGet answers")
    assert [(c.invocation, c.error) for c in made.node_gets] == [(5, missing), (6, missing)]


def test_saClmClusterNodeGetAsync_09_no_callback_is_init(catalog: BackgroundCluster) -> None:
    for major in (1, 4):
        made = client(major, node_get=False)
        assert saClm.saClmClusterNodeGetAsync(made.handle, 1, LOCAL_ID) == E.SA_AIS_ERR_INIT


# ====================================================================== suite 7: saClmClusterTrack


@pytest.mark.parametrize("major", [1, 4], ids=["01 B.01", "02 B.04"])
def test_saClmClusterTrack_01_02_current_into_a_10_item_buffer(catalog: BackgroundCluster, major: int) -> None:
    made = client(major)
    buffer = current_buffer(made, 10)
    assert made.track(T.SA_TRACK_CURRENT, buffer) == E.SA_AIS_OK
    assert buffer.numberOfItems == 3 and buffer.viewNumber == catalog.nodes[1].view_number
    assert [(e.node_id, e.change) for e in entries_of(buffer)] == [(n, C.SA_CLM_NODE_NO_CHANGE) for n in (1, 2, 3)]
    assert saClm.saClmClusterTrackStop(made.handle) == E.SA_AIS_ERR_NOT_EXIST
    if major == 4:
        assert saClm.saClmClusterNotificationFree_4(made.handle, buffer.notification) == E.SA_AIS_OK


def test_saClmClusterTrack_03_04_current_local_into_a_1_item_buffer(catalog: BackgroundCluster) -> None:
    # Case 03 (B.01 with SA_TRACK_LOCAL) is OK in OpenSAF; LOCAL is a B.04 flag: BAD_FLAGS here.
    b01 = client(1)
    assert b01.track(T.SA_TRACK_CURRENT | T.SA_TRACK_LOCAL, current_buffer(b01, 1)) == E.SA_AIS_ERR_BAD_FLAGS
    b04 = client(4)
    buffer = current_buffer(b04, 1)
    assert b04.track(T.SA_TRACK_CURRENT | T.SA_TRACK_LOCAL, buffer) == E.SA_AIS_OK
    assert [(e.node_id, e.change) for e in entries_of(buffer)] == [(1, C.SA_CLM_NODE_NO_CHANGE)]
    assert saClm.saClmClusterTrackStop(b04.handle) == E.SA_AIS_ERR_NOT_EXIST
    assert saClm.saClmClusterNotificationFree_4(b04.handle, buffer.notification) == E.SA_AIS_OK


@pytest.mark.parametrize("function", ["saClmClusterTrack", "saClmClusterTrack_4"], ids=["05", "08"])
def test_saClmClusterTrack_05_08_bad_handle(catalog: BackgroundCluster, function: str) -> None:
    for handle in (0, -1):
        assert getattr(saClm, function)(handle, T.SA_TRACK_CURRENT, None) == E.SA_AIS_ERR_BAD_HANDLE


@pytest.mark.parametrize("major", [1, 4], ids=["06", "09"])
def test_saClmClusterTrack_06_09_null_flags(catalog: BackgroundCluster, major: int) -> None:
    made = client(major)
    assert made.track(0, current_buffer(made, 10)) == E.SA_AIS_ERR_BAD_FLAGS


@pytest.mark.parametrize("major", [1, 4], ids=["07", "10"])
def test_saClmClusterTrack_07_10_null_buffer_and_no_callbacks(catalog: BackgroundCluster, major: int) -> None:
    made = client(major, track=False, node_get=False)
    assert made.track(T.SA_TRACK_CURRENT, None) == E.SA_AIS_ERR_INIT


def test_saClmClusterTrack_11_12_other_version(catalog: BackgroundCluster) -> None:
    b01, b04 = client(1), client(4)
    buffer_4 = saClm.SaClmClusterNotificationBufferT_4()
    assert saClm.saClmClusterTrack_4(b01.handle, T.SA_TRACK_CURRENT, buffer_4) == E.SA_AIS_ERR_VERSION
    buffer = saClm.SaClmClusterNotificationBufferT()
    assert saClm.saClmClusterTrack(b04.handle, T.SA_TRACK_CURRENT, buffer) == E.SA_AIS_ERR_VERSION


@pytest.mark.parametrize("major", [1, 4], ids=["13", "14"])
def test_saClmClusterTrack_13_14_current_with_a_null_buffer(catalog: BackgroundCluster, major: int) -> None:
    made = client(major)
    assert made.track(T.SA_TRACK_CURRENT, None) == E.SA_AIS_OK
    assert readable(made.fd, 1.0)
    assert made.dispatch() == E.SA_AIS_OK
    [call] = made.tracks
    assert call.changes == [(n, C.SA_CLM_NODE_NO_CHANGE) for n in (1, 2, 3)]
    assert (call.view_number, call.members) == (catalog.nodes[1].view_number, 3)
    assert saClm.saClmClusterTrackStop(made.handle) == E.SA_AIS_ERR_NOT_EXIST


@pytest.mark.parametrize(
    ("major", "flags"),
    [
        (4, T.SA_TRACK_START_STEP),  # 15
        (4, T.SA_TRACK_VALIDATE_STEP),  # 16
        (4, T.SA_TRACK_CHANGES | T.SA_TRACK_CHANGES_ONLY),  # 17
        (1, T.SA_TRACK_START_STEP),  # 18
        (1, T.SA_TRACK_VALIDATE_STEP),  # 19
        (1, T.SA_TRACK_CHANGES | T.SA_TRACK_CHANGES_ONLY),  # 20
        (1, 0xFF),
        (4, 0xFF),
    ],
    ids=["15", "16", "17", "18", "19", "20", "B.01 0xFF", "B.04 0xFF"],
)
def test_saClmClusterTrack_15_to_20_bad_flags(catalog: BackgroundCluster, major: int, flags: int) -> None:
    made = client(major)
    assert made.track(flags, None) == E.SA_AIS_ERR_BAD_FLAGS


@pytest.mark.parametrize("major", [1, 4])
def test_saClmClusterTrack_empty_caller_array_and_too_small_array(catalog: BackgroundCluster, major: int) -> None:
    made = client(major)
    assert made.track(T.SA_TRACK_CURRENT, current_buffer(made, 0)) == E.SA_AIS_ERR_INVALID_PARAM
    small = current_buffer(made, 2)
    assert made.track(T.SA_TRACK_CURRENT, small) == E.SA_AIS_ERR_NO_SPACE
    assert small.numberOfItems == 3


@pytest.mark.parametrize("major", [1, 4])
def test_saClmClusterTrack_changes_without_a_callback_is_init(catalog: BackgroundCluster, major: int) -> None:
    made = client(major, track=False)
    assert made.track(T.SA_TRACK_CHANGES, None) == E.SA_AIS_ERR_INIT
    assert made.track(T.SA_TRACK_CHANGES_ONLY, current_buffer(made, None)) == E.SA_AIS_ERR_INIT


def test_saClmClusterTrack_21_27_a_graceful_leave_is_shutdown_to_b04_and_left_to_b01(
    cluster5: BackgroundCluster,
) -> None:
    b04_only, b04_all, b01_only, b01_all = client(4), client(4), client(1), client(1)
    for made, flags in (
        (b04_only, T.SA_TRACK_CHANGES_ONLY),
        (b04_all, T.SA_TRACK_CHANGES),
        (b01_only, T.SA_TRACK_CHANGES_ONLY),
        (b01_all, T.SA_TRACK_CHANGES),
    ):
        assert made.track(flags, None) == E.SA_AIS_OK
    before = cluster5.nodes[1].view_number
    cluster5.leave(5)
    for made, gone in (
        (b04_only, C.SA_CLM_NODE_SHUTDOWN),
        (b04_all, C.SA_CLM_NODE_SHUTDOWN),
        (b01_only, C.SA_CLM_NODE_LEFT),
        (b01_all, C.SA_CLM_NODE_LEFT),
    ):
        pump(made, made.fd, has(made, (5, gone)), f"node 5 {C.whatis(gone)}")
        call = callback_with(made, (5, gone))
        assert call.view_number == cluster5.nodes[1].view_number > before
        assert call.members == 4
        unchanged = [] if made in (b04_only, b01_only) else [(n, C.SA_CLM_NODE_NO_CHANGE) for n in (1, 2, 3, 4)]
        assert call.changes == [*unchanged, (5, gone)]
        assert next(e for e in call.entries if e.node_id == 5).member == saAis.eSaBoolT.SA_FALSE
    assert callback_with(b04_only, (5, C.SA_CLM_NODE_SHUTDOWN)).root_cause == "n5"


def test_saClmClusterTrack_23_a_crash_is_left_to_every_version(cluster5: BackgroundCluster) -> None:
    b04, b01 = client(4), client(1)
    for made in (b04, b01):
        assert made.track(T.SA_TRACK_CHANGES_ONLY, None) == E.SA_AIS_OK
    cluster5.abort(4)
    for made in (b04, b01):
        pump(made, made.fd, has(made, (4, C.SA_CLM_NODE_LEFT)), "node 4 LEFT")
    out = saClm.SaClmClusterNodeT_4()
    assert saClm.saClmClusterNodeGet_4(b04.handle, 4, SECOND, out) == E.SA_AIS_ERR_NOT_EXIST  # case 5.07


def test_saClmClusterTrack_22_a_restarted_node_joins_again(cluster5: BackgroundCluster) -> None:
    made = client(4)
    assert made.track(T.SA_TRACK_CHANGES_ONLY, None) == E.SA_AIS_OK
    cluster5.abort(3)
    pump(made, made.fd, has(made, (3, C.SA_CLM_NODE_LEFT)), "node 3 LEFT")
    cluster5.start(3)
    pump(made, made.fd, has(made, (3, C.SA_CLM_NODE_JOINED)), "node 3 JOINED")
    joined = callback_with(made, (3, C.SA_CLM_NODE_JOINED))
    entry = next(e for e in joined.entries if e.node_id == 3)
    assert entry.initial == joined.view_number  # it joined the membership at this view
    assert entry.boot == cluster5.nodes[3].incarnation  # its new life


def test_saClmClusterTrack_a_partition_leaves_the_minority_out_and_heal_joins_it(cluster5: BackgroundCluster) -> None:
    only = client(4)
    full = client(1)
    assert only.track(T.SA_TRACK_CURRENT | T.SA_TRACK_CHANGES_ONLY, None) == E.SA_AIS_OK
    assert full.track(T.SA_TRACK_CHANGES, None) == E.SA_AIS_OK
    cluster5.partition([[1, 2, 3], [4, 5]])
    pump(only, only.fd, has(only, (4, C.SA_CLM_NODE_LEFT), (5, C.SA_CLM_NODE_LEFT)), "4 and 5 LEFT")
    pump(full, full.fd, has(full, (4, C.SA_CLM_NODE_LEFT), (5, C.SA_CLM_NODE_LEFT)), "4 and 5 LEFT (B.01)")
    split = callback_with(only, (4, C.SA_CLM_NODE_LEFT))
    assert split.changes == [(4, C.SA_CLM_NODE_LEFT), (5, C.SA_CLM_NODE_LEFT)] and split.members == 3
    assert callback_with(full, (4, C.SA_CLM_NODE_LEFT)).view_number == split.view_number
    # Case 6.07: a node outside the membership is reported in the NodeGet callback.
    assert saClm.saClmClusterNodeGetAsync(only.handle, 9, 4) == E.SA_AIS_OK
    pump(only, only.fd, lambda: bool(only.node_gets), "the NodeGet answer")
    assert [(c.invocation, c.error) for c in only.node_gets] == [(9, E.SA_AIS_ERR_NOT_EXIST)]
    cluster5.heal()
    pump(only, only.fd, has(only, (4, C.SA_CLM_NODE_JOINED), (5, C.SA_CLM_NODE_JOINED)), "4 and 5 JOINED")
    merged = callback_with(only, (4, C.SA_CLM_NODE_JOINED))
    assert merged.view_number > split.view_number > only.tracks[0].view_number
    assert merged.members == 5


def test_saClmClusterTrack_the_bound_node_in_a_minority_sees_only_itself() -> None:
    with BackgroundCluster([1, 2, 3], settle=QUICK_SETTLE) as cluster, pyclm.saf.bind(cluster.nodes[3]):
        b04, b01 = client(4), client(1)
        for made in (b04, b01):
            assert made.track(T.SA_TRACK_CHANGES_ONLY, None) == E.SA_AIS_OK
        cluster.partition([[1, 2], [3]])
        for made in (b04, b01):
            pump(made, made.fd, has(made, (3, C.SA_CLM_NODE_LEFT)), "the local node LEFT")
        [out_of_it] = b04.tracks
        assert out_of_it.changes == [(3, C.SA_CLM_NODE_LEFT)] and out_of_it.members == 0
        # B.04: a non-member node gets UNAVAILABLE; B.01 reads its own node, member false.
        assert saClm.saClmClusterNodeGet_4(b04.handle, LOCAL_ID, SECOND, saClm.SaClmClusterNodeT_4()) == (
            E.SA_AIS_ERR_UNAVAILABLE
        )
        assert saClm.saClmClusterNodeGetAsync(b04.handle, 1, LOCAL_ID) == E.SA_AIS_ERR_UNAVAILABLE
        out = saClm.SaClmClusterNodeT()
        assert saClm.saClmClusterNodeGet(b01.handle, LOCAL_ID, SECOND, out) == E.SA_AIS_OK
        assert (out.nodeId, out.member) == (3, saAis.eSaBoolT.SA_FALSE)
        assert saClm.saClmClusterNodeGet(b01.handle, 1, SECOND, out) == E.SA_AIS_ERR_NOT_EXIST
        buffer = current_buffer(b04, 5)
        assert b04.track(T.SA_TRACK_CURRENT, buffer) == E.SA_AIS_OK
        assert [(e.node_id, e.change) for e in entries_of(buffer)] == [(3, C.SA_CLM_NODE_LEFT)]
        cluster.heal()
        for made in (b04, b01):
            pump(made, made.fd, has(made, (3, C.SA_CLM_NODE_JOINED)), "the local node JOINED again")
        assert saClm.saClmClusterNodeGet_4(b04.handle, LOCAL_ID, SECOND, saClm.SaClmClusterNodeT_4()) == E.SA_AIS_OK


def test_saClmClusterTrack_the_bound_node_leaving_ends_its_handles(cluster5: BackgroundCluster) -> None:
    b04, b01 = client(4), client(1)
    fds = {}
    for made in (b04, b01):
        assert made.track(T.SA_TRACK_CHANGES_ONLY, None) == E.SA_AIS_OK
        fds[made.id] = made.fd
    cluster5.leave(1)
    for made, gone in ((b04, C.SA_CLM_NODE_SHUTDOWN), (b01, C.SA_CLM_NODE_LEFT)):
        assert readable(fds[made.id], LIMIT)
        assert made.dispatch() == E.SA_AIS_ERR_BAD_HANDLE  # after the last callback: the handle is stale
        assert [c.changes for c in made.tracks] == [[(1, gone)]]
    # A Node never runs again: UNAVAILABLE where the version has it, TRY_AGAIN for B.01.
    assert saClm.saClmInitialize_4(saClm.SaClmHandleT(), None, SaVersionT("B", 4, 1)) == E.SA_AIS_ERR_UNAVAILABLE
    assert saClm.saClmInitialize(saClm.SaClmHandleT(), None, SaVersionT("B", 1, 1)) == E.SA_AIS_ERR_TRY_AGAIN


def test_saClmClusterTrack_a_call_just_before_an_aborted_nodes_last_change_does_not_lose_it() -> None:
    # An aborted node reports itself LEFT after it stopped running.  A thread that calls the
    # API in between must not make the handle stale before that change reaches it.  A
    # listener added before the binding's runs in exactly that window (listeners run in
    # order, on the node's loop): it makes the calls that thread would.
    with BackgroundCluster([1, 2, 3]) as cluster:
        node = cluster.nodes[1]
        made: list[Client] = []
        in_window: list[tuple[bool, bool, list[int]]] = []

        def call_in_the_window(change: MembershipChange) -> None:
            if node.running:
                return
            codes = []
            for each in made:
                codes.append(saClm.saClmSelectionObjectGet(each.handle, saAis.SaSelectionObjectT()))
                codes.append(each.dispatch(D.SA_DISPATCH_ONE))  # nothing pending yet
            in_window.append((node.running, node.stopped, codes))

        remove = node.add_membership_listener(call_in_the_window)
        try:
            with pyclm.saf.bind(node):
                made += [client(4), client(1)]
                fds = {}
                for each in made:
                    assert each.track(T.SA_TRACK_CHANGES_ONLY, None) == E.SA_AIS_OK
                    fds[each.id] = each.fd
                cluster.abort(1)
                assert in_window == [(False, False, [E.SA_AIS_OK] * 4)]
                for each in made:
                    assert readable(fds[each.id], LIMIT)
                    assert each.dispatch() == E.SA_AIS_ERR_BAD_HANDLE  # after the pending callbacks
                    assert [c.changes for c in each.tracks] == [[(1, C.SA_CLM_NODE_LEFT)]]
                assert saClm.saClmInitialize_4(saClm.SaClmHandleT(), None, SaVersionT("B", 4, 1)) == (
                    E.SA_AIS_ERR_UNAVAILABLE
                )
        finally:
            remove()


# ====================================================================== suite 7, cases 21-28 with three-step tracking

# OpenSAF's cases 21-28 shut a node down through IMM, and the handles with START_STEP
# answer the START before the node goes; case 31 (disabled there) has a VALIDATE.  Here
# the change is a validated leave (Node.leave()): node 3 leaves, the handles are on node 1
# (a member) or on node 3 itself.  The leave runs in the cluster's thread; this thread is
# the pyosaf program that answers the callbacks.

STEPS = T.SA_TRACK_CHANGES | T.SA_TRACK_VALIDATE_STEP | T.SA_TRACK_START_STEP
SUPERVISION = 2.0  # the leaver's START time supervision, in seconds
STEP = eSaClmChangeStepT


@pytest.fixture(params=["asyncio", "trio"])
def stepping(request: pytest.FixtureRequest) -> Iterator[BackgroundCluster]:
    """A fresh 3-node cluster whose leaves give START trackers SUPERVISION seconds; node 1 bound."""
    with (
        BackgroundCluster([1, 2, 3], backend=request.param, leave_start_supervision=SUPERVISION) as cluster,
        pyclm.saf.bind(cluster.nodes[1]),
    ):
        yield cluster


def step_callback(made: Client, count: int, what: str) -> TrackCall:
    """Dispatch until ``made`` got ``count`` track callbacks; the last one."""
    pump(made, made.fd, callbacks(made, count), what)
    return made.tracks[count - 1]


def quiet(made: Client, seconds: float = 0.2) -> bool:
    """True if no callback is pending for ``made`` within ``seconds``."""
    return not readable(made.fd, seconds)


def test_saClmClusterTrack_31_validate_rejected_refuses_the_leave_and_aborts(stepping: BackgroundCluster) -> None:
    steps, plain, b01 = client(4), client(4), client(1)
    assert steps.track(STEPS, None) == E.SA_AIS_OK
    assert plain.track(T.SA_TRACK_CHANGES_ONLY, None) == E.SA_AIS_OK
    assert b01.track(T.SA_TRACK_CHANGES, None) == E.SA_AIS_OK
    node = stepping.nodes[1]
    view = node.view_number
    leaving = stepping.leave_soon(3)
    validate = step_callback(steps, 1, "the VALIDATE callback")
    assert (validate.step, validate.time_supervision, validate.root_cause) == (
        STEP.SA_CLM_CHANGE_VALIDATE,
        UNKNOWN_TIME,
        "n3",
    )
    assert validate.invocation != 0 and validate.view_number == view
    assert validate.changes == [(1, C.SA_CLM_NODE_NO_CHANGE), (2, C.SA_CLM_NODE_NO_CHANGE), (3, C.SA_CLM_NODE_SHUTDOWN)]
    assert validate.members == 2  # as it will be
    assert saClm.saClmResponse_4(steps.handle, validate.invocation, R.SA_CLM_CALLBACK_RESPONSE_REJECTED) == E.SA_AIS_OK
    aborted = step_callback(steps, 2, "the ABORTED callback")
    assert (aborted.step, aborted.invocation, aborted.changes) == (STEP.SA_CLM_CHANGE_ABORTED, 0, validate.changes)
    with pytest.raises(LeaveRejected) as refused:
        leaving.result(LIMIT)
    assert (refused.value.reason, refused.value.rejected, refused.value.timed_out) == ("rejected", (1,), ())
    # The leave did not happen: node 3 is a member, no view changed, nobody else was told.
    assert stepping.run.formed([1, 2, 3]) and stepping.nodes[3].running
    assert {n.view_number for n in stepping.nodes.values()} == {view}
    assert quiet(plain) and quiet(b01) and plain.tracks == [] and b01.tracks == []
    # The invocation is spent.
    assert saClm.saClmResponse_4(steps.handle, validate.invocation, R.SA_CLM_CALLBACK_RESPONSE_OK) == (
        E.SA_AIS_ERR_INVALID_PARAM
    )


def test_saClmClusterTrack_21_27_validate_ok_start_ok_then_completed_shutdown(stepping: BackgroundCluster) -> None:
    steps, only_start, b01 = client(4), client(4), client(1)
    assert steps.track(STEPS, None) == E.SA_AIS_OK
    assert only_start.track(T.SA_TRACK_CHANGES_ONLY | T.SA_TRACK_START_STEP, None) == E.SA_AIS_OK
    assert b01.track(T.SA_TRACK_CHANGES_ONLY, None) == E.SA_AIS_OK
    view = stepping.nodes[1].view_number
    leaving = stepping.leave_soon(3)
    validate = step_callback(steps, 1, "the VALIDATE callback")
    assert quiet(only_start)  # START comes only once every member validated
    assert saClm.saClmResponse_4(steps.handle, validate.invocation, R.SA_CLM_CALLBACK_RESPONSE_OK) == E.SA_AIS_OK
    starts = [step_callback(made, 1 if made is only_start else 2, "the START callback") for made in (only_start, steps)]
    for start in starts:
        assert (start.step, start.time_supervision, start.root_cause) == (
            STEP.SA_CLM_CHANGE_START,
            int(SUPERVISION * SECOND),
            "n3",
        )
        assert start.invocation not in (0, validate.invocation) and (3, C.SA_CLM_NODE_SHUTDOWN) in start.changes
    assert starts[0].invocation != starts[1].invocation
    assert not leaving.done()  # it waits for the START answers
    for made, start in zip((only_start, steps), starts, strict=True):
        assert saClm.saClmResponse_4(made.handle, start.invocation, R.SA_CLM_CALLBACK_RESPONSE_OK) == E.SA_AIS_OK
    assert leaving.result(LIMIT) is None
    for made, count in ((steps, 3), (only_start, 2)):
        completed = step_callback(made, count, "the COMPLETED callback")
        assert (completed.step, completed.invocation) == (STEP.SA_CLM_CHANGE_COMPLETED, 0)
        assert (3, C.SA_CLM_NODE_SHUTDOWN) in completed.changes and completed.view_number > view
    # B.01 sees only the COMPLETED change, as LEFT.
    pump(b01, b01.fd, has(b01, (3, C.SA_CLM_NODE_LEFT)), "node 3 LEFT (B.01)")
    assert [call.changes for call in b01.tracks] == [[(3, C.SA_CLM_NODE_LEFT)]]


@pytest.mark.parametrize("validate_answer", [R.SA_CLM_CALLBACK_RESPONSE_ERROR, R.SA_CLM_CALLBACK_RESPONSE_OK])
def test_saClmResponse_error_does_not_refuse_and_start_error_still_leaves(
    stepping: BackgroundCluster, validate_answer: int
) -> None:
    steps = client(4)
    assert steps.track(STEPS, None) == E.SA_AIS_OK
    leaving = stepping.leave_soon(2)
    validate = step_callback(steps, 1, "the VALIDATE callback")
    assert saClm.saClmResponse_4(steps.handle, validate.invocation, validate_answer) == E.SA_AIS_OK
    start = step_callback(steps, 2, "the START callback")
    assert start.step == STEP.SA_CLM_CHANGE_START
    assert saClm.saClmResponse_4(steps.handle, start.invocation, R.SA_CLM_CALLBACK_RESPONSE_ERROR) == E.SA_AIS_OK
    assert leaving.result(LIMIT) is None
    assert (2, C.SA_CLM_NODE_SHUTDOWN) in step_callback(steps, 3, "the COMPLETED callback").changes


def test_saClmClusterTrack_start_supervision_runs_out_and_the_node_leaves(stepping: BackgroundCluster) -> None:
    steps = client(4)
    assert steps.track(STEPS, None) == E.SA_AIS_OK
    leaving = stepping.leave_soon(3)
    validate = step_callback(steps, 1, "the VALIDATE callback")
    assert saClm.saClmResponse_4(steps.handle, validate.invocation, R.SA_CLM_CALLBACK_RESPONSE_OK) == E.SA_AIS_OK
    start = step_callback(steps, 2, "the START callback")
    began = time.monotonic()
    assert leaving.result(LIMIT) is None  # nobody answers the START
    assert time.monotonic() - began >= SUPERVISION * 0.9
    assert (3, C.SA_CLM_NODE_SHUTDOWN) in step_callback(steps, 3, "the COMPLETED callback").changes
    assert saClm.saClmResponse_4(steps.handle, start.invocation, R.SA_CLM_CALLBACK_RESPONSE_OK) == (
        E.SA_AIS_ERR_INVALID_PARAM  # the round is over
    )


def test_saClmClusterTrackStop_while_an_answer_is_owed_lets_the_leave_go_on(stepping: BackgroundCluster) -> None:
    steps = client(4)
    assert steps.track(STEPS, None) == E.SA_AIS_OK
    leaving = stepping.leave_soon(3)
    step_callback(steps, 1, "the VALIDATE callback")
    assert saClm.saClmClusterTrackStop(steps.handle) == E.SA_AIS_OK  # withdrawn: no answer is waited for
    assert leaving.result(LIMIT) is None
    assert stepping.nodes[3].stopped


VALIDATE_TIMEOUT = 3.0  # the leaver's leave_validate_timeout where a test must not wait for it


@pytest.fixture(params=["asyncio", "trio"])
def impatient(request: pytest.FixtureRequest) -> Iterator[BackgroundCluster]:
    """A fresh 3-node cluster whose leaves wait VALIDATE_TIMEOUT for the VALIDATE answers and give
    START trackers far longer than LIMIT: a leave that finishes within LIMIT was not held up by a
    START answer, and one that waited for a VALIDATE answer is refused as timed out.  Node 1 bound."""
    with (
        BackgroundCluster(
            [1, 2, 3],
            backend=request.param,
            leave_validate_timeout=VALIDATE_TIMEOUT,
            leave_start_supervision=6 * LIMIT,
        ) as cluster,
        pyclm.saf.bind(cluster.nodes[1]),
    ):
        yield cluster


@pytest.mark.parametrize("dispatched", [True, False], ids=["dispatched", "still queued"])
def test_saClmClusterTrack_again_without_validate_step_withdraws_the_owed_answer(
    impatient: BackgroundCluster, dispatched: bool
) -> None:
    steps = client(4)
    assert steps.track(STEPS, None) == E.SA_AIS_OK
    leaving = impatient.leave_soon(3)
    if dispatched:
        validate = step_callback(steps, 1, "the VALIDATE callback")
    else:
        assert readable(steps.fd, LIMIT)  # the VALIDATE callback is queued, not dispatched
    # Tracking on without VALIDATE_STEP: the round no longer waits for this handle.
    assert steps.track(T.SA_TRACK_CHANGES | T.SA_TRACK_START_STEP, None) == E.SA_AIS_OK
    start = step_callback(steps, 2 if dispatched else 1, "the START callback")
    assert start.step == STEP.SA_CLM_CHANGE_START
    assert saClm.saClmResponse_4(steps.handle, start.invocation, R.SA_CLM_CALLBACK_RESPONSE_OK) == E.SA_AIS_OK
    assert leaving.result(LIMIT) is None  # not refused after VALIDATE_TIMEOUT as unanswered
    completed = step_callback(steps, len(steps.tracks) + 1, "the COMPLETED callback")
    assert completed.step == STEP.SA_CLM_CHANGE_COMPLETED and (3, C.SA_CLM_NODE_SHUTDOWN) in completed.changes
    # No ABORTED; a VALIDATE still queued was dropped with its answer.
    expected = [STEP.SA_CLM_CHANGE_START, STEP.SA_CLM_CHANGE_COMPLETED]
    assert [call.step for call in steps.tracks] == ([STEP.SA_CLM_CHANGE_VALIDATE] if dispatched else []) + expected
    if dispatched:
        assert saClm.saClmResponse_4(steps.handle, validate.invocation, R.SA_CLM_CALLBACK_RESPONSE_OK) == (
            E.SA_AIS_ERR_INVALID_PARAM  # withdrawn
        )


def test_saClmClusterTrack_again_without_start_step_withdraws_the_owed_answer(impatient: BackgroundCluster) -> None:
    steps, other = client(4), client(4)
    assert steps.track(STEPS, None) == E.SA_AIS_OK
    assert other.track(T.SA_TRACK_CHANGES_ONLY | T.SA_TRACK_START_STEP, None) == E.SA_AIS_OK
    leaving = impatient.leave_soon(3)
    validate = step_callback(steps, 1, "the VALIDATE callback")
    assert saClm.saClmResponse_4(steps.handle, validate.invocation, R.SA_CLM_CALLBACK_RESPONSE_OK) == E.SA_AIS_OK
    start = step_callback(steps, 2, "the START callback")
    # Tracking on with VALIDATE_STEP but without START_STEP: only the START answer is withdrawn.
    assert steps.track(T.SA_TRACK_CHANGES_ONLY | T.SA_TRACK_VALIDATE_STEP, None) == E.SA_AIS_OK
    assert not leaving.done()  # the other handle's START answer is still awaited
    other_start = step_callback(other, 1, "the other handle's START callback")
    assert saClm.saClmResponse_4(other.handle, other_start.invocation, R.SA_CLM_CALLBACK_RESPONSE_OK) == E.SA_AIS_OK
    assert leaving.result(LIMIT) is None  # the START supervision is far longer than LIMIT
    assert saClm.saClmResponse_4(steps.handle, start.invocation, R.SA_CLM_CALLBACK_RESPONSE_OK) == (
        E.SA_AIS_ERR_INVALID_PARAM
    )
    completed = step_callback(steps, 3, "the COMPLETED callback")
    assert completed.changes == [(3, C.SA_CLM_NODE_SHUTDOWN)]  # CHANGES_ONLY now


def test_saClmClusterTrack_the_leavers_own_trackers_are_asked_and_then_go_stale(stepping: BackgroundCluster) -> None:
    with pyclm.saf.bind(stepping.nodes[3]):
        own = client(4)
        assert own.track(T.SA_TRACK_CHANGES_ONLY | T.SA_TRACK_LOCAL | T.SA_TRACK_VALIDATE_STEP, None) == E.SA_AIS_OK
        fd = own.fd
        leaving = stepping.leave_soon(3)
        validate = step_callback(own, 1, "the VALIDATE callback of the leaver's own handle")
        assert validate.changes == [(3, C.SA_CLM_NODE_SHUTDOWN)] and validate.invocation != 0
        assert saClm.saClmResponse_4(own.handle, validate.invocation, R.SA_CLM_CALLBACK_RESPONSE_OK) == E.SA_AIS_OK
        assert leaving.result(LIMIT) is None
        assert readable(fd, LIMIT)
        assert own.dispatch() == E.SA_AIS_ERR_BAD_HANDLE  # after its last callback, the local node SHUTDOWN
        assert [(c.step, c.changes) for c in own.tracks] == [
            (STEP.SA_CLM_CHANGE_VALIDATE, [(3, C.SA_CLM_NODE_SHUTDOWN)]),
            (STEP.SA_CLM_CHANGE_COMPLETED, [(3, C.SA_CLM_NODE_SHUTDOWN)]),
        ]


def test_saClmClusterTrack_a_leave_without_validation_asks_no_one(stepping: BackgroundCluster) -> None:
    steps = client(4)
    assert steps.track(STEPS, None) == E.SA_AIS_OK
    stepping.leave(3, validate=False)
    completed = step_callback(steps, 1, "the COMPLETED callback")
    assert completed.step == STEP.SA_CLM_CHANGE_COMPLETED and (3, C.SA_CLM_NODE_SHUTDOWN) in completed.changes


# ====================================================================== suite 8: saClmResponse_4 and the step callbacks


def leaving(node: Node, node_id: int) -> MembershipChange:
    """The change as it will be when ``node_id`` shuts down: the current view, the node in ``shutdown``."""
    members = node.cluster_members()
    local = node.local_node()
    assert local is not None
    gone = next(n for n in members if n.node_id == node_id)
    return MembershipChange(
        view_number=node.view_number,
        members=tuple(n for n in members if n.node_id != node_id),
        shutdown=(attrs.evolve(gone, member=False),),
        local=local,
    )


@pytest.mark.parametrize(
    "answer",
    [R.SA_CLM_CALLBACK_RESPONSE_OK, R.SA_CLM_CALLBACK_RESPONSE_ERROR, R.SA_CLM_CALLBACK_RESPONSE_REJECTED],
    ids=["01 OK", "02 ERROR", "03 REJECTED"],
)
def test_saClmResponse_01_to_03_answers_to_a_start_step(cluster5: BackgroundCluster, answer: int) -> None:
    # OpenSAF's cases answer a START of an admin lock; here the leave protocol's entry point
    # delivers the START.  REJECTED is only an answer to VALIDATE.
    made = client(4)
    assert made.track(T.SA_TRACK_CHANGES | T.SA_TRACK_START_STEP, None) == E.SA_AIS_OK
    node = cluster5.nodes[1]
    round_ = _api.start_step(node, ChangeStep.START, leaving(node, 5), time_supervision=3 * SECOND, root_cause="n5")
    pump(made, made.fd, callbacks(made, 1), "the START callback")
    [start] = made.tracks
    assert start.step == eSaClmChangeStepT.SA_CLM_CHANGE_START and start.invocation != 0
    assert (start.time_supervision, start.root_cause, start.view_number) == (3 * SECOND, "n5", node.view_number)
    assert (5, C.SA_CLM_NODE_SHUTDOWN) in start.changes and start.members == 4
    rc = saClm.saClmResponse_4(made.handle, start.invocation, answer)
    if answer == R.SA_CLM_CALLBACK_RESPONSE_REJECTED:
        assert rc == E.SA_AIS_ERR_INVALID_PARAM and round_.outstanding == {made.id}
        assert saClm.saClmResponse_4(made.handle, start.invocation, R.SA_CLM_CALLBACK_RESPONSE_OK) == E.SA_AIS_OK
    else:
        assert rc == E.SA_AIS_OK
    assert round_.wait(LIMIT)
    round_.close()
    cluster5.leave(5, validate=False)  # then the change happens (no START of its own): COMPLETED
    pump(made, made.fd, callbacks(made, 2), "the COMPLETED callback")
    assert (5, C.SA_CLM_NODE_SHUTDOWN) in made.tracks[1].changes
    assert made.tracks[1].step == eSaClmChangeStepT.SA_CLM_CHANGE_COMPLETED and made.tracks[1].invocation == 0


def test_saClmResponse_validate_rejected_is_aborted(cluster5: BackgroundCluster) -> None:
    refuser, agreer = client(4), client(4)
    for made in (refuser, agreer):
        assert made.track(T.SA_TRACK_CHANGES_ONLY | T.SA_TRACK_VALIDATE_STEP, None) == E.SA_AIS_OK
    node = cluster5.nodes[1]
    round_ = _api.start_step(node, ChangeStep.VALIDATE, leaving(node, 4))
    for made, answer in ((refuser, R.SA_CLM_CALLBACK_RESPONSE_REJECTED), (agreer, R.SA_CLM_CALLBACK_RESPONSE_OK)):
        pump(made, made.fd, callbacks(made, 1), "the VALIDATE callback")
        assert saClm.saClmResponse_4(made.handle, made.tracks[0].invocation, answer) == E.SA_AIS_OK
    assert round_.complete and round_.rejected
    assert dict(round_.answers) == {refuser.id: Response.REJECTED, agreer.id: Response.OK}
    _api.abort_step(round_)
    for made in (refuser, agreer):
        pump(made, made.fd, callbacks(made, 2), "the ABORTED callback")
        assert [c.step for c in made.tracks] == [
            eSaClmChangeStepT.SA_CLM_CHANGE_VALIDATE,
            eSaClmChangeStepT.SA_CLM_CHANGE_ABORTED,
        ]
        assert made.tracks[1].invocation == 0


def test_saClmResponse_04_invalid_parameters(catalog: BackgroundCluster) -> None:
    assert saClm.saClmResponse_4(0, 200, R.SA_CLM_CALLBACK_RESPONSE_REJECTED) == E.SA_AIS_ERR_BAD_HANDLE
    # (OpenSAF's apitest expects INVALID_PARAM for handle 0; its agent, and this facade, say BAD_HANDLE.)
    assert saClm.saClmResponse_4(1234, 0, R.SA_CLM_CALLBACK_RESPONSE_REJECTED) == E.SA_AIS_ERR_INVALID_PARAM
    assert saClm.saClmResponse_4(1234, 200, 10) == E.SA_AIS_ERR_INVALID_PARAM
    assert saClm.saClmResponse_4(-1, 200, R.SA_CLM_CALLBACK_RESPONSE_REJECTED) == E.SA_AIS_ERR_BAD_HANDLE


def test_saClmResponse_05_unknown_invocation_and_b01_handle(catalog: BackgroundCluster) -> None:
    b04, b01 = client(4), client(1)
    assert saClm.saClmResponse_4(b04.handle, 100, R.SA_CLM_CALLBACK_RESPONSE_OK) == E.SA_AIS_ERR_INVALID_PARAM
    assert saClm.saClmResponse_4(b01.handle, 100, R.SA_CLM_CALLBACK_RESPONSE_OK) == E.SA_AIS_ERR_VERSION


# ====================================================================== suite 9: saClmClusterTrackStop


def test_saClmClusterTrackStop_01_after_current_and_node_get_async(catalog: BackgroundCluster) -> None:
    made = client(4)
    assert made.track(T.SA_TRACK_CURRENT, None) == E.SA_AIS_OK
    assert saClm.saClmClusterNodeGetAsync(made.handle, 3, LOCAL_ID) == E.SA_AIS_OK
    assert saClm.saClmClusterTrackStop(made.handle) == E.SA_AIS_ERR_NOT_EXIST
    assert made.dispatch() == E.SA_AIS_OK
    assert len(made.tracks) == 1 and len(made.node_gets) == 1


def test_saClmClusterTrackStop_02_finalized_handle(catalog: BackgroundCluster) -> None:
    made = client(1)
    assert made.track(T.SA_TRACK_CHANGES, None) == E.SA_AIS_OK
    assert saClm.saClmClusterTrackStop(made.handle) == E.SA_AIS_OK
    assert saClm.saClmClusterTrackStop(made.handle) == E.SA_AIS_ERR_NOT_EXIST
    assert saClm.saClmFinalize(made.handle) == E.SA_AIS_OK
    assert saClm.saClmClusterTrackStop(made.handle) == E.SA_AIS_ERR_BAD_HANDLE


def test_saClmClusterTrackStop_drops_pending_track_callbacks_only(cluster5: BackgroundCluster) -> None:
    made = client(4)
    assert made.track(T.SA_TRACK_CHANGES_ONLY, None) == E.SA_AIS_OK
    fd = made.fd
    cluster5.leave(5)
    assert readable(fd, LIMIT)  # the change is pending
    assert saClm.saClmClusterNodeGetAsync(made.handle, 8, 2) == E.SA_AIS_OK
    assert saClm.saClmClusterTrackStop(made.handle) == E.SA_AIS_OK
    assert made.dispatch() == E.SA_AIS_OK
    assert made.tracks == [] and [c.invocation for c in made.node_gets] == [8]


# ====================================================================== suite 10: saClmClusterNotificationFree


def test_saClmClusterNotificationFree_01_02_by_version(catalog: BackgroundCluster) -> None:
    b04 = client(4, track=False, node_get=False)
    array = (saClm.SaClmClusterNotificationT_4 * 1)()
    assert saClm.saClmClusterNotificationFree_4(b04.handle, array) == E.SA_AIS_OK
    b01 = client(1, track=False, node_get=False)
    assert saClm.saClmClusterNotificationFree_4(b01.handle, array) == E.SA_AIS_ERR_VERSION


def test_saClmClusterNotificationFree_03_04_bad_handle_and_null(catalog: BackgroundCluster) -> None:
    array = (saClm.SaClmClusterNotificationT_4 * 1)()
    assert saClm.saClmClusterNotificationFree_4(0, array) == E.SA_AIS_ERR_BAD_HANDLE
    assert saClm.saClmClusterNotificationFree_4(-1, array) == E.SA_AIS_ERR_BAD_HANDLE
    made = client(4)
    assert saClm.saClmClusterNotificationFree_4(made.handle, None) == E.SA_AIS_ERR_INVALID_PARAM


def test_saClmClusterNotificationFree_of_a_library_allocated_array(catalog: BackgroundCluster) -> None:
    b02 = Client(2)
    assert b02.rc == E.SA_AIS_OK
    clients_made.append(b02)
    buffer = current_buffer(b02, None)
    assert b02.track(T.SA_TRACK_CURRENT, buffer) == E.SA_AIS_OK
    assert buffer.numberOfItems == 3 and bool(buffer.notification)
    assert saClm.saClmClusterNotificationFree(b02.handle, buffer.notification) == E.SA_AIS_OK


# ====================================================================== a pyosaf program, unchanged but for its import


def pyosaf_track_listener(report: list[tuple[int, int, str]], ready: threading.Event, stop: threading.Event) -> int:
    """A CLM track listener written as for pyosaf; its only pyclm line is this module's import.

    It tracks the current membership and then its changes, waits on the selection object
    with select() and dispatches everything pending, until ``stop`` is set.
    """

    def track_callback(
        c_notification_buffer: Any,
        c_number_of_members: int,
        c_invocation_id: int,
        c_root_cause_entity: Any,
        c_correlation_ids: Any,
        c_step: int,
        c_time_supervision: int,
        c_error: int,
    ) -> None:
        notification_buffer = c_notification_buffer.contents
        for i in range(notification_buffer.numberOfItems):
            notification = notification_buffer.notification[i]
            cluster_node = notification.clusterNode
            change = saClm.eSaClmClusterChangesT.whatis(notification.clusterChange)
            report.append((notification_buffer.viewNumber, cluster_node.nodeId, change))

    callbacks = saClm.SaClmCallbacksT_4()
    callbacks.saClmClusterTrackCallback = saClm.SaClmClusterTrackCallbackT_4(track_callback)
    handle = saClm.SaClmHandleT()
    version = saAis.SaVersionT("B", 4, 1)
    rc = saClm.saClmInitialize_4(handle, callbacks, version)
    if rc != saAis.eSaAisErrorT.SA_AIS_OK:
        return rc
    sel_obj = saAis.SaSelectionObjectT()
    rc = saClm.saClmSelectionObjectGet(handle, sel_obj)
    if rc != saAis.eSaAisErrorT.SA_AIS_OK:
        return rc
    flags = saAis.saAis.SA_TRACK_CURRENT | saAis.saAis.SA_TRACK_CHANGES_ONLY
    rc = saClm.saClmClusterTrack_4(handle, flags, None)
    if rc != saAis.eSaAisErrorT.SA_AIS_OK:
        return rc
    ready.set()
    while not stop.is_set():
        readable_fds, _, _ = select.select([sel_obj.value], [], [], 0.1)
        if sel_obj.value in readable_fds:
            rc = saClm.saClmDispatch(handle, saAis.eSaDispatchFlagsT.SA_DISPATCH_ALL)
            if rc != saAis.eSaAisErrorT.SA_AIS_OK:
                return rc
    saClm.saClmClusterTrackStop(handle)
    return saClm.saClmFinalize(handle)


def test_a_pyosaf_track_listener_runs_unchanged(cluster5: BackgroundCluster) -> None:
    report: list[tuple[int, int, str]] = []
    results: list[int] = []
    ready, stop = threading.Event(), threading.Event()
    thread = threading.Thread(target=lambda: results.append(pyosaf_track_listener(report, ready, stop)), name="pyosaf")
    thread.start()
    try:
        assert ready.wait(LIMIT)
        cluster5.leave(5)
        cluster5.abort(4)
        deadline = time.monotonic() + LIMIT
        wanted = {(5, "SA_CLM_NODE_SHUTDOWN"), (4, "SA_CLM_NODE_LEFT")}
        while not wanted <= {(node_id, change) for _, node_id, change in report} and time.monotonic() < deadline:
            time.sleep(0.01)
    finally:
        stop.set()
        join(thread)
    assert results == [E.SA_AIS_OK]
    first = [(node_id, change) for _, node_id, change in report[:5]]
    assert first == [(n, "SA_CLM_NODE_NO_CHANGE") for n in (1, 2, 3, 4, 5)]
    # One view change or two, depending on how fast the crash is noticed: the same two entries.
    assert sorted((node_id, change) for _, node_id, change in report[5:]) == [
        (4, "SA_CLM_NODE_LEFT"),
        (5, "SA_CLM_NODE_SHUTDOWN"),
    ]
    views = [view for view, _, _ in report]
    assert views == sorted(views) and views[-1] == cluster5.nodes[1].view_number


def test_the_docs_example_runs(tmp_path: Path) -> None:
    lines = run_example(DOC, "## A runnable example", tmp_path)
    assert [line.split(": ")[1] for line in lines] == [
        "node 1 SA_CLM_NODE_NO_CHANGE",
        "node 2 SA_CLM_NODE_NO_CHANGE",
        "node 3 SA_CLM_NODE_NO_CHANGE",
        "node 3 SA_CLM_NODE_SHUTDOWN",
    ]


# ====================================================================== event loops: callbacks on the loop, no thread


@pytest.mark.asyncio
async def test_attach_asyncio_drives_callbacks_from_a_cluster_on_the_same_loop() -> None:
    threads_before = threading.active_count()
    async with ClusterRun([1, 2, 3], settle=SETTLE).run() as cluster:
        with pyclm.saf.bind(cluster.nodes[1]):
            made = client(4)
            assert made.track(T.SA_TRACK_CURRENT | T.SA_TRACK_CHANGES_ONLY, None) == E.SA_AIS_OK
            reader = pyclm.saf.attach_asyncio(made.handle)
            shutdown = asyncio.Event()
            made.in_track = lambda call: shutdown.set() if (3, C.SA_CLM_NODE_SHUTDOWN) in call.changes else None
            await cluster.nodes[3].leave()
            await asyncio.wait_for(shutdown.wait(), LIMIT)
            assert [c.changes for c in made.tracks][1:] == [[(3, C.SA_CLM_NODE_SHUTDOWN)]]
            assert {c.thread for c in made.tracks} == {threading.get_ident()}
            assert threading.active_count() == threads_before  # no dispatch thread
            assert saClm.saClmFinalize(made.handle) == E.SA_AIS_OK
            for _ in range(100):
                if not reader.attached:
                    break
                await asyncio.sleep(0)
            assert not reader.attached


@pytest.mark.anyio
async def test_serve_anyio_drives_callbacks_in_a_task_on_asyncio_and_trio() -> None:
    async with ClusterRun([1, 2, 3], settle=SETTLE).run() as cluster:
        with pyclm.saf.bind(cluster.nodes[1]):
            made = client(1)
            assert made.track(T.SA_TRACK_CHANGES, None) == E.SA_AIS_OK
            left = anyio.Event()
            made.in_track = lambda call: left.set() if (2, C.SA_CLM_NODE_LEFT) in call.changes else None
            with anyio.fail_after(LIMIT):
                async with anyio.create_task_group() as tasks:
                    tasks.start_soon(pyclm.saf.serve_anyio, made.handle)
                    await cluster.abort(2)
                    await left.wait()
                    assert saClm.saClmFinalize(made.handle) == E.SA_AIS_OK  # ends serve_anyio
            [call] = made.tracks
            assert call.changes == [(1, C.SA_CLM_NODE_NO_CHANGE), (2, C.SA_CLM_NODE_LEFT), (3, C.SA_CLM_NODE_NO_CHANGE)]
            assert call.thread == threading.get_ident()


def test_the_code_check_refuses_a_code_the_handles_version_does_not_have(
    catalog: BackgroundCluster, monkeypatch: pytest.MonkeyPatch
) -> None:
    b01, b04 = client(1), client(4)
    # A broken facade that answered UNAVAILABLE: a B.04 handle may get it, a B.01 handle may not.
    monkeypatch.setattr(_api, "cluster_track_stop", lambda handle: E.SA_AIS_ERR_UNAVAILABLE)
    assert saClm.saClmClusterTrackStop(b04.handle) == E.SA_AIS_ERR_UNAVAILABLE
    with pytest.raises(AssertionError, match=r"SA_AIS_ERR_UNAVAILABLE to a B\.01 handle"):
        saClm.saClmClusterTrackStop(b01.handle)
