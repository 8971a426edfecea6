"""A private network for tests and benchmarks: ``n`` network namespaces on one bridge, with faults.

    with Lab(3) as lab:
        subprocess.run([*lab.exec_prefix(1), sys.executable, "-c", "..."], check=True)
        lab.partition([[1, 2], [3]])
        ...
        lab.heal()

Layout.  Every name starts with a per-lab random prefix ``pcl<6 hex>``, so parallel labs (and
other sessions on the machine) never collide.  Namespace ``<prefix>-hub`` holds the bridge ``br0``
(STP off, no forward delay, multicast snooping off, so multicast is flooded to every port).
Namespaces ``<prefix>-n1`` ... ``-nN`` each hold ``lo`` and ``eth0``, a veth whose peer is the
bridge port ``p<i>`` in the hub.  Nothing is created in, or changed in, the root namespace: not an
interface, a route, a sysctl or an nftables rule.

Addresses of node ``i``: IPv4 ``address(i)`` = host ``i`` of a random /24 inside 10.64.0.0/10 (the
subnet only has to be unique on this private bridge; a random one also keeps logs of parallel labs
apart), with a ``224.0.0.0/4 dev eth0`` route so multicast works without ``IP_MULTICAST_IF``;
IPv6 ``address6(i)`` = host ``i`` of a random ULA /64 (fd00::/8) and ``link_local6(i)`` =
``fe80::i``, both added ``nodad`` so they are usable at once (the kernel's own EUI-64 link-local
address, which would sit in duplicate address detection for a second, is switched off).

Neighbour tables.  The kernel's ARP and NDP tables are global: every namespace shares
``net.ipv4.neigh.default.gc_thresh3`` (1024), and a new namespace does not even have that sysctl.
An all-to-all unicast test with N nodes needs N*(N-1) entries, so above ~32 nodes it overflows
("neighbor table overflow!") and breaks other users of the machine too.  Raising the sysctl is
host-wide, so this lab does not.  Instead every node gets *permanent* neighbour entries for all
other nodes (``static_neighbours=True``, the default): permanent entries are exempt from the
garbage-collection count that ``gc_thresh3`` limits, and no ARP/ND traffic is needed at all.
Checked on kernel 6.18: a 100-node lab (10,002 ARP and 20,402 NDP entries) ran all-to-all UDP
over IPv4 and IPv6 with ``table_fulls`` 0 and the host sysctls untouched.  Set-up time grows with
the n*(n-1) entries: 0.04 s for 3 nodes, 0.7 s for 48, 4.2 s for 100.  The number of namespaces
itself is limited only by ``user.max_net_namespaces`` (96365 here) and memory; what limits a
benchmark is the CPU its daemons need (see the peer baselines: corosync did not form at 64 on 2 cores).

Faults (each takes effect before the call returns; :meth:`Lab.clear_faults` removes all of them):

* :meth:`Lab.link_down` / :meth:`Lab.link_up`: the node's bridge port goes down / up.  The node's
  ``eth0`` loses carrier but keeps its addresses and routes; it still hears its own multicast.
* :meth:`Lab.partition` / :meth:`Lab.heal`: nftables rules (bridge family, forward hook) in the hub
  drop every frame between ports of different groups.
* :meth:`Lab.drop_one_way`: an nftables input rule in ``dst`` drops IP packets from ``src``.
* :meth:`Lab.random_loss`: the hub drops each forwarded frame with the given probability, drawn
  independently per copy, so a multicast datagram may reach some receivers and not others.

Needs root (CAP_NET_ADMIN and CAP_SYS_ADMIN), ``ip`` (iproute2) and ``nft`` (nftables);
:func:`ensure_tools` installs missing ones with apt-get.  Otherwise :class:`LabUnavailable` says why.
Processes started with :meth:`Lab.exec_prefix` must be ended by their starter before the lab
closes: a namespace whose name is deleted lives on as long as a process is inside it.
"""

from __future__ import annotations

import atexit
import contextlib
import ctypes
import fcntl
import ipaddress
import json
import logging
import os
import random
import shutil
import subprocess
import tempfile
import time
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from types import TracebackType
from typing import Any

__all__ = ["Lab", "LabError", "LabUnavailable", "ensure_tools"]

log = logging.getLogger(__name__)

#: command -> Debian package that provides it.
REQUIRED_TOOLS: Mapping[str, str] = {"ip": "iproute2", "bridge": "iproute2", "nft": "nftables"}

_SBIN_PATH = "/usr/local/sbin:/usr/sbin:/sbin"
_COMMAND_TIMEOUT = 30.0
_APT_TIMEOUT = 900.0
_LOCK_FILE = Path(tempfile.gettempdir()) / "pyclm-ensure-tools.lock"
_LAB_SPACE = ipaddress.IPv4Network("10.64.0.0/10")
_MAX_NODES = 250
# nftables table names; one per kind of fault so each can be cleared on its own.
_PARTITION_TABLE = "bridge pcl_partition"
_LOSS_TABLE = "bridge pcl_loss"
_ONE_WAY_TABLE = "inet pcl_one_way"


class LabError(RuntimeError):
    """A lab command failed (the message has the command and its stderr)."""


class LabUnavailable(LabError):
    """This machine cannot host a lab; the message says why (not root, tools missing, ...)."""


def which(command: str) -> str | None:
    """``command``'s path, also looking in the sbin directories a non-login PATH may lack."""
    return shutil.which(command, path=f"{os.environ.get('PATH', '')}:{_SBIN_PATH}")


def ensure_tools(extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """Make sure ``ip``, ``bridge``, ``nft`` and the ``extra`` commands exist; return their paths.

    ``extra`` maps a command to the Debian package that provides it (``{"corosync": "corosync"}``).
    Missing packages are installed with ``apt-get install -y --no-install-recommends`` (after an
    ``apt-get update`` if the first try fails, e.g. for lack of package lists).  Installs are
    serialized with a lock file, so parallel test workers and benchmarks may all call this.
    Raises :class:`LabUnavailable` when something is missing and cannot be installed.
    """
    wanted = {**REQUIRED_TOOLS, **(extra or {})}
    found = {cmd: path for cmd in wanted if (path := which(cmd))}
    if len(found) == len(wanted):
        return found
    if os.geteuid() != 0:
        missing = sorted(set(wanted) - set(found))
        raise LabUnavailable(f"not root, and {', '.join(missing)} missing (cannot apt-get install)")
    with _LOCK_FILE.open("a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # released when the file closes
        missing = sorted(cmd for cmd in wanted if not which(cmd))  # another caller may have installed them
        if missing:
            _apt_install(sorted({wanted[cmd] for cmd in missing}), missing)
    return {cmd: _required(cmd) for cmd in wanted}


def _required(command: str) -> str:
    path = which(command)
    if path is None:
        raise LabUnavailable(f"{command} is still missing after installing its package")
    return path


def _apt_install(packages: list[str], commands: list[str]) -> None:
    apt = which("apt-get")
    if apt is None:
        raise LabUnavailable(f"{', '.join(commands)} missing and there is no apt-get to install them")
    env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
    # Wait for a concurrent apt/dpkg run (another session) instead of failing at once.
    install = [apt, "-o", "DPkg::Lock::Timeout=300", "install", "-y", "--no-install-recommends", *packages]
    log.info("installing %s for %s", " ".join(packages), ", ".join(commands))
    output = ""
    for attempt in ("install", "update", "install"):
        argv = install if attempt == "install" else [apt, "-o", "DPkg::Lock::Timeout=300", "update"]
        try:
            done = subprocess.run(argv, env=env, capture_output=True, text=True, timeout=_APT_TIMEOUT, check=False)
        except subprocess.TimeoutExpired:
            raise LabUnavailable(f"apt-get {attempt} {' '.join(packages)} took over {_APT_TIMEOUT:.0f} s") from None
        output = done.stdout + done.stderr
        if done.returncode == 0 and attempt == "install":
            return
    tail = "\n".join(output.strip().splitlines()[-5:])
    raise LabUnavailable(f"apt-get install {' '.join(packages)} failed (also after apt-get update):\n{tail}")


def _run(argv: Sequence[str], *, stdin: str | None = None, check: bool = True) -> subprocess.CompletedProcess[str]:
    done = subprocess.run(
        list(argv), input=stdin, capture_output=True, text=True, timeout=_COMMAND_TIMEOUT, check=False
    )
    if check and done.returncode != 0:
        detail = done.stderr.strip() or done.stdout.strip()
        raise LabError(f"{' '.join(argv)} failed ({done.returncode}): {detail}")
    return done


# Labs not yet closed, so an interpreter exit (an uncaught exception outside a `with`, sys.exit from
# a signal handler) still removes their namespaces.
_OPEN_LABS: set[Lab] = set()


@atexit.register
def _close_open_labs() -> None:
    for lab in list(_OPEN_LABS):
        lab.close()


class Lab:
    """``n`` namespaces on a private bridge; use as a context manager (see the module docstring).

    Nodes are numbered 1..n.  Entering creates everything and waits until every link forwards;
    leaving (also by an exception) deletes every namespace this lab created.
    """

    def __init__(
        self,
        n: int,
        subnet: str | None = None,
        *,
        static_neighbours: bool = True,
        ready_timeout: float = 10.0,
    ) -> None:
        if not 1 <= n <= _MAX_NODES:
            raise ValueError(f"a lab has 1..{_MAX_NODES} nodes, not {n}")
        rng = random.SystemRandom()
        if subnet is None:
            subnet = f"10.{rng.randrange(64, 128)}.{rng.randrange(256)}.0/24"
        self.subnet = ipaddress.IPv4Network(subnet)
        if self.subnet.num_addresses < n + 2:
            raise ValueError(f"subnet {subnet} has no room for {n} nodes")
        self.subnet6 = ipaddress.IPv6Network(((0xFD << 120) | (rng.getrandbits(56) << 64), 64))
        self.n = n
        self.prefix = f"pcl{rng.getrandbits(24):06x}"
        self.hub = f"{self.prefix}-hub"
        self._mac_base = rng.getrandbits(24)
        self._static_neighbours = static_neighbours
        self._ready_timeout = ready_timeout
        self._tools: dict[str, str] = {}
        self._created: list[str] = []
        self._down: set[int] = set()
        self._one_way: set[tuple[int, int]] = set()
        self._closed = False

    # ---- naming and addresses -------------------------------------------------------------

    @property
    def nodes(self) -> range:
        """The node numbers, ``1..n``."""
        return range(1, self.n + 1)

    def namespace(self, i: int) -> str:
        """Node ``i``'s network namespace name."""
        return f"{self.prefix}-n{self._node(i)}"

    def namespaces(self) -> list[str]:
        """Every namespace of this lab: the nodes' and the hub's."""
        return [*(self.namespace(i) for i in self.nodes), self.hub]

    def exec_prefix(self, i: int) -> list[str]:
        """Prepend this to a command to run it in node ``i``'s namespace (``ip netns exec <ns>``).

        ``ip netns exec`` also gives the command a private mount namespace (``/sys`` is remounted
        for the network namespace), so it may ``mount --bind`` over ``/run`` without affecting
        anything else.
        """
        return [self._tools.get("ip", "ip"), "netns", "exec", self.namespace(i)]

    def address(self, i: int) -> str:
        """Node ``i``'s IPv4 address on ``eth0``."""
        return str(self.subnet[self._node(i)])

    def address6(self, i: int) -> str:
        """Node ``i``'s IPv6 ULA address on ``eth0`` (usable at once: no duplicate address detection)."""
        return str(self.subnet6[self._node(i)])

    def link_local6(self, i: int) -> str:
        """Node ``i``'s IPv6 link-local address on ``eth0``, ``fe80::<i>`` (the only one it has)."""
        return str(ipaddress.IPv6Address(0xFE80 << 112 | self._node(i)))

    def mac(self, i: int) -> str:
        """Node ``i``'s ``eth0`` MAC address (locally administered, unique within the lab)."""
        raw = (0x02 << 40) | (self._mac_base << 16) | self._node(i)
        return ":".join(f"{(raw >> shift) & 0xFF:02x}" for shift in range(40, -8, -8))

    def port(self, i: int) -> str:
        """The hub-side name of node ``i``'s bridge port."""
        return f"p{self._node(i)}"

    def _node(self, i: int) -> int:
        if not 1 <= i <= self.n:
            raise ValueError(f"node {i} is not in this lab (nodes 1..{self.n})")
        return i

    # ---- lifecycle -----------------------------------------------------------------------

    def __enter__(self) -> Lab:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def start(self) -> None:
        """Create the namespaces, the bridge and the links, and wait until every link forwards."""
        if self._created or self._closed:
            raise LabError("a Lab is started once; make a new Lab for a new network")
        if os.geteuid() != 0:
            raise LabUnavailable("network namespaces need root (CAP_NET_ADMIN and CAP_SYS_ADMIN)")
        self._tools = ensure_tools()
        _OPEN_LABS.add(self)
        try:
            self._build()
            self._wait_ready(self.nodes)
        except BaseException:
            self.close()
            raise

    def close(self) -> None:
        """Delete every namespace this lab created (idempotent, never raises; failures are logged)."""
        self._closed = True
        _OPEN_LABS.discard(self)
        # Nodes first: deleting a node namespace deletes its eth0 and so the veth's hub end.
        for name in [ns for ns in self._created if ns != self.hub] + [ns for ns in self._created if ns == self.hub]:
            try:
                done = _run([self._tools.get("ip", "ip"), "netns", "delete", name], check=False)
            except (OSError, subprocess.SubprocessError) as exc:
                log.warning("could not delete namespace %s: %s", name, exc)
                continue
            if done.returncode != 0 and Path("/run/netns", name).exists():
                log.warning("could not delete namespace %s: %s", name, done.stderr.strip())
        self._created.clear()

    def _build(self) -> None:
        ip = self._tools["ip"]
        for name in [self.hub, *(self.namespace(i) for i in self.nodes)]:
            try:
                _run([ip, "netns", "add", name])
            except LabError as exc:
                raise LabUnavailable(f"cannot create network namespaces: {exc}") from exc
            self._created.append(name)
        hub = [
            "link set lo up",
            "link add br0 type bridge stp_state 0 forward_delay 0 mcast_snooping 0",
            "link set br0 up",
        ]
        for i in self.nodes:
            hub.append(
                f"link add {self.port(i)} type veth peer name eth0 address {self.mac(i)} netns {self.namespace(i)}"
            )
            hub.append(f"link set {self.port(i)} master br0 up")
        self._batch(self.hub, hub)
        for i in self.nodes:
            node = [
                "link set lo up",
                # No kernel-made EUI-64 link-local address (it would be in DAD for ~1 s): our own, nodad.
                "link set eth0 addrgenmode none",
                f"address add {self.address(i)}/{self.subnet.prefixlen} dev eth0",
                f"address add {self.address6(i)}/64 dev eth0 nodad",
                f"address add {self.link_local6(i)}/64 dev eth0 nodad",
                "link set eth0 up",
                "route add 224.0.0.0/4 dev eth0",
            ]
            if self._static_neighbours:
                for j in self.nodes:
                    if j != i:
                        for addr in (self.address(j), self.address6(j), self.link_local6(j)):
                            node.append(f"neighbour replace {addr} lladdr {self.mac(j)} dev eth0 nud permanent")
            self._batch(self.namespace(i), node)

    def _batch(self, namespace: str, commands: Iterable[str]) -> None:
        _run([self._tools["ip"], "-n", namespace, "-batch", "-"], stdin="\n".join(commands) + "\n")

    def _wait_ready(self, nodes: Iterable[int]) -> None:
        """Wait until each node's bridge port forwards and its ``eth0`` is up (carrier and qdisc).

        Carrier changes reach the bridge and the qdisc through the kernel's link-watch work, which
        may lag the ``ip link set`` by up to a second; packets sent before are dropped.
        """
        pending = set(nodes)
        deadline = time.monotonic() + self._ready_timeout
        for _ in range(10_000):
            ports = {p["ifname"]: p for p in self._links(self.hub, "master", "br0")}
            for i in sorted(pending):
                port = ports.get(self.port(i), {})
                state = port.get("linkinfo", {}).get("info_slave_data", {}).get("state")
                if state == "forwarding" and self._links(self.namespace(i), "dev", "eth0")[0]["operstate"] == "UP":
                    pending.discard(i)
            if not pending:
                return
            if time.monotonic() > deadline:
                break
            time.sleep(0.01)
        raise LabError(f"links of nodes {sorted(pending)} not forwarding after {self._ready_timeout} s")

    def _links(self, namespace: str, *selector: str) -> list[dict[str, Any]]:
        out = _run([self._tools["ip"], "-n", namespace, "-j", "-d", "link", "show", *selector]).stdout
        links: list[dict[str, Any]] = json.loads(out)
        return links

    # ---- faults --------------------------------------------------------------------------

    def link_down(self, i: int) -> None:
        """Cut node ``i`` off: its bridge port goes down (it still hears its own multicast)."""
        _run([self._tools["ip"], "-n", self.hub, "link", "set", self.port(i), "down"])
        self._down.add(i)

    def link_up(self, i: int) -> None:
        """Undo :meth:`link_down`; returns once the port forwards again."""
        _run([self._tools["ip"], "-n", self.hub, "link", "set", self.port(i), "up"])
        self._down.discard(i)
        self._wait_ready([i])

    def partition(self, groups: Sequence[Sequence[int]]) -> None:
        """Split the network: frames pass only between nodes of the same group.

        ``groups`` must be disjoint; a node in no group is cut off from every other node.  Replaces
        any earlier partition (``partition([[1, 2, 3]])`` in a 3-node lab is the same as :meth:`heal`).
        """
        seen: set[int] = set()
        for group in groups:
            for i in group:
                self._node(i)
                if i in seen:
                    raise ValueError(f"node {i} is in more than one group of {groups!r}")
                seen.add(i)
        cells = [list(g) for g in groups if g] + [[i] for i in self.nodes if i not in seen]
        rules = []
        for cell in cells:
            ports = ", ".join(f'"{self.port(i)}"' for i in cell)
            rules.append(f"iifname {{ {ports} }} oifname != {{ {ports} }} drop")
        self._nft(self.hub, _PARTITION_TABLE, "forward", rules)

    def heal(self) -> None:
        """Remove the partition (link-down ports, one-way drops and loss stay)."""
        self._nft(self.hub, _PARTITION_TABLE, "forward", [])

    def drop_one_way(self, src: int, dst: int) -> None:
        """Node ``dst`` drops every IP packet from node ``src``; ``dst`` -> ``src`` still works."""
        self._node(src)
        self._node(dst)
        if src == dst:
            raise ValueError("drop_one_way needs two different nodes")
        self._one_way.add((src, dst))
        self._apply_one_way(dst)

    def random_loss(self, percent: float) -> None:
        """The bridge drops each forwarded frame with probability ``percent``/100 (0 removes the loss).

        Resolution 0.01 %.  Drawn per copy: a flooded multicast frame is lost or kept per receiver.
        """
        if not 0 <= percent <= 100:
            raise ValueError(f"loss is a percentage in 0..100, not {percent}")
        per_10k = round(percent * 100)
        if per_10k >= 10_000:
            rules = ["drop"]
        elif per_10k:
            rules = [f"numgen random mod 10000 < {per_10k} drop"]
        else:
            rules = []
        self._nft(self.hub, _LOSS_TABLE, "forward", rules)

    def clear_faults(self) -> None:
        """Remove every fault: partition, loss, one-way drops, and bring down ports back up."""
        self.heal()
        self.random_loss(0)
        dsts = {dst for _, dst in self._one_way}
        self._one_way.clear()
        for dst in sorted(dsts):
            self._apply_one_way(dst)
        for i in sorted(self._down):
            _run([self._tools["ip"], "-n", self.hub, "link", "set", self.port(i), "up"])
        down, self._down = self._down, set()
        if down:
            self._wait_ready(down)

    def _apply_one_way(self, dst: int) -> None:
        srcs = sorted(src for src, d in self._one_way if d == dst)
        rules = []
        if srcs:
            v4 = ", ".join(self.address(s) for s in srcs)
            v6 = ", ".join(f"{self.address6(s)}, {self.link_local6(s)}" for s in srcs)
            # Let neighbour discovery through, so dst can still resolve src's address and
            # dst -> src keeps working even without static neighbours.
            rules = [
                f"ip6 saddr {{ {v6} }} icmpv6 type {{ nd-neighbor-solicit, nd-neighbor-advert }} accept",
                f"ip saddr {{ {v4} }} drop",
                f"ip6 saddr {{ {v6} }} drop",
            ]
        self._nft(self.namespace(dst), _ONE_WAY_TABLE, "input", rules)

    def _nft(self, namespace: str, table: str, hook: str, rules: Sequence[str]) -> None:
        """Replace ``table`` in ``namespace`` by one chain on ``hook`` with ``rules`` (none: delete it).

        One nft transaction: "declare, delete, re-create" is atomic and works whether or not the
        table exists.
        """
        script = [f"table {table}", f"delete table {table}"]
        if rules:
            body = "\n".join(f"    {rule}" for rule in rules)
            script.append(
                f"table {table} {{\n  chain {hook} {{\n    type filter hook {hook} priority 0; policy accept;\n"
                f"{body}\n  }}\n}}"
            )
        _run(
            [self._tools["ip"], "netns", "exec", namespace, self._tools["nft"], "-f", "-"],
            stdin="\n".join(script) + "\n",
        )


_CLONE_NEWNET = 0x40000000


def _setns(fd: int) -> None:
    if ctypes.CDLL(None, use_errno=True).setns(fd, _CLONE_NEWNET) != 0:
        code = ctypes.get_errno()
        raise OSError(code, os.strerror(code))


@contextlib.contextmanager
def in_namespace(name: str) -> Iterator[None]:
    """Within the block, sockets this thread makes belong to network namespace ``name``
    (``/run/netns/NAME``); a socket stays in the namespace it was made in."""
    with open("/proc/thread-self/ns/net") as home, open(f"/run/netns/{name}") as target:
        _setns(target.fileno())
        try:
            yield
        finally:
            _setns(home.fileno())
