"""Agreement latency after detection, in one-way message delays.

    python -m benchmarks.agreement_latency [--sizes 5 16 100] [--runs 5]

For each cluster size: start the cluster, crash one node (not the coordinator), and
measure from the moment the first survivor suspects it (heartbeat mode) or is told of
it (oracle mode) until every survivor has installed the new view, and until every
survivor has formed the new primary.  Divided by the mean one-way latency of the
simulated network (1 ms) this is the number of message delays agreement costs.
"""

from __future__ import annotations

import argparse
import statistics
import sys
from typing import Any

from pyclm.core import Membership
from pyclm.sim import ScenarioEvent, Simulator
from pyclm.sim.engine import SimNode

from ._common import scenario, table


class _DetectionProbe(Simulator):
    """A simulator that notes when any core's ``suspected`` counter first grows."""

    detected_at: float | None = None

    def _pump(self, node: SimNode, core: Membership) -> None:
        if self.detected_at is None and core.counters.get("suspected", 0):
            self.detected_at = self.now
        super()._pump(node, core)


def measure(n: int, connectivity: str, seed: int) -> tuple[float, float, float]:
    sc = scenario("heartbeat-16", nodes=n, seed=seed, connectivity=connectivity, duration=4.0, event=[])
    sim = _DetectionProbe(sc)
    sim.start()
    sim.run(until=2.0 + seed * 0.0137)  # crash at a different heartbeat phase each run
    for node in sim.nodes.values():
        assert node.core is not None
        node.core.counters.pop("suspected", None)
    victim = n  # the highest id: never the coordinator
    crash_at = sim.now
    sim.apply(ScenarioEvent(at=crash_at, action="crash", nodes=(victim,)))
    sim.run(until=crash_at + 2.0)
    detected = crash_at if connectivity == "oracle" else sim.detected_at
    assert detected is not None, "nobody suspected the crashed node"
    survivors = [m for m in sim.running()]
    views: dict[int, float] = {}
    primaries: dict[int, float] = {}
    for record in sim.records:
        if record["t"] < crash_at or record.get("node") not in survivors:
            continue
        if record["event"] == "view" and victim not in record["members"]:
            views.setdefault(record["node"], record["t"])
        if record["event"] == "primary" and victim not in record["members"]:
            primaries.setdefault(record["node"], record["t"])
    assert len(views) == len(survivors) == len(primaries), (views, primaries)
    latency = sc.network.latency
    view_delays = (max(views.values()) - detected) / latency
    primary_delays = (max(primaries.values()) - detected) / latency
    return (detected - crash_at, view_delays, primary_delays)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--sizes", type=int, nargs="*", default=[5, 16, 100])
    parser.add_argument("--runs", type=int, default=5)
    args = parser.parse_args(argv)
    rows = [["nodes", "mode", "detection s", "view in all (delays)", "primary in all (delays)"]]
    for n in args.sizes:
        for mode in ("heartbeat", "oracle"):
            samples: list[Any] = [measure(n, mode, seed) for seed in range(args.runs)]
            det = statistics.median(s[0] for s in samples)
            view = statistics.median(s[1] for s in samples)
            prim = statistics.median(s[2] for s in samples)
            worst = max(s[1] for s in samples)
            rows.append([str(n), mode, f"{det:.3f}", f"{view:.1f} (max {worst:.1f})", f"{prim:.1f}"])
            print(f"{n} nodes {mode}: done", file=sys.stderr, flush=True)
    print(table(rows))
    print("\nmedian over runs; 1 delay = the mean one-way latency (1 ms); settle_delay = 5 ms is part of it")
    return 0


if __name__ == "__main__":
    sys.exit(main())
