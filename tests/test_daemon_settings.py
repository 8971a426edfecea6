"""``pyclm node`` settings: TOML file + flags, flags winning; every bad setting named."""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest

from pyclm.daemon.settings import SETTINGS, parse_nodes, resolve
from pyclm.errors import ConfigError

ROOT = Path(__file__).resolve().parent.parent


def _resolve(tmp_path: Path, **flags: Any) -> Any:
    flags.setdefault("state_dir", str(tmp_path / "state"))
    return resolve(flags, environ={"HOME": str(tmp_path)})


def _write(tmp_path: Path, text: str) -> str:
    path = tmp_path / "node.toml"
    path.write_text(text)
    return str(path)


def test_defaults(tmp_path: Path) -> None:
    s = _resolve(tmp_path, node_id=3, nodes="1-5")
    assert s.node_id == 3
    assert s.transport == "udp"
    assert s.multicast == ("239.192.77.1", 5405)
    assert s.interface is None and s.ttl == 1 and not s.unicast
    assert s.quorum.policy == "ykd"
    assert s.quorum.votes == {1: 1, 2: 1, 3: 1, 4: 1, 5: 1}
    assert s.membership.timing.heartbeat_interval == 0.1
    assert s.membership.timing.suspect_timeout == 0.5
    assert s.control_socket == tmp_path / "state" / "control.sock"
    assert s.cluster_name == "pyclm" and not s.insecure and not s.events_json
    assert (
        s.membership.timing.lease is None
        and _resolve(tmp_path, node_id=1, nodes="1", lease=0).membership.timing.lease == 0
    )


def test_file_then_flags_win(tmp_path: Path) -> None:
    config = _write(
        tmp_path,
        """
node_id = 2
nodes = [1, 2, 3]
multicast = "[ff15::77]:6000"
suspect_timeout = 1.5
heartbeat_interval = 0.2
events_json = true
[quorum]
policy = "majority"
tie_breaker = "highest"
""",
    )
    s = _resolve(tmp_path, config=config, suspect_timeout=2.0, events_json=False)
    assert s.node_id == 2
    assert s.multicast == ("ff15::77", 6000)
    assert s.membership.timing.suspect_timeout == 2.0  # the flag wins
    assert s.membership.timing.heartbeat_interval == 0.2  # from the file
    assert s.events_json is False
    assert s.quorum.policy == "majority" and s.quorum.tie_breaker == "highest"
    # --quorum names the policy and wins over the table's; the rest of the table stays.
    s = _resolve(tmp_path, config=config, quorum="ykd")
    assert s.quorum.policy == "ykd" and s.quorum.tie_breaker == "highest"


def test_votes_from_the_quorum_table(tmp_path: Path) -> None:
    config = _write(tmp_path, 'node_id = 1\n[quorum]\npolicy = "ykd"\nvotes = { 1 = 2, 2 = 1 }\n')
    assert _resolve(tmp_path, config=config).quorum.votes == {1: 2, 2: 1}


def test_unicast(tmp_path: Path) -> None:
    s = _resolve(
        tmp_path, node_id=1, nodes="1-3", peers="127.0.0.1:7001,127.0.0.1:7002,[::1]:7003", listen="127.0.0.1:7001"
    )
    assert s.unicast
    assert s.peers == (("127.0.0.1", 7001), ("127.0.0.1", 7002), ("::1", 7003))
    assert s.listen == ("127.0.0.1", 7001)


@pytest.mark.parametrize(
    ("flags", "setting", "problem"),
    [
        ({}, "node_id", "missing"),
        ({"node_id": -1}, "node_id", "integer"),
        ({"node_id": 1}, "nodes", "missing"),
        ({"node_id": 9, "nodes": "1-3"}, "nodes", "does not list this node"),
        ({"node_id": 1, "nodes": "3-1"}, "nodes", "range"),
        ({"node_id": 1, "nodes": "1,x"}, "nodes", "not a node id"),
        ({"node_id": 1, "nodes": "1", "transport": "carrier-pigeon"}, "transport", "one of"),
        ({"node_id": 1, "nodes": "1", "tipc_service_type": 5}, "tipc_service_type", "64.."),
        ({"node_id": 1, "nodes": "1", "multicast": "10.0.0.1:5405"}, "multicast", "not a multicast"),
        ({"node_id": 1, "nodes": "1", "multicast": "239.1.1.1"}, "multicast", "missing the port"),
        ({"node_id": 1, "nodes": "1", "multicast": "239.1.1.1:70000"}, "multicast", "port"),
        ({"node_id": 1, "nodes": "1", "multicast": "ff15::1:5405"}, "multicast", "brackets"),
        ({"node_id": 1, "nodes": "1", "multicast": "group.example:5405"}, "multicast", "not a multicast"),
        ({"node_id": 1, "nodes": "1", "ttl": 256}, "ttl", "0..255"),
        ({"node_id": 1, "nodes": "1", "peers": "127.0.0.1:1"}, "listen", "missing"),
        ({"node_id": 1, "nodes": "1", "listen": "127.0.0.1:1"}, "peers", "missing"),
        ({"node_id": 1, "nodes": "1", "peers": "a:1,b", "listen": "a:1"}, "peers", "missing the port"),
        ({"node_id": 1, "nodes": "1", "peers": "a:1,a:1", "listen": "a:1"}, "peers", "twice"),
        ({"node_id": 1, "nodes": "1", "suspect_timeout": 0.05}, "suspect_timeout", "heartbeat_interval"),
        ({"node_id": 1, "nodes": "1", "heartbeat_interval": -1.0}, "heartbeat_interval", "positive"),
        ({"node_id": 1, "nodes": "1", "lease": -1.0}, "lease", ">= 0"),
        ({"node_id": 1, "nodes": "1", "lease": 0.6}, "lease", "shorter than suspect_timeout"),
        ({"node_id": 1, "nodes": "1", "quorum": "plurality"}, "quorum.policy", "unknown policy"),
        ({"node_id": 1, "nodes": "1", "encrypt": True}, "encrypt", "needs a key"),
        ({"node_id": 1, "nodes": "1", "key_file": "k", "insecure": True}, "insecure", "contradicts"),
        ({"node_id": 1, "nodes": "1", "cluster_name": ""}, "cluster_name", "1 to 255"),
        ({"node_id": 1, "nodes": "1", "log_level": "chatty"}, "log_level", "one of"),
        ({"node_id": 1, "nodes": "1", "max_datagram": 100}, "max_datagram", "512..65507"),
        ({"node_id": 1, "nodes": "1", "control_socket": "/" + "x" * 120}, "control_socket", "too long"),
    ],
)
def test_bad_settings_are_named(tmp_path: Path, flags: dict[str, Any], setting: str, problem: str) -> None:
    with pytest.raises(ConfigError) as info:
        _resolve(tmp_path, **flags)
    assert info.value.setting == setting
    assert problem in info.value.problem


@pytest.mark.parametrize(
    ("text", "setting", "problem"),
    [
        ("node_id = 1\nnodes = [1]\nsuspect-timeout = 1.0\n", "suspect-timeout", "did you mean 'suspect_timeout'"),
        ("node_id = 1\nnodes = [1]\nbogus = 1\n", "bogus", "unknown setting"),
        ("node_id = 1\nnodes = [1]\nconfig = 'other.toml'\n", "config", "cannot name another"),
        ("node_id = 'one'\n", "node_id", "integer"),
        ("node_id = 1\nnodes = [1]\ninsecure = 'yes'\n", "insecure", "true or false"),
        ("node_id = 1\nnodes = [1]\npeers = 5\n", "peers", "list"),
        ("node_id = 1\nnodes = [1]\nquorum = 5\n", "quorum", "text"),
        ("node_id = 1\n[quorum]\nvotes = { 1 = 1 }\nnodes = [1]\n", "quorum.nodes", "unknown setting"),
        ("node_id = [", "--config", "not valid TOML"),
    ],
)
def test_bad_files_are_named(tmp_path: Path, text: str, setting: str, problem: str) -> None:
    config = _write(tmp_path, text)
    with pytest.raises(ConfigError) as info:
        _resolve(tmp_path, config=config)
    assert info.value.setting == setting
    assert problem in info.value.problem


def test_missing_config_file(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="no such file"):
        _resolve(tmp_path, config=str(tmp_path / "nope.toml"))


def test_nodes_and_votes_are_exclusive(tmp_path: Path) -> None:
    config = _write(tmp_path, "node_id = 1\nnodes = [1, 2]\n[quorum]\nvotes = { 1 = 1, 2 = 1 }\n")
    with pytest.raises(ConfigError) as info:
        _resolve(tmp_path, config=config)
    assert info.value.setting == "nodes"


def test_default_state_dir_follows_xdg(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import os

    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    s = resolve({"node_id": 4, "nodes": "4"}, environ={"XDG_STATE_HOME": str(tmp_path / "xdg")})
    assert s.state_dir == tmp_path / "xdg" / "pyclm" / "node-4"
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert resolve({"node_id": 4, "nodes": "4"}, environ={}).state_dir == Path("/var/lib/pyclm/node-4")


def test_node_parsing() -> None:
    assert parse_nodes(["1-3", "7", "2"]) == [1, 2, 3, 7]
    with pytest.raises(ConfigError, match="more than 4096"):
        parse_nodes(["0-100000"])


def test_docs_list_every_setting() -> None:
    """docs/daemon.md's table has one row per setting, with its flag, type and default."""
    text = (ROOT / "docs" / "daemon.md").read_text()
    rows = {}
    for line in text.splitlines():
        match = re.match(r"^\| `(--[a-z-]+)` \| `([a-z_]+)` \| (\w+) \| (.*?) \|", line)
        if match:
            rows[match[2]] = (match[1], match[3], match[4])
    assert set(rows) == {s.name for s in SETTINGS}
    for s in SETTINGS:
        flag, kind, default = rows[s.name]
        assert flag == s.flag
        assert kind == s.kind, s.name
        if s.default is not None:
            assert str(s.default).lower() in default.lower(), (s.name, default)
