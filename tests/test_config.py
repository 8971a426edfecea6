"""Configuration values: validated when built, errors name the setting."""

from __future__ import annotations

import math
from typing import Any

import attrs
import pytest

from pyclm.config import ConnectivitySource, MembershipConfig, TimingConfig
from pyclm.errors import ConfigError, PyclmError
from pyclm.ids import MAX_NODE_ID
from pyclm.voting import QuorumConfig, StaticMajority


def test_defaults() -> None:
    timing = TimingConfig()
    assert (timing.heartbeat_interval, timing.suspect_timeout, timing.settle_delay) == (0.1, 0.5, 0.005)
    config = MembershipConfig(node_id=3)
    assert config.timing == timing
    assert config.connectivity is ConnectivitySource.HEARTBEAT
    assert config.max_datagram == 65000
    assert ConnectivitySource("external") is ConnectivitySource.EXTERNAL


def test_config_error_is_a_value_error_naming_the_setting() -> None:
    exc = ConfigError("timing.suspect_timeout", "too short")
    assert isinstance(exc, ValueError)
    assert isinstance(exc, PyclmError)
    assert (exc.setting, exc.problem) == ("timing.suspect_timeout", "too short")
    assert str(exc) == "timing.suspect_timeout: too short"


@pytest.mark.parametrize("field", ["heartbeat_interval", "suspect_timeout", "settle_delay"])
@pytest.mark.parametrize("bad", [0, -0.1, math.nan, math.inf, True, "0.1", None])
def test_timing_values_must_be_positive_numbers(field: str, bad: Any) -> None:
    with pytest.raises(ConfigError) as info:
        TimingConfig(**{field: bad})
    assert info.value.setting == f"timing.{field}"


@pytest.mark.parametrize("timeout", [0.1, 0.05])
def test_suspect_timeout_must_exceed_the_heartbeat_interval(timeout: float) -> None:
    with pytest.raises(ConfigError) as info:
        TimingConfig(heartbeat_interval=0.1, suspect_timeout=timeout)
    assert info.value.setting == "timing.suspect_timeout"
    TimingConfig(heartbeat_interval=0.1, suspect_timeout=0.1001)


def test_settle_delay_must_be_shorter_than_the_timeout() -> None:
    with pytest.raises(ConfigError) as info:
        TimingConfig(suspect_timeout=0.5, settle_delay=0.5)
    assert info.value.setting == "timing.settle_delay"


@pytest.mark.parametrize("bad", [-1, MAX_NODE_ID + 1, True, 1.0, "1"])
def test_node_id_range(bad: Any) -> None:
    with pytest.raises(ConfigError) as info:
        MembershipConfig(node_id=bad)
    assert info.value.setting == "node_id"
    MembershipConfig(node_id=0)
    MembershipConfig(node_id=MAX_NODE_ID)


@pytest.mark.parametrize("bad", [511, 65508, 1500.0, "1500"])
def test_max_datagram_range(bad: Any) -> None:
    with pytest.raises(ConfigError) as info:
        MembershipConfig(node_id=1, max_datagram=bad)
    assert info.value.setting == "max_datagram"
    assert MembershipConfig(node_id=1, max_datagram=512).max_datagram == 512
    assert MembershipConfig(node_id=1, max_datagram=65507).max_datagram == 65507


def test_configs_are_frozen_and_keyword_only() -> None:
    config = MembershipConfig(node_id=1)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        config.node_id = 2  # type: ignore[misc]
    with pytest.raises(TypeError):
        TimingConfig(0.1, 0.5)  # type: ignore[call-arg]


# ------------------------------------------------------------------ the [quorum] table


def test_quorum_defaults_and_votes() -> None:
    quorum = QuorumConfig()
    assert (quorum.policy, quorum.votes, quorum.tie_breaker) == ("majority", None, "lowest")
    filled = quorum.with_default_votes([1, 2, 3])
    assert filled.votes == {1: 1, 2: 1, 3: 1}
    assert filled.total_votes == 3
    given = QuorumConfig(votes={"1": 2, 5: 1})  # TOML keys arrive as strings
    assert given.votes == {1: 2, 5: 1}
    assert given.with_default_votes([1, 2]) is given
    assert given.votes_of([1, 2]) == 2


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"policy": "nope"}, "quorum.policy"),
        ({"votes": {1: -1}}, "quorum.votes"),
        ({"votes": {1: 1.5}}, "quorum.votes"),
        ({"votes": {1: True}}, "quorum.votes"),
        ({"votes": {"x": 1}}, "quorum.votes"),
        ({"votes": {-3: 1}}, "quorum.votes"),
        ({"tie_breaker": "middle"}, "quorum.tie_breaker"),
        ({"tie_breaker": -1}, "quorum.tie_breaker"),
        ({"tie_breaker": True}, "quorum.tie_breaker"),
    ],
)
def test_quorum_errors_name_the_setting(kwargs: dict[str, Any], setting: str) -> None:
    with pytest.raises(ConfigError) as info:
        QuorumConfig(**kwargs)
    assert info.value.setting == setting


def test_tie_breaker_node() -> None:
    votes = {1: 0, 2: 1, 5: 1}
    assert QuorumConfig(votes=votes).tie_breaker_node() == 2  # voters only
    assert QuorumConfig(votes=votes, tie_breaker="highest").tie_breaker_node() == 5
    assert QuorumConfig(votes=votes, tie_breaker=7).tie_breaker_node() == 7
    assert QuorumConfig(votes={}).tie_breaker_node() is None


def test_static_majority_rule() -> None:
    quorum = QuorumConfig(votes={1: 1, 2: 1, 3: 1, 4: 1})
    assert StaticMajority.rule_holds(quorum, (1, 2, 3))
    assert not StaticMajority.rule_holds(quorum, (1, 2))  # an exact half is not a majority
    assert not StaticMajority.rule_holds(quorum, (5, 6, 7))  # no configured votes
    weighted = QuorumConfig(votes={1: 3, 2: 1, 3: 1})
    assert StaticMajority.rule_holds(weighted, (1,))
    assert not StaticMajority.rule_holds(weighted, (2, 3))
