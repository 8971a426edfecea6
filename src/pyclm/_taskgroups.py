"""One helper for the anyio glue: leave a task group without wrapping the body's own error."""

from __future__ import annotations

from types import TracebackType

import anyio.abc


async def exit_task_group(
    task_group: anyio.abc.TaskGroup,
    exc_type: type[BaseException] | None,
    exc: BaseException | None,
    tb: TracebackType | None,
) -> bool | None:
    """``task_group.__aexit__``, except that the body's exception comes out as itself.

    anyio wraps an exception raised in the ``async with`` body into an exception group
    when it is the only one; users of ``async with Node(...)`` expect their own error.
    """
    try:
        return await task_group.__aexit__(exc_type, exc, tb)
    except BaseExceptionGroup as group:
        if exc is not None and len(group.exceptions) == 1 and group.exceptions[0] is exc:
            return False  # the body's own exception: let it through unwrapped
        raise
