"""What the core does at its limits: oversize views, oversize policy state, bad settings."""

from __future__ import annotations

import random
from collections.abc import Mapping

import pytest

from pyclm import wire
from pyclm.config import MembershipConfig, TimingConfig
from pyclm.core import Membership
from pyclm.errors import ConfigError, UsageError
from pyclm.ids import Member, View
from pyclm.sim import parse_scenario
from pyclm.voting import POLICIES, QuorumConfig, QuorumPolicy, register_policy

TIMING = TimingConfig(heartbeat_interval=0.1, suspect_timeout=0.5)
QUORUM = QuorumConfig(policy="majority", votes={n: 1 for n in range(1, 80)})


def core(node_id: int, *, max_datagram: int = 65000, quorum: QuorumConfig = QUORUM) -> Membership:
    config = MembershipConfig(node_id=node_id, timing=TIMING, max_datagram=max_datagram)
    return Membership(config, quorum, stored={}, wall_clock_ns=10, now=0.0, rng=random.Random(0))


def test_a_view_too_large_for_the_transport_is_dropped_and_counted_never_sent() -> None:
    one = core(1, max_datagram=512)
    one.writes_to_persist()
    one.datagrams_to_send()
    now = 0.01
    # 79 peers that all hear each other and node 1: the row and the proposal of an
    # 80-node view no longer fit in 512 bytes.
    everyone = tuple(Member(n, one.incarnation if n == 1 else 7) for n in range(1, 81))
    for peer in range(2, 81):
        row = wire.Row(peer, 7, 1, everyone)
        one.receive_datagram(wire.encode_heartbeat(peer, 7, None, 1, 0, row), peer, now)
    sent: list[bytes] = []
    next_beat = 0.1
    while now < 2.0:
        deadline = one.get_timer()
        assert deadline is not None
        now = max(now, min(deadline, next_beat))
        if now >= next_beat:  # the peers keep heartbeating (row version 1, already held)
            for peer in range(2, 81):
                one.receive_datagram(wire.encode_heartbeat(peer, 7, None, 1, 0, None), peer, now)
            next_beat += 0.1
        one.handle_timer(now)
        one.writes_to_persist()
        sent.extend(data for data, _ in one.datagrams_to_send())
    assert sent, "heartbeats without the row still go out"
    assert max(len(data) for data in sent) <= 512
    assert one.counters["tx_row_too_large"] > 0
    assert one.counters["tx_dropped_oversize"] > 0  # the proposal to 80 nodes


class _Chatty(QuorumPolicy):
    name = "test-chatty"

    def ack_state(self, view: View | None = None) -> bytes:
        return b"x" * (wire.MAX_STATE + 1)

    def view_installed(self, view: View, states: Mapping[int, bytes], now: float) -> None:
        pass


def test_a_policy_whose_state_does_not_fit_is_a_clear_error() -> None:
    register_policy(_Chatty)
    try:
        one = core(1, quorum=QuorumConfig(policy="test-chatty"))
        with pytest.raises(UsageError, match="at most 16384"):
            one.handle_timer(1.0)  # the grace ends: it proposes its singleton view
            one.handle_timer(1.1)
    finally:
        del POLICIES["test-chatty"]


def test_static_majority_without_votes_is_a_config_error() -> None:
    with pytest.raises(ConfigError) as info:
        core(1, quorum=QuorumConfig(policy="majority"))
    assert info.value.setting == "quorum.votes"


def test_unknown_quorum_settings_are_rejected() -> None:
    with pytest.raises(ConfigError) as info:
        parse_scenario({"nodes": 3, "quorum": {"policy": "majority", "last_man_standing": True}})
    assert info.value.setting == "quorum.last_man_standing"
