"""The pyclm command: demo, simulate, exit codes, and the checker catching a broken policy."""

from __future__ import annotations

import itertools
import json
from collections.abc import Iterator, Mapping
from importlib import resources
from pathlib import Path

import pytest

from pyclm.cli import main
from pyclm.ids import View
from pyclm.voting import POLICIES, FormPrimary, QuorumPolicy, register_policy

EXAMPLE = Path(str(resources.files("pyclm.scenarios").joinpath("example.toml")))


def run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_simulate_the_example_prints_the_documented_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "simulate", str(EXAMPLE), "--json")
    assert code == 0, err
    lines = [json.loads(line) for line in out.splitlines()]
    kinds = {line["event"] for line in lines}
    assert {"view", "primary", "partition", "heal", "crash", "recover", "leave", "join", "link", "loss"} <= kinds
    assert lines[-1]["event"] == "end"
    times = [line["t"] for line in lines]
    assert times == sorted(times)
    for line in lines:
        assert line["t"] == round(line["t"], 6)
        if line["event"] == "view":
            assert set(line) == {"t", "node", "event", "view", "epoch", "members"}
            assert line["members"] == sorted(line["members"])
            epoch, coordinator = line["view"].split(".")
            assert int(epoch) == line["epoch"] and int(coordinator) == line["members"][0]
        elif line["event"] == "primary":
            assert set(line) == {"t", "node", "event", "view", "epoch", "members", "number"}
        elif line["event"] == "primary_lost":
            assert set(line) == {"t", "node", "event", "view"}
        elif line["event"] in ("crash", "recover", "leave", "join"):
            assert isinstance(line["nodes"], list)
        elif line["event"] == "partition":
            assert line["groups"] == [[1, 2, 3], [4, 5]]
        elif line["event"] == "link":
            assert (line["from"], line["to"], line["up"]) == (1, 3, False)
        elif line["event"] == "loss":
            assert line["loss"] == 0.3
    # Same time: scenario events first, then nodes by id.
    for a, b in itertools.pairwise(lines):
        if a["t"] == b["t"] and "node" in a and "node" in b:
            assert a["node"] <= b["node"]
        if a["t"] == b["t"]:
            assert not ("node" in a and "node" not in b and b["event"] != "end")
    end = lines[-1]["views"]
    assert set(end) == {"1", "2", "3", "4", "6"}  # 5 left; 6 joined
    assert end["1"]["primary"] is True


def test_same_seed_same_bytes_and_seed_flag_changes_them(capsys: pytest.CaptureFixture[str]) -> None:
    first = run(capsys, "simulate", str(EXAMPLE), "--json")[1]
    again = run(capsys, "simulate", str(EXAMPLE), "--json")[1]
    other = run(capsys, "simulate", str(EXAMPLE), "--json", "--seed", "43")[1]
    assert first == again
    assert first != other


def test_text_timeline(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "simulate", str(EXAMPLE))
    assert code == 0
    assert "== partition [1 2 3] | [4 5]" in out
    assert "PRIMARY #" in out
    assert "end of the run" in out


def test_demo(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, err = run(capsys, "demo")
    assert code == 0, err
    assert "partition [1 2 3] | [4 5]" in out
    assert "nodes [1 2 3] view" in out and "nodes [4 5] view" in out
    assert "invariants held" in out


def test_demo_json(capsys: pytest.CaptureFixture[str]) -> None:
    code, out, _ = run(capsys, "demo", "--json")
    assert code == 0
    assert json.loads(out.splitlines()[-1])["event"] == "end"


@pytest.mark.parametrize(
    ("text", "setting"),
    [
        ("nodes = 0\n", "nodes"),
        ("nodes = 3\nfoo = 1\n", "foo"),
        ("nodes = 3\n[[event]]\nat = 1.0\ncrash = [9]\n", "event[0].crash"),
        ("nodes = 3\n[quorum]\npolicy = 'nope'\n", "quorum.policy"),
        ("nodes = 3\n[timing]\nheartbeat_interval = 1.0\nsuspect_timeout = 0.5\n", "timing.suspect_timeout"),
        ("nodes = [1, 1]\n", "nodes"),
        ("nodes = 3\n[network]\nloss = 2\n", "network.loss"),
        ("not toml at all [", None),
    ],
)
def test_a_bad_scenario_is_one_line_and_exit_2(
    capsys: pytest.CaptureFixture[str], tmp_path: Path, text: str, setting: str | None
) -> None:
    path = tmp_path / "bad.toml"
    path.write_text(text)
    code, out, err = run(capsys, "simulate", str(path))
    assert code == 2
    assert out == ""
    assert len(err.strip().splitlines()) == 1
    assert err.startswith("pyclm: ")
    if setting is not None:
        assert err.startswith(f"pyclm: {setting}: ")


def test_missing_file_and_bad_flags(capsys: pytest.CaptureFixture[str], tmp_path: Path) -> None:
    code, _, err = run(capsys, "simulate", str(tmp_path / "nope.toml"))
    assert code == 2 and "cannot read" in err
    code, _, err = run(capsys, "simulate", str(EXAMPLE), "--quorum", "nope")
    assert code == 2 and err.startswith("pyclm: --quorum: ")
    code, _, err = run(capsys, "simulate", str(EXAMPLE), "--seed", "-1")
    assert code == 2 and err.startswith("pyclm: --seed: ")


class _EveryViewIsPrimary(QuorumPolicy):
    """Deliberately broken: every installed view is primary, numbered by its epoch."""

    name = "broken-every-view"

    def view_installed(self, view: View, states: Mapping[int, bytes], now: float) -> None:
        self.actions.append(FormPrimary(view.view_id.epoch))


@pytest.fixture
def broken_policy() -> Iterator[str]:
    register_policy(_EveryViewIsPrimary)
    yield _EveryViewIsPrimary.name
    del POLICIES[_EveryViewIsPrimary.name]


def test_a_broken_policy_makes_simulate_exit_1(capsys: pytest.CaptureFixture[str], broken_policy: str) -> None:
    code, out, err = run(capsys, "simulate", str(EXAMPLE), "--json", "--quorum", broken_policy)
    assert code == 1
    assert err.startswith("pyclm: invariant violated: (c) primary safety")
    assert '"event": "end"' not in out  # the run stops at the first violation


def test_the_majority_rule_is_checked_independently(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """A policy that forms primary in a minority view while its number stays unique is still caught."""

    class MinorityToo(QuorumPolicy):
        name = "broken-minority"

        def view_installed(self, view: View, states: Mapping[int, bytes], now: float) -> None:
            if len(view.members) <= 2:
                self.actions.append(FormPrimary(view.view_id.epoch))

        @classmethod
        def rule_holds(cls, config: object, members: tuple[int, ...]) -> bool:
            return len(members) > 2  # what a majority of 5 would demand

    register_policy(MinorityToo)
    try:
        code, _, err = run(capsys, "simulate", str(EXAMPLE), "--quorum", "broken-minority")
    finally:
        del POLICIES["broken-minority"]
    assert code == 1
    assert "does not satisfy the broken-minority rule" in err
