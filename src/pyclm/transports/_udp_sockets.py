"""Socket-option plumbing for :mod:`pyclm.transports.udp` (Linux).

Which interface a node multicasts on (:func:`resolve_interface`), its unicast socket
(:func:`bind_unicast`, :func:`set_multicast_sender`) and its group socket
(:func:`join_group`).  Every failure is a :class:`~pyclm.errors.ConfigError` that names
the setting to fix; the sockets come back non-blocking.
"""

from __future__ import annotations

import contextlib
import errno
import fcntl
import ipaddress
import socket
import struct
import sys
from typing import Any

import attrs

from ..errors import ConfigError

_SIOCGIFFLAGS = 0x8913
_SIOCGIFADDR = 0x8915
_IFF_LOOPBACK = 0x8
# Linux values that Python's socket module lacks.  0 = deliver to this socket only the
# groups it joined itself, on the interfaces it joined them on (the default, 1, delivers
# every group any socket on the host joined on any interface: cross-talk between clusters).
_IP_MULTICAST_ALL = 49
_IPV6_MULTICAST_ALL = 29
_IF_INET6 = "/proc/net/if_inet6"
_IFA_F_TENTATIVE = 0x40
# Kernel address scopes in /proc/net/if_inet6, in the order a node prefers them.
_SCOPE_PREFERENCE = {0x00: 0, 0x40: 1, 0x20: 2, 0x10: 3}  # global, site, link, host


@attrs.frozen
class Interface:
    """Where a node multicasts: the address its unicast socket binds, and the interface index.

    ``index`` is 0 for an IPv4 interface given by address: the kernel then finds the
    interface by its address (``ip_mreq``).
    """

    family: socket.AddressFamily
    address: str
    index: int
    name: str


def family_name(family: socket.AddressFamily) -> str:
    return "IPv4" if family == socket.AF_INET else "IPv6"


def _interface_names() -> str:
    return ", ".join(name for _, name in socket.if_nameindex())


def _ioctl_ifreq(request: int, name: str) -> bytes:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        return fcntl.ioctl(probe.fileno(), request, struct.pack("256s", name.encode()[:15]))


def _ipv6_addresses() -> list[tuple[str, int, int, int, str]]:
    """``(address, index, scope, flags, name)`` for every IPv6 address in this network namespace."""
    try:
        with open(_IF_INET6, encoding="ascii") as lines:
            rows = [line.split() for line in lines]
    except OSError:
        return []  # IPv6 is disabled (or not Linux)
    return [
        (str(ipaddress.IPv6Address(bytes.fromhex(r[0]))), int(r[1], 16), int(r[3], 16), int(r[4], 16), r[5])
        for r in rows
        if len(r) == 6
    ]


def resolve_interface(text: str, family: socket.AddressFamily) -> Interface:
    """The interface named by ``text`` (an address, or a name such as ``lo``) for a ``family`` group."""
    host, _, scope = text.partition("%")
    try:
        literal = ipaddress.ip_address(host)
    except ValueError:
        return _interface_by_name(text, family)
    if (literal.version == 4) != (family == socket.AF_INET):
        raise ConfigError(
            "interface", f"{text!r} is an IPv{literal.version} address but the group is {family_name(family)}"
        )
    if family == socket.AF_INET:
        return Interface(family, str(literal), 0, text)  # bind_unicast checks that the address is local
    for address, index, _scope, _flags, name in _ipv6_addresses():
        if address == str(literal) and (not scope or scope in (name, str(index))):
            return _ipv6_interface(address, index, name)
    raise ConfigError("interface", f"no interface in this network namespace has the address {text!r}")


def _interface_by_name(name: str, family: socket.AddressFamily) -> Interface:
    try:
        index = socket.if_nametoindex(name)
    except OSError:
        raise ConfigError(
            "interface", f"unknown interface {name!r}: give an address or a name ({_interface_names()})"
        ) from None
    if family == socket.AF_INET:
        try:
            address = socket.inet_ntoa(_ioctl_ifreq(_SIOCGIFADDR, name)[20:24])
        except OSError:
            raise ConfigError("interface", f"interface {name!r} has no IPv4 address") from None
        return Interface(family, address, index, name)
    candidates = [a for a in _ipv6_addresses() if a[1] == index]
    if not candidates:
        raise ConfigError("interface", f"interface {name!r} has no IPv6 address")
    # Prefer a usable (not tentative) address of the widest scope.
    best = min(candidates, key=lambda a: (bool(a[3] & _IFA_F_TENTATIVE), _SCOPE_PREFERENCE.get(a[2], 9)))
    return _ipv6_interface(best[0], index, name)


def _ipv6_interface(address: str, index: int, name: str) -> Interface:
    flags = struct.unpack_from("H", _ioctl_ifreq(_SIOCGIFFLAGS, name), 16)[0]
    if flags & _IFF_LOOPBACK:
        # Linux turns every route through a loopback device into a reject route
        # (net/ipv6/route.c), so an IPv6 multicast on lo is silently dropped as "no route".
        raise ConfigError(
            "interface",
            f"{name!r} is a loopback interface: Linux does not carry IPv6 multicast on loopback; "
            "use another interface (a veth pair in a network namespace will do) or IPv4",
        )
    return Interface(socket.AF_INET6, address, index, name)


def sockaddr(family: socket.AddressFamily, host: str, port: int, index: int = 0) -> Any:
    return (host, port) if family == socket.AF_INET else (host, port, 0, index)


def own_address(sock: socket.socket) -> tuple[str, int]:
    """``sock``'s bound address as the transport hands addresses out (see ``normalize``)."""
    return normalize(sock.getsockname())


def normalize(raw: Any) -> tuple[str, int]:
    """A socket address as ``(host, port)``; an IPv6 scope goes into the host as ``%index``."""
    host, port = raw[0], raw[1]
    if len(raw) == 4 and raw[3] and "%" not in host:
        host = f"{host}%{raw[3]}"
    return (host, port)


def _explain(exc: OSError, what: str) -> str:
    if exc.errno == errno.EADDRNOTAVAIL:
        return f"cannot bind {what}: no interface in this network namespace has that address"
    if exc.errno == errno.EADDRINUSE:
        return f"cannot bind {what}: the port is in use"
    return f"cannot bind {what}: {exc.strerror or exc}"


def bind_unicast(family: socket.AddressFamily, host: str, port: int, setting: str, *, index: int = 0) -> socket.socket:
    """A non-blocking UDP socket bound to ``(host, port)``: every send, and the unicast replies.

    No SO_REUSEADDR: two nodes must never share a unicast address.
    """
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.bind(sockaddr(family, host, port, index))
    except OSError as exc:
        sock.close()
        where = f"[{host}]:{port}" if family == socket.AF_INET6 else f"{host}:{port}"
        raise ConfigError(setting, _explain(exc, where)) from None
    return sock


def set_multicast_sender(sock: socket.socket, interface: Interface, ttl: int) -> None:
    """Multicasts from ``sock`` leave by ``interface`` (never by the default route), with ``ttl`` hops.

    Loop stays on: other nodes on this host must get the copies (on ``lo`` every node
    gets its own copy back regardless; the transport drops those).
    """
    if interface.family == socket.AF_INET:
        if interface.index:
            mreqn = struct.pack("=4s4si", bytes(4), bytes(4), interface.index)
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, mreqn)
        else:
            sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_IF, socket.inet_aton(interface.address))
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_TTL, ttl)
        sock.setsockopt(socket.IPPROTO_IP, socket.IP_MULTICAST_LOOP, 1)
    else:
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_IF, interface.index)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_HOPS, ttl)
        sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_MULTICAST_LOOP, 1)


def join_group(group: str, port: int, interface: Interface) -> socket.socket:
    """A non-blocking socket bound to ``(group, port)`` that joined ``group`` on ``interface``.

    SO_REUSEADDR/SO_REUSEPORT let every node on the host bind the group port; binding the
    group address (not the wildcard) keeps unicast traffic to that port out.
    """
    family = interface.family
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        sock.setblocking(False)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if hasattr(socket, "SO_REUSEPORT"):
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if sys.platform == "linux":
            level, option = (
                (socket.IPPROTO_IP, _IP_MULTICAST_ALL)
                if family == socket.AF_INET
                else (socket.IPPROTO_IPV6, _IPV6_MULTICAST_ALL)
            )
            with contextlib.suppress(OSError):  # an old kernel: the bound group address still filters
                sock.setsockopt(level, option, 0)
        try:
            sock.bind(sockaddr(family, group, port, interface.index))
        except OSError as exc:
            raise ConfigError("port", _explain(exc, f"the group port {port}")) from None
        try:
            if family == socket.AF_INET:
                if interface.index:
                    mreq = struct.pack("=4s4si", socket.inet_aton(group), bytes(4), interface.index)
                else:
                    mreq = socket.inet_aton(group) + socket.inet_aton(interface.address)
                sock.setsockopt(socket.IPPROTO_IP, socket.IP_ADD_MEMBERSHIP, mreq)
            else:
                mreq = socket.inet_pton(family, group) + struct.pack("@I", interface.index)
                sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_JOIN_GROUP, mreq)
        except OSError as exc:
            raise ConfigError(
                "interface", f"cannot join {group} on {interface.name!r}: {exc.strerror or exc}"
            ) from None
    except BaseException:
        sock.close()
        raise
    return sock


def open_multicast_sockets(
    group: str, port: int, interface: str, ttl: int, unicast_port: int
) -> tuple[socket.socket, socket.socket, Any]:
    """Check the multicast settings; return the unicast socket, the group socket and the group's address."""
    try:
        group_ip = ipaddress.ip_address(group)
    except (ValueError, TypeError):
        raise ConfigError("group", f"must be a multicast address (e.g. 239.255.0.1, ff15::1), got {group!r}") from None
    if not group_ip.is_multicast:
        raise ConfigError("group", f"{group} is not a multicast address (224.0.0.0/4 or ff00::/8)")
    for setting, value, lowest in (("port", port, 1), ("unicast_port", unicast_port, 0)):
        if isinstance(value, bool) or not isinstance(value, int) or not lowest <= value <= 65535:
            raise ConfigError(setting, f"must be an integer in {lowest}..65535, got {value!r}")
    if isinstance(ttl, bool) or not isinstance(ttl, int) or not 0 <= ttl <= 255:
        raise ConfigError("ttl", f"must be an integer in 0..255, got {ttl!r}")
    if not isinstance(interface, str) or not interface:
        raise ConfigError("interface", f"must be an address or an interface name, got {interface!r}")
    family = socket.AF_INET if group_ip.version == 4 else socket.AF_INET6
    where = resolve_interface(interface, family)
    unicast = bind_unicast(family, where.address, unicast_port, "interface", index=where.index)
    try:
        set_multicast_sender(unicast, where, ttl)
        group_socket = join_group(str(group_ip), port, where)
    except BaseException:
        unicast.close()
        raise
    return unicast, group_socket, sockaddr(family, str(group_ip), port, where.index)
