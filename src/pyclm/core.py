"""The sans-IO membership core: one node's protocol state machine.

Theory of operation
-------------------
A core is driven by four kinds of input, each carrying ``now`` (float seconds, any
monotonic origin): datagrams (:meth:`receive_datagram`), its timer
(:meth:`handle_timer`), external connectivity (:meth:`set_reachable`) and API calls
(:meth:`leave`).  After every input the driver drains, **in this order**:

1. :meth:`writes_to_persist` - make each write durable;
2. :meth:`datagrams_to_send` - send them;
3. :meth:`next_event` until it returns None;
4. :meth:`get_timer` - the one absolute deadline at which to call :meth:`handle_timer`.

Liveness.  Every ``heartbeat_interval`` the core multicasts a heartbeat carrying its
current view id, the version of its row and a digest of the rows it holds.  A node is
*trusted* while its datagrams keep arriving (the failure detector suspects it exactly
``suspect_timeout`` after the last one) or, in external mode, while the outside world
says it is reachable; external mode sends no periodic multicast, only one unicast
heartbeat per interval to a random neighbour.

Connectivity.  The trusted members form this node's *row*.  Changes within
``settle_delay`` coalesce into one new version, which rides on a heartbeat at once and
on the next periodic one; a receiver that sees a newer version than it holds, without
the row, pulls it.  A starting node publishes no row (version 0) until its start-up
grace ends: a row that hears nobody yet would only say it is cut off.  Rows of nodes a neighbour cannot
hear reach it through the knowledge digest: two neighbours whose digests keep
differing exchange version vectors and the rows one of them lacks (anti-entropy).  See
:mod:`pyclm.connectivity` for the rule that turns the rows into components.

View agreement.  When the rows settle (and no suspicion is clearly on its way, see
``_postpone_settle``), the core computes its component.  If that
differs from its view and this node has the lowest id in it, it proposes a view with a
new epoch (after persisting the epoch, so no view id is ever reused).  A member accepts
a proposal only if it matches its own computation and its epoch is higher than every
epoch it accepted before (persisted before acking).  The coordinator installs when
every member acked, and sends the gathered quorum states on the install message.
Proposals and acks are retransmitted every heartbeat interval until installed or
superseded.  Two nodes never install the same view id with different members, and each
node installs strictly increasing epochs, across restarts too.

A member that needs a new view its coordinator does not know about (it moved on, its
view is spent, or it waits on an abandoned proposal) says so in its heartbeats
(*unsettled*), and the coordinator proposes again.

Quorum.  After a view is installed the quorum policy (:mod:`pyclm.voting`) decides
whether it is primary; that is a separate event.  A primary node that computes a
component other than its view stops acting as primary at once (``PrimaryLost``); that
view is *spent*: only a new view forms a primary again.

Membership numbers.  The cluster membership is the primary component, numbered by the
primary number.  For SA Forum's *initialViewNumber* each life keeps two numbers, in
memory only (a restart starts again from 0, 0): ``since``, the primary number at which
it joined the membership, and ``last``, the number of the last primary it acted as a
member of (0 = none).  Both ride on its ACK.  The coordinator, holding every member's,
applies the rule (:func:`joined_numbers`): a member of the newest primary among them
keeps its ``since``; everyone else joins now (0).  The INSTALL carries that ``joined``
per member, so every member of a view holds the same numbers.  When the view becomes
primary ``number``, each member's initial number is its ``joined``, or ``number`` for
0 (:func:`initial_numbers`).  The node then sets ``last = number`` and ``since`` to
its own initial number.

CLM messages.  :meth:`send_clm` carries opaque payloads of the CLM layer between
members of the installed view; a member receives them as :class:`ClmMessage` events.
Best effort: no retransmission, no ordering, nothing kept for a view not installed yet.
"""

from __future__ import annotations

import json
import logging
import random
from collections import Counter, deque
from collections.abc import Iterable, Mapping, Sequence
from typing import Any

import attrs

from . import wire
from .config import ConnectivitySource, MembershipConfig
from .connectivity import Component, ConnectivityMatrix
from .detector import FailureDetector, TimeoutDetector
from .errors import UsageError
from .events import ClmMessage, Event, PrimaryFormed, PrimaryLost, Stopped, ViewInstalled
from .ids import MAX_INCARNATION, MAX_NODE_ID, Member, View, ViewId, find
from .ids import member as interned_member
from .lease import Lease
from .storage import MembershipRecord, StorageWrite
from .voting import FormPrimary, LosePrimary, QuorumConfig, QuorumPolicy, SendQuorum, WriteState, make_policy

log = logging.getLogger("pyclm.core")


class _Group:
    """The destination "every node of the group" (multicast); transports map it."""

    def __repr__(self) -> str:
        return "GROUP"


GROUP: Any = _Group()

_TOMBSTONE_VERSION = 2**32 - 1
_AUDIT_KEEP = 256  # operator actions kept in the audit record
_MISMATCH_LIMIT = 3


def _node_id(member: Member) -> int:
    return member.node_id


@attrs.frozen
class MemberReport:
    """What a member says in its ACK (the coordinator: what it would say), see the module docstring."""

    since: int
    last: int
    state: bytes


def joined_numbers(reports: Sequence[MemberReport]) -> tuple[int, ...]:
    """Each member's ``joined`` for the INSTALL, from the members' ACK reports: the rule.

    Only members of the newest primary any of them acted in (``last == Q``, the largest)
    were in the membership until now: they keep ``since``, the number they joined at.
    Everyone else (new, restarted, back from a minority) gets 0, "joins at the number
    this view becomes primary with", as does everyone when none of them was in a
    primary before (``Q == 0``).  A ``since`` of 0 stays 0: no membership to keep.
    """
    newest = max((r.last for r in reports), default=0)
    return tuple(r.since if newest > 0 and r.last == newest else 0 for r in reports)


def initial_numbers(joined: Sequence[int], number: int) -> tuple[int, ...]:
    """Each member's initial number when the view becomes primary ``number``: ``joined``, or ``number`` for 0."""
    return tuple(j or number for j in joined)


def _install_entries(members: tuple[Member, ...], reports: Sequence[MemberReport]) -> tuple[wire.InstallEntry, ...]:
    """The INSTALL's entries for ``members`` with these ACK reports (in member order)."""
    joined = joined_numbers(reports)
    return tuple(wire.InstallEntry(m.node_id, j, r.state) for m, j, r in zip(members, joined, reports, strict=True))


def _holds(members: tuple[Member, ...], node_id: int, incarnation: int) -> bool:
    """Whether ``members`` (ascending by id) hold that life of that node; O(log n)."""
    found = find(members, node_id)
    return found is not None and found.incarnation == incarnation


@attrs.frozen(kw_only=True)
class PeerState:
    """One other node as this core sees it (:meth:`Membership.peer_states`)."""

    node_id: int
    incarnation: int
    #: Where its datagrams come from (the transport's address), None if not heard yet.
    address: Any
    #: This node currently hears it.
    trusted: bool
    #: ``now`` of the last datagram accepted from it (None: none yet).
    last_heard: float | None
    #: The view its last heartbeat named.
    view_id: ViewId | None


class _Peer:
    __slots__ = ("addr", "heard_at", "incarnation", "left", "member", "mismatch", "reachable", "trusted", "view_id")

    def __init__(self, incarnation: int, addr: Any) -> None:
        self.incarnation = incarnation
        self.member = Member(0, 0)  # set with the incarnation (see _Peer.set_incarnation)
        self.addr = addr
        self.heard_at: float | None = None  # now of the last datagram accepted from it
        self.trusted = False
        self.left = -1  # highest incarnation that left gracefully
        self.reachable: bool | None = None  # external input; None = no opinion
        self.view_id: ViewId | None = None
        self.mismatch = 0

    def set_incarnation(self, node_id: int, incarnation: int) -> None:
        self.incarnation = incarnation
        if incarnation >= 0:
            self.member = interned_member(node_id, incarnation)


class Membership:
    """One node's membership protocol, without I/O.  See the module docstring for the call contract."""

    def __init__(
        self,
        config: MembershipConfig,
        quorum: QuorumConfig,
        *,
        stored: Mapping[str, bytes],
        wall_clock_ns: int,
        now: float,
        rng: random.Random,
        detector: FailureDetector | None = None,
    ) -> None:
        self.config = config
        self.node_id = config.node_id
        self._timing = config.timing
        self._external = config.connectivity is ConnectivitySource.EXTERNAL
        self._rng = rng
        self._detector: FailureDetector = detector or TimeoutDetector(config.timing.suspect_timeout)
        record = MembershipRecord.decode(stored["membership"]) if "membership" in stored else None
        if record is None and "membership" in stored:
            log.warning("node %d: the stored membership record is unreadable; taking a new identity", self.node_id)
        # Whether this node has been in views before: then a lost quorum record is amnesia.
        history = (record is None and "membership" in stored) or (record is not None and record.max_epoch > 0)
        previous = record.incarnation if record else -1
        if previous >= MAX_INCARNATION:
            raise UsageError(f"node {self.node_id}: the stored incarnation is exhausted (2**64-1); clear the state")
        self.incarnation = min(max(previous + 1, wall_clock_ns), MAX_INCARNATION)
        self.me = interned_member(self.node_id, self.incarnation)
        self._accepted = ViewId(record.max_epoch, record.max_coordinator) if record and record.max_epoch else None
        self._accepted_members: tuple[Member, ...] = ()
        self.view: View | None = None
        # Until this life accepts a view, the nodes the last one may have vouched for.
        self._carried_recent = record.recent or () if record is not None else ()
        self._max_epoch_seen = record.max_epoch if record else 0
        self._quorum_config = quorum
        self.policy: QuorumPolicy = make_policy(
            quorum,
            self.node_id,
            stored.get("quorum"),
            history=history,
            retry_interval=config.timing.heartbeat_interval,
        )
        self.counters: Counter[str] = Counter()
        self._audit = [line for line in stored.get("audit", b"").split(b"\n") if line]

        self._writes: list[StorageWrite] = []
        self._datagrams: list[tuple[bytes, Any]] = []
        self._events: deque[Event] = deque()
        for action in self.policy.pop_actions():  # its initial record, written before ours
            if not isinstance(action, WriteState):
                raise UsageError(f"quorum policy {quorum.policy!r} may only write its state when it is created")
            self._writes.append(StorageWrite("quorum", action.data))
        self._persist()  # the new incarnation is durable before the first datagram
        duration = config.timing.lease_duration
        self._lease = None
        if duration:
            recent = record.recent if record is not None else None
            self._lease = Lease(duration, config.timing.max_drift, now, restarted=history, recent=recent)

        self._peers: dict[int, _Peer] = {}
        self._matrix = ConnectivityMatrix()
        self._row_version = 0
        self._row = wire.Row(self.node_id, self.incarnation, 0, (self.me,))
        self._matrix.offer(self._row)
        self._row_pending = False  # the row still has to ride on a periodic heartbeat
        # Until the start-up grace ends our row is not published (heartbeats say version
        # 0): a row that hears nobody yet would only tell the others we are cut off.
        self._publishing = False
        self._knowledge = 0

        self.primary_number: int | None = None
        # Membership numbers of this life (see the module docstring); never stored.
        self._since = 0
        self._last = 0
        self._install_entries: tuple[wire.InstallEntry, ...] = ()  # the installed view's, by member
        self._pending: View | None = None  # accepted, not yet installed
        self._proposal: View | None = None  # ours, as coordinator
        self._acks: dict[int, MemberReport] = {}
        self._stopped = False
        self._view_spent = False  # we dropped primary in this view: it needs replacing
        self._accepted_at = now  # when we first acked (or proposed) the accepted view id
        self._formed: tuple[View, int] | None = None  # formed by the policy, not yet announced
        self._formed_log: list[tuple[int, View]] = []
        self._lease_at: float | None = None  # announced: check the lease then
        self._announce_retry_at = now
        self._deferred: tuple[_Peer, wire.Propose] | None = None  # a proposal the lease holds back
        self._hold_at: float | None = None
        self._early: list[wire.QuorumMessage] = []  # quorum messages for the view we accepted
        self._granted = False  # the lease: we granted the members of our view (policy.contributes)
        self._index_view: View | None = None
        self._index = 0
        self._by_id_of: Component | None = None
        self._by_id: dict[int, int] = {}

        grace = config.timing.heartbeat_interval if self._external else config.timing.suspect_timeout
        self._settle_at: float | None = now + grace
        self._retry_at: float | None = None
        self._settle_cap: float | None = None
        self._row_flush_at: float | None = None
        self._next_sync_at = now
        self._waiting: set[int] = set()  # external mode: reachable, but this life not heard yet
        self._tick_at = now + config.timing.heartbeat_interval * rng.uniform(0.5, 1.0)
        self._send_heartbeat(now, wire_row=False)

    # ------------------------------------------------------------------ outputs

    def writes_to_persist(self) -> list[StorageWrite]:
        """Storage writes to make durable, in order, before sending anything else."""
        out, self._writes = self._writes, []
        return out

    def datagrams_to_send(self) -> list[tuple[bytes, Any]]:
        """``(data, address)`` pairs; the address is a peer's or :data:`GROUP`.

        Never longer than ``config.max_datagram``: a message that would be (a view too
        large for the transport) is dropped here, counted as ``tx_dropped_oversize`` and
        logged, so a driver never has to handle it.
        """
        out = self._datagrams
        if not out:
            return []
        self._datagrams = []
        limit = self.config.max_datagram
        if any(len(data) > limit for data, _ in out):
            kept = [(data, addr) for data, addr in out if len(data) <= limit]
            self._count("tx_dropped_oversize", len(out) - len(kept))
            log.warning(
                "node %d: %d datagram(s) longer than max_datagram=%d dropped: the cluster is too large "
                "for this transport (docs/wire.md)",
                self.node_id,
                len(out) - len(kept),
                limit,
            )
            out = kept
        return out

    def next_event(self) -> Event | None:
        return self._events.popleft() if self._events else None

    def primaries_formed(self) -> list[tuple[int, View]]:
        """``(number, view)`` of every primary the policy formed here since the last call.

        Formed is not announced: with the lease, a primary is announced
        (:class:`PrimaryFormed`) only once confirmed, and a view change can come first.
        Checkers need every formed one (each must succeed the one before).
        """
        out, self._formed_log = self._formed_log, []
        return out

    def get_timer(self) -> float | None:
        """The absolute time at which :meth:`handle_timer` must be called next."""
        if self._stopped:
            return None
        deadline = self._tick_at
        suspect_at = None if self._external else self._detector.deadline()
        for other in (
            suspect_at,
            self._row_flush_at,
            self._settle_at,
            self._retry_at,
            self._lease_at,
            self._hold_at,
            self.policy.get_timer(),
        ):
            if other is not None and other < deadline:
                deadline = other
        return deadline

    def all_counters(self) -> dict[str, int]:
        """:attr:`counters` and the quorum policy's, prefixed ``quorum_``."""
        out = dict(self.counters)
        for key, value in self.policy.counters.items():
            out["quorum_" + key] = value
        return out

    @property
    def is_primary(self) -> bool:
        return self.primary_number is not None

    @property
    def stopped(self) -> bool:
        return self._stopped

    def trusted(self) -> list[int]:
        """Node ids this node currently hears (ascending)."""
        return sorted(n for n, p in self._peers.items() if p.trusted)

    def peer_address(self, node_id: int) -> Any:
        peer = self._peers.get(node_id)
        return peer.addr if peer else None

    def peer_states(self) -> list[PeerState]:
        """What this node knows of every other node it has heard of, by ascending id."""
        return [
            PeerState(
                node_id=node_id,
                incarnation=peer.incarnation,
                address=peer.addr,
                trusted=peer.trusted,
                last_heard=peer.heard_at,
                view_id=peer.view_id,
            )
            for node_id, peer in sorted(self._peers.items())
        ]

    # ------------------------------------------------------------------ inputs

    def receive_datagram(self, data: bytes, addr: Any, now: float) -> None:
        """Feed one datagram.  Anything that is not a valid message is dropped and counted."""
        if self._stopped:
            return
        message = wire.decode(data)
        if type(message) is wire.Dropped:
            self._count("rx_dropped_" + message.reason)
            return
        assert not isinstance(message, wire.Dropped)
        self.counters["rx"] += 1
        header = message.header
        sender = header.sender
        if sender == self.node_id:
            self._count("rx_own" if header.incarnation == self.incarnation else "rx_dropped_same_id")
            return
        peer = self._peers.get(sender)
        restarted = introduce = False
        if peer is None:
            peer = self._peers[sender] = _Peer(-1, addr)
            peer.set_incarnation(sender, header.incarnation)
            introduce = True
        elif header.incarnation != peer.incarnation:
            if header.incarnation < peer.incarnation:
                self._count("rx_dropped_stale_incarnation")
                return
            restarted = self._new_incarnation(sender, peer, header.incarnation)
            introduce = True
        if header.incarnation <= peer.left:
            self._count("rx_dropped_departed")
            return
        peer.addr = addr
        peer.heard_at = now
        self._detector.heard(sender, now)
        if not peer.trusted and self._may_trust(peer):
            peer.trusted = True
            self._waiting.discard(sender)
            self._row_changed(now)
        elif restarted:
            self._row_changed(now)
        if introduce and self._external and not peer.trusted:
            # A life we had not heard before and our row does not announce us to it: with
            # no periodic multicast it may never hear of ours unless we tell it.
            self._send_heartbeat(now, wire_row=self._publishing, to=addr)
        kind = type(message)
        if kind is wire.Heartbeat:
            self._on_heartbeat(peer, message, now)  # type: ignore[arg-type]
        elif kind is wire.Propose:
            self._on_propose(peer, message, now)  # type: ignore[arg-type]
        elif kind is wire.Ack:
            self._on_ack(peer, message, now)  # type: ignore[arg-type]
        elif kind is wire.Nack:
            self._on_nack(message, now)  # type: ignore[arg-type]
        elif kind is wire.Install:
            self._on_install(peer, message, now)  # type: ignore[arg-type]
        elif kind is wire.Leave:
            self._on_leave(sender, peer, now)
        elif kind is wire.Pull:
            self._on_pull(peer, message)  # type: ignore[arg-type]
        elif kind is wire.Rows:
            self._on_rows(message.rows, now)  # type: ignore[union-attr]
        elif kind is wire.QuorumMessage:
            self._on_quorum(message, now)  # type: ignore[arg-type]
        elif kind is wire.ClmMessage:
            self._on_clm(message)  # type: ignore[arg-type]

    def handle_timer(self, now: float) -> None:
        """Call at (or after) the time :meth:`get_timer` gave."""
        if self._stopped:
            return
        if now >= self._tick_at:
            self._tick(now)
        if not self._external:
            deadline = self._detector.deadline()
            if deadline is not None and now >= deadline:
                self._suspect(self._detector.expired(now), now)
        if self._row_flush_at is not None and now >= self._row_flush_at:
            self._flush_row(now)
        if self._settle_at is not None and now >= self._settle_at and not self._postpone_settle(now):
            self._settle_at = None
            self._settle_cap = None
            self._recompute(now)
        if self._retry_at is not None and now >= self._retry_at:
            self._retry(now)
        if self._lease_at is not None and now >= self._lease_at:
            self._check_lease(now)
        if self._hold_at is not None and now >= self._hold_at:
            self._hold_at = None
            deferred, self._deferred = self._deferred, None
            if deferred is not None:
                self._on_propose(deferred[0], deferred[1], now)
        policy_at = self.policy.get_timer()
        if policy_at is not None and now >= policy_at:
            self.policy.handle_timer(now)
            self._drain_policy(now)

    def set_reachable(self, node_id: int, reachable: bool, now: float) -> None:
        """External connectivity: ``node_id`` is (un)reachable from here.

        In external mode this is the only source of trust (a node must also have been
        heard once, to learn its incarnation).  In heartbeat mode "unreachable" suspects
        the node at once and "reachable" hands the decision back to the detector.
        """
        if self._stopped or node_id == self.node_id:
            return
        peer = self._peers.get(node_id)
        if peer is None:
            if not reachable:
                return
            peer = self._peers[node_id] = _Peer(-1, None)
        peer.reachable = reachable if (reachable is False or self._external) else None
        trust = self._may_trust(peer) and (self._external or peer.trusted)
        if trust != peer.trusted:
            peer.trusted = trust
            self._row_changed(now)
        if self._external:
            # Reachable, but we have not heard its current life (new, restarted, or it
            # rejoined while cut off): nobody would multicast otherwise, so we introduce
            # ourselves at every tick until we hear it (see _tick).
            if reachable and not peer.trusted:
                self._waiting.add(node_id)
            else:
                self._waiting.discard(node_id)

    def remove_nodes(
        self, node_ids: list[int], now: float, *, wall_clock_ns: int, reason: str
    ) -> list[tuple[int, int]]:
        """Operator recovery: declare ``node_ids`` permanently gone (docs/voting.md says when that is safe).

        The quorum policy records it (durably) and it reaches the other members with the
        next state exchange; this node asks for a new view at once so that exchange
        happens.  The action is logged and appended to the ``audit`` record.  Drain the
        outputs afterwards.  Raises :class:`UsageError` if the policy has no such notion
        or a node id is this node's own.
        """
        if self._stopped:
            raise UsageError("this core left; run the removal on a running survivor")
        bad = [n for n in node_ids if not isinstance(n, int) or isinstance(n, bool) or not 0 <= n <= MAX_NODE_ID]
        if bad:
            raise UsageError(f"not a node id: {bad[0]!r} (node ids are integers in 0..{MAX_NODE_ID})")
        ids = sorted(set(node_ids))
        if not ids:
            raise UsageError("name at least one node to remove")
        known = set(self._quorum_config.votes or {}) | set(self._peers)
        unknown = [n for n in ids if n not in known and n != self.node_id]
        if unknown:
            raise UsageError(f"node(s) {unknown} are not in this cluster: not in quorum.votes and never heard of")
        recorded = self.policy.remove_nodes(ids)
        entry = json.dumps(
            {
                "action": "remove_nodes",
                "by": self.node_id,
                "nodes": ids,
                "recorded": recorded,
                "reason": reason,
                "wall_ns": wall_clock_ns,
            },
            sort_keys=True,
        ).encode()
        self._audit = [*self._audit[-(_AUDIT_KEEP - 1) :], entry]
        self._writes.append(StorageWrite("audit", b"\n".join(self._audit)))
        log.warning("node %d: AUDIT operator declared nodes %s permanently removed (%s)", self.node_id, ids, reason)
        self._count("operator_removals")
        self._drain_policy(now)
        # Our view must be agreed again for the declaration to reach the others.
        self._drop_primary("operator")
        self._view_spent = True
        if self._settle_at is None:
            self._settle_at = now
        return recorded

    def audit_log(self) -> list[dict[str, Any]]:
        """The operator actions recorded on this node's storage, oldest first."""
        return [json.loads(line) for line in self._audit]

    def send_clm(self, payload: bytes, to: Iterable[int] | None, now: float) -> None:
        """Send ``payload`` to members of the installed view: a CLM message, opaque to the core.

        ``to`` names the members (node ids) to send it to; ``None`` means every other
        member.  Ids that are not members of the installed view, and this node's own, are
        skipped.  Each receiver that has the same view installed gets a
        :class:`ClmMessage` event.  Best effort: a datagram may be lost, duplicated or
        reordered, and nothing is retransmitted.  Drain the outputs afterwards.

        Raises :class:`UsageError` once the core has stopped, while no view is installed,
        or for a payload longer than ``wire.MAX_STATE`` or too long for
        ``config.max_datagram``.
        """
        if self._stopped:
            raise UsageError("this core left; send CLM messages from a running core")
        view = self.view
        if view is None:
            raise UsageError("no view is installed yet; send CLM messages after the first ViewInstalled event")
        limit = min(wire.MAX_STATE, self.config.max_datagram - wire.CLM_OVERHEAD)
        if len(payload) > limit:
            raise UsageError(
                f"a CLM payload of {len(payload)} bytes does not fit one message (at most {limit} bytes here); split it"
            )
        data = wire.encode_clm(self.node_id, self.incarnation, view.view_id, bytes(payload))
        targets = view.node_ids if to is None else sorted(set(to))
        for node_id in targets:
            if node_id != self.node_id and node_id in view:
                self._datagrams.append((data, self._peers[node_id].addr))

    def leave(self, now: float) -> None:
        """Leave the cluster gracefully: tell the group, then stop.  Drain outputs once more."""
        if self._stopped:
            raise UsageError("this core already left; create a new one (a new incarnation) to rejoin")
        leave = wire.encode_leave(self.node_id, self.incarnation)
        self._datagrams.append((leave, GROUP))
        self._datagrams.append((leave, GROUP))  # a second copy: cheap insurance against one loss
        self._stopped = True
        self._events.append(Stopped())

    # ------------------------------------------------------------------ liveness and rows

    def _may_trust(self, peer: _Peer) -> bool:
        if peer.incarnation < 0 or peer.incarnation <= peer.left or peer.addr is None:
            return False
        if self._external:
            return peer.reachable is True
        return peer.reachable is not False

    def _new_incarnation(self, node_id: int, peer: _Peer, incarnation: int) -> bool:
        """``node_id`` restarted; say whether our row must change (it trusted the old life)."""
        peer.set_incarnation(node_id, incarnation)
        peer.view_id = None
        peer.mismatch = 0
        self._detector.forget(node_id)
        if self._lease is not None:
            self._lease.release(node_id)  # its old life is over, and with it any primacy
        # The old life's row says nothing about the new one: until the new row comes,
        # the node gets the benefit of the doubt (see pyclm.connectivity).
        self._matrix.forget(node_id)
        was_trusted = peer.trusted
        peer.trusted = False
        return was_trusted

    def _row_changed(self, now: float) -> None:
        """Whom we trust changed: publish a new row soon (changes within ``settle_delay`` coalesce)."""
        if self._row_flush_at is None:
            self._row_flush_at = now + self._timing.settle_delay

    def _flush_row(self, now: float, *, publish: bool = False) -> None:
        self._row_flush_at = None
        members = [self.me]
        members.extend(p.member for p in self._peers.values() if p.trusted)
        entries = tuple(sorted(members, key=_node_id))
        if not (publish or (self._publishing and entries != self._row.entries)):
            if not self._publishing:
                self._row = wire.Row(self.node_id, self.incarnation, 0, entries)
            return
        self._publishing = True
        self._row_version += 1
        self._row = wire.Row(self.node_id, self.incarnation, self._row_version, entries)
        self._matrix.offer(self._row)
        self._row_pending = True
        self._matrix_changed(now)
        self._send_heartbeat(now, wire_row=True)

    def _suspect(self, expired: list[int], now: float) -> None:
        suspects = [n for n in expired if (peer := self._peers.get(n)) is not None and peer.trusted]
        for node_id in suspects:
            self._peers[node_id].trusted = False
        if suspects:
            self._count("suspected", len(suspects))
            self._row_changed(now)

    def _matrix_changed(self, now: float) -> None:
        if self._settle_at is None:
            self._settle_at = now + self._timing.settle_delay
            self._settle_cap = now + self._timing.suspect_timeout

    def _postpone_settle(self, now: float) -> bool:
        """Wait for suspicions that are clearly coming before computing components.

        After a partition we stop hearing each node of the other side at its own
        heartbeat phase, so suspicions trickle in over one heartbeat interval.  While
        some node has been silent for two intervals, its suspicion is likely on its way:
        computing now would only install a short-lived intermediate view.  Bounded by
        ``suspect_timeout`` after the first change, so loss cannot stall us.
        """
        cap = self._settle_cap
        if self._external or cap is None or now >= cap:
            return False
        if self._detector.longest_silence(now) <= 2 * self._timing.heartbeat_interval:
            return False
        deadline = self._detector.deadline()
        self._settle_at = min(deadline, cap) if deadline is not None and deadline > now else cap
        return True

    def _tick(self, now: float) -> None:
        interval = self._timing.heartbeat_interval
        self._tick_at = max(self._tick_at + interval, now + interval / 2)
        if self._lease is not None:
            self._lease.forget_grants_before(now)
        if not self._external or self._leased_view():
            # (External mode: the members of a view that may be primary probe and echo
            # for the lease, which needs every member to hear every other.)
            self._send_heartbeat(now, wire_row=self._row_pending)
        else:
            # Nobody needs our heartbeats to judge liveness: gossip the digests to one
            # neighbour, so the cost stays linear in the cluster size.
            entries = self._row.entries  # ourselves and whom we trust, ascending
            if len(entries) > 1:
                i = self._rng.randrange(len(entries) - 1)
                if entries[i].node_id >= self.node_id:
                    i += 1  # skip ourselves
                target = self._peers[entries[i].node_id].addr
                self._send_heartbeat(now, wire_row=self._row_pending, to=target)
            if self._waiting:
                self._send_heartbeat(now, wire_row=self._publishing)  # introductions may have been lost
            if self._unsettled():
                # Nobody multicasts periodically here: tell our coordinator directly.
                coordinator = self._peers.get(self._component()[0].node_id)
                if coordinator is not None and coordinator.trusted:
                    self._send_heartbeat(now, wire_row=False, to=coordinator.addr)
        self._row_pending = False

    def _unsettled(self) -> bool:
        """We need a new view from our coordinator and nothing we wait for will give it."""
        if self._settle_at is not None or self.view is None:
            return False
        component = self._component()
        if component[0].node_id == self.node_id:
            return False
        pending = self._pending
        if pending is not None and pending.members == component:
            return False  # our acks are being retried; the coordinator answers them
        return component != self.view.members or self._view_spent or pending is not None

    def _leased_view(self) -> bool:
        view = self.view
        return self._lease is not None and view is not None and len(view.members) > 1 and self.policy.contributes()

    def _send_heartbeat(self, now: float, *, wire_row: bool, to: Any = GROUP) -> None:
        row: wire.Row | None = self._row if wire_row else None
        view = self.view
        lease = None
        if self._lease is not None:
            echoes: tuple[int, ...] = ()
            if view is not None:
                if self._accepted == view.view_id:
                    echoes = self._lease.echoes(view.node_ids, self._in_component().__contains__)  # grants
                else:
                    echoes = (0,) * len(view.members)  # we accepted a newer view: we vouch for nobody
            lease = (self._lease.next_probe(now), echoes)
        overhead = wire.HEARTBEAT_OVERHEAD + (4 + 2 * len(lease[1]) if lease else 0)
        if row is not None and overhead + row.encoded_size > self.config.max_datagram:
            self._count("tx_row_too_large")
            row = None
        data = wire.encode_heartbeat(
            self.node_id,
            self.incarnation,
            view.view_id if view else None,
            self._row.version,
            self._knowledge,
            row,
            self._unsettled(),
            lease,
        )
        self._datagrams.append((data, to))

    def _on_heartbeat(self, peer: _Peer, hb: wire.Heartbeat, now: float) -> None:
        peer.view_id = hb.view_id
        sender = hb.header.sender
        view = self.view
        if self._lease is not None and view is not None:
            self._lease_heartbeat(view, sender, hb, now)
        if hb.unsettled and self._proposal is None and self._settle_at is None:
            # A member of our component needs a new view although we saw no change (it
            # moved on, or stopped acting as primary in our view): propose again.
            component = self._component()
            if component[0].node_id == self.node_id and _holds(component, sender, hb.header.incarnation):
                self._count("reproposed_unsettled")
                self._propose(component, now)
        if hb.row is not None:
            if self._matrix.offer(hb.row):
                self._matrix_changed(now)
        elif hb.row_version:  # version 0: the sender has published no row yet
            held = self._matrix.get(sender)
            if held is None or held.key < (hb.header.incarnation, hb.row_version):
                self._pull(peer, want_all=False, origins=[sender])
        if hb.knowledge != self._knowledge and peer.trusted and self._settle_at is None:
            peer.mismatch += 1
            if peer.mismatch >= _MISMATCH_LIMIT and now >= self._next_sync_at:
                # Anti-entropy, at most once per suspect_timeout whoever disagrees.
                peer.mismatch = 0
                self._next_sync_at = now + self._timing.suspect_timeout
                self._pull(peer, want_all=True, origins=sorted(self._matrix.region(self.node_id)))
        else:
            peer.mismatch = 0

    def _pull(self, peer: _Peer, *, want_all: bool, origins: list[int]) -> None:
        versions = []
        for origin in origins:
            row = self._matrix.get(origin)
            versions.append((origin, row.incarnation, row.version) if row else (origin, 0, 0))
        limit = (self.config.max_datagram - wire.HEADER_SIZE - 3) // 16
        data = wire.encode_pull(self.node_id, self.incarnation, want_all, tuple(versions[:limit]))
        self._datagrams.append((data, peer.addr))
        self._count("tx_pull")

    def _on_pull(self, peer: _Peer, pull: wire.Pull) -> None:
        theirs = {origin: (inc, version) for origin, inc, version in pull.versions}
        origins = sorted(self._matrix.region(self.node_id)) if pull.want_all else sorted(theirs)
        rows = []
        for origin in origins:
            row = self._matrix.get(origin)
            if origin == self.node_id and not self._publishing:
                continue
            if row is not None and row.key > theirs.get(origin, (-1, -1)):
                rows.append(row)
        self._send_rows(rows, peer.addr)

    def _send_rows(self, rows: list[wire.Row], addr: Any) -> None:
        budget = self.config.max_datagram - wire.HEADER_SIZE - 2
        batch: list[wire.Row] = []
        used = 0
        for row in rows:
            if row.encoded_size > budget:
                self._count("tx_row_too_large")
                continue
            if used + row.encoded_size > budget:
                self._datagrams.append((wire.encode_rows(self.node_id, self.incarnation, tuple(batch)), addr))
                batch, used = [], 0
            batch.append(row)
            used += row.encoded_size
        if batch:
            self._datagrams.append((wire.encode_rows(self.node_id, self.incarnation, tuple(batch)), addr))

    def _on_rows(self, rows: tuple[wire.Row, ...], now: float) -> None:
        changed = False
        for row in rows:
            if row.origin == self.node_id:
                continue  # nobody knows our row better than we do
            changed |= self._matrix.offer(row)
        if changed:
            self._matrix_changed(now)

    def _on_leave(self, sender: int, peer: _Peer, now: float) -> None:
        peer.left = max(peer.left, peer.incarnation)
        self._detector.forget(sender)
        if self._lease is not None:
            self._lease.release(sender)  # a node that left acts as primary no more
        # A tombstone row: the departed life hears nobody, whatever stale rows say.
        self._matrix.offer(wire.Row(sender, peer.incarnation, _TOMBSTONE_VERSION, ()))
        self._matrix_changed(now)
        if peer.trusted:
            peer.trusted = False
            self._row_changed(now)

    # ------------------------------------------------------------------ view agreement

    def _component(self) -> Component:
        component = self._matrix.component_of(self.node_id)
        assert component is not None  # our own row is always in the matrix
        return component

    def _recompute(self, now: float) -> None:
        if not self._publishing:
            # The start-up grace is over: publish our row, and compute only once the
            # others' rows (published at about the same time) have had a chance to come.
            self._flush_row(now, publish=True)
            return
        if self._row_flush_at is not None:
            self._flush_row(now)
        self._knowledge = wire.row_digest(
            row for origin in self._matrix.region(self.node_id) if (row := self._matrix.get(origin)) is not None
        )
        component = self._component()
        view = self.view
        if view is not None and view.members != component:
            # Our view is broken: stop acting as primary now, not when the next view is in.
            # The view is spent even if the component comes back: only a new view re-forms.
            self._drop_primary("view_broken")
        if component[0].node_id != self.node_id:
            self._proposal = None  # somebody else coordinates this component
            return
        if self._proposal is not None and self._proposal.members == component:
            return  # already in flight (perhaps re-proposed for a member that needs it)
        if view is not None and view.members == component and not self._view_spent:
            self._proposal = None
            return
        self._propose(component, now)

    def _propose(self, component: Component, now: float) -> None:
        held = self._held_until(component, now)
        if held is not None:
            # The lease: some node we may have vouched for is not in this component and
            # may still act as primary until then.  Compute again at that time.
            self._proposal = None
            self._settle_at = held if self._settle_at is None else min(self._settle_at, held)
            self._count("proposal_held_by_lease")
            return
        epoch = max(self._max_epoch_seen, self._accepted.epoch if self._accepted else 0) + 1
        view = View(ViewId(epoch, self.node_id), component)
        self._drop_primary("new_view")
        self._accept(view, now)
        self._count("proposed")
        if len(component) == 1:
            self._proposal = None
            self._install(view, _install_entries(component, (self._report(view),)), now)
            return
        self._proposal = view
        self._acks = {self.node_id: self._report(view)}
        data = wire.encode_propose(self.node_id, self.incarnation, view.view_id, component)
        for member in component[1:]:
            self._datagrams.append((data, self._peers[member.node_id].addr))
        self._retry_at = now + self._timing.heartbeat_interval

    def _held_until(self, members: tuple[Member, ...], now: float) -> float | None:
        """When the lease lets us help a view of ``members`` (None: now)."""
        if self._lease is None:
            return None
        until = self._lease.hold_until(lambda n: n == self.node_id or find(members, n) is not None)
        return until if until > now else None

    def _accept(self, view: View, now: float) -> None:
        view_id = view.view_id
        self._accepted = view_id
        self._accepted_members = view.members
        self._accepted_at = now
        self._deferred = None
        self._early = []
        self._pending = None  # an older accepted proposal may never be installed now
        self._max_epoch_seen = max(self._max_epoch_seen, view_id.epoch)
        self._persist()

    def _persist(self) -> None:
        accepted = self._accepted or ViewId(0, 0)
        recent = {m.node_id for m in self._accepted_members} if self._accepted_members else set(self._carried_recent)
        if self.view is not None:
            recent.update(self.view.node_ids)
        recent.discard(self.node_id)
        record = MembershipRecord(self.incarnation, accepted.epoch, accepted.coordinator, tuple(sorted(recent)))
        self._writes.append(StorageWrite("membership", record.encode()))

    def _on_propose(self, peer: _Peer, propose: wire.Propose, now: float) -> None:
        if self._row_flush_at is not None or not self._publishing:
            # Judge the proposal with our freshest row.  A proposal that names us also
            # ends the start-up grace: the others have heard us, so say whom we hear.
            self._flush_row(now, publish=not self._publishing)
        view_id = propose.view_id
        self._max_epoch_seen = max(self._max_epoch_seen, view_id.epoch)
        if view_id == self._accepted:
            if self._pending is not None and self._pending.view_id == view_id:
                self._send_ack(peer.addr, self._pending)  # our ack was lost
            return
        if self._accepted is not None and view_id.epoch <= self._accepted.epoch:
            self._count("proposal_stale")
            data = wire.encode_nack(self.node_id, self.incarnation, view_id, self._accepted.epoch)
            self._datagrams.append((data, peer.addr))
            return
        if propose.members != self._component():
            self._count("proposal_mismatch")
            return  # the coordinator retries; our matrices converge meanwhile
        held = self._held_until(propose.members, now)
        if held is not None:
            self._count("ack_held_by_lease")
            self._deferred = (peer, propose)
            self._hold_at = held
            return
        self._drop_primary("new_view")
        pending = View(view_id, propose.members)
        self._accept(pending, now)
        self._pending = pending
        self._proposal = None
        self._send_ack(peer.addr, pending)
        self._retry_at = now + self._timing.heartbeat_interval

    def _ack_state(self, view: View) -> bytes:
        return self._policy_bytes(self.policy.ack_state(view), "ack state")

    def _report(self, view: View) -> MemberReport:
        """What this node reports with its ack of ``view`` (the coordinator: for itself, in the INSTALL)."""
        return MemberReport(self._since, self._last, self._ack_state(view))

    def _policy_bytes(self, data: bytes, what: str) -> bytes:
        """``data`` from the quorum policy, if it fits a message; too long is a policy bug."""
        if len(data) > wire.MAX_STATE:
            raise UsageError(
                f"quorum policy {self.policy.name!r} gave {len(data)} bytes of {what}; "
                f"the wire carries at most {wire.MAX_STATE}"
            )
        return data

    def _send_ack(self, addr: Any, view: View) -> None:
        state = self._ack_state(view)
        data = wire.encode_ack(self.node_id, self.incarnation, view.view_id, self._since, self._last, state)
        self._datagrams.append((data, addr))

    def _on_ack(self, peer: _Peer, ack: wire.Ack, now: float) -> None:
        sender = ack.header.sender
        proposal = self._proposal
        if proposal is not None and ack.view_id == proposal.view_id:
            if not _holds(proposal.members, sender, ack.header.incarnation):
                return
            self._acks[sender] = MemberReport(ack.since, ack.last, ack.state)
            if len(self._acks) == len(proposal.members):
                reports = [self._acks[m.node_id] for m in proposal.members]
                entries = _install_entries(proposal.members, reports)
                self._proposal = None
                install = wire.encode_install(self.node_id, self.incarnation, proposal.view_id, entries)
                for member in proposal.members[1:]:
                    self._datagrams.append((install, self._peers[member.node_id].addr))
                self._install(proposal, entries, now)
        elif self.view is not None and ack.view_id == self.view.view_id:
            # The member missed our install message: send it again.
            install = wire.encode_install(self.node_id, self.incarnation, ack.view_id, self._install_entries)
            self._datagrams.append((install, peer.addr))
        elif (
            ack.view_id.coordinator == self.node_id
            and (self.view is None or ack.view_id.epoch > self.view.view_id.epoch)
            and proposal is None
            and self._settle_at is None
        ):
            # A member still waits on a proposal of ours that we abandoned: it would wait
            # forever, so propose its component (ours) again under a new epoch.
            component = self._component()
            if component[0].node_id == self.node_id and _holds(component, sender, ack.header.incarnation):
                self._count("reproposed_stale_ack")
                self._propose(component, now)

    def _on_nack(self, nack: wire.Nack, now: float) -> None:
        self._max_epoch_seen = max(self._max_epoch_seen, nack.max_epoch)
        proposal = self._proposal
        if proposal is not None and nack.view_id == proposal.view_id:
            self._propose(proposal.members, now)  # again, with an epoch above theirs

    def _on_install(self, peer: _Peer, install: wire.Install, now: float) -> None:
        pending = self._pending
        if pending is None or install.view_id != pending.view_id:
            return
        if tuple(e.node_id for e in install.entries) != pending.node_ids:
            self._count("rx_dropped_bad_install")
            return
        self._install(pending, install.entries, now)
        if self._lease is not None:
            self._lease_spoke(install.header.sender, None, now)  # it installed first

    def _install(self, view: View, entries: tuple[wire.InstallEntry, ...], now: float) -> None:
        """Install ``view``; ``entries`` are its INSTALL's, in member order."""
        previous = self.view
        self.view = view
        self._install_entries = entries
        self._pending = None
        if self._proposal is None:
            self._retry_at = None
        self.primary_number = None
        self._formed = None
        self._lease_at = None
        self._view_spent = False
        self._granted = False
        old = set(previous.members) if previous else set()
        new = set(view.members)
        joined = tuple(sorted(new - old)) if previous else ()
        left = tuple(sorted(old - new))
        departed = tuple(
            m for m in left if (peer := self._peers.get(m.node_id)) is not None and peer.left >= m.incarnation
        )
        self._events.append(ViewInstalled(view=view, joined=joined, left=left, departed=departed))
        self._count("installed")
        if self._lease is not None:
            self._lease.view_installed(view.view_id, self._accepted_at)
        self.policy.view_installed(view, {e.node_id: e.state for e in entries}, now)
        self._drain_policy(now)
        early, self._early = self._early, []
        for message in early:
            if message.view_id == view.view_id:
                self._on_quorum(message, now)
        if self._leased_view():
            self._send_heartbeat(now, wire_row=False)  # confirm the others' leases at once
        # A view change may have happened while rows were still moving: look again.
        if self._component() != view.members:
            self._matrix_changed(now)

    def _retry(self, now: float) -> None:
        self._retry_at = None
        interval = self._timing.heartbeat_interval
        if self._proposal is not None:
            proposal = self._proposal
            data = wire.encode_propose(self.node_id, self.incarnation, proposal.view_id, proposal.members)
            for member in proposal.members[1:]:
                if member.node_id not in self._acks:
                    self._datagrams.append((data, self._peers[member.node_id].addr))
            self._retry_at = now + interval
        if self._pending is not None:
            peer = self._peers.get(self._pending.view_id.coordinator)
            if peer is not None and peer.trusted:
                self._send_ack(peer.addr, self._pending)
            self._retry_at = now + interval

    # ------------------------------------------------------------------ quorum policy

    def _on_quorum(self, message: wire.QuorumMessage, now: float) -> None:
        if self.view is None or message.view_id != self.view.view_id:
            pending = self._pending
            early_ok = pending is not None and len(self._early) < 4 * len(pending.members)
            if early_ok and pending is not None and message.view_id == pending.view_id:
                self._early.append(message)  # sent by a member that installed before us
            else:
                self._count("rx_quorum_other_view")
            return
        self.policy.receive(message.header.sender, message.view_id, message.payload, now)
        self._drain_policy(now)
        if self._lease is not None:
            self._lease_spoke(message.header.sender, None, now)

    def _on_clm(self, message: wire.ClmMessage) -> None:
        view = self.view
        if view is None or message.view_id != view.view_id:
            self._count("rx_clm_other_view")
            return
        header = message.header
        if not _holds(view.members, header.sender, header.incarnation):
            self._count("rx_clm_not_member")
            return
        self._events.append(ClmMessage(sender=header.sender, view_id=view.view_id, payload=message.payload))

    def _drain_policy(self, now: float) -> None:
        for action in self.policy.pop_actions():
            if isinstance(action, WriteState):
                self._writes.append(StorageWrite("quorum", action.data))
            elif isinstance(action, SendQuorum):
                view = self.view
                if view is None:
                    continue
                payload = self._policy_bytes(action.payload, "message payload")
                data = wire.encode_quorum(self.node_id, self.incarnation, view.view_id, payload)
                targets = action.to if action.to is not None else view.node_ids
                for node_id in targets:
                    if node_id != self.node_id and node_id in view:
                        self._datagrams.append((data, self._peers[node_id].addr))
            elif isinstance(action, FormPrimary) and self.view is not None:
                self._formed_log.append((action.number, self.view))
                if not self._view_spent:
                    self._formed = (self.view, action.number)
                    self._announce(now)
            elif isinstance(action, LosePrimary) and self.view is not None:
                self._formed = None
                self._drop_primary("policy")
        if self._lease is not None and not self._granted and self.view is not None and self.policy.contributes():
            self._granted = True
            self._lease.granted_view(self.view.node_ids, now)

    # ------------------------------------------------------------------ announcing, and the lease

    def _announce(self, now: float) -> None:
        """Act as primary of the formed view, once the lease (if any) confirms it."""
        formed = self._formed
        if formed is None or self.primary_number is not None:
            return
        view, number = formed
        if self._lease is not None:
            if not self.policy.confirms(view, self._lease.fresh(self.node_id, view.node_ids, now)):
                return  # not confirmed yet (cheap check): the next message in the view tries again
            expiry = self._lease_expiry(view)
            if expiry is None or expiry <= now:
                return  # not confirmed yet: the next echo tries again
            self._lease_at = expiry
        # Every member computes the same numbers from the same INSTALL (the same view
        # announced again after a lease expiry gets the same ones: the entries stay).
        initial = initial_numbers([e.joined for e in self._install_entries], number)
        self.primary_number = number
        self._since = initial[self._index_in(view)]
        self._last = number
        self._events.append(PrimaryFormed(view=view, number=number, initial=initial))

    def _drop_primary(self, reason: str) -> None:
        """Stop acting as primary in the current view (if we do); the view is spent."""
        view = self.view
        if self._formed is not None:
            self._formed = None
            self._view_spent = True
        self._lease_at = None
        if self.primary_number is not None and view is not None:
            self.primary_number = None
            self._view_spent = True
            self._count("primary_lost_" + reason)
            self._events.append(PrimaryLost(view_id=view.view_id))

    def _lease_expiry(self, view: View) -> float | None:
        assert self._lease is not None
        policy = self.policy
        return self._lease.expiry(self.node_id, view.node_ids, lambda ids: policy.confirms(view, ids))

    def _check_lease(self, now: float) -> None:
        self._lease_at = None
        view = self.view
        if view is None or self.primary_number is None:
            return
        expiry = self._lease_expiry(view)
        if expiry is not None and expiry > now:
            self._lease_at = expiry
            return
        # Not confirmed in time: stop acting as primary.  The view is not spent: fresh
        # confirmations from enough members still in it make it primary again (safe: a
        # newer primary needs one of them to leave the view and wait out its grant).
        self.primary_number = None
        self._count("primary_lost_lease_expired")
        self._events.append(PrimaryLost(view_id=view.view_id))

    def _lease_spoke(self, member: int, echo: int | None, now: float) -> None:
        """``member`` sent something in our view (echoing our probe ``echo``, if a heartbeat)."""
        lease = self._lease
        assert lease is not None
        first = lease.note_message(member) if echo is None else lease.note_echo(member, echo)
        # While we wait for confirmations, try again on a member's first word in the view,
        # else a few times per heartbeat interval (every try is linear in the view).
        waiting = self._formed is not None and self.primary_number is None
        if waiting and (first or now >= self._announce_retry_at):
            self._announce_retry_at = now + self._timing.heartbeat_interval / 8
            self._announce(now)

    def _lease_heartbeat(self, view: View, sender: int, hb: wire.Heartbeat, now: float) -> None:
        """A heartbeat: note its probe (to echo if we vouch for the sender) and its echo of ours.

        Probes are noted whatever view the member is in (it may not have installed ours
        yet): an echo only says we were still in our view after it sent the probe.
        """
        lease = self._lease
        assert lease is not None
        lease.note_probe(sender, hb.probe, now)
        if hb.view_id == view.view_id:
            echo = 0
            if len(hb.echoes) == len(view.members):
                echo = hb.echoes[self._index_in(view)]
            self._lease_spoke(sender, echo, now)

    def _index_in(self, view: View) -> int:
        if self._index_view is not view:
            self._index_view = view
            self._index = view.node_ids.index(self.node_id)
        return self._index

    def _in_component(self) -> dict[int, int]:
        """Our component as node id -> incarnation (cached while the component is the same object)."""
        component = self._component()
        if component is not self._by_id_of:
            self._by_id_of = component
            self._by_id = {m.node_id: m.incarnation for m in component}
        return self._by_id

    def _count(self, name: str, n: int = 1) -> None:
        self.counters[name] += n
