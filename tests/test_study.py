"""The availability study: schedules, the message-round model, precision, resume, and the CLI."""

from __future__ import annotations

import csv
import io
import itertools
from collections.abc import Callable, Iterable, Iterator
from pathlib import Path
from typing import Any

import pytest

from pyclm.cli import main
from pyclm.errors import ConfigError
from pyclm.study.availability import (
    Results,
    StudyConfig,
    one_schedule,
    run_seed,
    run_study,
    table,
    wilson,
    write_summary,
)
from pyclm.study.model import Run
from pyclm.study.schedule import make_schedule


class SerialPool:
    """A stand-in for multiprocessing.Pool: same calls, in this process, in order."""

    def __init__(self, _jobs: int) -> None:
        self.tasks = 0

    def __enter__(self) -> SerialPool:
        return self

    def __exit__(self, *exc: object) -> None:
        return None

    def imap_unordered(self, fn: Callable[[Any], Any], tasks: Iterable[Any]) -> Iterator[Any]:
        for task in tasks:
            self.tasks += 1
            yield fn(task)


def small(**kwargs: Any) -> StudyConfig:
    defaults: dict[str, Any] = {"processes": 8, "ks": (1, 5), "gaps": (2.0,), "runs": 30, "batch": 10}
    defaults.update(kwargs)
    return StudyConfig(**defaults)


def test_a_schedule_is_a_pure_function_of_its_seed_and_each_change_splits_or_merges() -> None:
    a = make_schedule(7, 16, 20, 2.0, 10.0)
    assert a == make_schedule(7, 16, 20, 2.0, 10.0)
    assert a != make_schedule(8, 16, 20, 2.0, 10.0)
    previous: tuple[tuple[int, ...], ...] = (tuple(range(1, 17)),)
    times = [c.at for c in a]
    assert times == sorted(times) and times[0] > 10.0
    for change in a:
        flat = sorted(p for g in change.components for p in g)
        assert flat == list(range(1, 17))  # a partition of every process
        before, after = set(previous), set(change.components)
        gone, new = before - after, after - before
        split = len(gone) == 1 and len(new) == 2 and set().union(*new) == set(next(iter(gone)))
        merge = len(gone) == 2 and len(new) == 1 and set(next(iter(new))) == set().union(*gone)
        assert split or merge
        previous = change.components


def test_the_mean_gap_is_what_was_asked() -> None:
    gaps: list[float] = []
    for seed in range(200):
        times = [0.0] + [c.at for c in make_schedule(seed, 8, 10, 4.0, 0.0)]
        gaps.extend(b - a for a, b in itertools.pairwise(times))
    assert 3.6 < sum(gaps) / len(gaps) < 4.4


def test_without_changes_every_policy_forms_the_first_primary() -> None:
    for policy in ("majority", "ykd", "one-pending", "mr1p", "dfls", "votequorum"):
        assert Run(small().quorum(policy), 8, [], 1, settle=20.0).run(5.0)


@pytest.mark.parametrize("policy", ["ykd", "dfls", "one-pending"])
def test_the_exchange_round_costs_one_more_round_to_form(policy: str) -> None:
    quorum = small().quorum(policy)
    lags = []
    for seed in range(20):
        piggybacked = Run(quorum, 8, [], seed, settle=20.0)
        separate = Run(quorum, 8, [], seed, settle=20.0, exchange_round=True)
        assert piggybacked.run(5.0) and separate.run(5.0)
        # Every process forms the same first primary, one message delay (0.5 to 1.5) later.
        assert {(p, n) for _, p, n in piggybacked.formed} == {(p, n) for _, p, n in separate.formed}
        assert separate.messages > piggybacked.messages
        lags.append(min(t for t, _, _ in separate.formed) - min(t for t, _, _ in piggybacked.formed))
    assert all(lag > 0.4 for lag in lags) and 0.8 < sum(lags) / len(lags) < 2.0, lags


def test_a_view_whose_states_are_still_coming_in_is_dropped_when_a_newer_one_is_accepted() -> None:
    # Run 220 at (k=5, gap 0.5): a member installed view 1.1, acked the newer 5.1 (its
    # state abandoning the old session) while 1.1's states were still coming in; handing
    # 1.1 to YKD after that let it form #2 there while 5.1 formed #2 too.
    config = StudyConfig(policies=("ykd",), exchange_round=True)
    assert one_schedule(config, 5, 0.5, 220) in (("0",), ("1",))


def test_an_exchange_round_study_does_not_mix_with_the_piggybacked_one(tmp_path: Path) -> None:
    run_study(small(ks=(1,), runs=10), tmp_path, jobs=1, pool_factory=SerialPool)
    with pytest.raises(ConfigError):
        run_study(small(ks=(1,), runs=10, exchange_round=True), tmp_path, jobs=1, pool_factory=SerialPool)


def test_one_split_ykd_always_has_a_primary_and_majority_loses_exact_halves() -> None:
    config = small(processes=8, policies=("majority", "ykd"))
    outcomes = [one_schedule(config, 1, 2.0, i) for i in range(60)]
    assert all(o[1] == "1" for o in outcomes)  # a majority side, or the half with the tie-breaker
    halves = 0
    for i, o in enumerate(outcomes):
        schedule = make_schedule(run_seed(config, 1, 2.0, i), 8, 1, 2.0, config.start)
        sizes = sorted(len(g) for g in schedule[0].components)
        halves += sizes == [4, 4]
        assert (o[0] == "1") == (sizes != [4, 4])
    assert halves > 0


def test_an_unsafe_policy_is_counted_not_hidden() -> None:
    config = small(processes=8, policies=("votequorum",))
    outcomes = [one_schedule(config, 5, 1.0, i) for i in range(40)]
    assert all(o[0][0] in "01" and o[0][1:] in ("", "x") for o in outcomes)


def test_wilson_interval() -> None:
    low, high = wilson(50, 100)
    assert low == pytest.approx(0.4038, abs=1e-3) and high == pytest.approx(0.5962, abs=1e-3)
    assert wilson(0, 0) == (0.0, 1.0)
    low, high = wilson(100, 100)
    assert high == 1.0 and 0.96 < low < 0.97


def test_the_study_runs_to_its_run_count_and_resumes_without_redoing_anything(tmp_path: Path) -> None:
    config = small()
    progress = io.StringIO()
    pools: list[SerialPool] = []

    def factory(jobs: int) -> SerialPool:
        pools.append(SerialPool(jobs))
        return pools[-1]

    results = run_study(config, tmp_path, jobs=2, progress=progress, pool_factory=factory)
    assert results.count(1, 2.0) == 30 and results.count(5, 2.0) == 30
    assert "point 2/2 (k=5, gap=2)" in progress.getvalue()
    first_tasks = pools[0].tasks
    assert first_tasks == 6  # 2 points x 3 batches of 10
    again = run_study(config, tmp_path, jobs=2, progress=progress, pool_factory=factory)
    assert pools[1].tasks == 0
    assert again.runs == results.runs
    # More runs asked for: only the missing ones are run.
    more = run_study(small(runs=40), tmp_path, jobs=2, progress=progress, pool_factory=factory)
    assert pools[2].tasks == 2 and more.count(1, 2.0) == 40


def test_a_line_cut_short_by_a_crash_is_ignored_and_redone(tmp_path: Path) -> None:
    config = small(ks=(1,))
    run_study(config, tmp_path, jobs=1, progress=io.StringIO(), pool_factory=SerialPool)
    path = tmp_path / "runs.csv"
    lines = path.read_text().splitlines()
    path.write_text("\n".join([*lines[:-1], lines[-1][:5]]) + "\n")  # the last run's line torn
    assert Results(config, path).count(1, 2.0) == 29
    results = run_study(config, tmp_path, jobs=1, progress=io.StringIO(), pool_factory=SerialPool)
    assert results.count(1, 2.0) == 30


def test_runs_of_another_study_are_not_mixed_in(tmp_path: Path) -> None:
    run_study(small(ks=(1,)), tmp_path, jobs=1, progress=io.StringIO(), pool_factory=SerialPool)
    with pytest.raises(ConfigError) as info:
        Results(small(ks=(1,), seed=2), tmp_path / "runs.csv")
    assert info.value.setting == "--out"


def test_precision_decides_how_many_runs_a_point_needs(tmp_path: Path) -> None:
    # (k=2, gap 4) is not a named point: the coarser precision applies.
    config = small(runs=None, ks=(2,), gaps=(4.0,), min_runs=20, batch=20, precision_other=0.2, max_runs_other=200)
    results = run_study(config, tmp_path, jobs=1, progress=io.StringIO(), pool_factory=SerialPool)
    n = results.count(2, 4.0)
    assert 20 <= n <= 200
    assert results.widest(2, 4.0) <= 0.2 or n == 200


def test_summary_files_and_table(tmp_path: Path) -> None:
    config = small(ks=(1, 5), gaps=(2.0,))
    results = run_study(config, tmp_path, jobs=1, progress=io.StringIO(), pool_factory=SerialPool)
    write_summary(config, results, tmp_path)
    with open(tmp_path / "availability.csv", newline="") as f:
        rows = list(csv.DictReader(f))
    assert len(rows) == 2 * len(config.policies)
    ykd = next(r for r in rows if r["policy"] == "ykd" and r["k"] == "1")
    assert ykd["runs"] == "30" and float(ykd["ci95_low"]) <= float(ykd["availability_pct"]) <= float(ykd["ci95_high"])
    with open(tmp_path / "paired.csv", newline="") as f:
        paired = list(csv.DictReader(f))
    assert {r["policy"] for r in paired} == set(config.policies) - {"ykd"}
    for r in paired:
        assert float(r["ci95_low"]) <= float(r["ykd_minus_policy_pts"]) <= float(r["ci95_high"])
    lines = list(table(config, results))
    assert lines[0].split()[:2] == ["k", "gap"] and len(lines) == 3  # named points 1 and 5 at gap 2


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [({"processes": 1}, "--processes"), ({"policies": ("nope",)}, "--policies"), ({"runs": 0}, "--runs")],
)
def test_bad_study_settings_name_the_setting(kwargs: dict[str, Any], setting: str) -> None:
    with pytest.raises(ConfigError) as info:
        StudyConfig(**kwargs)
    assert info.value.setting == setting


def test_the_cli_runs_a_small_study(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "study"
    code = main(
        ["study", "availability", "--processes", "6", "--runs", "10", "--named-only", "--jobs", "1", "--out", str(out)]
    )
    captured = capsys.readouterr()
    assert code == 0, captured.err
    assert "% of runs with a primary" in captured.out
    assert (out / "availability.csv").exists() and (out / "paired.csv").exists()
    assert "pyclm study: point 9/9" in captured.err
    code = main(["study", "availability", "--policies", "ykd,nope", "--out", str(out)])
    assert code == 2 and capsys.readouterr().err.startswith("pyclm: --policies: ")


def test_runs_start_from_the_steady_state_the_cold_start_reaches() -> None:
    from pyclm.study.model import steady_state

    config = small(processes=8)
    for policy in config.policies:
        steady = steady_state(config.quorum(policy), 8, start=config.start, settle=config.settle)
        assert sorted(steady) == list(range(1, 9))
        # From there, with nothing changing, nothing happens: no view, no primary.
        run = Run(config.quorum(policy), 8, [], 1, settle=5.0, initial=steady)
        assert not run.run(config.start) and run.messages == 0
    ykd = steady_state(small(processes=8).quorum("ykd"), 8, start=20.0, settle=40.0)
    schedule = make_schedule(3, 8, 1, 2.0, 20.0)
    assert Run(small(processes=8).quorum("ykd"), 8, schedule, 3, settle=40.0, initial=ykd).run(20.0)
