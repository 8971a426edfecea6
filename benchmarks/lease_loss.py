"""How often the primary lease runs out under random message loss, per policy.

    python -m benchmarks.lease_loss [--nodes 5] [--seconds 30] [--seeds 5] [--loss 0.01 0.05 0.1 0.2 0.3]

A cluster with no other trouble than loss (every copy of every datagram lost with the
given probability); the lease at its default.  Reports, per loss rate and policy,
``primary_lost`` events per node and minute, and the share of node-time spent acting as
primary once the first primary formed.  Without the lease neither would move at these
rates: the failure detector needs five heartbeats lost in a row.
"""

from __future__ import annotations

import argparse

from pyclm.sim import Simulator, parse_scenario

from ._common import table


def measure(policy: str, loss: float, nodes: int, seconds: float, seed: int) -> tuple[int, float]:
    sc = parse_scenario(
        {"nodes": nodes, "seed": seed, "duration": seconds, "quorum": {"policy": policy}, "network": {"loss": loss}}
    )
    records = Simulator(sc).run().records
    lost = sum(1 for r in records if r["event"] == "primary_lost")
    acting: dict[int, float] = {}
    since: dict[int, float] = {}
    start = min((r["t"] for r in records if r["event"] == "primary"), default=seconds)
    for r in records:
        if "node" not in r:
            continue
        node: int = r["node"]
        if r["event"] == "primary" and node not in since:
            since[node] = r["t"]
        elif r["event"] in ("primary_lost", "view") and node in since:
            acting[node] = acting.get(node, 0.0) + r["t"] - since.pop(node)
    for n, t in since.items():
        acting[n] = acting.get(n, 0.0) + seconds - t
    share = sum(acting.values()) / (nodes * max(seconds - start, 1e-9))
    return lost, share


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--seconds", type=float, default=30.0)
    parser.add_argument("--seeds", type=int, default=5)
    parser.add_argument("--loss", type=float, nargs="+", default=[0.01, 0.05, 0.1, 0.2, 0.3])
    args = parser.parse_args(argv)
    rows: list[list[str]] = [["loss", "policy", "primary_lost/node/min", "acting as primary"]]
    for loss in args.loss:
        for policy in ("majority", "ykd"):
            lost, shares = 0, []
            for seed in range(args.seeds):
                n, share = measure(policy, loss, args.nodes, args.seconds, seed)
                lost += n
                shares.append(share)
            per_node_minute = lost / args.seeds / args.nodes / (args.seconds / 60)
            rows.append([f"{loss:.0%}", policy, f"{per_node_minute:.2f}", f"{100 * sum(shares) / len(shares):.1f} %"])
    print(table(rows))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
