"""YKD dynamic voting driven directly: several nodes' policies, attempts shuttled by hand.

No core and no simulator: a test installs views (every member reports its
``ack_state()`` first, as the core gathers them on the acks) and delivers attempts one
by one, so it can cut a round anywhere.  The schedules are the adversarial ones of the
reference's checklist (``reference/dynamic-voting.md`` section 4.5): a view change
between attempts, a crash after the attempt, exact halves, changes faster than a round,
cold start, stale and amnesiac members.  Node ids 1..5 stand for the paper's a..e.
"""

from __future__ import annotations

import logging
import struct
from collections.abc import Iterable

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyclm.errors import ConfigError
from pyclm.ids import Member, View, ViewId
from pyclm.sim.checker import InvariantChecker
from pyclm.voting import (
    YKD,
    FormPrimary,
    PolicyAction,
    QuorumConfig,
    SendQuorum,
    Session,
    VotingState,
    Weights,
    WriteState,
)
from pyclm.wire import MAX_STATE

A, B, C, D, E = 1, 2, 3, 4, 5
FIVE = (A, B, C, D, E)
P0 = Session(0, FIVE)  # the configured universe: the primary every fresh node starts from

_ATTEMPT = struct.Struct("!BQB")  # the attempt message: kind 1, session number, flags
SETTINGS = settings(
    max_examples=200, derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)


def attempt(number: int, *, please_send: bool = False) -> bytes:
    return _ATTEMPT.pack(1, number, 1 if please_send else 0)


def ykd(
    nodes: Iterable[int] = FIVE,
    *,
    votes: dict[int, int] | None = None,
    tie_breaker: str | int = "lowest",
    wait_for_all: bool | None = None,
) -> QuorumConfig:
    options = {} if wait_for_all is None else {"wait_for_all": wait_for_all}
    return QuorumConfig(policy="ykd", votes=votes or dict.fromkeys(nodes, 1), tie_breaker=tie_breaker, options=options)


def view(epoch: int, *nodes: int) -> View:
    members = tuple(Member(n, 1) for n in sorted(nodes))
    return View(ViewId(epoch, members[0].node_id), members)


def kinds(actions: list[PolicyAction]) -> list[str]:
    """The actions in order, by kind: the order is what stable storage relies on."""
    names = {WriteState: "write", SendQuorum: "send", FormPrimary: "form"}
    return [names.get(type(a), type(a).__name__) for a in actions]


def written(actions: list[PolicyAction]) -> list[VotingState]:
    out = []
    for action in actions:
        if isinstance(action, WriteState):
            state = VotingState.decode(action.data)
            assert state is not None, "a policy wrote a record it cannot read back"
            out.append(state)
    return out


def formed(actions: list[PolicyAction]) -> list[int]:
    return [a.number for a in actions if isinstance(a, FormPrimary)]


class Cluster:
    """The YKD policies of some nodes, their durable records, and their current views.

    ``disk[n]`` is the last record node ``n`` wrote (what a restart reloads); ``sent[n]``
    the attempt payload it broadcast in its current view.
    """

    def __init__(self, config: QuorumConfig, nodes: Iterable[int] = FIVE) -> None:
        self.config = config
        self.policies: dict[int, YKD] = {}
        self.disk: dict[int, bytes] = {}
        self.views: dict[int, View] = {}
        self.sent: dict[int, bytes] = {}
        self.epoch = 0
        for n in nodes:
            self.start(n, None)

    def start(self, node: int, stored: bytes | None, *, history: bool = False) -> list[PolicyAction]:
        """(Re)start ``node`` from ``stored``; returns its initial actions."""
        self.policies[node] = YKD(self.config, node, stored, history=history)
        self.views.pop(node, None)
        self.sent.pop(node, None)
        return self.drain(node)

    def restart(self, node: int) -> None:
        """A crash and recovery: the node reloads its last durable record."""
        self.start(node, self.disk.get(node), history=True)

    def drain(self, node: int) -> list[PolicyAction]:
        actions = self.policies[node].pop_actions()
        for action in actions:
            if isinstance(action, WriteState):
                self.disk[node] = action.data
            elif isinstance(action, SendQuorum) and action.to is None:
                self.sent[node] = action.payload
        return actions

    def state(self, node: int) -> VotingState:
        return self.policies[node].state

    def reports(self, members: Iterable[int]) -> dict[int, bytes]:
        """Each of ``members`` acknowledges a proposal: its report.  (From then on it no
        longer forms the session of its current view.)"""
        return {n: self.policies[n].ack_state() for n in members}

    def install(
        self,
        *members: int,
        installing: Iterable[int] | None = None,
        reports: dict[int, bytes] | None = None,
        now: float = 0.0,
    ) -> dict[int, list[PolicyAction]]:
        """A new view of ``members``: each reports, then each of ``installing`` (default:
        all) installs it.  Returns every installing member's actions."""
        self.epoch += 1
        v = view(self.epoch, *members)
        states = self.reports(members) if reports is None else reports
        out = {}
        for n in members if installing is None else installing:
            self.views[n] = v
            self.sent.pop(n, None)
            self.policies[n].view_installed(v, states, now)
            out[n] = self.drain(n)
        return out

    def deliver(self, src: int, dst: int, payload: bytes | None = None, now: float = 0.0) -> list[PolicyAction]:
        """``dst`` receives ``src``'s attempt (or ``payload``) in ``dst``'s current view."""
        data = self.sent[src] if payload is None else payload
        self.policies[dst].receive(src, self.views[dst].view_id, data, now)
        return self.drain(dst)

    def exchange(self, members: Iterable[int], *, lost: Iterable[tuple[int, int]] = ()) -> dict[int, list[int]]:
        """Every member that attempted delivers to every other, except the ``lost``
        (src, dst) pairs; returns the primaries each node formed."""
        group = [n for n in members if n in self.sent]
        skip = set(lost)
        out: dict[int, list[int]] = {n: [] for n in group}
        for src in group:
            for dst in group:
                if src != dst and (src, dst) not in skip:
                    out[dst] += formed(self.deliver(src, dst))
        return out

    def attempting(self, out: dict[int, list[PolicyAction]]) -> set[int]:
        return {n for n, actions in out.items() if any(isinstance(a, SendQuorum) for a in actions)}


# ---------------------------------------------------------------------- start-up and configuration


def test_a_fresh_node_starts_from_the_configured_universe_and_writes_it_at_once() -> None:
    policy = YKD(ykd(), A, None)
    assert policy.state == VotingState(session_number=0, last_primary=P0)
    assert policy.pop_actions() == [WriteState(policy.state.encode())]
    assert policy.get_timer() is None and not policy.contributes()


def test_a_node_with_a_readable_record_resumes_it_and_writes_nothing() -> None:
    state = VotingState(session_number=7, last_primary=Session(5, (A, B, C)), ambiguous=(Session(7, (A, B)),))
    policy = YKD(ykd(), A, state.encode(), history=True)
    assert policy.state == state
    assert policy.pop_actions() == []


def test_configuration_mistakes_name_the_setting() -> None:
    with pytest.raises(ConfigError, match=r"quorum\.votes"):
        YKD(QuorumConfig(policy="ykd", votes={}), A, None)
    with pytest.raises(ConfigError, match=r"quorum\.votes"):
        YKD(QuorumConfig(policy="ykd", votes={A: 0, B: 0}), A, None)
    with pytest.raises(ConfigError, match=r"quorum\.wait_for_all"):
        YKD(ykd(wait_for_all="yes"), A, None)  # type: ignore[arg-type]
    with pytest.raises(ConfigError, match=r"quorum\.bogus"):
        QuorumConfig(policy="ykd", votes={A: 1}, options={"bogus": 1})


# ---------------------------------------------------------------------- one round, and its order


def test_a_full_view_forms_in_one_round_writing_before_sending_and_before_forming() -> None:
    cluster = Cluster(ykd())
    out = cluster.install(*FIVE)
    s1 = Session(1, FIVE)
    for n in FIVE:
        # The ambiguous session is durable before the attempt leaves.
        assert kinds(out[n]) == ["write", "send"]
        assert written(out[n]) == [VotingState(session_number=1, last_primary=P0, ambiguous=(s1,))]
        assert out[n][1] == SendQuorum(attempt(1))
        assert cluster.policies[n].contributes()
    forms: dict[int, list[PolicyAction]] = {n: [] for n in FIVE}
    for src in FIVE:
        for dst in FIVE:
            if src != dst:
                forms[dst] += cluster.deliver(src, dst)
    for n in FIVE:
        # last_primary := S is durable before the primary is announced.
        assert kinds(forms[n]) == ["write", "form"]
        assert written(forms[n]) == [VotingState(session_number=1, last_primary=s1, last_formed=1)]
        assert forms[n][1] == FormPrimary(1)
        assert cluster.policies[n].get_timer() is None


def test_a_one_node_view_forms_at_once() -> None:
    cluster = Cluster(ykd(votes={A: 3, B: 1, C: 1}), (A, B, C))
    out = cluster.install(A)
    assert kinds(out[A]) == ["write", "send", "write", "form"]
    assert formed(out[A]) == [1]
    assert cluster.state(A).last_primary == Session(1, (A,))


# ---------------------------------------------------------------------- (a) a view change between attempts


def worked_example() -> tuple[Cluster, Session]:
    """Section 1.3: {a,b,c} attempts S1; a receives every attempt and forms it; b receives
    only a's; then the view changes.  S1 is ambiguous at b and c."""
    cluster = Cluster(ykd())
    out = cluster.install(A, B, C)
    assert cluster.attempting(out) == {A, B, C}
    s1 = Session(1, (A, B, C))
    assert formed(cluster.deliver(B, A)) == []
    assert formed(cluster.deliver(C, A)) == [1]
    assert formed(cluster.deliver(A, B)) == []
    assert cluster.state(A).last_primary == s1
    for n in (B, C):
        assert cluster.state(n).last_primary == P0
        assert cluster.state(n).ambiguous == (s1,)
    return cluster, s1


def test_worked_example_a_view_without_a_subquorum_of_the_ambiguous_session_is_refused() -> None:
    cluster, s1 = worked_example()
    # Plain dynamic voting would accept {c,d,e}: it holds 3/5 of the last primary ...
    assert Weights(cluster.config.votes or {}, "lowest").subquorum((C, D, E), P0)
    # ... but it holds 1/3 of S1, which c still holds as ambiguous: YKD refuses.
    out = cluster.install(C, D, E)
    assert cluster.attempting(out) == set()
    assert all(not cluster.policies[n].contributes() for n in (C, D, E))
    assert cluster.state(C).ambiguous == (s1,)  # refusing settles nothing
    # {b,c,d,e}: 4/5 of the last primary and 2/3 of S1.
    out = cluster.install(B, C, D, E)
    assert cluster.attempting(out) == {B, C, D, E}
    s2 = Session(2, (B, C, D, E))
    assert written(out[B])[-1].ambiguous == (s1, s2)  # S1 still binds: a is absent
    assert cluster.exchange((B, C, D, E)) == {n: [2] for n in (B, C, D, E)}


def test_worked_example_the_side_that_formed_may_go_on_which_is_why_the_other_must_not() -> None:
    cluster, s1 = worked_example()
    # {a,b}: a reports S1 formed (learned formed), and {a,b} is 2/3 of it.
    out = cluster.install(A, B)
    assert cluster.attempting(out) == {A, B}
    assert cluster.state(B).last_primary == s1  # b adopted what a knew ...
    assert written(out[B])[0] == VotingState(session_number=1, last_primary=s1)  # ... durably, first
    assert cluster.exchange((A, B)) == {A: [2], B: [2]}


@pytest.mark.parametrize("former", [A, B, C])
def test_worked_example_whoever_formed_the_session_c_d_e_is_refused(former: int) -> None:
    cluster = Cluster(ykd())
    cluster.install(A, B, C)
    for src in (A, B, C):
        if src != former:
            cluster.deliver(src, former)
    assert cluster.state(former).last_primary == Session(1, (A, B, C))
    # c reports S1 as ambiguous, or as formed: either way {c,d,e} holds 1/3 of it.
    assert cluster.attempting(cluster.install(C, D, E)) == set()


def test_a_member_that_reported_for_a_new_view_no_longer_forms_in_the_old_one() -> None:
    """The report rides on the ack, sent while the old view is still current, and the
    core hands the policy the old view's attempts until the new view is installed.  If
    the last one arrives after the report, forming on it would make the report stale:
    the new view sees every member of S report it ambiguous, settles it ("all members
    present, none formed"), and a view holding no subquorum of S can follow (the
    checker raises).  test_ykd_sim has the same story through the core."""
    cluster = Cluster(ykd())
    checker = InvariantChecker(cluster.config)
    cluster.install(A, B, C)  # S = #1 {a,b,c}
    cluster.deliver(B, A)
    reports = cluster.reports(FIVE)  # a acks the proposal of {a..e}: S is ambiguous in its report
    late = cluster.deliver(C, A)  # ... then c's attempt of S arrives, in the old view
    # a's own attempt went out already: a request for it is still answered.
    assert cluster.deliver(C, A, attempt(1, please_send=True)) == [SendQuorum(attempt(1), to=(C,))]
    for number in formed(late):
        checker.primary_formed(0.0, A, cluster.views[A], number)
    cluster.install(*FIVE, reports=reports)  # #2 {a..e}, interrupted: forms nowhere
    cluster.install(C, D, E)
    for node, numbers in cluster.exchange((C, D, E)).items():
        for number in numbers:
            checker.primary_formed(0.0, node, cluster.views[node], number)  # raises on a broken chain
    assert formed(late) == [], "a formed S after reporting it ambiguous for the next view"


# ---------------------------------------------------------------------- (b) a crash after the attempt


def test_a_crash_after_the_attempt_keeps_the_ambiguous_session_on_storage() -> None:
    cluster = Cluster(ykd())
    out = cluster.install(A, B, C)
    assert kinds(out[C]) == ["write", "send"]  # durable first: a crash after the send finds it
    cluster.deliver(B, A)
    assert formed(cluster.deliver(C, A)) == [1]  # c's attempt got out, and a formed S1
    cluster.restart(C)  # c crashes right after sending
    assert cluster.state(C).ambiguous == (Session(1, (A, B, C)),)
    assert not cluster.policies[C].state.amnesiac
    # So the recovered c still blocks {c,d,e}: it cannot split from {a,b}.
    assert cluster.attempting(cluster.install(C, D, E)) == set()
    assert cluster.attempting(cluster.install(A, B)) == {A, B}


def test_a_crash_before_the_write_is_durable_means_the_attempt_never_left() -> None:
    cluster = Cluster(ykd())
    before = cluster.disk[C]
    out = cluster.install(A, B, C)
    # The driver makes the write durable before it sends anything produced after it,
    # so a crash that loses the write also loses the attempt: c never attempted S1.
    assert kinds(out[C]) == ["write", "send"]
    cluster.start(C, before, history=True)  # c crashes: its record is the one before
    assert cluster.state(C) == VotingState(session_number=0, last_primary=P0)
    # Without c's attempt neither a nor b can form S1.
    assert cluster.exchange((A, B)) == {A: [], B: []}
    # When a meets c, c witnesses that it never attempted S1 (b, away, cannot say): one
    # witness suffices, and a drops S1, durably, before its next attempt.
    out = cluster.install(A, C, D, E)
    assert written(out[A])[0] == VotingState(session_number=1, last_primary=P0)
    assert cluster.state(A).ambiguous == (Session(2, (A, C, D, E)),)


# ---------------------------------------------------------------------- (c) exact halves


@pytest.mark.parametrize(
    ("tie_breaker", "winner"),
    [("lowest", (A, B)), ("highest", (C, D)), (C, (C, D)), (B, (A, B)), (9, (A, B))],
)
def test_an_exact_half_forms_only_with_the_designated_member(tie_breaker: str | int, winner: tuple[int, ...]) -> None:
    # A configured tie-breaker that is not a member (9) falls back to the lowest member.
    four = (A, B, C, D)
    for half in ((A, B), (C, D)):
        cluster = Cluster(ykd(four, tie_breaker=tie_breaker), four)
        out = cluster.install(*half)
        assert (cluster.attempting(out) == set(half)) == (half == winner), (tie_breaker, half)


def test_the_designated_member_is_the_sessions_own_not_the_universes() -> None:
    cluster = Cluster(ykd())
    cluster.install(B, C, D, E)
    assert cluster.exchange((B, C, D, E)) == {n: [1] for n in (B, C, D, E)}
    # Halves of #1 {b,c,d,e}: its lowest member is b.
    assert cluster.attempting(cluster.install(D, E)) == set()
    assert cluster.attempting(cluster.install(B, C)) == {B, C}


def test_weighted_votes_count_weight_not_heads() -> None:
    votes = {A: 3, B: 1, C: 1, D: 1}  # total 6
    for group, ok in [((A,), True), ((B, C, D), False), ((B, C), False), ((A, B), True)]:
        cluster = Cluster(ykd(votes=votes), (A, B, C, D))
        assert (cluster.attempting(cluster.install(*group)) == set(group)) == ok, group
    # Half the weight with the highest node designated: {b,c,d} weighs 3 of 6 and has d.
    cluster = Cluster(ykd(votes=votes, tie_breaker="highest"), (A, B, C, D))
    assert cluster.attempting(cluster.install(B, C, D)) == {B, C, D}
    assert cluster.attempting(cluster.install(A)) == set()


def test_a_node_without_votes_neither_helps_nor_hinders() -> None:
    cluster = Cluster(ykd(votes={A: 1, B: 1, C: 0}), (A, B, C))
    assert cluster.policies[A].state.last_primary == Session(0, (A, B))  # the universe weighs
    assert cluster.attempting(cluster.install(B, C)) == set()  # half, without the designated a
    assert cluster.attempting(cluster.install(A, C)) == {A, C}


# ---------------------------------------------------------------------- (d) changes faster than one round


def pile_up() -> Cluster:
    """Three views in a row, each interrupted before any attempt arrives."""
    cluster = Cluster(ykd())
    for members in ((A, B, C, D, E), (A, B, C, D), (A, B, C)):
        assert cluster.attempting(cluster.install(*members)) == set(members)
    return cluster


S1, S2, S3 = Session(1, FIVE), Session(2, (A, B, C, D)), Session(3, (A, B, C))


def test_changes_faster_than_a_round_pile_up_ambiguous_sessions() -> None:
    cluster = pile_up()
    for n in (A, B, C):
        assert cluster.state(n).ambiguous == (S1, S2, S3)
        assert cluster.state(n).session_number == 3
    assert cluster.state(D).ambiguous == (S1, S2)
    assert cluster.state(E).ambiguous == (S1,)
    # Each binds: refusing settles nothing.
    assert cluster.attempting(cluster.install(D, E)) == set()  # 2/5 of P0
    assert cluster.attempting(cluster.install(C, D, E)) == set()  # half of S2 without a, 1/3 of S3
    # {a,b,d,e}: 4/5 of P0 and S1, 3/4 of S2, 2/3 of S3.
    out = cluster.install(A, B, D, E)
    assert cluster.attempting(out) == {A, B, D, E}
    assert cluster.state(A).ambiguous == (S1, S2, S3, Session(4, (A, B, D, E)))


def test_learned_formed_settles_every_older_ambiguous_session() -> None:
    cluster = pile_up()
    cluster.deliver(B, A)
    assert formed(cluster.deliver(C, A)) == [3]  # only a formed S3, then the view changed
    out = cluster.install(B, D, E, A)
    for n in (B, D, E):
        first = written(out[n])[0]
        assert first == VotingState(session_number=3, last_primary=S3), n  # adopted, durably, first
    # {a,b,d,e} holds 2/3 of S3, the newest primary: it attempts #4 with nothing ambiguous before it.
    assert cluster.state(D).ambiguous == (Session(4, (A, B, D, E)),)


@pytest.mark.parametrize("d_installs", [False, True])
def test_one_member_that_never_attempted_settles_a_session(d_installs: bool) -> None:
    cluster = Cluster(ykd())
    # S1 = {a,b,c,d}; d never installs the view (it changed first) unless d_installs.
    out = cluster.install(A, B, C, D, installing=(A, B, C, D) if d_installs else (A, B, C))
    s1 = Session(1, (A, B, C, D))
    assert cluster.state(C).ambiguous == (s1,)
    # {c,d,e}: 3/5 of P0, but only half of S1 and without its designated member a.
    out = cluster.install(C, D, E)
    if d_installs:
        assert cluster.attempting(out) == set()  # S1 binds
    else:
        # d witnesses that it never attempted S1: nobody received all its attempts.
        assert cluster.attempting(out) == {C, D, E}
        assert written(out[C])[0] == VotingState(session_number=1, last_primary=P0)  # dropped, durably


def test_all_members_present_settles_a_session_none_of_them_formed() -> None:
    cluster = Cluster(ykd())
    cluster.install(A, B, C)  # interrupted: nobody formed S1
    s1 = Session(1, (A, B, C))
    # Present in part ({a,b,d}): S1 still binds, and {a,b,d} holds 2/3 of it.
    cluster.install(A, B, D)
    assert cluster.state(A).ambiguous == (s1, Session(2, (A, B, D)))
    # All of S1's members present, none formed it: settled.  #2 {a,b,d} still binds (d
    # is away), and {a,b,c,e} holds 2/3 of it.
    out = cluster.install(A, B, C, E)
    assert cluster.state(A).ambiguous == (Session(2, (A, B, D)), Session(3, (A, B, C, E)))
    assert written(out[C])[0] == VotingState(session_number=1, last_primary=P0)


def test_all_members_present_needs_every_member() -> None:
    cluster = Cluster(ykd())
    cluster.install(A, B, C, D, E)  # S1, interrupted
    cluster.install(A, B, C, D)  # S2, interrupted
    out = cluster.install(A, B, C, D)  # S2's members all present: S2 settled, S1 not (e away)
    assert cluster.state(A).ambiguous == (S1, Session(3, (A, B, C, D)))
    assert cluster.attempting(out) == {A, B, C, D}


def test_too_many_ambiguous_sessions_to_report_skip_the_attempt(caplog: pytest.LogCaptureFixture) -> None:
    members = tuple(range(1, 201))

    def piled(count: int) -> VotingState:
        sessions = tuple(Session(i, members) for i in range(1, count + 1))
        return VotingState(session_number=count, last_primary=Session(0, members), ambiguous=sessions)

    count = 1
    while len(piled(count + 1).encode()) <= MAX_STATE:
        count += 1
    state = piled(count)  # the most the record holds: one more attempt would not fit
    config = ykd(members)
    policy = YKD(config, 1, state.encode(), history=True)
    # Every member reports the same pile, which no member can settle (200 is away).
    reports = dict.fromkeys(members[:-1], state.encode())
    with caplog.at_level(logging.WARNING, logger="pyclm.voting.ykd"):
        policy.view_installed(view(1, *members[:-1]), reports, 0.0)
    assert policy.pop_actions() == []
    assert policy.counters == {"attempt_skipped_state_full": 1}
    assert not policy.contributes() and policy.get_timer() is None
    assert "too many ambiguous sessions" in caplog.text
    assert len(policy.ack_state()) <= MAX_STATE


# ---------------------------------------------------------------------- (e) cold start


def test_cold_start_with_disjoint_groups_only_a_majority_of_the_universe_forms() -> None:
    cluster = Cluster(ykd())
    assert cluster.attempting(cluster.install(A, B)) == set()
    assert cluster.attempting(cluster.install(C, D, E)) == {C, D, E}
    assert cluster.exchange((C, D, E)) == {n: [1] for n in (C, D, E)}


def test_cold_start_with_wait_for_all_needs_the_whole_universe_once() -> None:
    cluster = Cluster(ykd(wait_for_all=True))
    assert cluster.attempting(cluster.install(C, D, E)) == set()
    assert cluster.attempting(cluster.install(A, B, C, D)) == set()
    assert cluster.attempting(cluster.install(*FIVE)) == set(FIVE)
    cluster.exchange(FIVE)
    # Once a primary formed, the usual rule: a majority of it.
    assert cluster.attempting(cluster.install(C, D, E)) == {C, D, E}


def test_cold_start_with_wait_for_all_an_interrupted_first_attempt_still_needs_everyone() -> None:
    cluster = Cluster(ykd(wait_for_all=True))
    cluster.install(*FIVE)  # interrupted: #1 ambiguous everywhere, nothing formed
    assert cluster.attempting(cluster.install(A, B, C, D)) == set()
    assert cluster.attempting(cluster.install(*FIVE)) == set(FIVE)


def test_a_newcomer_outside_the_universe_joins_a_primary_but_does_not_count_toward_it() -> None:
    cluster = Cluster(ykd(), (*FIVE, 6))
    assert cluster.attempting(cluster.install(D, E, 6)) == set()  # 2/5 of the universe
    out = cluster.install(A, B, C, 6)
    assert cluster.attempting(out) == {A, B, C, 6}
    assert cluster.exchange((A, B, C, 6)) == {n: [1] for n in (A, B, C, 6)}
    assert cluster.state(6).last_primary == Session(1, (A, B, C, 6))
    # Now 6 is a member of the primary and counts like any other: {c,6} is half of #1,
    # without its designated member a; {a,6} is half with it.
    assert cluster.attempting(cluster.install(C, 6)) == set()
    assert cluster.attempting(cluster.install(A, 6)) == {A, 6}


# ---------------------------------------------------------------------- (f) stale members rejoin


def test_a_stale_member_adopts_the_newest_primary_and_drops_what_it_supersedes() -> None:
    cluster = Cluster(ykd())
    cluster.install(*FIVE)  # #1, interrupted: ambiguous everywhere
    cluster.restart(E)  # e goes down with #1 ambiguous
    cluster.install(A, B, C, D)
    cluster.exchange((A, B, C, D))  # #2
    cluster.install(A, B, C)
    cluster.exchange((A, B, C))  # #3
    assert cluster.state(E) == VotingState(session_number=1, last_primary=P0, ambiguous=(S1,))
    # e comes back next to a and d: a knows #3, d knows #2.  Learned formed: #3.
    out = cluster.install(A, D, E)
    s3 = Session(3, (A, B, C))
    assert written(out[E])[0] == VotingState(session_number=3, last_primary=s3)
    assert written(out[D])[0] == VotingState(session_number=3, last_primary=s3, last_formed=2)
    # {a,d,e} holds 1/3 of #3: refused, however many of the universe it holds.
    assert cluster.attempting(out) == set()


def test_stale_members_alone_cannot_revive_an_old_primary() -> None:
    cluster = Cluster(ykd())
    cluster.install(A, B, C)
    cluster.exchange((A, B, C))  # #1 {a,b,c}; d and e still know only the universe
    assert cluster.attempting(cluster.install(C, D, E)) == set()  # c reports #1: 1/3 of it
    assert cluster.state(D).last_primary == Session(1, (A, B, C))  # refused, but d and e learned
    cluster.install(A, B, C)
    cluster.exchange((A, B, C))  # #2 {a,b,c}
    # d and e together know #1 at best: they hold none of it.
    assert cluster.attempting(cluster.install(D, E)) == set()
    out = cluster.install(B, C, D, E)
    assert cluster.attempting(out) == {B, C, D, E}  # 2/3 of #2
    assert cluster.state(D).last_primary == Session(2, (A, B, C))


def test_a_stale_members_unresolved_attempt_binds_those_it_rejoins() -> None:
    cluster = Cluster(ykd())
    cluster.install(C, D, E)  # #1 {c,d,e}, interrupted: ambiguous at c, d, e
    cluster.restart(C)
    # a, b, d, e formed nothing meanwhile; c rejoins a and b.
    out = cluster.install(A, B, C)
    # {a,b,c}: 3/5 of P0, but 1/3 of #1 (d, e away, c attempted it): refused.
    assert cluster.attempting(out) == set()
    assert cluster.state(A).ambiguous == ()
    # With d as well: 2/3 of #1.
    assert cluster.attempting(cluster.install(A, B, C, D)) == {A, B, C, D}


# ---------------------------------------------------------------------- (g) amnesia


@pytest.mark.parametrize(("stored", "why"), [(None, "missing"), (b"garbage", "unreadable"), (b"", "unreadable")])
def test_a_lost_record_makes_an_amnesiac_that_says_so_once(
    stored: bytes | None, why: str, caplog: pytest.LogCaptureFixture
) -> None:
    with caplog.at_level(logging.DEBUG, logger="pyclm.voting.ykd"):
        policy = YKD(ykd(), C, stored, history=True)
    assert policy.state.amnesiac
    lines = [r for r in caplog.records if r.name == "pyclm.voting.ykd"]
    assert len(lines) == 1 and lines[0].levelno == logging.WARNING
    assert f"voting state {why}" in lines[0].getMessage() and "amnesiac" in lines[0].getMessage()
    # Its amnesia is durable: a restart reloads it and says nothing more.
    (write,) = policy.pop_actions()
    assert isinstance(write, WriteState)
    caplog.clear()
    again = YKD(ykd(), C, write.data, history=True)
    assert again.state.amnesiac and again.pop_actions() == []
    assert not [r for r in caplog.records if r.name == "pyclm.voting.ykd"]


def test_no_record_and_no_history_is_a_new_node_not_an_amnesiac(caplog: pytest.LogCaptureFixture) -> None:
    with caplog.at_level(logging.DEBUG, logger="pyclm.voting.ykd"):
        policy = YKD(ykd(), C, None, history=False)
    assert not policy.state.amnesiac
    assert not caplog.records


def test_an_amnesiac_counts_toward_no_subquorum() -> None:
    cluster = Cluster(ykd())
    cluster.start(C, b"", history=True)
    # {a,b,c}: 3/5 with c, 2/5 without: refused, at c too.
    assert cluster.attempting(cluster.install(A, B, C)) == set()
    assert cluster.attempting(cluster.install(A, B, C, D)) == {A, B, C, D}  # 3/5 without c


def test_an_amnesiac_is_no_witness_that_it_never_attempted() -> None:
    cluster = Cluster(ykd())
    cluster.install(A, B, C)  # S1 = {a,b,c}: every member attempts it
    assert cluster.exchange((A, B, C), lost=[(B, C), (C, B), (A, B), (A, C)]) == {A: [1], B: [], C: []}
    s1 = Session(1, (A, B, C))
    cluster.start(C, b"", history=True)  # c loses its record: "S1? never heard of it"
    reports = {n: VotingState.decode(r) for n, r in cluster.reports((B, C, D, E)).items()}
    counted = {n: r for n, r in reports.items() if r is not None}
    assert counted[C].amnesiac
    assert cluster.policies[D].resolve(counted)[1] == [s1]  # S1 still binds
    # {b,c,d,e}: c would be the witness that settles S1, were it not amnesiac; without
    # it, {b} is 1/3 of S1: refused.  (a formed S1: {a,b} may form.)
    assert cluster.attempting(cluster.install(B, C, D, E)) == set()
    # A fresh node that never was a member may witness: the difference is "history".
    fresh = VotingState(session_number=0, last_primary=P0)
    assert cluster.policies[D].resolve({**counted, C: fresh})[1] == []


def test_an_amnesiac_stops_being_one_once_a_primary_forms_without_it() -> None:
    cluster = Cluster(ykd())
    cluster.start(E, None, history=True)
    out = cluster.install(*FIVE)  # 4/5 without e: e attempts too, still amnesiac
    assert cluster.attempting(out) == set(FIVE)
    assert written(out[E])[-1].amnesiac
    assert cluster.exchange(FIVE, lost=[(A, E)]) == {A: [1], B: [1], C: [1], D: [1], E: []}
    assert cluster.state(E).amnesiac  # attempting is not enough
    cluster.install(*FIVE)
    forms = cluster.exchange(FIVE)
    assert forms[E] == [2]
    assert not cluster.state(E).amnesiac
    assert VotingState.decode(cluster.disk[E]) == VotingState(
        session_number=2, last_primary=Session(2, FIVE), last_formed=2
    )
    # Now it counts: {c,d,e} holds 3/5 of #2.
    assert cluster.attempting(cluster.install(C, D, E)) == {C, D, E}


def test_a_view_of_amnesiacs_only_never_attempts() -> None:
    cluster = Cluster(ykd())
    for n in FIVE:
        cluster.start(n, b"\x00", history=True)
    assert cluster.attempting(cluster.install(*FIVE)) == set()


def test_a_missing_or_unreadable_report_counts_as_amnesiac_and_is_counted() -> None:
    cluster = Cluster(ykd())
    reports = cluster.reports((A, B, C))
    del reports[C]
    reports[B] = b"\xff" * 9
    out = cluster.install(A, B, C, reports=reports, installing=(A,))
    assert cluster.attempting(out) == set()  # only a counts: 1/5
    assert cluster.policies[A].counters == {"state_unreadable": 2}


# ---------------------------------------------------------------------- (h) the record


sessions = st.builds(
    Session,
    st.integers(0, 2**64 - 1),
    st.lists(st.integers(0, 2**32 - 1), unique=True, max_size=6).map(lambda m: tuple(sorted(m))),
)


@st.composite
def voting_states(draw: st.DrawFn) -> VotingState:
    last = draw(sessions)
    ambiguous = draw(
        st.lists(
            st.builds(
                Session,
                st.integers(last.number + 1, 2**64 - 1) if last.number < 2**64 - 1 else st.nothing(),
                st.lists(st.integers(0, 2**32 - 1), unique=True, max_size=6).map(lambda m: tuple(sorted(m))),
            ),
            max_size=4,
            unique_by=lambda s: s.number,
        ).map(sorted)
    )
    highest = max([last.number, *(s.number for s in ambiguous)])
    removed = draw(st.dictionaries(st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1), max_size=3))
    return VotingState(
        session_number=draw(st.integers(highest, 2**64 - 1)),
        last_primary=last,
        ambiguous=tuple(ambiguous),
        last_formed=draw(st.integers(0, 2**64 - 1)),
        amnesiac=draw(st.booleans()),
        removed=tuple(sorted(removed.items())),
    )


@st.composite
def reports(draw: st.DrawFn) -> tuple[VotingState, tuple[int, ...]]:
    """A state and the view it reports for: the sessions' members mostly in the view, some not."""
    pool = st.integers(0, 40) | st.integers(0, 2**32 - 1)
    members = st.lists(pool, unique=True, max_size=12).map(lambda m: tuple(sorted(m)))
    last = Session(draw(st.integers(0, 2**40)), draw(members))
    ambiguous = draw(
        st.lists(st.builds(Session, st.integers(last.number + 1, 2**64 - 1), members), max_size=3).map(sorted)
    )
    named = sorted({n for s in (last, *ambiguous) for n in s.members})
    ids = st.sampled_from(named) | pool if named else pool
    view = draw(st.lists(ids, unique=True, max_size=70).map(lambda v: tuple(sorted(v))))
    state = VotingState(
        session_number=draw(st.integers(max([last.number, *(s.number for s in ambiguous)]), 2**64 - 1)),
        last_primary=last,
        ambiguous=tuple(ambiguous),
        last_formed=draw(st.integers(0, 2**64 - 1)),
        amnesiac=draw(st.booleans()),
    )
    return state, view


def v1_record(state: VotingState) -> bytes:
    """``state`` as the version-1 record (fixed-size fields) written before version 2."""

    def session(s: Session) -> bytes:
        return struct.pack(f"!QH{len(s.members)}I", s.number, len(s.members), *s.members)

    return b"".join(
        [
            struct.pack("!BBQQ", 1, int(state.amnesiac), state.session_number, state.last_formed),
            session(state.last_primary),
            struct.pack("!H", len(state.ambiguous)),
            *(session(s) for s in state.ambiguous),
            struct.pack("!H", len(state.removed)),
            *(struct.pack("!IQ", n, upto) for n, upto in state.removed),
        ]
    )


@SETTINGS
@given(voting_states())
def test_the_record_round_trips(state: VotingState) -> None:
    assert VotingState.decode(state.encode()) == state


@SETTINGS
@given(voting_states(), st.data())
def test_a_truncated_or_extended_record_is_unreadable(state: VotingState, data: st.DataObject) -> None:
    encoded = state.encode()
    cut = data.draw(st.integers(0, len(encoded) - 1))
    assert VotingState.decode(encoded[:cut]) is None
    assert VotingState.decode(encoded + data.draw(st.binary(min_size=1, max_size=8))) is None


@settings(SETTINGS, max_examples=500)
@given(st.binary(max_size=200) | st.binary(max_size=200).map(lambda b: b"\x02" + b[:1] + b[1:]))
def test_decoding_any_bytes_never_raises(data: bytes) -> None:
    state = VotingState.decode(data)
    if state is not None:
        # One encoding per state and layout: nothing ignored.
        assert (state.encode() if data[0] == 2 else v1_record(state)) == data


@SETTINGS
@given(reports())
def test_a_report_round_trips_relative_to_its_view(sample: tuple[VotingState, tuple[int, ...]]) -> None:
    state, view = sample
    report = state.encode(view)
    assert VotingState.decode(report, view) == state
    assert len(report) <= len(state.encode())  # never longer than the stored record


@SETTINGS
@given(reports(), st.data())
def test_a_truncated_or_extended_report_is_unreadable(
    sample: tuple[VotingState, tuple[int, ...]], data: st.DataObject
) -> None:
    state, view = sample
    encoded = state.encode(view)
    cut = data.draw(st.integers(0, len(encoded) - 1))
    assert VotingState.decode(encoded[:cut], view) is None
    assert VotingState.decode(encoded + data.draw(st.binary(min_size=1, max_size=8)), view) is None


@settings(SETTINGS, max_examples=500)
@given(
    st.binary(max_size=60).map(lambda b: b"\x02\x02" + b) | st.binary(max_size=60).map(lambda b: b"\x02\x03" + b),
    st.lists(st.integers(0, 20), unique=True, max_size=20).map(lambda v: tuple(sorted(v))),
)
def test_decoding_any_report_bytes_never_raises(data: bytes, view: tuple[int, ...]) -> None:
    state = VotingState.decode(data, view)
    if state is not None:
        # The one encoding of this state with its sets over the view: nothing ignored.
        assert state._encode(view) == data  # (the layout encode(view) picks when it is the shorter)


def test_a_report_names_its_sessions_as_bitmaps_over_the_view() -> None:
    view = tuple(range(1, 65))
    common = VotingState(session_number=9, last_primary=Session(9, view), last_formed=9)
    # version, flags, 9, 9, then #9: 8 bytes of bits and no member outside the view; no ambiguous, no removals
    assert common.encode(view) == bytes([2, 2, 9, 9, 9]) + b"\xff" * 8 + bytes([0, 0, 0])
    assert len(common.encode()) == 2 + 3 + 1 + 64 + 2  # the stored record: a count and 64 gaps of 0
    crashed = VotingState(session_number=9, last_primary=Session(9, (*view[1:], 70)))  # 1 left, 70 is outside
    assert crashed.encode(view) == bytes([2, 2, 9, 0, 9, 0x7F]) + b"\xff" * 7 + bytes([1, 70, 0, 0])
    assert VotingState.decode(crashed.encode(view), view) == crashed
    assert VotingState.decode(crashed.encode(view)) is None  # its sets need the view
    small = VotingState(session_number=9, last_primary=Session(9, (3,)))
    assert small.encode(view) == small.encode() == bytes([2, 0, 9, 0, 9, 1, 3, 0, 0])  # a list is shorter


def test_a_record_stored_by_version_1_is_still_read() -> None:
    state = VotingState(
        session_number=12,
        last_primary=Session(7, (1, 2, 3)),
        ambiguous=(Session(9, (1, 2)), Session(12, (2, 3))),
        last_formed=7,
        removed=((4, 6),),
    )
    v1 = bytes.fromhex(
        "01 00 000000000000000c 0000000000000007"  # version 1, flags, session number, last formed
        "0000000000000007 0003 00000001 00000002 00000003"  # last primary #7 {1,2,3}
        "0002 0000000000000009 0002 00000001 00000002 000000000000000c 0002 00000002 00000003"
        "0001 00000004 0000000000000006"  # removed: 4 up to #6
    )
    assert v1_record(state) == v1
    assert VotingState.decode(v1) == VotingState.decode(v1, (1, 2, 3)) == state
    assert VotingState.decode(state.encode()) == state and state.encode()[0] == 2


def test_the_record_rejects_what_would_break_the_rules() -> None:
    good = VotingState(session_number=5, last_primary=Session(2, (1, 2)), ambiguous=(Session(3, (1,)),))
    assert VotingState.decode(good.encode()) == good
    view = (1, 2, 3)
    report = good.encode(view)
    assert report[1] == 0x02 and VotingState.decode(report, view) == good  # bitmaps over (1, 2, 3)
    bad = [
        b"\x03" + good.encode()[1:],  # unknown version
        good.encode()[:1] + b"\x04" + good.encode()[2:],  # unknown flag
        report,  # sets over a view, and no view given
        good.encode()[:2] + b"\x80\x00" + good.encode()[3:],  # a number not in its shortest form
        b"\x02\x00\x05\x00\x02\x01\x80\x80\x80\x80\x10\x00\x00",  # node id 2**32
        b"\x02\x00\x05\x00\x02\x02\x00\xff\xff\xff\xff\x0f\x00\x00",  # ... as a gap
        VotingState(session_number=1, last_primary=Session(2, (1, 2))).encode(),  # number below the primary
        VotingState(session_number=5, last_primary=Session(2, (1, 2)), ambiguous=(Session(2, (1,)),)).encode(),
        VotingState(
            session_number=5, last_primary=Session(2, (1,)), ambiguous=(Session(4, (1,)), Session(3, (1,)))
        ).encode(),  # not ascending
        v1_record(VotingState(session_number=5, last_primary=Session(2, (2, 1)))),  # members not ascending
        v1_record(VotingState(session_number=5, last_primary=Session(2, (1, 1)))),  # a member twice
    ]
    for data in bad:
        assert VotingState.decode(data) is None, data
    bad_reports = [
        report[:5] + bytes([report[5] | 0x1F]) + report[6:],  # bits beyond the 3 members of the view
        report[:6] + b"\x01\x01" + report[7:],  # 2 listed outside the view, though it is in it
    ]
    for data in bad_reports:
        assert VotingState.decode(data, view) is None, data
    for members in ((2, 1), (1, 1)):  # version 2 cannot even say it
        with pytest.raises(ValueError, match="must ascend"):
            VotingState(session_number=5, last_primary=Session(2, members)).encode()


# ---------------------------------------------------------------------- (i) messages and retries


def test_receive_drops_and_counts_what_is_not_an_attempt_of_its_session() -> None:
    cluster = Cluster(ykd(), (A, B, C))
    policy = cluster.policies[A]
    vid = view(9, A, B, C).view_id
    policy.receive(B, vid, attempt(1), 0.0)  # no session yet
    cluster.install(A, B, C)
    for payload in (b"", b"\x01", attempt(1) + b"\x00"):
        policy.receive(B, vid, payload, 0.0)
    policy.receive(B, vid, b"\x00" * 10, 0.0)  # the right size, kind 0
    policy.receive(B, vid, _ATTEMPT.pack(2, 1, 0), 0.0)  # another kind
    policy.receive(B, vid, attempt(2), 0.0)  # another session
    policy.receive(D, vid, attempt(1), 0.0)  # not a member
    assert policy.pop_actions() == []
    assert policy.attempts == {A}
    assert policy.counters == {"rx_dropped_malformed": 3, "rx_dropped_other_session": 5}
    # The real thing still works.
    policy.receive(B, vid, attempt(1), 0.0)
    policy.receive(B, vid, attempt(1), 0.0)  # a duplicate changes nothing
    assert formed(policy.pop_actions()) == []
    policy.receive(C, vid, attempt(1), 0.0)
    assert formed(policy.pop_actions()) == [1]


def test_the_retry_asks_only_the_members_whose_attempt_is_missing() -> None:
    cluster = Cluster(ykd())
    cluster.install(*FIVE, now=10.0)
    policy = cluster.policies[A]
    assert policy.get_timer() == pytest.approx(10.1)
    cluster.deliver(C, A)
    cluster.deliver(E, A)
    policy.handle_timer(10.1)
    assert policy.pop_actions() == [SendQuorum(attempt(1, please_send=True), to=(B, D))]
    assert policy.get_timer() == pytest.approx(10.2)
    cluster.deliver(B, A)
    cluster.deliver(D, A)
    assert policy.get_timer() is None  # formed: nothing left to ask
    policy.handle_timer(10.2)
    assert policy.pop_actions() == []


def test_a_please_send_gets_the_receivers_own_attempt_back() -> None:
    cluster = Cluster(ykd(), (A, B, C))
    cluster.install(A, B, C)
    out = cluster.deliver(A, B, attempt(1, please_send=True))
    assert out == [SendQuorum(attempt(1), to=(A,))]
    assert cluster.policies[B].attempts == {A, B}  # the request is an attempt too


def test_a_member_that_already_formed_still_answers_a_please_send() -> None:
    # b's attempt to a is lost; b and c receive everything and form.  a's retries ask b
    # again.  b must answer, or a stays out of the primary for as long as the view
    # lasts (nothing else will change the view).
    cluster = Cluster(ykd(), (A, B, C))
    cluster.install(A, B, C)
    assert cluster.exchange((A, B, C), lost=[(B, A)]) == {A: [], B: [1], C: [1]}
    policy = cluster.policies[A]
    policy.handle_timer(0.1)
    (ask,) = policy.pop_actions()
    assert ask == SendQuorum(attempt(1, please_send=True), to=(B,))
    answer = cluster.deliver(A, B, ask.payload)
    assert answer == [SendQuorum(attempt(1), to=(A,))], f"b dropped the request: {cluster.policies[B].counters}"
    assert formed(cluster.deliver(B, A, attempt(1))) == [1]


# ---------------------------------------------------------------------- (j) session numbers


def test_the_session_number_is_one_more_than_the_highest_reported() -> None:
    cluster = Cluster(ykd(), (A, B, C))
    reports = {
        A: VotingState(session_number=7, last_primary=Session(4, (A, B, C))).encode(),
        B: VotingState(session_number=3, last_primary=Session(0, (A, B, C))).encode(),
        C: VotingState(session_number=0, last_primary=Session(0, (A, B, C))).encode(),
    }
    out = cluster.install(A, B, C, reports=reports)
    assert cluster.attempting(out) == {A, B, C}
    assert out[B][-1] == SendQuorum(attempt(8))
    assert cluster.exchange((A, B, C)) == {A: [8], B: [8], C: [8]}
    assert cluster.state(C).session_number == 8
    # An amnesiac's number is not counted (it may be anything).
    cluster = Cluster(ykd(), (A, B, C))
    reports[C] = VotingState(session_number=99, last_primary=Session(0, ()), amnesiac=True).encode()
    out = cluster.install(A, B, C, reports=reports)
    assert out[A][-1] == SendQuorum(attempt(8))


def test_form_primary_carries_the_session_number_and_numbers_only_grow() -> None:
    cluster = Cluster(ykd())
    numbers = []
    for members in ((A, B, C, D, E), (A, B, C), (A, B, C, D), (B, C, D), (B, C, D, E)):
        cluster.install(*members)
        forms = cluster.exchange(members)
        (number,) = {n for numbers in forms.values() for n in numbers}
        numbers.append(number)
        assert cluster.state(members[0]).last_primary == Session(number, members)
    assert numbers == [1, 2, 3, 4, 5]


# ---------------------------------------------------------------------- random schedules

#: ("view", members, installing, delivered (src, dst) pairs) | ("crash" | "amnesia", (node,), (), ())
Step = tuple[str, tuple[int, ...], tuple[int, ...], tuple[tuple[int, int], ...]]


@st.composite
def histories(draw: st.DrawFn) -> tuple[QuorumConfig, tuple[int, ...], list[Step]]:
    """A universe of 3 to 5 nodes (small: interesting overlaps are likely), its votes and
    tie-breaker, and a schedule: views installed by some of their members, each followed
    by the attempts reaching some members in full and the others in part; crashes
    (storage kept); lost records."""
    nodes = tuple(range(1, draw(st.integers(3, 5)) + 1))
    weighted = st.fixed_dictionaries(dict.fromkeys(nodes, st.integers(0, 3))).filter(lambda v: any(v.values()))
    votes = draw(st.one_of(st.just(dict.fromkeys(nodes, 1)), weighted))
    choices: list[str | int] = ["lowest", "highest", *nodes]
    tie_breaker = draw(st.sampled_from(choices))
    steps: list[Step] = []
    for _ in range(draw(st.integers(1, 20))):
        kind = draw(st.sampled_from(["view", "view", "view", "view", "crash", "amnesia"]))
        if kind != "view":
            steps.append((kind, (draw(st.sampled_from(nodes)),), (), ()))
            continue
        members = tuple(n for n in nodes if draw(st.booleans())) or (draw(st.sampled_from(nodes)),)
        installing = tuple(n for n in members if draw(st.integers(0, 9)) > 0)
        # The view changes once the attempts reached ``forming`` in full, the others in
        # part (each misses one at least): the session formed at some members only.
        forming = {n for n in installing if draw(st.booleans())}
        delivered = []
        for dst in installing:
            sources = [src for src in installing if src != dst]
            if dst not in forming and sources:
                missed = draw(st.sampled_from(sources))
                sources = [src for src in sources if src == missed or draw(st.booleans())]
                sources.remove(missed)
            delivered += [(src, dst) for src in sources]
        steps.append((kind, members, installing, tuple(draw(st.permutations(delivered)))))
    return ykd(nodes, votes=votes, tie_breaker=tie_breaker), nodes, steps


@settings(SETTINGS, max_examples=400)
@given(histories())
def test_random_schedules_keep_the_formed_sessions_a_chain(
    history: tuple[QuorumConfig, tuple[int, ...], list[Step]],
) -> None:
    """Any interleaving of views (installed by some members), lost attempts, crashes and
    amnesia: formed sessions never share a number, each holds a subquorum of the one
    before (the simulator's checker, invariant (c)), and a counted node's session
    number never goes back."""
    config, nodes, steps = history
    cluster = Cluster(config, nodes)
    checker = InvariantChecker(config)
    last_number = dict.fromkeys(nodes, 0)
    for kind, members, installing, delivered in steps:
        if kind == "crash":
            cluster.restart(members[0])
        elif kind == "amnesia":
            cluster.start(members[0], b"", history=True)
            last_number[members[0]] = 0  # what it forgot, it cannot keep
        else:
            cluster.install(*members, installing=installing)
            for src, dst in delivered:
                if src in cluster.sent:
                    for number in formed(cluster.deliver(src, dst)):
                        checker.primary_formed(0.0, dst, cluster.views[dst], number)
        for n in nodes:
            state = cluster.state(n)
            if not state.amnesiac:
                assert state.session_number >= last_number[n], (n, state)
                last_number[n] = state.session_number
