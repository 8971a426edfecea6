"""The ``pyclm`` command: a thin layer over library calls.

Exit codes: 0 success; 1 an invariant was violated; 2 bad usage, a bad scenario or a
bad setting (one line on stderr naming it); 141 the reader of stdout went away (as
for SIGPIPE in a shell).
"""

from __future__ import annotations

import argparse
import os
import sys
import time
import tomllib
from importlib import resources
from pathlib import Path
from typing import NoReturn

import attrs

from .errors import ConfigError
from .sim import InvariantViolation, Scenario, Simulator, load_scenario, parse_scenario
from .sim.report import OrderedRecords, describe, summary_lines, write_records
from .voting import POLICIES


class _Parser(argparse.ArgumentParser):
    """Bad usage is one line on stderr (the command and the problem) and exit code 2."""

    def error(self, message: str) -> NoReturn:
        self.exit(2, f"{self.prog}: {message} (see {self.prog} --help)\n")


def _parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="pyclm", description="Cluster membership for Python.")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    demo = sub.add_parser("demo", help="a 5-node simulated cluster: partition, heal, crash, recover, leave")
    demo.add_argument("--json", action="store_true", help="print JSON lines instead of the timeline")

    simulate = sub.add_parser("simulate", help="run a scenario file, check the invariants, print what happened")
    simulate.add_argument("scenario", type=Path, help="a scenario TOML file (docs/scenarios.md)")
    simulate.add_argument("--json", action="store_true", help="one JSON object per line (docs/scenarios.md)")
    simulate.add_argument("--seed", type=int, help="override the scenario's seed")
    simulate.add_argument("--quorum", metavar="NAME", help=f"override quorum.policy ({', '.join(sorted(POLICIES))})")

    study = sub.add_parser("study", help="experiments over the quorum policies")
    studies = study.add_subparsers(dest="study", required=True, metavar="STUDY")
    availability = studies.add_parser(
        "availability",
        help="% of runs with a primary after cascading connectivity changes, per policy (docs/availability.md)",
    )
    availability.add_argument("--processes", type=int, default=64, help="processes per run (default 64)")
    availability.add_argument(
        "--runs", type=int, help="runs per point (default: until ±1 point at the named points, ±4 elsewhere)"
    )
    availability.add_argument("--jobs", type=int, default=os.cpu_count() or 1, help="worker processes (default: CPUs)")
    availability.add_argument("--out", type=Path, default=Path("availability-study"), help="results directory")
    availability.add_argument("--policies", help="comma-separated policy names (default: all of the study's)")
    availability.add_argument("--named-only", action="store_true", help="only k in 1,5,20 x gap in 0.5,2,8 rounds")
    availability.add_argument("--seed", type=int, default=1, help="the study's seed (schedules derive from it)")
    availability.add_argument(
        "--exchange-round",
        action="store_true",
        help="the policies' state exchange as a round of its own after the install (one more round to form)",
    )
    from .daemon.commands import add_parsers

    add_parsers(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    try:
        if args.command == "demo":
            return _demo(args.json)
        if args.command == "study":
            return _study(args)
        if args.command == "simulate":
            return _simulate(args)
        from .daemon.commands import run

        return run(args)
    except ConfigError as exc:
        print(f"pyclm: {exc}", file=sys.stderr)
        return 2
    except BrokenPipeError:
        # The reader went away (`pyclm simulate ... | head`): stop quietly, as other tools do.
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 141


def _override(scenario: Scenario, seed: int | None, quorum: str | None) -> Scenario:
    if seed is not None:
        if seed < 0:
            raise ConfigError("--seed", f"must be >= 0, got {seed}")
        scenario = attrs.evolve(scenario, seed=seed)
    if quorum is not None:
        if quorum not in POLICIES:
            raise ConfigError("--quorum", f"unknown policy {quorum!r} (known: {', '.join(sorted(POLICIES))})")
        scenario = attrs.evolve(scenario, quorum=attrs.evolve(scenario.quorum, policy=quorum))
    return scenario


def _simulate(args: argparse.Namespace) -> int:
    scenario = _override(load_scenario(args.scenario), args.seed, args.quorum)
    ordered = OrderedRecords(write_records(sys.stdout, as_json=args.json))
    result = Simulator(scenario, on_record=ordered).run()
    ordered.flush()
    return _verdict(result.violation)


def _demo(as_json: bool) -> int:
    text = resources.files("pyclm.scenarios").joinpath("demo.toml").read_text(encoding="utf-8")
    scenario = parse_scenario(tomllib.loads(text))
    if as_json:
        ordered = OrderedRecords(write_records(sys.stdout, as_json=True))
        result = Simulator(scenario, on_record=ordered).run()
        ordered.flush()
        return _verdict(result.violation)
    timing = scenario.timing
    print(
        f"pyclm demo: {len(scenario.nodes)} simulated nodes, heartbeat every {timing.heartbeat_interval}s, "
        f"suspicion after {timing.suspect_timeout}s, quorum: static majority\n"
    )
    started = time.perf_counter()
    sim = Simulator(scenario)
    sim.start()
    done, since = 0, 0.0
    for event_at in [*sorted({e.at for e in scenario.events}), scenario.duration]:
        # Run to just before the next scenario event: by then the cluster has settled.
        result = sim.run(until=event_at - 1e-9)
        if result.violation is not None:
            return _verdict(result.violation)
        new = sim.records[done:]
        done = len(sim.records)
        for record in new:
            if "node" not in record:
                print(f"t={record['t']:7.3f}  {describe(record).removeprefix('== ')}")
        last = max((r["t"] for r in new if "node" in r), default=None)
        settled = f"settled {last - since:.3f}s later:" if last is not None else "no change:"
        print(f"{'' if last is None else f't={last:7.3f}':9}  {settled}")
        for line in summary_lines(sim.final_views()):
            print(line)
        print()
        since = event_at
    result = sim.run()
    elapsed = time.perf_counter() - started
    print(
        f"{len(sim.records) - 1} records in {scenario.duration:.0f} simulated seconds, {sim.deliveries} datagrams "
        f"delivered, invariants held; {elapsed:.2f}s of real time.\n"
        "The same run as JSON lines: pyclm demo --json.  Your own scenarios: pyclm simulate FILE.toml"
    )
    return _verdict(result.violation)


def _study(args: argparse.Namespace) -> int:
    from .study.availability import DEFAULT_POLICIES, NAMED_GAPS, NAMED_KS, StudyConfig, run_study, table, write_summary
    from .study.plots import have_matplotlib, write_plots

    if args.jobs < 1:
        raise ConfigError("--jobs", f"must be at least 1, got {args.jobs}")
    policies = tuple(p.strip() for p in args.policies.split(",")) if args.policies else DEFAULT_POLICIES
    config = StudyConfig(
        processes=args.processes, policies=policies, runs=args.runs, seed=args.seed, exchange_round=args.exchange_round
    )
    if args.named_only:
        config = attrs.evolve(config, ks=NAMED_KS, gaps=NAMED_GAPS)
    try:
        results = run_study(config, args.out, jobs=args.jobs)
    except InvariantViolation as exc:
        return _verdict(exc)
    except KeyboardInterrupt:
        where = args.out / "runs.csv"
        print(f"pyclm study: interrupted; finished batches are in {where}: run again to resume", file=sys.stderr)
        return 130
    write_summary(config, results, args.out)
    print("% of runs with a primary once the changes stop (± half the 95 % interval), named points:")
    for line in table(config, results):
        print(line)
    if have_matplotlib():
        for path in write_plots(config, results, args.out):
            print(f"wrote {path}")
    else:
        print("no plots: matplotlib is missing (pip install 'pyclm[study]')", file=sys.stderr)
    print(f"wrote {args.out / 'availability.csv'} and {args.out / 'paired.csv'}")
    return 0


def _verdict(violation: InvariantViolation | None) -> int:
    if violation is None:
        return 0
    print(f"pyclm: invariant violated: {violation}", file=sys.stderr)
    return 1


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
