"""Hypothesis stateful tests of YKD over the simulator: safety on every event, liveness when quiet.

``test_sim_properties.ClusterMachine`` with ``quorum.policy = "ykd"``: its rules
(partitions, one-way links, crashes that keep storage, graceful leaves, joins of
departed nodes and newcomers, message loss) plus the failures dynamic voting must
survive: crashes that lose the quorum record (the node comes back amnesiac), and
``strike_mid_round``, which waits for a view to be installed and strikes within a few
milliseconds, while its attempts are in flight (a view change between attempts, a lossy
round).  The simulator's checker raises inside ``run`` on the first broken invariant
((a)-(c), and (e) one primary number acting at a time, since the lease is on), which
fails the example.

Liveness (``settle``, and the teardown): heal, stop the loss, recover every crashed node,
wait ``QUIET``.  Then every running node must be in one view of exactly the running
nodes, and that view must be primary unless something legitimately blocks it:

- a running node is amnesiac (it counts for nothing, so the others may lack a subquorum);
- a member of the newest formed primary (per the checker) is not running (departed);
- a running node holds an ambiguous session newer than that primary with a member that
  is not running (no "all members present" for it, maybe no witness).

Otherwise every session that could bind has all its members in the view, so the rules
settle them all and the view holds the whole newest primary: it must form.

Three machines: 5 nodes with heartbeat connectivity, 5 with the oracle, 3 with heartbeats
(exact halves and lone survivors are common there).  CI size: 100 examples of up to 60
steps each, derandomised (the same examples every run: no flakes); about 25 s for the
three on a laptop.  PYCLM_NIGHTLY=1: 1000 examples of up to 150 steps, random.

What it catches (checked by breaking the policy on purpose): exact halves without the
tie-break, an amnesiac counted as a fresh node, an attempt sent before it is durable, a
member that stops answering requests for its attempt once it formed (liveness).  YKD's
ambiguous-session rule itself needs schedules too precise for random partitions to hit
often; ``tests/test_ykd.py`` covers it (deterministic cases and random schedules).
"""

from __future__ import annotations

import os

from hypothesis import HealthCheck, settings
from hypothesis import strategies as st
from hypothesis.stateful import invariant, precondition, rule

from pyclm.sim import Simulator
from pyclm.voting import YKD
from test_sim_properties import ClusterMachine

NIGHTLY = os.environ.get("PYCLM_NIGHTLY") == "1"
#: Detection (0.5 s), a restarted node's lease hold (0.4 s), agreement and a few retries.
QUIET = 3.0


def policy_of(sim: Simulator, node: int) -> YKD:
    core = sim.nodes[node].core
    assert core is not None and isinstance(core.policy, YKD)
    return core.policy


def blockers(sim: Simulator) -> list[str]:
    """What legitimately keeps the running nodes from a primary (empty: nothing)."""
    assert sim.checker is not None
    running = set(sim.running())
    newest = max(sim.checker.primaries)
    reasons = [f"node {n} is amnesiac" for n in sorted(running) if policy_of(sim, n).state.amnesiac]
    missing = sorted(set(sim.checker.primaries[newest]) - running)
    if missing:
        reasons.append(f"nodes {missing} of the newest primary #{newest} are not running")
    for n in sorted(running):
        for session in policy_of(sim, n).state.ambiguous:
            if session.number > newest and not set(session.members) <= running:
                reasons.append(f"node {n} holds {session} with members not running")
    return reasons


def check_settled(sim: Simulator) -> None:
    """Liveness after a quiet period (see the module docstring)."""
    running = sim.running()
    if not running:
        return
    views = {n: sim.nodes[n].view for n in running}
    members = {v.node_ids if v is not None else None for v in views.values()}
    assert members == {tuple(running)}, f"not one view of all running nodes {running}: {views}"
    assert len({v.view_id for v in views.values() if v is not None}) == 1, f"views differ: {views}"
    reasons = blockers(sim)
    if not reasons:
        states = {n: policy_of(sim, n).describe() for n in running}
        primary = {n: sim.nodes[n].primary for n in running}
        assert all(p is not None for p in primary.values()), f"no primary: {primary}; voting states {states}"


class YKDClusterMachine(ClusterMachine):
    """The simulator's machine (every rule of ``ClusterMachine``) with YKD, plus crashes
    that lose the voting record, strikes in the middle of a round, and YKD's liveness."""

    policy = "ykd"

    def _until_a_view_is_installed(self, limit: float) -> None:
        seen = len(self.s.records)
        end = self.s.now + limit
        while self.s.now < end and not any(r["event"] == "view" for r in self.s.records[seen:]):
            self._advance(0.0005)

    @rule(data=st.data(), delay=st.floats(0.0, 0.002), how=st.sampled_from(["partition", "crash", "cut", "loss"]))
    @precondition(lambda self: self.sim is not None and len(self.s.running()) > 1)
    def strike_mid_round(self, data: st.DataObject, delay: float, how: str) -> None:
        """Wait (up to a second) for a view to be installed somewhere; within a few
        milliseconds, while its attempts are in flight: partition; or crash a node; or
        cut some links for a moment and then partition (the attempts sent meanwhile are
        lost, the session forms at some members only, and the partition keeps the
        others' retries from mending it); or heal first, then lose half the messages for
        a moment (the view stays: retries alone must complete its round)."""
        if how == "loss":
            self._apply("heal")
        self._until_a_view_is_installed(1.0)
        self._advance(delay)
        running = self.s.running()
        if how == "loss":
            self._apply("loss", loss=0.5)
            self._advance(data.draw(st.floats(0.001, 0.005)))
            self._apply("loss", loss=0.0)
            return
        if how == "crash":
            node = data.draw(st.sampled_from(running))
            self._apply("crash", nodes=(node,))
            self.crashed.add(node)
            return
        if how == "cut":
            links = [(a, b) for a in running for b in running if a != b]
            cut = data.draw(st.lists(st.sampled_from(links), min_size=1, max_size=len(running), unique=True))
            for src, dst in cut:
                self._apply("link", src=src, dst=dst, up=False)
            self._advance(data.draw(st.floats(0.001, 0.005)))
        self._partition(data)

    @rule(data=st.data())
    @precondition(lambda self: self.sim is not None and len(self.s.running()) > 0)
    def crash_losing_quorum_state(self, data: st.DataObject) -> None:
        """A crash whose disk loses the voting record: the node comes back amnesiac."""
        node = data.draw(st.sampled_from(self.s.running()))
        self._apply("crash", nodes=(node,))
        self.s.nodes[node].storage.records["quorum"] = b""
        self.crashed.add(node)

    @rule()
    @precondition(lambda self: self.sim is not None)
    def settle(self) -> None:
        """Heal, stop the loss, bring every crashed node back, wait: liveness must hold."""
        self._apply("heal")
        self._apply("loss", loss=0.0)
        for node in sorted(self.crashed):
            self._apply("recover", nodes=(node,))
        self.crashed.clear()
        self._advance(QUIET)
        check_settled(self.s)

    @invariant()
    def lease_is_checked(self) -> None:
        if self.sim is not None:
            assert self.s.checker is not None and self.s.checker.lease  # (e) is checked on every event


class OracleYKDClusterMachine(YKDClusterMachine):
    connectivity = "oracle"


class SmallYKDClusterMachine(YKDClusterMachine):
    """Three nodes: exact halves and lone survivors are common, so tie-breaks, the
    shrinking quorum and amnesia decide more often."""

    initial = (1, 2, 3)


_settings = settings(
    max_examples=1000 if NIGHTLY else 100,
    stateful_step_count=150 if NIGHTLY else 60,
    deadline=None,
    derandomize=not NIGHTLY,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

TestYKDHeartbeatCluster = YKDClusterMachine.TestCase
TestYKDHeartbeatCluster.settings = _settings
TestYKDOracleCluster = OracleYKDClusterMachine.TestCase
TestYKDOracleCluster.settings = _settings
TestYKDSmallCluster = SmallYKDClusterMachine.TestCase
TestYKDSmallCluster.settings = _settings
