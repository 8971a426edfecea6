"""Run a handle's callbacks on an event loop: no dispatch thread, no polling.

Theory of operation
-------------------
A SAF application either polls the selection object and calls ``saClmDispatch`` itself,
or lets its event loop do it: watch the descriptor, and whenever it is readable call
``dispatch`` (for the facade: ``saClmDispatch(handle, SA_DISPATCH_ALL)``), on the loop's
thread.  :func:`attach_asyncio` does this with ``loop.add_reader``; :func:`serve_anyio`
is a task that does it with ``anyio.wait_readable`` (asyncio or trio).

Three things make it safe:

* **Closing.**  The watcher claims the descriptor (``SelectionObject.begin_watch``), so
  finalizing the handle, from any thread, cannot close the descriptor under the loop;
  it makes it readable instead.  The watcher wakes, sees the object closed, removes its
  registration and lets go (``end_watch``), and only then is the descriptor closed.  It
  never calls ``dispatch`` for a closed handle.
* **No spinning.**  The descriptor is level-triggered.  If it is still readable after a
  ``dispatch`` that consumed nothing (a dispatch that cannot run its callbacks), the
  watcher would wake again at once, forever; instead it backs off, doubling a pause from
  1 ms up to half a second, and resets once a dispatch makes progress.  A wakeup that
  finds nothing because another thread dispatched first is not a stall: the descriptor
  is no longer readable, and the watcher just waits again.
* **Errors.**  An exception out of ``dispatch`` reaches the asyncio loop's exception
  handler (the reader stays attached), or ends :func:`serve_anyio` (it propagates into
  the caller's task group).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

import anyio

from ..errors import UsageError
from ._callbacks import CallbackQueue
from ._selection import SelectionObject

__all__ = ["AsyncioReader", "attach_asyncio", "serve_anyio"]

Dispatch = Callable[[], object]
"""Runs the pending callbacks of one handle (the facade: ``saClmDispatch(h, SA_DISPATCH_ALL)``)."""

_BACKOFF_MIN = 0.001
_BACKOFF_MAX = 0.5


def _selection_of(source: SelectionObject | CallbackQueue[Any]) -> SelectionObject:
    return source.selection if isinstance(source, CallbackQueue) else source


def _stalled(selection: SelectionObject, consumed_before: int) -> bool:
    """True if a dispatch consumed nothing and left the descriptor readable (waking again would spin)."""
    return selection.consumed == consumed_before and selection.pending > 0


def _next_backoff(delay: float) -> float:
    return min(max(2 * delay, _BACKOFF_MIN), _BACKOFF_MAX)


class AsyncioReader:
    """A selection object watched by an asyncio loop; made by :func:`attach_asyncio`.

    :meth:`detach` ends it; closing the selection object (finalize) ends it by itself.
    """

    def __init__(
        self,
        selection: SelectionObject,
        dispatch: Dispatch,
        loop: asyncio.AbstractEventLoop,
    ) -> None:
        self._selection = selection
        self._dispatch = dispatch
        self._loop = loop
        self._fd = selection.begin_watch()
        self._attached = True
        self._delay = 0.0
        self._timer: asyncio.TimerHandle | None = None
        try:
            loop.add_reader(self._fd, self._on_readable)
        except NotImplementedError:
            self._attached = False
            selection.end_watch()
            raise UsageError(
                "this asyncio loop cannot watch file descriptors (the Windows proactor loop); "
                "use a selector event loop, or serve_anyio(), which falls back to a selector thread"
            ) from None
        except BaseException:
            self._attached = False
            selection.end_watch()
            raise

    @property
    def attached(self) -> bool:
        """True until the reader is detached (by :meth:`detach` or because the handle was finalized)."""
        return self._attached

    def detach(self) -> None:
        """Stop watching.  Idempotent; safe after the selection object was closed.

        Call it from the loop's thread.  From another thread, while the loop runs, the
        removal is scheduled on the loop (``call_soon_threadsafe``) and :attr:`attached`
        turns False when it has happened.
        """
        if not self._attached:
            return
        try:
            on_loop = asyncio.get_running_loop() is self._loop
        except RuntimeError:
            on_loop = False
        if on_loop or not self._loop.is_running():
            self._detach_now()
        else:
            self._loop.call_soon_threadsafe(self._detach_now)

    def _detach_now(self) -> None:
        if not self._attached:
            return
        self._attached = False
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        if not self._loop.is_closed():
            self._loop.remove_reader(self._fd)
        self._selection.end_watch()  # closes the descriptor if the handle was finalized meanwhile

    def _on_readable(self) -> None:
        if not self._attached:
            return
        if self._selection.closed:
            self._detach_now()
            return
        before = self._selection.consumed
        try:
            self._dispatch()
        finally:
            if self._selection.closed:
                self._detach_now()
            elif not self._attached:
                pass  # dispatch detached us
            elif _stalled(self._selection, before):
                self._delay = _next_backoff(self._delay)
                self._loop.remove_reader(self._fd)
                self._timer = self._loop.call_later(self._delay, self._resume)
            else:
                self._delay = 0.0

    def _resume(self) -> None:
        self._timer = None
        if not self._attached:
            return
        if self._selection.closed:
            self._detach_now()
            return
        self._loop.add_reader(self._fd, self._on_readable)

    def __repr__(self) -> str:
        return f"<AsyncioReader fd={self._fd} {'attached' if self._attached else 'detached'}>"


def attach_asyncio(
    source: SelectionObject | CallbackQueue[Any],
    dispatch: Dispatch,
    loop: asyncio.AbstractEventLoop | None = None,
) -> AsyncioReader:
    """Call ``dispatch()`` on ``loop`` whenever ``source``'s selection object is readable.

    ``loop`` defaults to the running loop; call this from the loop's thread (or before the
    loop runs).  One watcher per selection object: a second raises
    :class:`~pyclm.errors.UsageError`.  The returned reader detaches by itself when the
    selection object is closed; :meth:`AsyncioReader.detach` stops it earlier.
    """
    if loop is None:
        try:
            loop = asyncio.get_running_loop()
        except RuntimeError:
            raise UsageError("attach_asyncio() needs a loop: call it inside the running loop or pass loop=") from None
    return AsyncioReader(_selection_of(source), dispatch, loop)


async def serve_anyio(source: SelectionObject | CallbackQueue[Any], dispatch: Dispatch) -> None:
    """Call ``dispatch()`` in this task whenever ``source``'s selection object is readable; return once it is closed.

    Run it in a task group (``tg.start_soon(serve_anyio, queue, dispatch)``); finalizing
    the handle, from any thread, makes it return, and so does cancelling it.  An
    exception from ``dispatch`` ends it and propagates.  One watcher per selection object:
    a second raises :class:`~pyclm.errors.UsageError`.
    """
    selection = _selection_of(source)
    fd = selection.begin_watch()
    delay = 0.0
    try:
        while True:
            await anyio.wait_readable(fd)
            if selection.closed:
                return
            before = selection.consumed
            dispatch()
            if selection.closed:
                return
            if _stalled(selection, before):
                delay = _next_backoff(delay)
                await anyio.sleep(delay)
            else:
                delay = 0.0
    finally:
        selection.end_watch()
