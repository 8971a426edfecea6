"""The SAF plumbing: selection object, callback queue, event-loop integration.

Every blocking call here has a timeout, every thread is joined with one, and threads are
synchronised with events, not sleeps.
"""

from __future__ import annotations

import asyncio
import os
import random
import select
import threading
import time
from collections.abc import Callable, Iterator

import anyio
import anyio.to_thread
import pytest

from pyclm.errors import UsageError
from pyclm.saf._callbacks import CallbackKind, CallbackQueue, PendingCallback
from pyclm.saf._loop import attach_asyncio, serve_anyio
from pyclm.saf._selection import Backend, SelectionObject

BACKENDS: list[Backend] = ["eventfd", "socketpair"] if hasattr(os, "eventfd") else ["socketpair"]
TIMEOUT = 10.0  # upper bound for anything that should happen "at once"


@pytest.fixture(params=BACKENDS)
def backend(request: pytest.FixtureRequest) -> Backend:
    value: Backend = request.param
    return value


@pytest.fixture
def queue(backend: Backend) -> Iterator[CallbackQueue[int]]:
    q: CallbackQueue[int] = CallbackQueue(backend=backend)
    yield q
    q.close()


def readable_select(fd: int) -> bool:
    ready, _, _ = select.select([fd], [], [], 0)
    return fd in ready


def readable_poll(fd: int) -> bool:
    poller = select.poll()
    poller.register(fd, select.POLLIN)
    return any(events & select.POLLIN for _, events in poller.poll(0))


def readable(fd: int) -> bool:
    """Readable according to both select and poll (they must agree)."""
    by_select = readable_select(fd)
    assert readable_poll(fd) == by_select
    return by_select


def fd_is_open(fd: int) -> bool:
    try:
        os.fstat(fd)
    except OSError:
        return False
    return True


def track(n: int) -> PendingCallback[int]:
    return PendingCallback(kind=CallbackKind.TRACK, payload=n)


def node_get(n: int) -> PendingCallback[int]:
    return PendingCallback(kind=CallbackKind.NODE_GET, payload=n)


def of_kind(kind: CallbackKind) -> Callable[[PendingCallback[int]], bool]:
    return lambda p: p.kind is kind


def join(thread: threading.Thread) -> None:
    thread.join(TIMEOUT)
    assert not thread.is_alive(), f"{thread.name} did not finish within {TIMEOUT} s"


# -- SelectionObject ------------------------------------------------------------------


def test_readable_exactly_while_signalled(backend: Backend) -> None:
    with SelectionObject(backend=backend) as sel:
        fd = sel.fileno()
        assert not readable(fd)
        for _ in range(3):
            sel.signal()
        assert readable(fd)
        assert sel.pending == 3
        assert sel.consume()
        assert sel.consume()
        assert readable(fd)
        assert sel.consume()
        assert not readable(fd)
        assert not sel.consume()
        assert not readable(fd)
        assert sel.consumed == 3
        sel.signal()
        assert readable(fd)


def test_counts_survive_many_signals(backend: Backend) -> None:
    # More than a socket buffer holds one-byte writes (a few hundred on Linux).
    n = 10_000
    with SelectionObject(backend=backend) as sel:
        fd = sel.fileno()
        for _ in range(n):
            sel.signal()
        assert readable(fd)
        for i in range(n):
            assert sel.consume(), f"count lost after {i} consumes"
        assert not sel.consume()
        assert not readable(fd)


def test_close_is_idempotent_and_fileno_raises_after(backend: Backend) -> None:
    sel = SelectionObject(backend=backend)
    fd = sel.fileno()
    assert not sel.closed
    sel.close()
    sel.close()
    assert sel.closed
    assert not fd_is_open(fd)
    with pytest.raises(UsageError, match="finalized"):
        sel.fileno()
    with pytest.raises(UsageError):
        sel.signal()
    with pytest.raises(UsageError):
        sel.consume()


def test_default_backend_prefers_eventfd_and_falls_back(monkeypatch: pytest.MonkeyPatch) -> None:
    with SelectionObject() as sel:
        assert sel.backend == ("eventfd" if hasattr(os, "eventfd") else "socketpair")
    monkeypatch.delattr(os, "eventfd", raising=False)
    with SelectionObject() as sel:
        assert sel.backend == "socketpair"
        sel.signal()
        assert readable(sel.fileno())
    with pytest.raises(UsageError, match="socketpair"):
        SelectionObject(backend="eventfd")


def test_close_while_watched_keeps_fd_readable_until_end_watch(backend: Backend) -> None:
    sel = SelectionObject(backend=backend)
    fd = sel.begin_watch()
    with pytest.raises(UsageError, match="already watched"):
        sel.begin_watch()
    sel.close()
    assert sel.closed
    assert fd_is_open(fd)
    assert readable(fd)  # the watcher wakes up to see the close
    sel.end_watch()
    assert not fd_is_open(fd)
    sel.end_watch()  # idempotent


def test_watch_can_be_claimed_again_after_end_watch(backend: Backend) -> None:
    with SelectionObject(backend=backend) as sel:
        fd = sel.begin_watch()
        sel.end_watch()
        assert fd_is_open(fd)
        assert sel.begin_watch() == fd
        sel.end_watch()


# -- CallbackQueue --------------------------------------------------------------------


def test_pending_callback_validates_kind() -> None:
    with pytest.raises(TypeError):
        PendingCallback(kind="track", payload=1)  # type: ignore[arg-type]


def test_queue_takes_either_a_selection_or_a_backend() -> None:
    with SelectionObject(backend="socketpair") as sel:
        assert CallbackQueue[int](selection=sel).selection is sel
        with pytest.raises(UsageError, match="not both"):
            CallbackQueue[int](selection=sel, backend="socketpair")


def test_queue_is_fifo_and_readable_iff_nonempty(queue: CallbackQueue[int]) -> None:
    fd = queue.selection.fileno()
    assert queue.take() is None
    assert not readable(fd)
    for n in range(5):
        assert queue.put(track(n))
        assert readable(fd)
    taken = []
    while (item := queue.take()) is not None:
        taken.append(item.payload)
        assert readable(fd) == (len(queue) > 0)
    assert taken == [0, 1, 2, 3, 4]
    assert not readable(fd)


def test_random_operations_keep_readability_consistent(queue: CallbackQueue[int]) -> None:
    rng = random.Random(4)
    fd = queue.selection.fileno()
    model: list[PendingCallback[int]] = []
    for step in range(3000):
        op = rng.random()
        if op < 0.5:
            item = track(step) if rng.random() < 0.5 else node_get(step)
            assert queue.put(item)
            model.append(item)
        elif op < 0.95:
            got = queue.take()
            assert got == (model.pop(0) if model else None)
        else:
            kind = rng.choice(list(CallbackKind))
            expected = [item for item in model if item.kind is not kind]
            assert queue.purge(of_kind(kind)) == len(model) - len(expected)
            model = expected
        assert len(queue) == len(model)
        assert readable(fd) == bool(model), f"step {step}"


def test_purge_removes_track_callbacks_and_keeps_node_get_results(queue: CallbackQueue[int]) -> None:
    fd = queue.selection.fileno()
    for item in (track(1), node_get(2), track(3), node_get(4), track(5)):
        queue.put(item)
    assert queue.purge(lambda p: p.kind is CallbackKind.TRACK) == 3
    assert queue.selection.pending == 2
    assert queue.purge(lambda p: p.kind is CallbackKind.TRACK) == 0
    assert readable(fd)
    assert [queue.take(), queue.take()] == [node_get(2), node_get(4)]
    assert not readable(fd)
    queue.put(track(6))
    assert queue.purge(lambda p: True) == 1
    assert not readable(fd)
    assert queue.take() is None


def test_take_never_blocks(queue: CallbackQueue[int]) -> None:
    results: list[PendingCallback[int] | None] = []
    taker = threading.Thread(target=lambda: results.append(queue.take()), name="taker")
    taker.start()
    join(taker)
    assert results == [None]


def test_wait_times_out_on_an_empty_queue(queue: CallbackQueue[int]) -> None:
    assert queue.wait(0) is False
    assert queue.wait(0.01) is False
    queue.put(track(1))
    assert queue.wait(0) is True
    assert queue.wait(None) is True


def test_wait_returns_when_another_thread_puts(queue: CallbackQueue[int]) -> None:
    started = threading.Event()
    results: list[tuple[bool, float]] = []

    def waiter() -> None:
        started.set()
        t0 = time.monotonic()
        results.append((queue.wait(TIMEOUT), time.monotonic() - t0))

    thread = threading.Thread(target=waiter, name="waiter")
    thread.start()
    assert started.wait(TIMEOUT)
    thread.join(0.05)  # give it the chance to block; put wakes it either way
    assert thread.is_alive(), "wait() returned on an empty queue"
    putter = threading.Thread(target=lambda: queue.put(node_get(7)), name="putter")
    putter.start()
    join(putter)
    join(thread)
    [(pending, elapsed)] = results
    assert pending
    assert elapsed < TIMEOUT / 2
    assert queue.take() == node_get(7)


def test_close_from_another_thread_ends_every_wait(queue: CallbackQueue[int]) -> None:
    ready = threading.Barrier(4, timeout=TIMEOUT)
    results: list[tuple[bool, float]] = []
    lock = threading.Lock()

    def waiter() -> None:
        ready.wait()
        t0 = time.monotonic()
        pending = queue.wait(TIMEOUT)
        with lock:
            results.append((pending, time.monotonic() - t0))

    waiters = [threading.Thread(target=waiter, name=f"waiter-{i}") for i in range(3)]
    for thread in waiters:
        thread.start()
    ready.wait()
    for thread in waiters:
        thread.join(0.05)
        assert thread.is_alive(), "wait() returned on an empty queue"
    closer = threading.Thread(target=queue.close, name="closer")
    closer.start()
    join(closer)
    for thread in waiters:
        join(thread)
    assert len(results) == 3
    for pending, elapsed in results:
        assert pending is False
        assert elapsed < TIMEOUT / 2, "wait() ran into its timeout instead of being woken by close()"


def test_close_drops_everything_and_refuses_puts(queue: CallbackQueue[int]) -> None:
    fd = queue.selection.fileno()
    queue.put(track(1))
    queue.put(node_get(2))
    assert queue.close() == 2
    assert queue.close() == 0
    assert queue.closed
    assert len(queue) == 0
    assert queue.take() is None
    assert queue.put(track(3)) is False
    assert queue.wait(TIMEOUT) is False
    assert queue.purge(lambda p: True) == 0
    assert not fd_is_open(fd)
    with pytest.raises(UsageError):
        queue.selection.fileno()


def test_blocking_dispatchers_each_take_every_item_exactly_once(queue: CallbackQueue[int]) -> None:
    total = 2000
    taken: list[int] = []
    lock = threading.Lock()
    all_taken = threading.Event()

    def dispatch_blocking() -> None:  # SA_DISPATCH_BLOCKING
        while queue.wait(TIMEOUT):
            item = queue.take()
            if item is None:
                continue  # another dispatcher was quicker
            with lock:
                taken.append(item.payload)
                if len(taken) == total:
                    all_taken.set()

    def produce(start: int) -> None:
        for n in range(start, total, 2):
            assert queue.put(track(n))

    dispatchers = [threading.Thread(target=dispatch_blocking, name=f"dispatcher-{i}") for i in range(3)]
    producers = [threading.Thread(target=produce, args=(i,), name=f"producer-{i}") for i in range(2)]
    for thread in dispatchers + producers:
        thread.start()
    for thread in producers:
        join(thread)
    assert all_taken.wait(TIMEOUT)
    assert not readable(queue.selection.fileno())
    queue.close()  # finalize ends SA_DISPATCH_BLOCKING
    for thread in dispatchers:
        join(thread)
    assert sorted(taken) == list(range(total))


# -- asyncio add_reader ---------------------------------------------------------------


def drain_into(
    queue: CallbackQueue[int], sink: list[int], on_item: Callable[[], object] | None = None
) -> Callable[[], None]:
    """A dispatch function: SA_DISPATCH_ALL, recording payloads (and calling ``on_item``)."""

    def dispatch() -> None:
        while (item := queue.take()) is not None:
            sink.append(item.payload)
            if on_item is not None:
                on_item()

    return dispatch


async def until(predicate: Callable[[], bool], rounds: int = 100) -> bool:
    """Let the loop run a few iterations (no wall clock) until ``predicate`` holds."""
    for _ in range(rounds):
        if predicate():
            return True
        await asyncio.sleep(0)
    return predicate()


@pytest.mark.asyncio
async def test_asyncio_dispatches_items_put_inside_the_loop(queue: CallbackQueue[int]) -> None:
    got: list[int] = []
    threads: set[int] = set()
    done = asyncio.Event()

    def on_item() -> None:
        threads.add(threading.get_ident())
        if len(got) == 3:
            done.set()

    reader = attach_asyncio(queue, drain_into(queue, got, on_item))
    for n in range(3):
        queue.put(track(n))
    await asyncio.wait_for(done.wait(), TIMEOUT)
    assert got == [0, 1, 2]
    assert threads == {threading.get_ident()}
    assert not readable(queue.selection.fileno())
    reader.detach()


@pytest.mark.asyncio
async def test_asyncio_dispatches_items_put_from_another_thread(queue: CallbackQueue[int]) -> None:
    loop = asyncio.get_running_loop()
    got: list[int] = []
    threads: set[int] = set()
    done = asyncio.Event()

    def on_item() -> None:
        threads.add(threading.get_ident())
        if len(got) == 50:
            done.set()

    reader = attach_asyncio(queue, drain_into(queue, got, on_item), loop)
    producer = threading.Thread(target=lambda: [queue.put(node_get(n)) for n in range(50)], name="producer")
    producer.start()
    await asyncio.wait_for(done.wait(), TIMEOUT)
    await loop.run_in_executor(None, join, producer)
    assert got == list(range(50))
    assert threads == {threading.get_ident()}
    reader.detach()


@pytest.mark.asyncio
async def test_asyncio_detach_is_idempotent_and_leaves_no_reader(queue: CallbackQueue[int]) -> None:
    loop = asyncio.get_running_loop()
    calls: list[int] = []
    reader = attach_asyncio(queue, lambda: calls.append(1))
    fd = queue.selection.fileno()
    with pytest.raises(UsageError, match="already watched"):
        attach_asyncio(queue, lambda: None)
    reader.detach()
    reader.detach()
    assert not reader.attached
    assert loop.remove_reader(fd) is False  # nothing registered any more
    queue.put(track(1))
    await asyncio.sleep(0)
    await asyncio.sleep(0)
    assert calls == []
    queue.close()
    assert not fd_is_open(fd)
    reader.detach()  # still fine after finalize


@pytest.mark.asyncio
async def test_asyncio_finalize_from_another_thread_detaches_then_closes_the_fd(queue: CallbackQueue[int]) -> None:
    loop = asyncio.get_running_loop()
    calls: list[int] = []
    reader = attach_asyncio(queue, lambda: calls.append(1))
    fd = queue.selection.fileno()
    closer = threading.Thread(target=queue.close, name="finalizer")
    closer.start()
    join(closer)  # blocks the loop on purpose: the reader cannot have run yet
    assert fd_is_open(fd), "closed under the loop's registration"
    assert await until(lambda: not reader.attached)
    assert not fd_is_open(fd)
    assert calls == []  # never dispatched for a finalized handle
    assert loop.remove_reader(fd) is False


@pytest.mark.asyncio
async def test_asyncio_finalize_inside_a_callback(queue: CallbackQueue[int]) -> None:
    fd = queue.selection.fileno()
    got: list[int] = []
    reader = attach_asyncio(queue, drain_into(queue, got, lambda: queue.close()))
    queue.put(track(1))
    queue.put(track(2))
    assert await until(lambda: not reader.attached)
    assert got == [1]  # the close dropped the second
    assert not fd_is_open(fd)


@pytest.mark.asyncio
async def test_asyncio_detach_from_another_thread(queue: CallbackQueue[int]) -> None:
    loop = asyncio.get_running_loop()
    reader = attach_asyncio(queue, lambda: None)
    detacher = threading.Thread(target=reader.detach, name="detacher")
    detacher.start()
    await loop.run_in_executor(None, join, detacher)
    assert await until(lambda: not reader.attached)
    assert loop.remove_reader(queue.selection.fileno()) is False


@pytest.mark.asyncio
async def test_asyncio_does_not_spin_when_dispatch_takes_nothing(queue: CallbackQueue[int]) -> None:
    calls = 0
    working = False
    got: list[int] = []
    done = asyncio.Event()

    def dispatch() -> None:
        nonlocal calls
        calls += 1
        if working:
            drain_into(queue, got, done.set)()

    reader = attach_asyncio(queue, dispatch)
    queue.put(track(1))
    await asyncio.sleep(0.2)
    # Back-off 1, 2, 4, ... ms gives about 8 calls in 0.2 s; a spinning reader makes thousands.
    assert 1 <= calls <= 20
    working = True
    await asyncio.wait_for(done.wait(), TIMEOUT)
    assert got == [1]
    reader.detach()


def test_attach_asyncio_needs_a_loop(queue: CallbackQueue[int]) -> None:
    with pytest.raises(UsageError, match="loop="):
        attach_asyncio(queue, lambda: None)
    queue.selection.begin_watch()  # the failed attach left no claim behind
    queue.selection.end_watch()


# -- anyio (asyncio and trio) ---------------------------------------------------------


@pytest.mark.anyio
async def test_serve_anyio_dispatches_on_the_loop_and_ends_at_finalize(queue: CallbackQueue[int]) -> None:
    got: list[int] = []
    threads: set[int] = set()
    first = anyio.Event()
    second = anyio.Event()
    fd = queue.selection.fileno()

    def on_item() -> None:
        threads.add(threading.get_ident())
        if len(got) == 3:
            first.set()
        if len(got) == 23:
            second.set()

    late: list[int] = []
    drain = drain_into(queue, got, on_item)

    def dispatch() -> None:
        if queue.closed:
            late.append(1)
        drain()

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve_anyio, queue, dispatch)
            for n in range(3):
                queue.put(track(n))  # from inside the loop
            await first.wait()
            await anyio.to_thread.run_sync(lambda: [queue.put(node_get(n)) for n in range(3, 23)])
            await second.wait()
            assert fd_is_open(fd)
            await anyio.to_thread.run_sync(queue.close)  # finalize from another thread
        # the task group ends only because serve_anyio returned
    assert got == list(range(23))
    assert threads == {threading.get_ident()}
    assert late == []  # never dispatched for a finalized handle
    assert not fd_is_open(fd)


@pytest.mark.anyio
async def test_serve_anyio_ends_when_a_callback_finalizes(queue: CallbackQueue[int]) -> None:
    got: list[int] = []
    fd = queue.selection.fileno()
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve_anyio, queue.selection, drain_into(queue, got, lambda: queue.close()))
            queue.put(track(1))
            queue.put(track(2))
    assert got == [1]
    assert not fd_is_open(fd)


@pytest.mark.anyio
async def test_serve_anyio_cancelled_releases_the_fd(queue: CallbackQueue[int]) -> None:
    fd = queue.selection.fileno()
    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve_anyio, queue, lambda: None)
            await anyio.wait_all_tasks_blocked()
            with pytest.raises(UsageError, match="already watched"):
                await serve_anyio(queue, lambda: None)
            tg.cancel_scope.cancel()
    queue.close()
    assert not fd_is_open(fd)  # the cancelled watcher let go, so close closed at once


@pytest.mark.anyio
async def test_serve_anyio_does_not_spin_when_dispatch_takes_nothing(queue: CallbackQueue[int]) -> None:
    calls = 0
    working = False
    got: list[int] = []
    done = anyio.Event()

    def dispatch() -> None:
        nonlocal calls
        calls += 1
        if working:
            drain_into(queue, got, done.set)()

    with anyio.fail_after(TIMEOUT):
        async with anyio.create_task_group() as tg:
            tg.start_soon(serve_anyio, queue, dispatch)
            queue.put(track(1))
            await anyio.sleep(0.2)
            assert 1 <= calls <= 20
            working = True
            await done.wait()
            queue.close()
    assert got == [1]


@pytest.mark.anyio
async def test_serve_anyio_propagates_dispatch_errors(queue: CallbackQueue[int]) -> None:
    fd = queue.selection.fileno()

    def dispatch() -> None:
        raise ValueError("callback failed")

    queue.put(track(1))
    with anyio.fail_after(TIMEOUT), pytest.raises(ValueError, match="callback failed"):
        await serve_anyio(queue, dispatch)
    queue.selection.begin_watch()  # released on the way out
    queue.selection.end_watch()
    assert fd_is_open(fd)
