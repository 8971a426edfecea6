"""``pyclm.open_node``: an embedded Node configured like ``pyclm node`` (file + keyword settings)."""

from __future__ import annotations

from pathlib import Path

import anyio
import pytest

import pyclm
from pyclm.errors import ConfigError

pytestmark = pytest.mark.anyio


async def test_a_config_file_chooses_the_transport(tmp_path: Path) -> None:
    config = tmp_path / "node.toml"
    config.write_text(
        f'node_id = 4\nnodes = [4]\ntransport = "memory"\nstate_dir = "{tmp_path / "state"}"\n'
        "heartbeat_interval = 0.02\nsuspect_timeout = 0.1\n"
    )
    async with pyclm.open_node(config) as node:
        await node.wait_for(lambda: node.is_primary, timeout=10)
        assert node.node_id == 4 and node.view is not None and node.view.node_ids == (4,)
        first = node.incarnation
    assert (tmp_path / "state" / "state").is_dir()  # the voting state is on disk
    # A second life on the same state dir: a higher incarnation, the same settings by keyword.
    async with pyclm.open_node(config, suspect_timeout=0.2) as node:
        assert node.config.timing.suspect_timeout == 0.2  # keywords win over the file
        assert node.incarnation is not None and first is not None and node.incarnation > first


async def test_a_bad_setting_fails_before_anything_opens(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as info:
        async with pyclm.open_node(node_id=1, nodes="1", transport="memory", state_dir=str(tmp_path), ttl=-1):
            pass
    assert info.value.setting == "ttl"
    assert list(tmp_path.iterdir()) == []


async def test_one_state_dir_one_node(tmp_path: Path) -> None:
    settings = {"node_id": 1, "nodes": "1", "transport": "memory", "state_dir": str(tmp_path / "s")}
    async with pyclm.open_node(**settings):
        with pytest.raises(ConfigError, match="in use"):
            async with pyclm.open_node(**settings):
                pass
    await anyio.lowlevel.checkpoint()
