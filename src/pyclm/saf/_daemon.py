"""The SAF facade for a synchronous program, speaking for the ``pyclm node`` of its host.

pyosaf programs have no event loop.  :func:`bind_daemon` starts one in a thread of its
own, attaches to the daemon there (:func:`pyclm.remote.attach`) and binds the facade to
the attached node, so the program then calls ``saClmInitialize_4``, ``saClmDispatch``
and the rest as it would on OpenSAF::

    with pyclm.saf.bind_daemon(state_dir="/var/lib/pyclm/node-1"):
        ...  # saClmInitialize_4(handle, callbacks, version), ...

If the daemon leaves or stops, the binding's handles go stale as with an embedded node
(the next dispatch answers ``SA_AIS_ERR_BAD_HANDLE``); bind again once it is back.
"""

from __future__ import annotations

import contextlib
import threading
from pathlib import Path
from types import TracebackType
from typing import Any, Self

import anyio
import anyio.from_thread

from ..remote import attach
from ._binding import Binding, bind, unbind


class DaemonBinding:
    """The thread that keeps the daemon attached, and the facade's binding to it."""

    def __init__(self) -> None:
        self.binding: Binding | None = None
        self.error: BaseException | None = None
        self._ready = threading.Event()
        self._portal: Any = None
        self._stop: anyio.Event | None = None
        self._thread: threading.Thread | None = None

    def _run(self, path: dict[str, Any]) -> None:
        async def main() -> None:
            self._stop = anyio.Event()
            try:
                async with attach(**path) as node, anyio.from_thread.BlockingPortal() as portal:
                    self._portal = portal
                    self.binding = bind(node)
                    self._ready.set()
                    await self._stop.wait()
            except BaseException as exc:  # handed to the caller of bind_daemon
                self.error = exc
                raise
            finally:
                self._ready.set()

        with contextlib.suppress(BaseException):  # (kept in self.error)
            anyio.run(main)

    def close(self) -> None:
        """Unbind (handles go stale) and detach; idempotent."""
        if self.binding is not None:
            unbind(self.binding)
        portal, stop = self._portal, self._stop
        if portal is not None and stop is not None and self._thread is not None and self._thread.is_alive():
            with contextlib.suppress(RuntimeError):  # the loop already ended (the daemon went away)
                portal.call(stop.set)
        if self._thread is not None:
            self._thread.join(timeout=10)

    def __enter__(self) -> Self:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()


def bind_daemon(
    control_socket: str | Path | None = None,
    *,
    state_dir: str | Path | None = None,
    node_id: int | None = None,
    timeout: float = 10.0,
) -> DaemonBinding:
    """Attach to the host's ``pyclm node`` in a background thread and bind the facade to it.

    The socket is found as by ``pyclm status``.  Raises
    :class:`~pyclm.daemon.client.ControlError` if no node answers within ``timeout`` seconds.
    """
    from ..daemon.client import ControlError

    daemon = DaemonBinding()
    path = {"control_socket": control_socket, "state_dir": state_dir, "node_id": node_id}
    daemon._thread = threading.Thread(target=daemon._run, args=(path,), name="pyclm-saf-daemon", daemon=True)
    daemon._thread.start()
    if not daemon._ready.wait(timeout):
        daemon.close()
        raise ControlError(f"no answer from the node within {timeout}s")
    if daemon.error is not None:
        daemon._thread.join(timeout)
        raise daemon.error
    if daemon.binding is None:
        raise ControlError("the node went away while attaching")
    return daemon
