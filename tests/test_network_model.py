"""The simulated network's fault model: seeded, directed links, partitions, loss and duplicates."""

from __future__ import annotations

import random

import pytest

from pyclm.sim.network import NetworkConditions, NetworkModel

NOISY = NetworkConditions(latency=0.01, jitter=0.004, loss=0.2, duplicate=0.2, reorder=0.2)


def model(conditions: NetworkConditions = NOISY, seed: int = 1) -> NetworkModel:
    return NetworkModel(conditions, random.Random(seed))


def sample(net: NetworkModel, n: int = 300) -> list[list[float]]:
    return [net.delays(i % 3, (i + 1) % 3) for i in range(n)]


def test_same_seed_same_delays() -> None:
    assert sample(model(seed=7)) == sample(model(seed=7))
    assert sample(model(seed=7)) != sample(model(seed=8))


def test_defaults_deliver_one_copy_near_the_latency() -> None:
    net = model(NetworkConditions())
    for delays in sample(net):
        assert len(delays) == 1
        assert 0.001 - 0.0002 <= delays[0] <= 0.001 + 0.0002


def test_exact_latency_without_jitter() -> None:
    net = model(NetworkConditions(latency=0.02, jitter=0.0))
    assert all(delays == [0.02] for delays in sample(net, 20))


def test_loss_one_drops_everything() -> None:
    net = model(NetworkConditions(loss=1.0, duplicate=1.0))
    assert all(delays == [] for delays in sample(net))


def test_loss_zero_drops_nothing() -> None:
    net = model(NetworkConditions(loss=0.0, duplicate=0.0, reorder=0.5))
    assert all(len(delays) == 1 for delays in sample(net))


def test_some_loss_drops_some() -> None:
    counts = [len(d) for d in sample(model(NetworkConditions(loss=0.5)), 400)]
    assert 0 < counts.count(0) < 400
    assert set(counts) == {0, 1}


def test_duplicates_yield_two_delays() -> None:
    net = model(NetworkConditions(duplicate=1.0))
    for delays in sample(net):
        assert len(delays) == 2
        assert all(0.0008 <= d <= 0.0012 for d in delays)


def test_reorder_holds_back_by_at_most_ten_latencies() -> None:
    c = NetworkConditions(latency=0.01, jitter=0.001, reorder=1.0)
    delays = [d[0] for d in sample(model(c))]
    assert all(0.009 <= d <= 0.011 + 0.1 for d in delays)
    assert max(delays) > 0.05  # some really are held back


def test_delays_are_never_negative() -> None:
    net = model(NetworkConditions(latency=0.0, jitter=0.01))
    assert all(d >= 0.0 for delays in sample(net) for d in delays)


def test_set_loss_changes_the_conditions() -> None:
    net = model(NetworkConditions())
    net.set_loss(1.0)
    assert net.conditions.loss == 1.0
    assert net.delays(1, 2) == []
    net.set_loss(0.0)
    assert len(net.delays(1, 2)) == 1


def test_partition_cuts_between_groups_and_isolates_unnamed_nodes() -> None:
    net = model(NetworkConditions())
    assert net.all_up
    net.partition([[1, 2], [3]])
    assert not net.all_up
    assert net.link_up(1, 2) and net.link_up(2, 1)
    assert not net.link_up(1, 3) and not net.link_up(3, 1)
    assert not net.link_up(4, 1) and not net.link_up(1, 4)  # 4 is alone
    assert net.delays(1, 3) == []
    assert len(net.delays(1, 2)) == 1


def test_heal_brings_every_link_up() -> None:
    net = model(NetworkConditions())
    net.partition([[1], [2]])
    net.set_link(1, 1, False)
    net.heal()
    assert net.all_up
    assert net.link_up(1, 2) and net.link_up(2, 1) and net.link_up(1, 1)


def test_a_new_partition_replaces_the_old_one() -> None:
    net = model(NetworkConditions())
    net.partition([[1], [2, 3]])
    net.partition([[1, 2], [3]])
    assert net.link_up(1, 2)
    assert not net.link_up(2, 3)


def test_set_link_is_directed() -> None:
    net = model(NetworkConditions())
    net.set_link(1, 2, False)
    assert not net.all_up
    assert not net.link_up(1, 2)
    assert net.link_up(2, 1)
    assert net.delays(1, 2) == []
    assert len(net.delays(2, 1)) == 1
    net.set_link(1, 2, True)
    assert net.all_up
    assert net.link_up(1, 2)


def test_set_link_up_does_not_bridge_a_partition() -> None:
    net = model(NetworkConditions())
    net.partition([[1], [2]])
    net.set_link(1, 2, True)
    assert not net.link_up(1, 2)
    assert not net.all_up
    net.set_link(1, 1, False)  # a link inside a group can still go down
    net.partition([[1, 3], [2]])
    assert net.link_up(1, 3)


def test_set_link_inside_a_partition_group() -> None:
    net = model(NetworkConditions())
    net.partition([[1, 2, 3]])
    net.set_link(2, 3, False)
    assert not net.link_up(2, 3)
    assert net.link_up(3, 2)
    assert net.link_up(1, 3)


def test_a_down_link_draws_no_randomness() -> None:
    # Whether or not a datagram crosses a down link, the other links' delays stay the same.
    a, b = model(seed=3), model(seed=3)
    b.set_link(5, 6, False)
    b.delays(5, 6)
    assert sample(a, 50) == sample(b, 50)


@pytest.mark.parametrize(
    ("field", "value"),
    [("loss", 1.5), ("loss", -0.1), ("duplicate", 2), ("reorder", True), ("latency", -1.0), ("jitter", 61.0)],
)
def test_conditions_are_validated(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=rf"^network\.{field}: "):
        NetworkConditions(**{field: value})  # type: ignore[arg-type]
