"""AF_TIPC sockets for :mod:`pyclm.transports.tipc`: the kernel's constants, port ids, opening.

The constants are the Linux uapi values of ``linux/tipc.h`` (a stable kernel ABI).  They are
spelled out here because Python's :mod:`socket` lacks some (``TIPC_ADDR_MCAST``,
``TIPC_NODE_STATE``, ``TIPC_MAX_USER_MSG_SIZE``) and has others only where Python was built
with ``linux/tipc.h``; what Python needs to be built with is checked once, in
:func:`open_socket`.
"""

from __future__ import annotations

import errno
import os
import socket

import attrs

from ..errors import ConfigError

AF_TIPC = 30
SOL_TIPC = 271
#: Address types.  A multicast destination is a name *sequence*: ``TIPC_ADDR_MCAST`` is 1,
#: the same value as ``TIPC_ADDR_NAMESEQ`` (Python has no constant for it).
TIPC_ADDR_NAMESEQ = 1
TIPC_ADDR_MCAST = 1
TIPC_ADDR_NAME = 2
TIPC_ADDR_ID = 3
TIPC_CLUSTER_SCOPE = 2
#: Service types 0..63 are TIPC's own (0: node state, 1: the topology server, 2: link state).
TIPC_NODE_STATE = 0
TIPC_TOP_SRV = 1
TIPC_RESERVED_TYPES = 64
#: The longest message a TIPC socket sends (66001 bytes fail with EMSGSIZE).
TIPC_MAX_USER_MSG_SIZE = 66000
TIPC_IMPORTANCE = 127
TIPC_CRITICAL_IMPORTANCE = 3
TIPC_DEST_DROPPABLE = 129
U32 = 0xFFFFFFFF


@attrs.frozen(kw_only=True)
class TipcPortId:
    """A TIPC socket's identity, and a :class:`~pyclm.transports.tipc.TipcTransport` address.

    ``node`` is the 32-bit TIPC node address of the socket's host (0 on a host with no
    bearer enabled: single-node mode), ``port`` the socket's port number, unique on its
    host.  It is what ``recvfrom`` reports as a datagram's origin, so it is what
    :meth:`~pyclm.transports.tipc.TipcTransport.receive` returns as the source and
    :meth:`~pyclm.transports.tipc.TipcTransport.send` takes back as a destination.
    Printed as ``node:port`` with the node in hex, as ``tipc nametable show`` does.
    """

    node: int
    port: int

    def __str__(self) -> str:
        return f"{self.node:08x}:{self.port}"

    @property
    def sockaddr(self) -> tuple[int, int, int, int, int]:
        """The address as Python's ``sendto`` takes it: ``(TIPC_ADDR_ID, node, port, 0, 0)``."""
        return (TIPC_ADDR_ID, self.node, self.port, 0, 0)

    @classmethod
    def from_sockaddr(cls, raw: object) -> TipcPortId | None:
        """The port id in what ``recvfrom``/``getsockname`` return, ``(TIPC_ADDR_ID, node, port, 0, scope)``."""
        if isinstance(raw, tuple) and len(raw) == 5 and raw[0] == TIPC_ADDR_ID:
            return cls(node=raw[1], port=raw[2])
        return None


def unavailable_problem() -> str:
    """What to tell a user whose kernel refuses AF_TIPC sockets (EAFNOSUPPORT)."""
    release = os.uname().release
    return (
        f"TIPC is not available: this kernel ({release}) has no AF_TIPC sockets. Load the tipc kernel "
        "module: `modprobe tipc` (as root; Debian's standard kernel package has it, some distributions "
        f"ship it apart, e.g. Ubuntu in linux-modules-extra-{release}); a kernel built without "
        "CONFIG_TIPC cannot run TIPC"
    )


def open_socket(kind: socket.SocketKind) -> socket.socket:
    """A new AF_TIPC socket of ``kind``, or one clear :class:`ConfigError` saying why TIPC is missing."""
    if not hasattr(socket, "AF_TIPC"):
        # Python parses AF_TIPC addresses only where it was built with linux/tipc.h.
        raise ConfigError("transport", "TIPC is not available: this Python was built without AF_TIPC support")
    try:
        return socket.socket(AF_TIPC, kind)
    except OSError as exc:
        if exc.errno == errno.EAFNOSUPPORT:
            raise ConfigError("transport", unavailable_problem()) from None
        raise ConfigError("transport", f"cannot open a TIPC socket: {exc.strerror or exc}") from None


def tipc_available() -> bool:
    """Whether this host can open AF_TIPC sockets (Python support and a kernel with TIPC loaded)."""
    try:
        open_socket(socket.SOCK_RDM).close()
    except ConfigError:
        return False
    return True
