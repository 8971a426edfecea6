"""A :class:`pyclm.Node` built from ``pyclm node``'s settings, embedded in any program.

``pyclm.open_node`` reads the same TOML file and settings as ``pyclm node``
(docs/daemon.md), so a program changes transport (``memory``, ``udp``, later ``tipc``),
addresses, keys and timing by configuration only::

    async with pyclm.open_node("node.toml") as node:            # asyncio or trio
        async with pyclm.open_node(node_id=1, nodes="1-3", transport="udp") as node:
            ...

It opens the transport stack, locks the state directory and keeps the voting state in
it (``STATE_DIR/state``), as the daemon does; it does not serve a control socket, print
events or handle signals: those are the program's to choose.  Leaving the block leaves
the cluster (as :class:`pyclm.Node` does).
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import AsyncIterator, Mapping
from typing import Any

from ..runtime import Node
from ..storage import FileStorage
from .settings import NodeSettings, resolve
from .statedir import locked_state_dir
from .wiring import Stack, open_stack


def make_node(settings: NodeSettings, stack: Stack) -> Node:
    """The node ``pyclm node`` and :func:`open_node` run: on the stack, voting state in ``STATE_DIR/state``."""
    return Node(settings.membership, settings.quorum, stack.transport, FileStorage(settings.state_dir / "state"))


def settings_from(config: str | os.PathLike[str] | None, overrides: Mapping[str, Any]) -> NodeSettings:
    """``pyclm node``'s settings from a config file and keyword overrides (flag names with underscores)."""
    flags = dict(overrides)
    if config is not None:
        flags["config"] = os.fspath(config)
    return resolve(flags)


@contextlib.asynccontextmanager
async def open_node(config: str | os.PathLike[str] | None = None, /, **settings: Any) -> AsyncIterator[Node]:
    """Run a :class:`pyclm.Node` configured like ``pyclm node`` (see the module docstring).

    ``config`` is a TOML file of settings; keyword ``settings`` win over it.  A bad
    setting raises :class:`~pyclm.errors.ConfigError` naming it, before any socket opens.
    """
    resolved = settings_from(config, settings)
    with locked_state_dir(resolved.state_dir):
        async with open_stack(resolved) as stack, make_node(resolved, stack) as node:
            yield node
