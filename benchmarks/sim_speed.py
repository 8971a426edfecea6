"""Simulator wall time on the committed scenarios (a partition or a heal every 5 s).

    python -m benchmarks.sim_speed [--duration S] [--only NAME ...]

Prints, per scenario: simulated seconds, wall seconds, the real-time factor
(simulated / wall) and datagrams delivered per wall second.  The targets in issue 2:
heartbeat-100 (60 s) under 30 s wall, oracle-1000 (60 s) under 60 s wall.
"""

from __future__ import annotations

import argparse
import sys
import time

from pyclm.sim import Simulator

from ._common import scenario, table

NAMES = ["heartbeat-16", "heartbeat-100", "oracle-16", "oracle-100", "oracle-1000"]


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--duration", type=float, help="cut each scenario to this many simulated seconds")
    parser.add_argument("--only", nargs="*", choices=NAMES, help="run only these scenarios")
    args = parser.parse_args(argv)
    rows = [["scenario", "simulated s", "wall s", "sim/wall", "deliveries", "deliveries/s", "views", "ok"]]
    for name in args.only or NAMES:
        overrides = {"duration": args.duration} if args.duration else {}
        sc = scenario(name, **overrides)
        print(f"running {name} ({len(sc.nodes)} nodes, {sc.duration:.0f} simulated s) ...", file=sys.stderr, flush=True)
        sim = Simulator(sc)
        started = time.perf_counter()
        result = sim.run()
        wall = time.perf_counter() - started
        views = sum(1 for r in result.records if r.get("event") == "view")
        rows.append(
            [
                name,
                f"{sc.duration:.0f}",
                f"{wall:.2f}",
                f"{sc.duration / wall:.2f}",
                str(result.deliveries),
                f"{result.deliveries / wall:,.0f}",
                str(views),
                "yes" if result.violation is None else f"VIOLATION: {result.violation}",
            ]
        )
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
