"""The SA Forum CLM API on pyclm, with the module and names of OpenSAF's pyosaf bindings.

A program written against pyosaf (``from pyosaf import saAis, saClm``) runs on
pyclm when its import becomes ``from pyclm.saf import saAis, saClm``, and the process
names the node the API speaks for:

    async with pyclm.Node(config, quorum, transport) as node:
        with pyclm.saf.bind(node):
            ...  # saClmInitialize_4, saClmClusterTrack_4, saClmDispatch, ...

The node may run its event loop in another thread (pyosaf programs are synchronous):
see docs/saf.md, which also lists what is supported, the versions (B.01.01, B.02.01 and
B.04.01), every choice made where the SAF sources disagree, and a porting guide.

``saAis``: the common AIS types, constants and enumerations.
``saClm``: the CLM types, callback types and functions.
``saNtf``: the NTF correlation-id types the B.04 track callback carries.

:func:`bind` / :func:`unbind`: which node handles speak for (one per process).
:func:`bind_daemon`: speak for the host's ``pyclm node`` (docs/daemon.md) from a program
without an event loop.
:func:`attach_asyncio` / :func:`serve_anyio`: run a handle's callbacks on an event loop
instead of calling ``saClmDispatch``.
"""

from __future__ import annotations

from pyclm.saf import saAis, saClm, saNtf
from pyclm.saf._api import attach_asyncio, serve_anyio
from pyclm.saf._binding import Binding, bind, unbind
from pyclm.saf._daemon import DaemonBinding, bind_daemon

__all__ = [
    "Binding",
    "DaemonBinding",
    "attach_asyncio",
    "bind",
    "bind_daemon",
    "saAis",
    "saClm",
    "saNtf",
    "serve_anyio",
    "unbind",
]
