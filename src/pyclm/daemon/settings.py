"""The settings of ``pyclm node``: one table of keys, read from a TOML file and flags.

Every setting has one name.  On the command line it is a flag with dashes
(``--suspect-timeout``), in the file a key with underscores (``suspect_timeout``);
flags win over the file, the file over the defaults.  :data:`SETTINGS` is that table
(name, type, default, help); the CLI builds its flags from it and docs/daemon.md lists
it.  :func:`resolve` checks everything at once and raises one
:class:`~pyclm.errors.ConfigError` naming the first bad setting, so ``pyclm node``
can print one line and exit 2 before it opens a socket.
"""

from __future__ import annotations

import ipaddress
import math
import os
import tomllib
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import attrs

from ..config import MembershipConfig, TimingConfig
from ..errors import ConfigError
from ..ids import MAX_NODE_ID
from ..sim.scenario import parse_quorum
from ..transports.udp import parse_endpoint, parse_peers
from ..voting import POLICIES, QuorumConfig

TRANSPORTS = ("udp", "tipc", "memory")
DEFAULT_MULTICAST = "239.192.77.1:5405"
DEFAULT_CLUSTER_NAME = "pyclm"
LOG_LEVELS = ("debug", "info", "warning", "error")


@attrs.frozen
class Setting:
    """One row of the settings table."""

    name: str
    kind: str  # "int", "float", "bool", "str", "path", "list", "table"
    default: object
    help: str

    @property
    def flag(self) -> str:
        return "--" + self.name.replace("_", "-")


#: Every setting of ``pyclm node`` (docs/daemon.md renders this table; a test keeps them equal).
SETTINGS: tuple[Setting, ...] = (
    Setting("config", "path", None, "a TOML file of these settings (keys with underscores); flags win"),
    Setting("node_id", "int", None, f"this node's id, 0..{MAX_NODE_ID} (required)"),
    Setting("transport", "str", "udp", "udp, memory (a cluster of one, for trying the tools) or tipc"),
    Setting("multicast", "str", DEFAULT_MULTICAST, "GROUP:PORT of the multicast group ([ff15::1]:5405 for IPv6)"),
    Setting("interface", "str", None, "address or interface name to send and join on (default: loopback)"),
    Setting("ttl", "int", 1, "multicast hop limit (0 keeps datagrams on the host)"),
    Setting("tipc_service_type", "int", 0x50434C4D, "TIPC: the service type nodes bind (instance = node id)"),
    Setting("peers", "list", None, "HOST:PORT,... : unicast mode, one entry per node (own entry ignored)"),
    Setting("listen", "str", None, "HOST:PORT this node binds in unicast mode (required with peers)"),
    Setting("nodes", "list", None, "the node ids of the cluster, e.g. 1-5 or 1,2,7 (one vote each)"),
    Setting("state_dir", "path", None, "where the voting state, the lock, the audit log and the control socket live"),
    Setting("key_file", "path", None, "the cluster keyring (TOML; pyclm key generate writes one)"),
    Setting("insecure", "bool", False, "run without authentication (refused on non-loopback without this)"),
    Setting("encrypt", "bool", False, "encrypt datagrams with AES-GCM (needs pip install 'pyclm[crypto]')"),
    Setting("cluster_name", "str", DEFAULT_CLUSTER_NAME, "clusters sharing a group ignore each other by name"),
    Setting("heartbeat_interval", "float", 0.1, "seconds between heartbeats"),
    Setting("suspect_timeout", "float", 0.5, "seconds of silence before a node is suspected"),
    Setting("lease", "float", None, "seconds a primary acts unconfirmed; 0: no lease (default: 0.8 x suspect_timeout)"),
    Setting("quorum", "str", "ykd", f"the quorum policy ({', '.join(sorted(POLICIES))})"),
    Setting("control_socket", "path", None, "the control socket (default: STATE_DIR/control.sock)"),
    Setting("control_group", "str", None, "a group allowed on the control socket (mode 0660; default 0600)"),
    Setting("events_json", "bool", False, "print view / primary / primary_lost lines as JSON on stdout"),
    Setting("log_level", "str", "info", f"stderr log level ({', '.join(LOG_LEVELS)})"),
    Setting("max_datagram", "int", None, "largest datagram in bytes (default: one Ethernet MTU)"),
)
_BY_NAME = {s.name: s for s in SETTINGS}
#: Keys a config file may hold besides the settings: the ``[quorum]`` table as in scenarios.
_TABLES = {"quorum"}


@attrs.frozen
class NodeSettings:
    """Every setting of one ``pyclm node``, checked; built by :func:`resolve`."""

    node_id: int
    transport: str
    multicast: tuple[str, int]
    interface: str | None
    ttl: int
    tipc_service_type: int
    peers: tuple[tuple[str, int], ...]
    listen: tuple[str, int] | None
    state_dir: Path
    key_file: Path | None
    insecure: bool
    encrypt: bool
    cluster_name: str
    control_socket: Path
    control_group: str | None
    events_json: bool
    log_level: str
    max_datagram: int | None
    membership: MembershipConfig
    quorum: QuorumConfig

    @property
    def unicast(self) -> bool:
        return bool(self.peers)


def load_file(path: Path) -> dict[str, Any]:
    """The settings in a TOML file; a ConfigError names the file and the problem."""
    try:
        with path.open("rb") as fh:
            data = tomllib.load(fh)
    except FileNotFoundError:
        raise ConfigError("--config", f"{path}: no such file") from None
    except OSError as exc:
        raise ConfigError("--config", f"{path}: {exc.strerror or exc}") from None
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError("--config", f"{path}: not valid TOML ({exc})") from None
    for key in data:
        if key not in _BY_NAME and key not in _TABLES:
            hint = f" (did you mean {key.replace('-', '_')!r}?)" if key.replace("-", "_") in _BY_NAME else ""
            raise ConfigError(key, f"unknown setting in {path}{hint}")
        if key == "config":
            raise ConfigError("config", f"a config file cannot name another one ({path})")
    return data


def resolve(flags: Mapping[str, Any], *, environ: Mapping[str, str] | None = None) -> NodeSettings:
    """Merge the defaults, the ``--config`` file and ``flags`` (names with underscores;
    absent or None = not given) and check the result."""
    environ = os.environ if environ is None else environ
    given = {k: v for k, v in flags.items() if v is not None}
    raw: dict[str, Any] = {}
    quorum_table: Any = {}
    if "config" in given:
        from_file = load_file(Path(given["config"]))
        if isinstance(from_file.get("quorum"), dict):
            quorum_table = from_file.pop("quorum")
        raw.update(from_file)
    raw.update({k: v for k, v in given.items() if k != "config"})
    value = _Reader(raw)

    node_id = value.integer_or_none("node_id", low=0, high=MAX_NODE_ID)
    if node_id is None:
        raise ConfigError("node_id", "missing: give --node-id N or node_id = N in the config file")
    transport = value.choice("transport", TRANSPORTS)
    multicast = parse_endpoint(value.text("multicast"), "multicast")
    try:
        is_group = ipaddress.ip_address(multicast[0]).is_multicast
    except ValueError:
        is_group = False
    if not is_group:
        raise ConfigError("multicast", f"{multicast[0]} is not a multicast address")
    interface = value.text_or_none("interface")
    ttl = value.integer("ttl", low=0, high=255)
    tipc_service_type = value.integer("tipc_service_type", low=64, high=2**32 - 1)
    peer_items = value.items("peers")
    peers = parse_peers(peer_items, "peers") if peer_items else ()
    listen_text = value.text_or_none("listen")
    listen = parse_endpoint(listen_text, "listen") if listen_text is not None else None
    if peers and listen is None:
        raise ConfigError("listen", "missing: unicast mode (peers) needs the HOST:PORT this node binds")
    if listen is not None and not peers:
        raise ConfigError("peers", "missing: listen is for unicast mode; give the peers too (or drop listen)")
    nodes = parse_nodes(value.items("nodes"))
    state_dir = value.path("state_dir") or default_state_dir(node_id, environ)
    key_file = value.path("key_file")
    insecure = value.flag("insecure")
    encrypt = value.flag("encrypt")
    if encrypt and key_file is None:
        raise ConfigError("encrypt", "needs a key: give key_file (pyclm key generate FILE writes one)")
    if key_file is not None and insecure:
        raise ConfigError("insecure", "contradicts key_file: choose one")
    cluster_name = value.text("cluster_name")
    if not cluster_name or len(cluster_name.encode()) > 255:
        raise ConfigError("cluster_name", "must be 1 to 255 bytes of text")
    control_socket = value.path("control_socket") or state_dir / "control.sock"
    if len(os.fsencode(control_socket)) >= 108:
        raise ConfigError("control_socket", f"{control_socket} is too long for a Unix socket (at most 107 bytes)")
    control_group = value.text_or_none("control_group")
    log_level = value.choice("log_level", LOG_LEVELS)
    max_datagram = value.integer_or_none("max_datagram", low=512, high=65507)
    try:
        timing = TimingConfig(
            heartbeat_interval=value.number("heartbeat_interval"),
            suspect_timeout=value.number("suspect_timeout"),
            lease=value.seconds_or_none("lease"),
        )
    except ConfigError as exc:
        raise ConfigError(exc.setting.removeprefix("timing."), exc.problem) from None
    membership = MembershipConfig(node_id=node_id, timing=timing)
    quorum = _quorum(value.text("quorum"), quorum_table, raw, nodes, node_id)
    events_json = value.flag("events_json")
    value.check_all_read()
    return NodeSettings(
        node_id=node_id,
        transport=transport,
        multicast=multicast,
        interface=interface,
        ttl=ttl,
        tipc_service_type=tipc_service_type,
        peers=peers,
        listen=listen,
        state_dir=state_dir,
        key_file=key_file,
        insecure=insecure,
        encrypt=encrypt,
        cluster_name=cluster_name,
        control_socket=control_socket,
        control_group=control_group,
        events_json=events_json,
        log_level=log_level,
        max_datagram=max_datagram,
        membership=membership,
        quorum=quorum,
    )


def _quorum(name: str, table: Any, raw: Mapping[str, Any], nodes: list[int], node_id: int) -> QuorumConfig:
    if not isinstance(table, dict):
        raise ConfigError("quorum", "must be a policy name or a [quorum] table")
    table = dict(table)
    # --quorum (or a top-level `quorum = "..."`) names the policy; it wins over the table's.
    if "quorum" in raw or "policy" not in table:
        table["policy"] = name
    quorum = parse_quorum(table, "quorum")
    if quorum.votes is None:
        if not nodes:
            raise ConfigError(
                "nodes",
                f"missing: the quorum policy needs the cluster's node ids (e.g. --nodes 1-5, "
                f"or votes in the [quorum] table); node {node_id} must be one of them",
            )
        quorum = quorum.with_default_votes(nodes)
    elif nodes:
        raise ConfigError("nodes", "give either nodes or [quorum] votes, not both")
    if node_id not in (quorum.votes or {}):
        raise ConfigError("nodes", f"does not list this node ({node_id})")
    return quorum


def parse_nodes(items: list[str]) -> list[int]:
    """``["1-5", "7"]`` -> [1, 2, 3, 4, 5, 7]; each item an id or an inclusive range."""
    out: set[int] = set()
    for item in items:
        low, sep, high = item.strip().partition("-")
        try:
            first = int(low)
            last = int(high) if sep else first
        except ValueError:
            raise ConfigError("nodes", f"{item!r} is not a node id or a range like 1-5") from None
        if not 0 <= first <= last <= MAX_NODE_ID:
            raise ConfigError("nodes", f"{item!r} is not a range of node ids in 0..{MAX_NODE_ID}")
        if last - first >= 4096:
            raise ConfigError("nodes", f"{item!r} lists more than 4096 nodes")
        out.update(range(first, last + 1))
    return sorted(out)


def default_state_dir(node_id: int, environ: Mapping[str, str]) -> Path:
    """``/var/lib/pyclm/node-N`` for root, else ``$XDG_STATE_HOME/pyclm/node-N`` (``~/.local/state``)."""
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        return Path("/var/lib/pyclm") / f"node-{node_id}"
    base = environ.get("XDG_STATE_HOME") or str(Path(environ.get("HOME", "~")).expanduser() / ".local" / "state")
    return Path(base) / "pyclm" / f"node-{node_id}"


class _Reader:
    """Typed reads of raw settings, each with its default; remembers what was read."""

    def __init__(self, raw: Mapping[str, Any]) -> None:
        self._raw = raw
        self._read: set[str] = set()

    def _get(self, name: str) -> Any:
        self._read.add(name)
        return self._raw.get(name, _BY_NAME[name].default)

    def check_all_read(self) -> None:
        for name in self._raw:
            if name not in self._read:
                raise ConfigError(name, "unknown setting")

    def integer_or_none(self, name: str, *, low: int, high: int) -> int | None:
        value = self._get(name)
        if value is None:
            return None
        if not isinstance(value, int) or isinstance(value, bool) or not low <= value <= high:
            raise ConfigError(name, f"must be an integer in {low}..{high}, got {value!r}")
        return value

    def integer(self, name: str, *, low: int, high: int) -> int:
        value = self.integer_or_none(name, low=low, high=high)
        return value if value is not None else 0

    def number(self, name: str) -> float:
        value = self._get(name)
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
            raise ConfigError(name, f"must be a positive number of seconds, got {value!r}")
        return float(value)

    def seconds_or_none(self, name: str) -> float | None:
        """A number of seconds >= 0, or None when not given."""
        value = self._get(name)
        if value is None:
            return None
        if not isinstance(value, int | float) or isinstance(value, bool) or not math.isfinite(value) or value < 0:
            raise ConfigError(name, f"must be a number of seconds >= 0, got {value!r}")
        return float(value)

    def flag(self, name: str) -> bool:
        value = self._get(name)
        if not isinstance(value, bool):
            raise ConfigError(name, f"must be true or false, got {value!r}")
        return value

    def text(self, name: str) -> str:
        value = self._get(name)
        if not isinstance(value, str):
            raise ConfigError(name, f"must be text, got {value!r}")
        return value

    def text_or_none(self, name: str) -> str | None:
        value = self._get(name)
        if value is not None and (not isinstance(value, str) or not value.strip()):
            raise ConfigError(name, f"must be non-empty text, got {value!r}")
        return value

    def choice(self, name: str, choices: tuple[str, ...]) -> str:
        value = self.text(name)
        if value not in choices:
            raise ConfigError(name, f"must be one of {', '.join(choices)}, got {value!r}")
        return value

    def path(self, name: str) -> Path | None:
        value = self._get(name)
        if value is None:
            return None
        if not isinstance(value, str | os.PathLike) or not str(value):
            raise ConfigError(name, f"must be a path, got {value!r}")
        return Path(value).expanduser()

    def items(self, name: str) -> list[str]:
        """A list from TOML (``["a", "b"]``) or a flag (``"a,b"``); numbers become text."""
        value = self._get(name)
        if value is None:
            return []
        if isinstance(value, str):
            items = [part for part in value.split(",") if part.strip()]
        elif isinstance(value, list):
            items = value
        else:
            raise ConfigError(name, f"must be a list or comma-separated text, got {value!r}")
        out = []
        for item in items:
            if isinstance(item, int) and not isinstance(item, bool):
                item = str(item)
            if not isinstance(item, str):
                raise ConfigError(name, f"has an entry that is not text: {item!r}")
            out.append(item.strip())
        if not out:
            raise ConfigError(name, "is empty")
        return out
