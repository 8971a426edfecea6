"""The transport stack of ``pyclm node``: a network transport under a security envelope.

:func:`open_stack` builds, from the settings: the network transport (UDP multicast,
UDP unicast peers, or a memory network of one node), the :class:`~pyclm.security.Envelope`
(the keyring from ``key_file``, or insecure mode) and the
:class:`~pyclm.transports.secure.SecureTransport` that joins them.  It refuses to run
without a key on anything but loopback unless ``insecure`` is set.
"""

from __future__ import annotations

import contextlib
import ipaddress
import logging
from collections.abc import AsyncIterator

import anyio

from ..errors import ConfigError
from ..security import Envelope, Keyring
from ..transports.base import Transport
from ..transports.memory import MemoryNetwork, MemoryTransport
from ..transports.secure import SecureTransport
from ..transports.udp import UdpTransport
from .settings import NodeSettings

log = logging.getLogger("pyclm.daemon")

#: The network transports' counters that count lost datagrams (docs/udp.md).
NETWORK_DROPS = ("oversized", "returned", "buffer_full", "receive_error", "send_error")


class Stack:
    """The opened transport stack; :attr:`transport` is what the node runs on."""

    def __init__(self, network: Transport, envelope: Envelope, description: str) -> None:
        self.network = network
        self.envelope = envelope
        self.transport = SecureTransport(network, envelope)
        self.description = description

    def keyring(self) -> Keyring | None:
        return self.envelope.keyring

    def set_keyring(self, keyring: Keyring) -> None:
        self.envelope.set_keyring(keyring)

    def counters(self) -> dict[str, dict[str, int]]:
        """By layer: the network transport's (``udp`` / ``memory``) and the envelope's (``security``)."""
        out: dict[str, dict[str, int]] = {}
        if isinstance(self.network, MemoryTransport):
            out["memory"] = {"buffer_full": self.network.overflows}
        elif isinstance(self.network, UdpTransport):
            out["udp"] = self.network.counters()
        else:  # TipcTransport (imported only when used)
            out["tipc"] = self.network.counters()  # type: ignore[attr-defined]
        out["security"] = self.envelope.counters()
        return out

    def traffic(self) -> tuple[int | None, int | None]:
        """Datagrams the network transport received and sent (None: it does not count them)."""
        if isinstance(self.network, MemoryTransport):
            return None, None
        counters = self.counters()["udp" if isinstance(self.network, UdpTransport) else "tipc"]
        return counters["datagrams_in"], counters["datagrams_out"]

    def drops(self) -> dict[str, int]:
        """Datagrams dropped below the core, by ``layer.reason`` (own multicast echoes are not drops)."""
        out: dict[str, int] = {}
        for layer, counters in self.counters().items():
            for key, count in counters.items():
                if not count:
                    continue
                if layer == "security" and key.startswith("rx_dropped_"):
                    out[f"security.{key.removeprefix('rx_dropped_')}"] = count
                elif layer in ("udp", "tipc", "memory") and key in NETWORK_DROPS:
                    out[f"{layer}.{key}"] = count
        return out

    async def aclose(self) -> None:
        with anyio.CancelScope(shield=True):  # also on the way out of a cancelled task
            await self.transport.aclose()
            await self.network.aclose()


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host.split("%")[0]).is_loopback
    except ValueError:
        return False


def _load_keyring(settings: NodeSettings) -> Keyring | None:
    if settings.key_file is None:
        return None
    try:
        return Keyring.load(settings.key_file)
    except ConfigError as exc:
        raise ConfigError("key_file", str(exc)) from None


def _check_insecure(settings: NodeSettings, keyring: Keyring | None, hosts: list[str]) -> None:
    if keyring is not None:
        return
    exposed = [h for h in hosts if not _is_loopback(h)]
    if exposed and not settings.insecure:
        raise ConfigError(
            "key_file",
            f"missing: this node would talk on {exposed[0]} without authentication; give key_file "
            "(pyclm key generate FILE writes one) or, on a network you trust, --insecure",
        )
    if settings.insecure or exposed:
        log.warning("no key: datagrams are not authenticated (insecure mode)")


@contextlib.asynccontextmanager
async def open_stack(settings: NodeSettings) -> AsyncIterator[Stack]:
    """Open the transport stack the settings describe (ConfigError on a bad setting); closed on exit."""
    keyring = _load_keyring(settings)
    envelope = Envelope(
        node_id=settings.node_id, cluster_name=settings.cluster_name, keyring=keyring, encrypt=settings.encrypt
    )
    if settings.transport == "memory":
        _check_insecure(settings, keyring, [])
        async with MemoryNetwork() as memory:
            stack = Stack(memory.endpoint(settings.node_id), envelope, "a memory network of one node")
            try:
                yield stack
            finally:
                await stack.aclose()
        return
    if settings.transport == "tipc":
        from ..transports.tipc import TipcTransport  # (its module explains a kernel without TIPC)

        tipc = await TipcTransport.open(
            settings.node_id, service_type=settings.tipc_service_type, max_datagram=settings.max_datagram
        )
        async with tipc:
            stack = Stack(tipc, envelope, f"tipc service type {settings.tipc_service_type:#x}")
            try:
                _check_insecure(settings, keyring, ["tipc"])  # a TIPC bearer is a network: never loopback
                yield stack
            finally:
                await stack.aclose()
        return
    network = await _open_udp(settings)
    async with network:
        stack = Stack(network, envelope, _describe_udp(settings, network))
        try:
            _check_insecure(settings, keyring, _exposed_hosts(settings, network))
            yield stack
        finally:
            await stack.aclose()


async def _open_udp(settings: NodeSettings) -> UdpTransport:
    if settings.unicast:
        assert settings.listen is not None
        return await UdpTransport.open_unicast(settings.listen, settings.peers, max_datagram=settings.max_datagram)
    group, port = settings.multicast
    interface = settings.interface
    if interface is None:  # loopback: safe for trying pyclm on one machine
        if ipaddress.ip_address(group).version == 6:
            raise ConfigError("interface", "missing: IPv6 multicast does not work on loopback; name the interface")
        interface = "127.0.0.1"
    return await UdpTransport.open_multicast(
        group, port, interface=interface, ttl=settings.ttl, max_datagram=settings.max_datagram
    )


def _exposed_hosts(settings: NodeSettings, network: UdpTransport) -> list[str]:
    """The addresses this node talks on: its own, and in unicast mode its peers'."""
    hosts = [network.address[0]]
    if settings.unicast:
        hosts.extend(host for host, _ in settings.peers)  # a host name counts as exposed
    return hosts


def _describe_udp(settings: NodeSettings, network: UdpTransport) -> str:
    if settings.unicast:
        return f"udp unicast to {len(settings.peers)} peers"
    group, port = settings.multicast
    shown = f"[{group}]" if ":" in group else group
    return f"udp multicast {shown}:{port} ttl {settings.ttl}"
