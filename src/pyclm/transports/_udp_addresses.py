"""Settings of :mod:`pyclm.transports.udp`: ``host:port`` endpoints, the peer list, size limits.

:func:`parse_endpoint` and :func:`parse_peers` only check the form (the command line
calls them while reading its arguments); :func:`resolve` turns a host name into an
address when the transport opens, and says clearly when that fails.
"""

from __future__ import annotations

import ipaddress
import re
import socket
from collections.abc import Iterable

import anyio

from ..errors import ConfigError
from ._udp_sockets import bind_unicast, own_address, sockaddr

#: ``(host, port)``: a host name or an address (IPv6 without brackets), and a port.
Endpoint = tuple[str, int]

_HOST_NAME = re.compile(r"[A-Za-z0-9_]([A-Za-z0-9_.-]*[A-Za-z0-9_])?\.?")
_EXAMPLES = "e.g. 239.1.2.3:5405, [ff15::1]:5405 or node1.example:5405"


def parse_endpoint(text: str, setting: str, *, any_port: bool = False) -> Endpoint:
    """``"239.1.2.3:5405"``, ``"[ff15::1]:5405"`` or ``"host.name:5405"`` as ``(host, port)``.

    Checks the form only; names are resolved when the transport opens.  Port 0 (any
    free port) only with ``any_port``.  Raises :class:`~pyclm.errors.ConfigError` naming
    ``setting``.
    """
    if not isinstance(text, str):
        raise ConfigError(setting, f"expected host:port ({_EXAMPLES}), got {text!r}")
    text = text.strip()
    if text.startswith("["):
        host, bracket, rest = text[1:].partition("]")
        if not bracket or not rest.startswith(":"):
            raise ConfigError(setting, f"write an IPv6 endpoint as [address]:port, got {text!r}")
        port_text = rest[1:]
        if not _is_ip(host, 6):
            raise ConfigError(setting, f"{host!r} in brackets is not an IPv6 address")
    else:
        host, colon, port_text = text.rpartition(":")
        if not colon:
            raise ConfigError(setting, f"missing the port: expected host:port ({_EXAMPLES}), got {text!r}")
        if ":" in host:
            raise ConfigError(setting, f"put an IPv6 address in brackets: [{host}]:{port_text}")
    return check_endpoint(host, _port(port_text, setting, text), setting, any_port=any_port)


def check_endpoint(host: object, port: object, setting: str, *, any_port: bool = False) -> Endpoint:
    """``(host, port)`` after checking that ``host`` looks like an address or a host name."""
    lowest = 0 if any_port else 1
    if isinstance(port, bool) or not isinstance(port, int) or not lowest <= port <= 65535:
        raise ConfigError(setting, f"port must be an integer in {lowest}..65535, got {port!r}")
    if not isinstance(host, str) or not host:
        raise ConfigError(setting, f"host must be an address or a host name, got {host!r}")
    if _is_ip(host, 4) or _is_ip(host, 6):
        return (host, port)
    if re.fullmatch(r"[0-9.]+", host) or not _HOST_NAME.fullmatch(host):
        raise ConfigError(setting, f"{host!r} is neither an IP address nor a host name")
    return (host, port)


def parse_peers(value: str | Iterable[str | Endpoint], setting: str) -> tuple[Endpoint, ...]:
    """A static peer list: ``"a:5405, b:5405"`` (commas or spaces), or a list of strings or pairs.

    Raises :class:`~pyclm.errors.ConfigError` naming ``setting`` when the list is empty,
    an entry does not parse, or an entry is listed twice.
    """
    items: Iterable[str | Endpoint]
    if isinstance(value, str):
        items = [part for part in re.split(r"[,\s]+", value) if part]
    elif isinstance(value, Iterable):
        items = value
    else:
        raise ConfigError(setting, f"expected a list of host:port, got {value!r}")
    peers: list[Endpoint] = []
    for item in items:
        if isinstance(item, tuple) and len(item) == 2:
            peer = check_endpoint(item[0], item[1], setting)
        else:
            peer = parse_endpoint(item, setting)
        if peer in peers:
            raise ConfigError(setting, f"lists {endpoint_text(peer)} twice")
        peers.append(peer)
    if not peers:
        raise ConfigError(setting, f"no peers: list at least one host:port ({_EXAMPLES})")
    return tuple(peers)


#: The longest UDP payload over IPv4.
LARGEST_DATAGRAM = 65507


def check_limits(max_datagram: int | None, buffer_size: int) -> None:
    """The transport's size settings (``max_datagram`` None: the default for the address family)."""
    if max_datagram is not None and (
        isinstance(max_datagram, bool)
        or not isinstance(max_datagram, int)
        or not 512 <= max_datagram <= LARGEST_DATAGRAM
    ):
        raise ConfigError("max_datagram", f"must be an integer in 512..{LARGEST_DATAGRAM}, got {max_datagram!r}")
    if isinstance(buffer_size, bool) or not isinstance(buffer_size, int) or buffer_size < 1:
        raise ConfigError("buffer_size", f"must be a positive number of datagrams, got {buffer_size!r}")


def endpoint_text(endpoint: Endpoint) -> str:
    host, port = endpoint
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


def _port(text: str, setting: str, whole: str) -> int:
    if not text.isascii() or not text.isdigit():
        raise ConfigError(setting, f"the port must be a number in 1..65535, got {whole!r}")
    return int(text)


def _is_ip(host: str, version: int) -> bool:
    address = host.partition("%")[0] if version == 6 else host
    try:
        return ipaddress.ip_address(address).version == version
    except ValueError:
        return False


async def resolve(endpoint: Endpoint, family: int, setting: str) -> tuple[socket.AddressFamily, Endpoint]:
    """``endpoint`` with its host as an address of ``family`` (``AF_UNSPEC``: the first one found)."""
    host, port = endpoint
    for version, literal_family in ((4, socket.AF_INET), (6, socket.AF_INET6)):
        if _is_ip(host, version):
            if family not in (socket.AF_UNSPEC, literal_family):
                raise ConfigError(setting, f"{endpoint_text(endpoint)} is IPv{version}, unlike the listen address")
            bare, percent, scope = host.partition("%")
            return literal_family, (str(ipaddress.ip_address(bare)) + percent + scope, port)
    try:
        infos = await anyio.getaddrinfo(host, port, family=family, type=socket.SOCK_DGRAM)
    except socket.gaierror as exc:
        raise ConfigError(setting, f"cannot resolve {host!r}: {exc.strerror}") from None
    if not infos:
        raise ConfigError(setting, f"cannot resolve {host!r}: no address")
    found_family, _, _, _, address = infos[0]
    return socket.AddressFamily(found_family), (str(address[0]), port)


async def open_unicast_socket(
    listen: str | Endpoint, peers: str | Iterable[str | Endpoint]
) -> tuple[socket.socket, tuple[Endpoint, ...]]:
    """Check and resolve the unicast settings; return the bound socket and the peers GROUP goes to."""
    if isinstance(listen, tuple) and len(listen) == 2:
        endpoint = check_endpoint(listen[0], listen[1], "listen", any_port=True)
    else:
        endpoint = parse_endpoint(listen, "listen", any_port=True)
    wanted = parse_peers(peers, "peers")
    family, (host, port) = await resolve(endpoint, socket.AF_UNSPEC, "listen")
    resolved = [(await resolve(peer, family, "peers"))[1] for peer in wanted]
    sock = bind_unicast(family, host, port, "listen")
    own = own_address(sock)
    return sock, tuple(dict.fromkeys(peer for peer in resolved if not _is_own(peer, own, family)))


def _is_own(peer: Endpoint, own: Endpoint, family: socket.AddressFamily) -> bool:
    """Is ``peer`` this node's own entry?  With a wildcard listen address: any local address on its port."""
    if peer == own:
        return True
    if peer[1] != own[1] or not ipaddress.ip_address(own[0].partition("%")[0]).is_unspecified:
        return False
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            probe.bind(sockaddr(family, peer[0], 0))  # succeeds only for an address of this host
    except OSError:
        return False
    return True
