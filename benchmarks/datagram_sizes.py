"""The largest datagram of each type that YKD clusters send, from real simulator runs.

    python -m benchmarks.datagram_sizes [--nodes 64] [--seeds 5] [--limit 1388]

Every core's outgoing datagrams are measured before the core's own size check
(``datagrams_to_send``), so nothing is hidden by ``max_datagram``.  Scenarios:

- ``form``: the cluster starts and forms its first primary (the common case);
- ``crash``: then one member and then the coordinator crash, and both come back;
- ``partition``: then a 40/24 split, and the heal;
- ``cascade``: then random splits every 0.2-0.7 s with 5 % loss (attempts get
  lost, so views change while attempts are in flight: ambiguous sessions pile up).

For each: the largest ACK, INSTALL, QUORUM, PROPOSE and HEARTBEAT (bytes), the most
distinct quorum states in one INSTALL, the most ambiguous sessions in one report, and
how many datagrams the cores dropped as longer than ``--limit`` (their ``max_datagram``).
"""

from __future__ import annotations

import argparse
import logging
import random
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import attrs

from pyclm import wire
from pyclm.config import MembershipConfig
from pyclm.core import Membership
from pyclm.sim import Simulator, parse_scenario
from pyclm.voting import VotingState

from ._common import table

_TYPES = (
    wire.MessageType.ACK,
    wire.MessageType.INSTALL,
    wire.MessageType.QUORUM,
    wire.MessageType.PROPOSE,
    wire.MessageType.HEARTBEAT,
    wire.MessageType.PULL,
    wire.MessageType.ROWS,
)


class Sizes:
    """The largest datagram per type, and what made the quorum states big."""

    def __init__(self) -> None:
        self.largest: dict[int, int] = {}
        self.distinct_states = 0  # most distinct states in one INSTALL
        self.ambiguous = 0  # most ambiguous sessions in one report

    def saw(self, core: Membership, data: bytes) -> None:
        kind = data[3]
        self.largest[kind] = max(self.largest.get(kind, 0), len(data))
        if kind == wire.MessageType.INSTALL:
            message = wire.decode(data)
            assert isinstance(message, wire.Install), message
            states = {e.state for e in message.entries}
            self.distinct_states = max(self.distinct_states, len(states))
            view = core.view
            ids = view.node_ids if view is not None else ()
            for state in states:
                report = VotingState.decode(state, ids)
                if report is not None:
                    self.ambiguous = max(self.ambiguous, len(report.ambiguous))


class SizedSimulator(Simulator):
    """A simulator whose cores all have ``max_datagram`` (a transport's limit)."""

    def __init__(self, *args: Any, max_datagram: int, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.max_datagram = max_datagram

    def _config(self, node_id: int) -> MembershipConfig:
        return attrs.evolve(super()._config(node_id), max_datagram=self.max_datagram)


@contextmanager
def measuring(sizes: Sizes) -> Iterator[None]:
    """Every core's datagrams pass through ``sizes`` before the core's size check."""
    original = Membership.datagrams_to_send

    def spy(self: Membership) -> list[tuple[bytes, Any]]:
        for data, _addr in self._datagrams:
            sizes.saw(self, data)
        return original(self)

    Membership.datagrams_to_send = spy  # type: ignore[method-assign]
    try:
        yield
    finally:
        Membership.datagrams_to_send = original  # type: ignore[method-assign]


def events(name: str, n: int, seed: int) -> tuple[list[dict[str, Any]], dict[str, Any], float]:
    """(events, network, duration) of scenario ``name``."""
    nodes = list(range(1, n + 1))
    if name == "form":
        return [], {}, 2.0
    if name == "crash":
        return (
            [
                {"at": 2.0, "crash": [n]},
                {"at": 3.5, "crash": [1]},
                {"at": 5.0, "recover": [n]},
                {"at": 6.5, "recover": [1]},
            ],
            {},
            8.0,
        )
    if name == "partition":
        cut = n * 5 // 8
        return [{"at": 2.0, "partition": [nodes[:cut], nodes[cut:]]}, {"at": 4.0, "heal": True}], {}, 6.0
    rng = random.Random(seed)
    out: list[dict[str, Any]] = []
    t = 2.0
    for _ in range(12):
        t += rng.uniform(0.2, 0.7)
        shuffled = rng.sample(nodes, n)
        cuts = sorted(rng.sample(range(1, n), rng.randint(1, 3)))
        groups = [sorted(shuffled[a:b]) for a, b in zip([0, *cuts], [*cuts, n], strict=True)]
        out.append({"at": round(t, 3), "partition": groups})
    out.append({"at": round(t + 1.0, 3), "heal": True})
    out.append({"at": round(t + 1.0, 3), "loss": 0.0})
    return [{"at": 2.0, "loss": 0.05}, *out], {}, t + 3.0


def measure(name: str, n: int, seed: int, max_datagram: int) -> tuple[Sizes, int, int]:
    evs, network, duration = events(name, n, seed)
    scenario = parse_scenario(
        {
            "nodes": n,
            "seed": seed,
            "duration": duration,
            "quorum": {"policy": "ykd"},
            "network": network,
            "event": evs,
        }
    )
    sizes = Sizes()
    with measuring(sizes):
        result = SizedSimulator(scenario, max_datagram=max_datagram).run()
    assert result.violation is None, result.violation
    formed = sum(1 for r in result.records if r["event"] == "primary")
    return sizes, formed, result.counters.get("tx_dropped_oversize", 0)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--nodes", type=int, nargs="*", default=[64])
    parser.add_argument("--seeds", type=int, default=5, help="runs of the cascade scenario (0: none)")
    parser.add_argument("--limit", type=int, default=1388, help="every core's max_datagram")
    args = parser.parse_args(argv)
    logging.getLogger("pyclm").setLevel(logging.ERROR)  # the oversize warnings: counted in the table
    header = ["nodes", "scenario", *(t.name for t in _TYPES), "states/INSTALL", "ambiguous", "primaries", "oversize"]
    rows = [header]
    for n in args.nodes:
        runs = [("form", 0), ("crash", 0), ("partition", 0)] + [("cascade", s) for s in range(args.seeds)]
        for name, seed in runs:
            print(f"running {name} seed {seed} with {n} nodes ...", file=sys.stderr, flush=True)
            sizes, formed, oversize = measure(name, n, seed, args.limit)
            rows.append(
                [
                    str(n),
                    name if name != "cascade" else f"cascade/{seed}",
                    *(str(sizes.largest.get(t, 0)) for t in _TYPES),
                    str(sizes.distinct_states),
                    str(sizes.ambiguous),
                    str(formed),
                    str(oversize),
                ]
            )
    print(table(rows))
    return 0


if __name__ == "__main__":
    sys.exit(main())
