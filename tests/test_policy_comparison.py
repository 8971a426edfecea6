"""The comparison policies driven directly: one-pending, mr1p, dfls, votequorum, oracle.

No core: a :class:`Net` holds several nodes' policies, installs views (every member
reports its ``ack_state()`` first, as the core gathers them on the acks) and carries
their :class:`SendQuorum` payloads by hand, so a test can cut a round anywhere.  Every
formed primary goes through the simulator's checker (except where a test shows that
votequorum is unsafe).  docs/voting.md, "Comparison policies", defines each rule.
"""

from __future__ import annotations

import struct
from collections.abc import Iterable
from importlib import resources
from pathlib import Path
from typing import Any

import attrs
import pytest

from pyclm.cli import main
from pyclm.errors import ConfigError, UsageError
from pyclm.ids import Member, View, ViewId
from pyclm.sim import Simulator, load_scenario
from pyclm.sim.checker import InvariantChecker, InvariantViolation
from pyclm.voting import (
    DFLS,
    YKD,
    ExpectedVotes,
    FormPrimary,
    QuorumConfig,
    QuorumPolicy,
    SendQuorum,
    Session,
    SessionTruth,
    VoteQuorum,
    VotingState,
    WriteState,
    make_policy,
)
from pyclm.voting.oracle import Outcome

EXAMPLE = Path(str(resources.files("pyclm.scenarios").joinpath("example.toml")))
FIVE = (1, 2, 3, 4, 5)
DYNAMIC = ("ykd", "one-pending", "mr1p", "dfls", "oracle")
_MESSAGE = struct.Struct("!BQB")  # kind (1 attempt, 2 registered), session number, flags
REGISTERED = 2


def view(epoch: int, *nodes: int) -> View:
    members = tuple(Member(n, 1) for n in sorted(nodes))
    return View(ViewId(epoch, members[0].node_id), members)


class Net:
    """Policies of some nodes, their records, their views, and the messages in flight."""

    def __init__(
        self,
        policy: str,
        nodes: Iterable[int] = FIVE,
        *,
        tie_breaker: str | int = "lowest",
        options: dict[str, Any] | None = None,
        check: bool = True,
    ) -> None:
        nodes = tuple(nodes)
        options = dict(options or {})
        if policy == "oracle" and "truth" not in options:
            options["truth"] = SessionTruth()
        self.config = QuorumConfig(
            policy=policy, votes=dict.fromkeys(nodes, 1), tie_breaker=tie_breaker, options=options
        )
        self.checker = InvariantChecker(self.config) if check else None
        self.policies: dict[int, QuorumPolicy] = {}
        self.disk: dict[int, bytes] = {}
        self.views: dict[int, View] = {}
        self.formed: dict[int, int] = {}  # node -> the primary number it formed in its current view
        self.flight: list[tuple[int, int, ViewId, bytes]] = []  # src, dst, the sender's view, payload
        self.epoch = 0
        self.now = 0.0
        for n in nodes:
            self.policies[n] = make_policy(self.config, n, None)
            self._drain(n)

    @property
    def truth(self) -> SessionTruth:
        truth = self.config.options["truth"]
        assert isinstance(truth, SessionTruth)
        return truth

    def ykd(self, node: int) -> YKD:
        policy = self.policies[node]
        assert isinstance(policy, YKD)
        return policy

    def install(self, *members: int, at: Iterable[int] | None = None) -> tuple[View, dict[int, bytes]]:
        """A new view of ``members``: all report, then each of ``at`` (default: all) installs it."""
        self.epoch += 1
        v = view(self.epoch, *members)
        states = {n: self.policies[n].ack_state() for n in members}
        self.install_at(v, states, members if at is None else at)
        return v, states

    def install_at(self, v: View, states: dict[int, bytes], nodes: Iterable[int]) -> None:
        for n in nodes:
            self.views[n] = v
            self.formed.pop(n, None)
            self.policies[n].view_installed(v, states, self.now)
            self._drain(n)

    def _drain(self, node: int) -> None:
        for action in self.policies[node].pop_actions():
            if isinstance(action, WriteState):
                self.disk[node] = action.data
            elif isinstance(action, SendQuorum):
                v = self.views[node]
                targets = v.node_ids if action.to is None else action.to
                self.flight += [(node, dst, v.view_id, action.payload) for dst in targets if dst != node]
            elif isinstance(action, FormPrimary):
                self.formed[node] = action.number
                if self.checker is not None:
                    self.checker.primary_formed(self.now, node, self.views[node], action.number)

    def deliver(self, *, to: Iterable[int] | None = None, once: bool = False, kind: int | None = None) -> None:
        """Deliver what is in flight (only to ``to``, only of ``kind``) until nothing is left
        (``once``: only what is in flight now).  A message whose receiver has left the
        sender's view is dropped; one held back stays in flight."""
        receivers = None if to is None else set(to)
        while True:
            batch, self.flight = self.flight, []
            moved = False
            for src, dst, view_id, payload in batch:
                wanted = (receivers is None or dst in receivers) and (kind is None or payload[0] == kind)
                if not wanted:
                    self.flight.append((src, dst, view_id, payload))
                    continue
                moved = True
                if dst in self.views and self.views[dst].view_id == view_id:
                    self.policies[dst].receive(src, view_id, payload, self.now)
                    self._drain(dst)
            if once or not moved:
                return

    def drop(self) -> None:
        """Lose every message in flight."""
        self.flight = []

    def tick(self, dt: float) -> None:
        """Let ``dt`` pass: every policy whose deadline passed handles its timer."""
        self.now += dt
        for n, policy in self.policies.items():
            deadline = policy.get_timer()
            if deadline is not None and deadline <= self.now:
                policy.handle_timer(self.now)
                self._drain(n)

    def attempting(self, v: View) -> set[int]:
        return {n for n in v.node_ids if self.views.get(n) == v and self.ykd(n).attempted}

    def primary(self, v: View) -> set[int]:
        return {n for n in v.node_ids if self.views.get(n) == v and n in self.formed}


def form(net: Net, *members: int) -> View:
    """A view of ``members`` that completes every round it has."""
    v, _ = net.install(*members)
    net.deliver()
    assert net.primary(v) == set(members), f"{net.config.policy}: {members} did not form"
    return v


# ---------------------------------------------------------------------- every dynamic policy


@pytest.mark.parametrize("policy", [*DYNAMIC, "votequorum"])
def test_a_stable_view_forms_everywhere_with_one_number(policy: str) -> None:
    net = Net(policy)
    v = form(net, *FIVE)
    assert len({net.formed[n] for n in v.node_ids}) == 1
    if policy == "votequorum":
        assert net.formed[1] == v.view_id.epoch
        assert net.flight == []  # no message rounds


@pytest.mark.parametrize("policy", [*DYNAMIC, "votequorum"])
@pytest.mark.parametrize(("tie_breaker", "winner", "loser"), [("lowest", (1, 2), (3, 4)), ("highest", (3, 4), (1, 2))])
def test_an_exact_half_goes_to_the_half_with_the_tie_breaker(
    policy: str, tie_breaker: str, winner: tuple[int, ...], loser: tuple[int, ...]
) -> None:
    net = Net(policy, (1, 2, 3, 4), tie_breaker=tie_breaker)
    form(net, 1, 2, 3, 4)
    won, _ = net.install(*winner)
    lost, _ = net.install(*loser)
    net.deliver()
    assert net.primary(won) == set(winner)
    assert net.primary(lost) == set()


def test_votequorum_without_the_tie_breaker_leaves_both_halves_out() -> None:
    net = Net("votequorum", (1, 2, 3, 4), options={"auto_tie_breaker": False})
    form(net, 1, 2, 3, 4)
    halves = [net.install(1, 2)[0], net.install(3, 4)[0]]
    assert [net.primary(h) for h in halves] == [set(), set()]


# ---------------------------------------------------------------------- piled-up ambiguity


def pile_up(net: Net) -> tuple[set[int], View]:
    """Two interrupted attempts: {1,2,3} and then {1,2,4,5} lose every attempt message.

    Returns who attempted in {1,2,4,5} (one binding session: {1,2,3}, node 3 absent),
    and the view {1,2,4} installed next (two: {1,2,3} and {1,2,4,5}).
    """
    form(net, *FIVE)
    net.install(1, 2, 3)
    net.drop()  # the view changes before any attempt arrives
    one, _ = net.install(1, 2, 4, 5)
    attempted = net.attempting(one)
    net.drop()
    two, _ = net.install(1, 2, 4)
    return attempted, two


@pytest.mark.parametrize(
    ("policy", "past_one", "past_two"),
    [
        ("ykd", True, True),
        ("oracle", True, True),  # nothing is known yet: node 3 and node 5 may still form theirs
        ("dfls", True, True),
        ("mr1p", True, False),
        ("one-pending", False, False),
    ],
)
def test_piled_up_ambiguous_sessions(policy: str, past_one: bool, past_two: bool) -> None:
    net = Net(policy)
    one, two = pile_up(net)
    assert one == ({1, 2, 4, 5} if past_one else set())
    assert net.attempting(two) == (set(two.node_ids) if past_two else set())
    net.deliver()
    assert net.primary(two) == (set(two.node_ids) if past_two else set())
    if policy in ("mr1p", "one-pending"):
        # Never more pending than the rule allows: mr1p tolerated {1,2,3}, then attempted once.
        most = 2 if policy == "mr1p" else 1
        assert all(len(net.ykd(n).state.ambiguous) <= most for n in FIVE)


def test_one_pending_goes_ahead_once_resolution_clears_the_pending_attempt() -> None:
    net = Net("one-pending")
    form(net, *FIVE)
    net.install(1, 2, 3)
    net.drop()
    blocked, _ = net.install(1, 2, 4, 5)
    assert net.attempting(blocked) == set()
    # All members of {1,2,3} present: YKD's resolution settles it, and 1-pending proceeds.
    v = form(net, *FIVE)
    assert all(net.ykd(n).state.ambiguous == () for n in v.node_ids)


# ---------------------------------------------------------------------- dfls


def test_dfls_registers_a_formed_session_in_one_more_round() -> None:
    net = Net("dfls")
    v, _ = net.install(1, 2, 3)
    net.deliver(kind=1)  # the attempts: every member forms, and sends REGISTERED
    assert net.primary(v) == {1, 2, 3}
    pending = Session(net.formed[1], (1, 2, 3))
    assert all(net.ykd(n).state.ambiguous == (pending,) for n in (1, 2, 3))  # formed, not yet registered
    net.deliver()
    for n in (1, 2, 3):
        state = VotingState.decode(net.disk[n])
        assert state is not None
        assert (state.last_primary, state.ambiguous) == (pending, ())
        assert net.ykd(n).get_timer() is None


def test_dfls_a_formed_session_binds_until_it_is_totally_registered() -> None:
    """{1,2,3} formed but REGISTERED was lost: {1,2} needs a subquorum of the universe too."""
    results = {}
    for policy in ("ykd", "one-pending", "dfls"):
        net = Net(policy)
        net.install(1, 2, 3)
        net.deliver(kind=1)
        net.drop()
        v, _ = net.install(1, 2)
        results[policy] = net.attempting(v) == {1, 2}
    assert results == {"ykd": True, "one-pending": True, "dfls": False}

    net = Net("dfls")
    form(net, 1, 2, 3)  # registered this time
    form(net, 1, 2)


def test_dfls_has_no_single_witness_resolution() -> None:
    """Only node 1 attempted {1,2,3,4}; node 3 never did.  YKD takes 3's word, DFLS does not."""
    results = {}
    for policy in ("ykd", "one-pending", "mr1p", "dfls"):
        net = Net(policy, tie_breaker="highest")
        form(net, *FIVE)
        net.install(1, 2, 3, 4, at=[1])
        net.drop()
        v, _ = net.install(1, 3, 5)
        results[policy] = bool(net.attempting(v))
    assert results == {"ykd": True, "one-pending": True, "mr1p": True, "dfls": False}


def test_dfls_asks_again_for_lost_attempts_and_registrations() -> None:
    net = Net("dfls")
    v, _ = net.install(1, 2, 3)
    net.flight = [m for m in net.flight if (m[0], m[1]) != (1, 3)]  # 3 lacks 1's attempt
    net.deliver(kind=1)
    assert net.primary(v) == {1, 2}
    net.drop()  # and every REGISTERED is lost
    for _ in range(3):
        net.tick(0.1)
        net.deliver()
    assert net.primary(v) == {1, 2, 3}
    assert all(net.ykd(n).state.last_primary == Session(net.formed[1], (1, 2, 3)) for n in (1, 2, 3))
    assert all(net.ykd(n).get_timer() is None for n in (1, 2, 3))


def test_dfls_record_survives_a_restart_and_reads_as_registered_and_pending() -> None:
    net = Net("dfls")
    net.install(1, 2, 3)
    net.deliver(kind=1)
    net.drop()
    policy = DFLS(net.config, 1, net.disk[1], history=True)
    described = policy.describe()
    assert described["registered"] == "#0[1, 2, 3, 4, 5]"
    assert described["pending"] == [str(Session(net.formed[1], (1, 2, 3)))]


# ---------------------------------------------------------------------- votequorum


def vq(policy: QuorumPolicy) -> VoteQuorum:
    assert isinstance(policy, VoteQuorum)
    return policy


def test_votequorum_waits_for_all_at_cold_start() -> None:
    net = Net("votequorum")
    majority, _ = net.install(1, 2, 3)
    assert net.primary(majority) == set()
    form(net, *FIVE)
    again, _ = net.install(1, 2, 3)
    assert net.primary(again) == {1, 2, 3}

    eager = Net("votequorum", options={"wait_for_all": False})
    v, _ = eager.install(1, 2, 3)
    assert eager.primary(v) == {1, 2, 3} and eager.formed[1] == v.view_id.epoch


def test_votequorum_a_newcomer_passes_wait_for_all_with_a_member_that_was_primary() -> None:
    net = Net("votequorum")
    form(net, *FIVE)
    net.policies[4] = make_policy(net.config, 4, None)  # 4 lost its record: it never saw everybody
    net.policies[4].pop_actions()
    v, _ = net.install(1, 2, 4)
    assert net.primary(v) == {1, 2, 4}


def test_votequorum_last_man_standing_shrinks_expected_votes_after_the_window() -> None:
    net = Net("votequorum", options={"last_man_standing_window": 5.0})
    form(net, *FIVE)
    three, _ = net.install(1, 2, 3)
    assert net.primary(three) == {1, 2, 3}
    assert vq(net.policies[1]).get_timer() == 5.0
    net.tick(4.9)
    assert vq(net.policies[1]).state.expected == 5
    net.tick(0.1)
    assert [vq(net.policies[n]).state for n in (1, 2, 3)] == [ExpectedVotes(expected=3, quorate_once=True)] * 3
    assert vq(net.policies[4]).state.expected == 5
    two, _ = net.install(1, 2)
    assert net.primary(two) == {1, 2}  # 2 >= 3 // 2 + 1
    net.tick(5.0)
    one, _ = net.install(1)
    assert net.primary(one) == {1}  # 1 == 2 / 2, with the tie-breaker (node 1)

    plain = Net("votequorum", options={"last_man_standing": False})
    form(plain, *FIVE)
    plain.install(1, 2, 3)
    plain.tick(60.0)
    two, _ = plain.install(1, 2)
    assert plain.primary(two) == set()


def test_votequorum_a_view_change_before_the_window_keeps_expected_votes() -> None:
    net = Net("votequorum", options={"last_man_standing_window": 5.0})
    form(net, *FIVE)
    net.install(1, 2, 3)
    net.tick(4.0)
    net.install(1, 2, 3, 4)
    net.tick(2.0)  # the first view's deadline passed, but that view is gone
    assert vq(net.policies[1]).state.expected == 5


def test_votequorum_is_not_safe_two_disjoint_views_are_primary_at_once() -> None:
    """Last man standing shrinks a number, not a member set (docs/voting.md)."""
    net = Net("votequorum", options={"last_man_standing_window": 1.0}, check=False)
    form(net, *FIVE)
    net.install(1, 2, 3)
    net.tick(1.0)  # expected votes 3 at nodes 1, 2, 3; still 5 at 4 and 5
    left, _ = net.install(1, 2)  # 2 >= 3 // 2 + 1
    right, _ = net.install(3, 4, 5)  # expected max(3, 5, 5) = 5, and 3 >= 5 // 2 + 1
    assert net.primary(left) == {1, 2}
    assert net.primary(right) == {3, 4, 5}
    checker = InvariantChecker(net.config)
    checker.primary_formed(0.0, 1, left, net.formed[1])
    with pytest.raises(InvariantViolation, match="share no node"):
        checker.primary_formed(0.0, 3, right, net.formed[3])


def test_votequorum_record_and_settings() -> None:
    config = QuorumConfig(policy="votequorum", votes=dict.fromkeys(FIVE, 1))
    fresh = VoteQuorum(config, 1, None)
    assert fresh.pop_actions() == [WriteState(ExpectedVotes(expected=5).encode())]
    kept = VoteQuorum(config, 1, ExpectedVotes(expected=3, quorate_once=True).encode(), history=True)
    assert kept.pop_actions() == [] and kept.describe()["quorum"] == 2
    lost = VoteQuorum(config, 1, b"\x07junk", history=True)
    assert lost.state == ExpectedVotes(expected=5)
    for name, value in [
        ("auto_tie_breaker", "yes"),
        ("wait_for_all", 1),
        ("last_man_standing", None),
        ("last_man_standing_window", 0),
        ("last_man_standing_window", True),
        ("last_man_standing_window", float("inf")),
    ]:
        bad = QuorumConfig(policy="votequorum", votes=dict.fromkeys(FIVE, 1), options={name: value})
        with pytest.raises(ConfigError, match=rf"quorum\.{name}"):
            VoteQuorum(bad, 1, None)
    with pytest.raises(ConfigError, match=r"quorum\.votes"):
        VoteQuorum(QuorumConfig(policy="votequorum", votes={}), 1, None)


# ---------------------------------------------------------------------- oracle


def test_oracle_refuses_to_run_without_a_truth() -> None:
    votes = dict.fromkeys(FIVE, 1)
    with pytest.raises(ConfigError, match=r"quorum\.truth: the oracle policy needs a driver"):
        make_policy(QuorumConfig(policy="oracle", votes=votes), 1, None)
    with pytest.raises(ConfigError, match=r"quorum\.truth: must be a SessionTruth"):
        make_policy(QuorumConfig(policy="oracle", votes=votes, options={"truth": "please"}), 1, None)


def test_pyclm_simulate_with_the_oracle_is_a_one_line_error(capsys: pytest.CaptureFixture[str]) -> None:
    code = main(["simulate", str(EXAMPLE), "--quorum", "oracle"])
    out, err = capsys.readouterr()
    assert code == 2 and out == ""
    assert err.startswith("pyclm: quorum.truth: ") and len(err.strip().splitlines()) == 1


def test_oracle_knows_an_interrupted_attempt_can_no_longer_form() -> None:
    results = {}
    for policy in ("ykd", "oracle"):
        net = Net(policy)
        form(net, *FIVE)
        net.install(1, 2, 3)  # attempted by all three, received by none
        net.drop()
        net.install(1, 2)  # 1 and 2 move on (2 of 5: no attempt)
        v, _ = net.install(3, 4, 5)  # and so does 3: nobody is left to form {1,2,3}
        net.deliver()
        results[policy] = net.primary(v)
    assert results == {"ykd": set(), "oracle": {3, 4, 5}}


def test_oracle_respects_a_session_that_may_still_form_until_the_driver_says_otherwise() -> None:
    net = Net("oracle")
    form(net, *FIVE)
    attempt, _ = net.install(1, 2, 3)
    net.drop()
    session = Session(net.ykd(1).state.session_number, (1, 2, 3))
    assert net.truth.outcome(session) is Outcome.POSSIBLE
    blocked, _ = net.install(3, 4, 5)  # 1 and 2 still have {1,2,3} installed
    assert net.attempting(blocked) == set()
    net.truth.view_left(1, attempt.view_id)  # the driver knows their attempts are lost
    net.truth.view_left(2, attempt.view_id)
    assert net.truth.outcome(session) is Outcome.IMPOSSIBLE
    v, _ = net.install(3, 4, 5)
    net.deliver()
    assert net.primary(v) == {3, 4, 5}


def test_oracle_takes_the_newest_primary_formed_anywhere() -> None:
    net = Net("oracle")
    form(net, *FIVE)
    net.install(1, 2, 3)
    net.deliver(to=[1])  # only node 1 forms {1,2,3}
    net.drop()
    assert net.formed.get(1) and not net.formed.get(2)
    session = Session(net.formed[1], (1, 2, 3))
    assert net.truth.newest_formed == session
    v, _ = net.install(2, 4, 5)  # nobody here knows it formed; the oracle does: 1 of 3 is too few
    assert net.attempting(v) == set()
    assert all(net.ykd(n).state.last_primary == session for n in (2, 4, 5))  # and they learn it
    assert net.ykd(2).state.ambiguous == ()


def test_truth_rejects_a_premature_view_left() -> None:
    net = Net("oracle")
    v, _ = net.install(1, 2, 3)
    net.truth.view_left(1, v.view_id)
    with pytest.raises(UsageError, match="view_left"):
        net.deliver()


def test_oracle_members_installing_at_different_times_attempt_one_session() -> None:
    net = Net("oracle")
    v, states = net.install(1, 2, 3, at=[1])
    number = net.ykd(1).state.session_number
    # Meanwhile the truth hears of a far higher session (another part of the run).
    net.truth.attempted(9, ViewId(99, 9), Session(50, (9,)))
    net.install_at(v, states, [2, 3])
    assert {net.ykd(n).state.session_number for n in (1, 2, 3)} == {number}
    net.deliver()
    assert net.primary(v) == {1, 2, 3}
    later, _ = net.install(1, 2)
    assert net.ykd(1).state.session_number > 50 and net.attempting(later) == {1, 2}


def test_truth_outcomes() -> None:
    truth = SessionTruth()
    s = Session(1, (1, 2, 3))
    v = ViewId(1, 1)
    assert truth.outcome(s) is Outcome.POSSIBLE  # never heard of
    truth.attempted(1, v, s)
    truth.view_installed(1, ViewId(2, 1))
    assert truth.outcome(s) is Outcome.POSSIBLE  # 1 left, but after attempting
    truth.view_installed(2, ViewId(2, 1))
    assert truth.outcome(s) is Outcome.IMPOSSIBLE  # 2 left without attempting
    t = Session(2, (4, 5))
    truth.attempted(4, ViewId(3, 4), t)
    truth.attempted(5, ViewId(3, 4), t)
    truth.node_stopped(4)
    assert truth.outcome(t) is Outcome.POSSIBLE  # 5 may still receive 4's attempt
    truth.node_stopped(5)
    assert truth.outcome(t) is Outcome.IMPOSSIBLE
    truth.formed(5, ViewId(4, 5), Session(3, (5,)))
    assert truth.outcome(Session(3, (5,))) is Outcome.FORMED


# ---------------------------------------------------------------------- in the simulator


@pytest.mark.parametrize("policy", ["one-pending", "mr1p", "dfls", "votequorum"])
def test_the_example_scenario_passes_the_checker(policy: str) -> None:
    scenario = load_scenario(EXAMPLE)
    result = Simulator(scenario, quorum=attrs.evolve(scenario.quorum, policy=policy)).run()
    assert result.violation is None
    assert any(r["event"] == "primary" for r in result.records)


def test_the_simulator_cannot_run_the_oracle() -> None:
    scenario = load_scenario(EXAMPLE)
    with pytest.raises(ConfigError, match=r"quorum\.truth"):
        Simulator(scenario, quorum=attrs.evolve(scenario.quorum, policy="oracle")).run()
