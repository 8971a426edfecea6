"""Liveness under stable connectivity that is not a clean partition.

Under stable connectivity every running node ends up in a view, the views are the
components of the rule, and they stay put (no churn once settled).
"""

from __future__ import annotations

import pytest

from pyclm.sim import NetworkConditions, ScenarioEvent, Simulator
from test_sim_properties import INITIAL as NODES
from test_sim_properties import make_simulator


def simulator(connectivity: str, seed: int, loss: float = 0.0) -> Simulator:
    return make_simulator(connectivity, seed, NetworkConditions(latency=0.001, jitter=0.0005, loss=loss))


def cut(sim: Simulator, a: int, b: int, *, both: bool = True) -> None:
    sim.apply(ScenarioEvent(at=sim.now, action="link", src=a, dst=b, up=False))
    if both:
        sim.apply(ScenarioEvent(at=sim.now, action="link", src=b, dst=a, up=False))


def settled_views(sim: Simulator, quiet: float = 3.0) -> dict[int, tuple[int, ...]]:
    """Run until quiet, then check nothing changes for another ``quiet`` seconds."""
    result = sim.run(until=sim.now + quiet)
    assert result.violation is None, result.violation
    before = {n: sim.nodes[n].view for n in sim.running()}
    count = len(sim.records)
    result = sim.run(until=sim.now + quiet)
    assert result.violation is None, result.violation
    assert {n: sim.nodes[n].view for n in sim.running()} == before, "views still changing"
    assert not [r for r in sim.records[count:] if r["event"] == "view"]
    views = {}
    for n, view in before.items():
        assert view is not None, f"node {n} has no view"
        views[n] = view.node_ids
    return views


@pytest.mark.parametrize("connectivity", ["heartbeat", "oracle"])
@pytest.mark.parametrize("seed", range(3))
def test_non_transitive_links(connectivity: str, seed: int) -> None:
    sim = simulator(connectivity, seed)
    sim.run(until=1.0)
    cut(sim, 1, 3)  # 1-2 and 2-3 up, 1-3 down: greedy by ascending id gives {1,2,4,5} and {3}
    views = settled_views(sim)
    assert views == {1: (1, 2, 4, 5), 2: (1, 2, 4, 5), 4: (1, 2, 4, 5), 5: (1, 2, 4, 5), 3: (3,)}


@pytest.mark.parametrize("connectivity", ["heartbeat", "oracle"])
@pytest.mark.parametrize("seed", range(3))
def test_one_way_link(connectivity: str, seed: int) -> None:
    sim = simulator(connectivity, seed)
    sim.run(until=1.0)
    cut(sim, 2, 4, both=False)  # 4 no longer hears 2; 2 still hears 4: not a link
    views = settled_views(sim)
    assert views[2] == (1, 2, 3, 5)
    assert views[4] == (4,)


@pytest.mark.parametrize("seed", range(3))
def test_a_chain_settles(seed: int) -> None:
    """1-2-3-4-5 in a line: the rule gives {1,2} {3,4} {5}; every node needs rows it cannot hear directly."""
    sim = simulator("heartbeat", seed)
    sim.run(until=1.0)
    for a in NODES:
        for b in NODES:
            if a < b and b - a > 1:
                cut(sim, a, b)
    views = settled_views(sim, quiet=4.0)
    assert views == {1: (1, 2), 2: (1, 2), 3: (3, 4), 4: (3, 4), 5: (5,)}


@pytest.mark.parametrize("seed", range(3))
def test_steady_loss_does_not_stop_agreement(seed: int) -> None:
    sim = simulator("heartbeat", seed, loss=0.1)
    sim.run(until=1.0)
    sim.apply(ScenarioEvent(at=sim.now, action="partition", groups=((1, 2, 3), (4, 5))))
    sim.run(until=sim.now + 4.0)
    sim.apply(ScenarioEvent(at=sim.now, action="heal"))
    result = sim.run(until=sim.now + 4.0)
    assert result.violation is None
    views = {n: sim.nodes[n].view for n in NODES}
    assert {v.node_ids for v in views.values() if v} == {NODES}
