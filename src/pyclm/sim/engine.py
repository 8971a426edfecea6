"""The discrete-event simulator: many cores, one process, virtual time.

The simulator is a driver like the runtime, without asyncio: it owns every core, a
seeded :class:`NetworkModel` and one :class:`MemoryStorage` per node (kept across
crashes).  After every input to a core it persists the core's writes, hands its
datagrams to the network, records its events (checking the invariants on each) and
re-arms its timer: the same pump as :class:`pyclm.Node`.

In ``oracle`` connectivity the simulator tells every core whom it can reach (from the
link state and who is running) instead of letting heartbeat silence decide.

Crashes can strike in the middle of persisting (``during_write``).  Each write is two
steps, as :class:`~pyclm.storage.FileStorage` does it: write a temp file, rename it over
the record.  A crash after the first step leaves the old record (loaders ignore temp
files), so a record is never half-written; a batch of writes can be cut between records.
Nothing the core produced in that step goes out.  A crash can also destroy what is on
disk (``lose_state``): see :meth:`Simulator.crash`.

Same scenario, same seed: the same records, byte for byte.
"""

from __future__ import annotations

import heapq
import random
from collections.abc import Callable
from typing import Any

import attrs

from ..config import ConnectivitySource, MembershipConfig
from ..core import GROUP, Membership
from ..errors import ConfigError
from ..events import ClmMessage, PrimaryFormed, PrimaryLost, Stopped, ViewInstalled
from ..ids import View
from ..storage import MemoryStorage, StorageWrite
from ..voting import POLICIES, QuorumConfig, QuorumPolicy
from .checker import InvariantChecker, InvariantViolation
from .network import NetworkModel
from .report import event_record
from .scenario import LOSE_STATES, Scenario, ScenarioEvent

_WALL_CLOCK_ORIGIN_NS = 1_767_225_600 * 10**9  # 2026-01-01: the simulated wall clock at t=0

_DELIVER, _TIMER, _SCENARIO, _MULTICAST, _REACH = 0, 1, 2, 3, 4

Record = dict[str, Any]


class _Copies(list[tuple[float, int]]):
    """The (arrival time, receiver) pairs of one multicast datagram, ascending."""

    __slots__ = ("src",)

    def __init__(self, src: int) -> None:
        super().__init__()
        self.src = src


@attrs.frozen(kw_only=True)
class WriteCrash:
    """A crash that struck while a node persisted ``writes``.

    Each write is two steps (write the temp file, rename it over the record), so the batch
    has ``2 * len(writes)`` steps; ``steps_done`` of them completed, and the first
    ``applied`` writes are durable.  The rest left the old records.
    """

    at: float
    writes: tuple[StorageWrite, ...]
    steps_done: int

    @property
    def applied(self) -> int:
        return self.steps_done // 2


class SimNode:
    __slots__ = (
        "core",
        "crash_at_write",
        "lose_at_crash",
        "node_id",
        "primary",
        "storage",
        "timer_at",
        "timer_gen",
        "view",
        "write_crash",
    )

    def __init__(self, node_id: int) -> None:
        self.node_id = node_id
        self.storage = MemoryStorage()
        self.core: Membership | None = None
        self.timer_at: float | None = None
        self.timer_gen = 0
        self.view: View | None = None
        self.primary: int | None = None
        self.crash_at_write = False  # a during_write crash waits for this node's next writes
        self.lose_at_crash: str | None = None  # lose_state of that crash
        self.write_crash: WriteCrash | None = None  # the last crash that struck mid-write


@attrs.frozen
class SimulationResult:
    records: list[Record]
    violation: InvariantViolation | None
    nodes: dict[int, SimNode]
    deliveries: int
    counters: dict[str, int]


class Simulator:
    """Run one scenario.  ``quorum`` overrides the scenario's ``[quorum]`` table."""

    def __init__(
        self,
        scenario: Scenario,
        *,
        seed: int | None = None,
        quorum: QuorumConfig | None = None,
        on_record: Callable[[Record], None] | None = None,
        check: bool = True,
    ) -> None:
        self.scenario = scenario
        self.seed = scenario.seed if seed is None else seed
        self.quorum = quorum or scenario.quorum
        if POLICIES[self.quorum.policy].remove_nodes is QuorumPolicy.remove_nodes:
            for i, event in enumerate(scenario.events):
                if event.action == "remove":
                    raise ConfigError(
                        f"event[{i}].remove", f"policy {self.quorum.policy!r} has no permanent removal of nodes"
                    )
        self.rng = random.Random(self.seed)
        self.network = NetworkModel(scenario.network, random.Random(self.rng.getrandbits(64)))
        self.oracle = scenario.connectivity == "oracle"
        self.now = 0.0
        self.nodes: dict[int, SimNode] = {}
        self.records: list[Record] = []
        lease = scenario.timing.lease_duration > 0
        self.checker = InvariantChecker(self.quorum, lease=lease) if check else None
        self.on_record = on_record
        self.deliveries = 0
        self._heap: list[tuple[float, int, int, Any, Any, Any]] = []
        self._seq = 0
        self._order: list[int] = []  # every node id ever, ascending
        self._reach: dict[int, set[int]] = {}  # oracle: whom each running node was told it reaches
        for event in scenario.events:
            self._push(event.at, _SCENARIO, event, None, None)

    # ------------------------------------------------------------------ running

    def _push(self, t: float, kind: int, a: Any, b: Any, c: Any) -> None:
        self._seq += 1
        heapq.heappush(self._heap, (t, self._seq, kind, a, b, c))

    def start(self) -> None:
        for node_id in self.scenario.nodes:
            self._start_node(node_id)
        if self.oracle:
            self._update_reachability()

    def run(self, until: float | None = None) -> SimulationResult:
        """Run to ``until`` (default: the scenario's duration); stop at the first violation."""
        if not self.nodes:
            self.start()
        end = self.scenario.duration if until is None else until
        violation = None
        try:
            self._loop(end)
        except InvariantViolation as exc:
            violation = exc
        if violation is None and until is None:
            self._emit({"t": round(self.now, 6), "event": "end", "views": self.final_views()})
        counters: dict[str, int] = {}
        for node in self.nodes.values():
            if node.core is not None:
                for key, value in node.core.all_counters().items():
                    counters[key] = counters.get(key, 0) + value
        return SimulationResult(self.records, violation, self.nodes, self.deliveries, counters)

    def _loop(self, end: float) -> None:
        heap = self._heap
        nodes = self.nodes
        pop = heapq.heappop
        while heap and heap[0][0] <= end:
            t, _seq, kind, a, b, c = pop(heap)
            self.now = t
            if kind == _DELIVER:
                node = nodes[a]
                core = node.core
                if core is None:
                    continue
                self.deliveries += 1
                core.receive_datagram(b, c, t)
                self._pump(node, core)
            elif kind == _MULTICAST:
                # One heap entry per multicast: deliver its copies in arrival order for
                # as long as nothing else is due first (c = index of the next copy).
                copies = b
                i = c
                n = len(copies)
                while True:
                    at, dst = copies[i]
                    self.now = at
                    i += 1
                    node = nodes[dst]
                    core = node.core
                    if core is not None:  # a core that left is removed at once (_stop_node)
                        self.deliveries += 1
                        core.receive_datagram(a, copies.src, at)
                        self._pump(node, core)
                    if i == n:
                        break
                    nxt = copies[i][0]
                    if nxt > end or (heap and heap[0][0] < nxt):
                        self._push(nxt, _MULTICAST, a, copies, i)
                        break
            elif kind == _TIMER:
                node = nodes[a]
                core = node.core
                if core is None or b != node.timer_gen:
                    continue
                node.timer_at = None
                core.handle_timer(t)
                self._pump(node, core)
            elif kind == _SCENARIO:
                self._scenario_event(a)
            else:  # _REACH: a node crashed mid-write; the oracle tells the others
                self._update_reachability()
        self.now = max(self.now, end)

    def _pump(self, node: SimNode, core: Membership) -> None:
        writes = core.writes_to_persist()
        if writes:
            if node.crash_at_write:
                self._crash_mid_write(node, writes)
                return  # nothing else this step produced goes out
            storage = node.storage
            for write in writes:
                storage.write(write.key, write.data)
        datagrams = core.datagrams_to_send()
        if datagrams:
            self._send(node.node_id, datagrams)
        event = core.next_event()
        while event is not None:
            self._on_core_event(node, event)
            event = core.next_event()
        formed = core.primaries_formed()
        if formed and self.checker:
            for number, view in formed:
                self.checker.primary_formed(self.now, node.node_id, view, number)
        deadline = core.get_timer()
        if deadline is not None and deadline != node.timer_at:
            node.timer_at = deadline
            node.timer_gen += 1
            self._push(deadline, _TIMER, node.node_id, node.timer_gen, None)

    def _send(self, src: int, datagrams: list[tuple[bytes, Any]]) -> None:
        now = self.now
        delays = self.network.delays
        push = self._push
        for data, dest in datagrams:
            if dest is not GROUP:
                for delay in delays(src, dest):
                    push(now + delay, _DELIVER, dest, data, src)
                continue
            copies = _Copies(src)
            for dst in self._order:
                if dst != src:
                    for delay in delays(src, dst):
                        copies.append((now + delay, dst))
            if copies:
                copies.sort()
                push(copies[0][0], _MULTICAST, data, copies, 0)

    # ------------------------------------------------------------------ nodes

    def _config(self, node_id: int) -> MembershipConfig:
        source = ConnectivitySource.EXTERNAL if self.oracle else ConnectivitySource.HEARTBEAT
        return MembershipConfig(node_id=node_id, timing=self.scenario.timing, connectivity=source)

    def _start_node(self, node_id: int) -> None:
        node = self.nodes.get(node_id)
        if node is None:
            node = self.nodes[node_id] = SimNode(node_id)
            self._order = sorted(self.nodes)
        wall = _WALL_CLOCK_ORIGIN_NS + int(self.now * 1e9)
        node.core = Membership(
            self._config(node_id),
            self.quorum,
            stored=node.storage.load(),
            wall_clock_ns=wall,
            now=self.now,
            rng=random.Random(self.rng.getrandbits(64)),
        )
        node.view = None
        node.primary = None
        node.timer_at = None
        self._reach[node_id] = set()
        self._pump(node, node.core)

    def _stop_node(self, node_id: int, graceful: bool) -> None:
        node = self.nodes[node_id]
        core = node.core
        if core is None:
            return
        if graceful:
            core.leave(self.now)
            self._pump(node, core)
        node.crash_at_write = False  # a node that left has no crash pending
        node.lose_at_crash = None
        node.core = None
        node.view = None
        node.primary = None
        node.timer_gen += 1
        self._reach.pop(node_id, None)
        if self.checker:
            self.checker.primary_ended(node_id)

    def _on_core_event(self, node: SimNode, event: object) -> None:
        t = round(self.now, 6)
        if type(event) is ViewInstalled:
            view = event.view
            node.view = view
            node.primary = None
            if self.checker:
                self.checker.view_installed(self.now, node.node_id, view)
                self.checker.primary_ended(node.node_id)
            self._emit_event(t, node.node_id, event)
        elif type(event) is PrimaryFormed:
            node.primary = event.number
            if self.checker:
                self.checker.primary_announced(self.now, node.node_id, event.number)
            self._emit_event(t, node.node_id, event)
        elif type(event) is PrimaryLost:
            node.primary = None
            if self.checker:
                self.checker.primary_ended(node.node_id)
            self._emit_event(t, node.node_id, event)
        elif type(event) is not Stopped and type(event) is not ClmMessage:  # (nobody sends CLM messages here)
            raise AssertionError(f"unknown core event {event!r}")

    def _emit_event(self, t: float, node_id: int, event: ViewInstalled | PrimaryFormed | PrimaryLost) -> None:
        record = event_record(t, node_id, event)
        assert record is not None
        self._emit(record)

    def _emit(self, record: Record) -> None:
        self.records.append(record)
        if self.on_record is not None:
            self.on_record(record)

    # ------------------------------------------------------------------ crashes

    def crash(self, node_id: int, *, during_write: bool = False, lose_state: str | None = None) -> None:
        """Crash running node ``node_id``, as a ``crash`` event does (without emitting its record).

        ``during_write``: the node keeps running until its core next asks for writes.  Of
        that batch's steps (two per write: temp file, rename) a number drawn from the
        simulator's seeded rng completes (none to all), then the node stops; nothing the
        core produced in that step is sent or recorded.  ``node.write_crash`` describes it.
        A ``recover`` of the node before then makes the crash strike at once.

        ``lose_state`` destroys storage at the crash, as a failed disk does: ``"quorum"``
        leaves the quorum policy's record present but unreadable (``b""``; nothing if there
        is none), ``"all"`` deletes every record, so the node comes back as a brand-new
        node - which pyclm cannot tell from one, and which can break the invariants.
        """
        if lose_state is not None and lose_state not in LOSE_STATES:
            raise ValueError(f"lose_state is None or one of {LOSE_STATES}, got {lose_state!r}")
        node = self.nodes.get(node_id)
        if node is None or node.core is None:
            raise ValueError(f"node {node_id} is not running at t={self.now}")
        self._crash(node, during_write=during_write, lose_state=lose_state)
        if self.oracle:
            self._update_reachability()

    def _crash(self, node: SimNode, *, during_write: bool, lose_state: str | None) -> None:
        if node.core is None:
            return
        node.lose_at_crash = lose_state
        if during_write:
            node.crash_at_write = True
        else:
            self._crash_now(node)

    def _crash_now(self, node: SimNode) -> None:
        lose = node.lose_at_crash
        self._stop_node(node.node_id, graceful=False)
        records = node.storage.records
        if lose == "all":
            records.clear()
        elif lose == "quorum" and "quorum" in records:
            records["quorum"] = b""

    def _crash_mid_write(self, node: SimNode, writes: list[StorageWrite]) -> None:
        steps_done = self.rng.randrange(2 * len(writes) + 1)
        storage = node.storage
        # An odd count wrote one more temp file but not its rename: that record stays old.
        for write in writes[: steps_done // 2]:
            storage.write(write.key, write.data)
        node.write_crash = WriteCrash(at=self.now, writes=tuple(writes), steps_done=steps_done)
        self._crash_now(node)
        if self.oracle:
            self._push(self.now, _REACH, None, None, None)

    # ------------------------------------------------------------------ scenario

    def apply(self, event: ScenarioEvent) -> None:
        """Apply a scenario event now (tests drive the simulator this way)."""
        self._scenario_event(attrs.evolve(event, at=self.now))

    def _scenario_event(self, event: ScenarioEvent) -> None:
        record: Record = {"t": round(self.now, 6)}
        record.update(event.as_record())
        self._emit(record)
        action = event.action
        net = self.network
        if action == "partition":
            net.partition([list(g) for g in event.groups])
        elif action == "heal":
            net.heal()
        elif action == "link":
            net.set_link(event.src, event.dst, event.up)
        elif action == "loss":
            net.set_loss(event.loss)
        elif action == "crash":
            for node_id in event.nodes:
                self._crash(self.nodes[node_id], during_write=event.during_write, lose_state=event.lose_state)
        elif action == "remove":
            self.remove_nodes(event.by, list(event.nodes), reason=event.reason)
        elif action == "leave":
            for node_id in event.nodes:
                self._stop_node(node_id, graceful=True)
        elif action in ("recover", "join"):
            for node_id in event.nodes:
                node = self.nodes.get(node_id)
                if node is not None and node.crash_at_write:
                    self._crash_now(node)  # it never wrote again: its crash strikes now
                if node is None or node.core is None:
                    self._start_node(node_id)
        if self.oracle:
            self._update_reachability()

    def remove_nodes(self, by: int, node_ids: list[int], *, reason: str) -> None:
        """Operator recovery on node ``by``: declare ``node_ids`` permanently gone (docs/voting.md).

        The checker is told, so successions are judged without them from then on.
        """
        node = self.nodes.get(by)
        core = node.core if node is not None else None
        if node is None or core is None:
            raise ConfigError("remove.by", f"node {by} is not running at t={self.now}")
        wall = _WALL_CLOCK_ORIGIN_NS + int(self.now * 1e9)
        recorded = core.remove_nodes(node_ids, self.now, wall_clock_ns=wall, reason=reason)
        if self.checker:
            self.checker.nodes_removed(recorded)
        self._pump(node, core)

    def _update_reachability(self) -> None:
        running = [n for n in self._order if self.nodes[n].core is not None]
        link_up = self.network.link_up
        for a in running:
            core = self.nodes[a].core
            if core is None:  # it crashed mid-write earlier in this pass: a _REACH event follows
                continue
            now_reach = {b for b in running if b != a and link_up(b, a)}
            before = self._reach.get(a, set())
            for b in sorted(now_reach - before):
                core.set_reachable(b, True, self.now)
            for b in sorted(before - now_reach):
                core.set_reachable(b, False, self.now)
            self._reach[a] = now_reach
            self._pump(self.nodes[a], core)

    # ------------------------------------------------------------------ reading the state

    def running(self) -> list[int]:
        return [n for n in self._order if self.nodes[n].core is not None]

    def final_views(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for n in self.running():
            node = self.nodes[n]
            view = node.view
            out[str(n)] = {
                "view": str(view.view_id) if view else None,
                "members": list(view.node_ids) if view else [],
                "primary": node.primary is not None,
            }
        return out


def simulate(scenario: Scenario, **kwargs: Any) -> SimulationResult:
    """Run ``scenario`` to its end (see :class:`Simulator` for the keyword arguments)."""
    return Simulator(scenario, **kwargs).run()
