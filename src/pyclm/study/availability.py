"""The availability study (after Ingols & Keidar, ICDCS 2001): runs, precision, results.

For each point of the grid (``k`` changes, mean gap between changes in rounds) the study
draws schedules (:mod:`pyclm.study.schedule`), runs every policy on each schedule
(:mod:`pyclm.study.model`: a paired comparison) and records, per run and policy, whether
a primary exists once the changes stop and the system settles.  Runs continue, in
batches, until the 95 % Wilson interval of every policy is narrow enough (±1 point at
the named points, ±4 elsewhere) or a cap is reached.

Every finished batch is appended to ``runs.csv`` at once, so an interrupted study loses
at most the batches in flight and resumes where it stopped when run again with the same
settings.  The summary goes to ``availability.csv`` (per point and policy),
``paired.csv`` (YKD against each other policy, from the same schedules) and a printed
table; plots need matplotlib (``pip install 'pyclm[study]'``).
"""

from __future__ import annotations

import csv
import math
import multiprocessing
import os
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import attrs

from ..errors import ConfigError
from ..voting import POLICIES, QuorumConfig
from ..voting.oracle import SessionTruth
from .model import Run, steady_state
from .schedule import make_schedule

DEFAULT_POLICIES = ("majority", "votequorum", "one-pending", "mr1p", "dfls", "ykd", "oracle")
NAMED_KS = (1, 5, 20)
NAMED_GAPS = (0.5, 2.0, 8.0)
_Z = 1.959963984540054  # 95 %


@attrs.frozen(kw_only=True)
class StudyConfig:
    processes: int = 64
    policies: tuple[str, ...] = DEFAULT_POLICIES
    ks: tuple[int, ...] = (1, 2, 5, 10, 15, 20)
    gaps: tuple[float, ...] = (0.5, 1.0, 2.0, 4.0, 8.0, 16.0)
    #: Fixed number of runs per point (None: adaptive, see precision_*).
    runs: int | None = None
    precision_named: float = 0.01
    precision_other: float = 0.04
    max_runs_named: int = 12_000
    max_runs_other: int = 1_500
    min_runs: int = 300
    batch: int = 100
    seed: int = 1
    #: Rounds before the first change (cold start: the first primary forms) and after the last.
    start: float = 20.0
    settle: float = 40.0
    #: votequorum's last_man_standing_window, in rounds.
    lms_window: float = 10.0
    #: The state exchange as a round of its own after the install (study.model.Run).
    exchange_round: bool = False

    def __attrs_post_init__(self) -> None:
        if not 2 <= self.processes <= 1024:
            raise ConfigError("--processes", f"must be in 2..1024, got {self.processes}")
        unknown = [p for p in self.policies if p not in POLICIES]
        if unknown:
            raise ConfigError("--policies", f"unknown policy {unknown[0]!r} (known: {', '.join(sorted(POLICIES))})")
        if self.runs is not None and self.runs < 1:
            raise ConfigError("--runs", f"must be at least 1, got {self.runs}")
        if not self.ks or any(k < 1 for k in self.ks):
            raise ConfigError("ks", "numbers of changes must be >= 1")
        if not self.gaps or any(g <= 0 for g in self.gaps):
            raise ConfigError("gaps", "mean gaps must be > 0")

    def named(self, k: int, gap: float) -> bool:
        return k in NAMED_KS and gap in NAMED_GAPS

    def quorum(self, policy: str) -> QuorumConfig:
        votes = {p: 1 for p in range(1, self.processes + 1)}
        options: dict[str, Any] = {}
        if policy == "votequorum":
            options["last_man_standing_window"] = self.lms_window
        elif policy == "oracle":
            options["truth"] = SessionTruth()  # one per run
        return QuorumConfig(policy=policy, votes=votes, options=options)

    def identity(self) -> dict[str, str]:
        """What runs.csv must agree on to be resumed."""
        out = {"processes": str(self.processes), "seed": str(self.seed), "policies": " ".join(self.policies)}
        if self.exchange_round:
            out["exchange"] = "round"
        return out


def run_seed(config: StudyConfig, k: int, gap: float, index: int) -> int:
    """The schedule seed of one run: a pure function of the point and the run's index."""
    return (config.seed * 1_000_003 + k * 10_007 + round(gap * 1000)) * 1_000_000 + index


#: Policies unsafe by design: their safety violations are counted, not raised.
UNSAFE = frozenset({"votequorum"})
#: Each worker computes the steady state (after the cold start) once per policy.
_STEADY: dict[tuple[str, int, float, bool], dict[int, bytes | None]] = {}


def one_schedule(config: StudyConfig, k: int, gap: float, index: int) -> tuple[str, ...]:
    """Every policy on one schedule: "1" a primary at the end, "0" none; "x" appended when
    the run broke a safety invariant (only policies in :data:`UNSAFE` may)."""
    seed = run_seed(config, k, gap, index)
    schedule = make_schedule(seed, config.processes, k, gap, config.start)
    settle = config.settle + (config.lms_window if "votequorum" in config.policies else 0.0)
    out = []
    for policy in config.policies:
        key = (policy, config.processes, config.start, config.exchange_round)
        if key not in _STEADY:
            _STEADY[key] = steady_state(
                config.quorum(policy),
                config.processes,
                start=config.start,
                settle=settle,
                exchange_round=config.exchange_round,
            )
        run = Run(
            config.quorum(policy),
            config.processes,
            schedule,
            seed,
            settle=settle,
            tolerate_violations=policy in UNSAFE,
            initial=_STEADY[key],
            exchange_round=config.exchange_round,
        )
        outcome = "1" if run.run(config.start) else "0"
        out.append(outcome + ("x" if run.violations else ""))
    return tuple(out)


def _batch(args: tuple[StudyConfig, int, float, int, int]) -> tuple[int, float, list[tuple[int, tuple[str, ...]]]]:
    config, k, gap, first, count = args
    return k, gap, [(i, one_schedule(config, k, gap, i)) for i in range(first, first + count)]


def wilson(successes: int, n: int) -> tuple[float, float]:
    """The 95 % Wilson score interval of a proportion."""
    if n == 0:
        return 0.0, 1.0
    p = successes / n
    denominator = 1 + _Z * _Z / n
    centre = (p + _Z * _Z / (2 * n)) / denominator
    half = _Z * math.sqrt(p * (1 - p) / n + _Z * _Z / (4 * n * n)) / denominator
    return max(0.0, centre - half), min(1.0, centre + half)


class Results:
    """Per-run outcomes by point, kept in ``runs.csv`` (appended as batches finish)."""

    def __init__(self, config: StudyConfig, path: Path) -> None:
        self.config = config
        self.path = path
        self.runs: dict[tuple[int, float], dict[int, tuple[str, ...]]] = {}
        if path.exists():
            self._load()
        else:
            with open(path, "w", newline="") as f:
                f.write("# " + " ".join(f"{k}={v}" for k, v in config.identity().items()) + "\n")
                csv.writer(f).writerow(["k", "gap", "run", *config.policies])

    def _load(self) -> None:
        with open(self.path, newline="") as f:
            head = f.readline().strip()
            expected = "# " + " ".join(f"{k}={v}" for k, v in self.config.identity().items())
            if head != expected:
                raise ConfigError(
                    "--out", f"{self.path} holds runs of another study ({head[2:]!r}); use another directory"
                )
            reader = csv.reader(f)
            header = next(reader, None)
            if header != ["k", "gap", "run", *self.config.policies]:
                raise ConfigError("--out", f"{self.path} has unexpected columns; use another directory")
            for row in reader:
                if len(row) != 3 + len(self.config.policies):
                    continue  # a line cut short by a crash
                k, gap, index = int(row[0]), float(row[1]), int(row[2])
                self.runs.setdefault((k, gap), {})[index] = tuple(row[3:])

    def add(self, k: int, gap: float, batch: list[tuple[int, tuple[str, ...]]]) -> None:
        point = self.runs.setdefault((k, gap), {})
        with open(self.path, "a", newline="") as f:
            writer = csv.writer(f)
            for index, outcome in batch:
                point[index] = outcome
                writer.writerow([k, gap, index, *outcome])
            f.flush()
            os.fsync(f.fileno())

    def count(self, k: int, gap: float) -> int:
        return len(self.runs.get((k, gap), {}))

    def summary(self, k: int, gap: float) -> list[tuple[str, int, int, float, float]]:
        """Per policy: runs, runs with a primary, and the 95 % interval."""
        outcomes = list(self.runs.get((k, gap), {}).values())
        out = []
        for i, policy in enumerate(self.config.policies):
            yes = sum(1 for o in outcomes if o[i][0] == "1")
            low, high = wilson(yes, len(outcomes))
            out.append((policy, len(outcomes), yes, low, high))
        return out

    def violations(self, k: int, gap: float, policy: str) -> int:
        """Runs in which ``policy`` broke a safety invariant (unsafe policies only)."""
        i = self.config.policies.index(policy)
        return sum(1 for o in self.runs.get((k, gap), {}).values() if o[i].endswith("x"))

    def widest(self, k: int, gap: float) -> float:
        return max(((high - low) / 2 for _, _, _, low, high in self.summary(k, gap)), default=1.0)

    def paired(self, k: int, gap: float, a: str, b: str) -> tuple[float, float, float, int]:
        """``a`` minus ``b`` in points, its 95 % interval (paired, same schedules), and the runs."""
        policies = self.config.policies
        i, j = policies.index(a), policies.index(b)
        outcomes = list(self.runs.get((k, gap), {}).values())
        n = len(outcomes)
        if n == 0:
            return 0.0, 0.0, 0.0, 0
        only_a = sum(1 for o in outcomes if o[i][0] == "1" and o[j][0] != "1")
        only_b = sum(1 for o in outcomes if o[j][0] == "1" and o[i][0] != "1")
        diff = (only_a - only_b) / n
        se = math.sqrt(max(only_a + only_b - n * diff * diff, 0.0)) / n
        return 100 * diff, 100 * (diff - _Z * se), 100 * (diff + _Z * se), n


def _needed(config: StudyConfig, results: Results, k: int, gap: float) -> int:
    """How many more runs the point wants now (0: done)."""
    done = results.count(k, gap)
    if config.runs is not None:
        return max(config.runs - done, 0)
    named = config.named(k, gap)
    cap = config.max_runs_named if named else config.max_runs_other
    if done >= cap:
        return 0
    precision = config.precision_named if named else config.precision_other
    if done >= config.min_runs and results.widest(k, gap) <= precision:
        return 0
    return min(cap - done, max(config.min_runs - done, config.batch))


def run_study(
    config: StudyConfig,
    out: Path,
    *,
    jobs: int,
    progress: IO[str] | None = None,
    pool_factory: Callable[[int], Any] | None = None,
) -> Results:
    """Run (or resume) the study into ``out``; returns the results."""
    progress = progress or sys.stderr
    out.mkdir(parents=True, exist_ok=True)
    results = Results(config, out / "runs.csv")
    points = [(k, gap) for k in config.ks for gap in config.gaps]
    started = time.monotonic()
    fresh = 0
    factory = pool_factory or (lambda n: multiprocessing.get_context("spawn").Pool(n))
    with factory(jobs) as pool:
        for number, (k, gap) in enumerate(points, 1):
            while (need := _needed(config, results, k, gap)) > 0:
                first = max(results.runs.get((k, gap), {}), default=-1) + 1
                # A wave of batches, one or more per worker, then look at the precision again.
                sizes = _split(min(need, config.batch * max(jobs, 1)), config.batch)
                tasks = []
                for size in sizes:
                    tasks.append((config, k, gap, first, size))
                    first += size
                for kk, gg, batch in pool.imap_unordered(_batch, tasks):
                    results.add(kk, gg, batch)
                    fresh += len(batch)
                rate = fresh / max(time.monotonic() - started, 1e-9)
                print(
                    f"pyclm study: point {number}/{len(points)} (k={k}, gap={gap:g}): {results.count(k, gap)} runs, "
                    f"widest interval ±{100 * results.widest(k, gap):.1f} points, {rate:.1f} runs/s",
                    file=progress,
                    flush=True,
                )
    return results


def _split(total: int, size: int) -> list[int]:
    out = [size] * (total // size)
    if total % size:
        out.append(total % size)
    return out


def write_summary(config: StudyConfig, results: Results, out: Path) -> None:
    with open(out / "availability.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(
            ["k", "gap", "policy", "runs", "with_primary", "availability_pct", "ci95_low", "ci95_high", "unsafe_runs"]
        )
        for k in config.ks:
            for gap in config.gaps:
                for policy, n, yes, low, high in results.summary(k, gap):
                    pct = 100 * yes / n if n else 0.0
                    unsafe = results.violations(k, gap, policy)
                    row = [k, gap, policy, n, yes, f"{pct:.2f}", f"{100 * low:.2f}", f"{100 * high:.2f}", unsafe]
                    writer.writerow(row)
    if "ykd" not in config.policies:
        return
    with open(out / "paired.csv", "w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(["k", "gap", "policy", "ykd_minus_policy_pts", "ci95_low", "ci95_high", "runs"])
        for k in config.ks:
            for gap in config.gaps:
                for policy in config.policies:
                    if policy != "ykd":
                        diff, low, high, n = results.paired(k, gap, "ykd", policy)
                        writer.writerow([k, gap, policy, f"{diff:.2f}", f"{low:.2f}", f"{high:.2f}", n])


def table(config: StudyConfig, results: Results, *, named_only: bool = True) -> Iterator[str]:
    """The printed table: % of runs with a primary (± 95 % half-width) per point and policy."""
    widths = [max(len(p), 11) for p in config.policies]
    yield "k   gap   " + "  ".join(p.rjust(w) for p, w in zip(config.policies, widths, strict=True))
    for k in config.ks:
        for gap in config.gaps:
            if named_only and not config.named(k, gap):
                continue
            cells = []
            for (_, n, yes, low, high), w in zip(results.summary(k, gap), widths, strict=True):
                cells.append((f"{100 * yes / n:.1f}±{100 * (high - low) / 2:.1f}" if n else "-").rjust(w))
            yield f"{k:<3d} {gap:<5g} " + "  ".join(cells)
