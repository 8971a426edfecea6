"""The cluster membership one node reports, derived from its core's events.

Theory of operation
-------------------
The membership is the primary component this node is in; the view number is the
primary number (``PrimaryFormed.number``), which only grows along the chain of
primaries.  Every ``PrimaryFormed`` that brings a new number, or brings the local node
back, is one :class:`MembershipChange`, computed against the membership this node last
reported (its *base*):

- JOINED: a member whose agreed ``initial`` number is this primary's number (it joined
  the membership here) and who had no such entry in the base.  Every member of two
  consecutive primaries computes the same set, because ``initial`` is agreed.  A member
  that joined at an earlier primary this node missed is NO_CHANGE: it is not a change of
  the cluster at this number.  The one exception is the local node coming back after
  this node reported itself out: it is JOINED, its ``initial`` number may be older.
- RECONFIGURED: the same life as in the base, with a different name or address.
- LEFT / SHUTDOWN: a life of the base that is not in the new primary; SHUTDOWN when
  this node saw its graceful leave (``ViewInstalled.departed``) since the last report.
  A restarted node is two entries: its old life LEFT (or SHUTDOWN), its new one JOINED.

A view change looks like this on a member: ``PrimaryLost`` (the component changed),
``ViewInstalled`` (the new view), ``PrimaryFormed`` (the new number) a moment later.
Between the first and the last the membership is *pending*: nothing is reported, and
the base stays as it was.  If no primary takes the local node back within
``settle_timeout`` (the timer, see :meth:`ClusterMembership.get_timer`), the local node
is reported out: one change with the local node LEFT and no members, the view number
unchanged (no newer primary is known here).  Only the local node is reported gone: this
node cannot tell whether the others are still members.  A graceful leave of the local
node (``Stopped``) reports it SHUTDOWN at once.  While out of the membership nothing is
reported until a primary takes the local node back.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable, Mapping

import attrs

from ..errors import ConfigError
from ..events import ClmMessage, Event, PrimaryFormed, PrimaryLost, Stopped, ViewInstalled
from ..ids import Member, find
from .model import ClusterNode, MembershipChange, MembershipSnapshot

DEFAULT_SETTLE_TIMEOUT = 2.0
"""Seconds the local node stays in the membership without a primary (four suspect
timeouts at the default timing: a view change with its suspicions and lease holds fits)."""


class ClusterMembership:
    """The membership as one node reports it.  Sans-IO: time comes in as ``now``.

    Call contract: feed every core event to :meth:`handle_event` in order, then drain
    :meth:`next_change` until it returns None, and (re-)arm one timer at
    :meth:`get_timer`; when it fires call :meth:`handle_timer` and drain again.

    ``names`` gives node names (default ``"node<id>"``); ``address_of`` gives a node's
    address (None: unknown), asked again at every primary.  ``incarnation`` is the local
    node's (``Membership.incarnation``): with it the local node is known before its
    first view.
    """

    def __init__(
        self,
        node_id: int,
        *,
        names: Mapping[int, str] | None = None,
        address_of: Callable[[int], str | None] | None = None,
        incarnation: int | None = None,
        settle_timeout: float = DEFAULT_SETTLE_TIMEOUT,
    ) -> None:
        if not isinstance(settle_timeout, int | float) or not math.isfinite(settle_timeout) or settle_timeout <= 0:
            raise ConfigError("settle_timeout", f"must be a positive number of seconds, got {settle_timeout!r}")
        self.node_id = node_id
        self._names: Mapping[int, str] = names if names is not None else {}
        self._address_of = address_of
        self._settle_timeout = float(settle_timeout)
        self._view_number = 0
        self._is_member = False
        # What this node last reported, ascending by id; while out, without the local node.
        self._base: tuple[ClusterNode, ...] = ()
        self._local: ClusterNode | None = None
        if incarnation is not None:
            self._local = self._record(Member(node_id, incarnation), initial=0, member=False)
        self._departed: set[Member] = set()  # lives whose LEAVE we saw since the last report
        self._pending_since: float | None = None
        self._stopped = False
        self._changes: deque[MembershipChange] = deque()

    # ------------------------------------------------------------------ reading

    @property
    def view_number(self) -> int:
        """The number of the last primary this node reported (0 before any)."""
        return self._view_number

    @property
    def is_member(self) -> bool:
        """Whether the local node is in the membership as last reported.

        It stays True while a view change is pending (see :attr:`pending`); whether
        this node acts as primary right now is the core's ``is_primary``.
        """
        return self._is_member

    @property
    def pending(self) -> bool:
        """Whether the local node is a member without a primary: a view change is under way."""
        return self._pending_since is not None

    def members(self) -> tuple[ClusterNode, ...]:
        """The members, ascending by id; empty while the local node is not one."""
        return self._base if self._is_member else ()

    def node(self, node_id: int) -> ClusterNode | None:
        """The member ``node_id``; the local node also when it is not a member; else None."""
        if node_id == self.node_id:
            return self._local
        if not self._is_member:
            return None
        return next((n for n in self._base if n.node_id == node_id), None)

    def local_node(self) -> ClusterNode | None:
        """The local node (``member`` says whether it is in); None before its life is known."""
        return self._local

    def snapshot(self) -> MembershipSnapshot:
        """The membership as reported now, as one value (``members`` is empty while out)."""
        return MembershipSnapshot(view_number=self._view_number, members=self.members(), local=self._local)

    def prospective_leave(self, node_id: int) -> MembershipChange | None:
        """The change a graceful leave of the member ``node_id`` would report: what its
        VALIDATE and START steps show (``pyclm.clm.leave``).

        The view number is the current one, ``members`` are the others and the leaving
        node is in ``shutdown`` with ``member`` False (the local node's record too, when
        it is the one leaving).  None while this node is not a member, or when
        ``node_id`` is not one.
        """
        if not self._is_member:
            return None
        leaving = next((n for n in self._base if n.node_id == node_id), None)
        if leaving is None or self._local is None:
            return None
        gone = attrs.evolve(leaving, member=False)
        return MembershipChange(
            view_number=self._view_number,
            members=tuple(n for n in self._base if n.node_id != node_id),
            shutdown=(gone,),
            local=gone if node_id == self.node_id else self._local,
        )

    def next_change(self) -> MembershipChange | None:
        """The oldest change not handed out yet, or None."""
        return self._changes.popleft() if self._changes else None

    def get_timer(self) -> float | None:
        """When to call :meth:`handle_timer` (absolute, in the ``now`` of the events), or None."""
        if self._pending_since is None:
            return None
        return self._pending_since + self._settle_timeout

    # ------------------------------------------------------------------ inputs

    def handle_event(self, event: Event, now: float) -> None:
        """Take one core event, in the order the core produced it; then drain :meth:`next_change`."""
        if isinstance(event, ViewInstalled):
            self._on_view(event, now)
        elif isinstance(event, PrimaryFormed):
            self._on_primary(event)
        elif isinstance(event, PrimaryLost):
            self._lose_primary(now)
        elif isinstance(event, Stopped):
            self._on_stopped()
        elif isinstance(event, ClmMessage):
            pass  # addressed to the layer above (SAF facade); nothing in the membership
        else:
            raise TypeError(f"handle_event takes the core's events (pyclm.events.Event), got {event!r}")

    def handle_timer(self, now: float) -> None:
        """The timer of :meth:`get_timer` fired: if still no primary, report the local node out."""
        deadline = self.get_timer()
        if deadline is None or now < deadline:
            return
        self._report_out(shutdown=False)

    def handle_abort(self) -> None:
        """The local node stopped without leaving (its runtime aborted; the others see a crash).

        If it was a member it is reported LEFT at once, as the others will report it;
        nothing is reported after this.  Drain :meth:`next_change` afterwards.
        """
        if self._stopped:
            return
        self._report_out(shutdown=False)
        self._stopped = True

    # ------------------------------------------------------------------ transitions

    def _on_view(self, event: ViewInstalled, now: float) -> None:
        if self._stopped:
            return
        life = find(event.view.members, self.node_id)
        if self._local is None and life is not None:
            self._local = self._record(life, initial=0, member=False)
        known = {n.life for n in self._base}
        self._departed.update(m for m in event.departed if m in known)
        self._lose_primary(now)  # a new view is not primary until PrimaryFormed says so

    def _lose_primary(self, now: float) -> None:
        if self._is_member and self._pending_since is None and not self._stopped:
            self._pending_since = now

    def _on_primary(self, event: PrimaryFormed) -> None:
        if self._stopped:
            return
        number = event.number
        base = {n.life: n for n in self._base}
        records: list[ClusterNode] = []
        joined: list[ClusterNode] = []
        reconfigured: list[ClusterNode] = []
        for life, initial in zip(event.view.members, event.initial, strict=True):
            record = self._record(life, initial=initial, member=True)
            records.append(record)
            before = base.pop(life, None)
            if initial == number and (before is None or before.initial_view_number != number):
                joined.append(record)
            elif before is None and life.node_id == self.node_id:
                joined.append(record)  # back after we reported ourselves out
            elif before is not None and (before.name, before.address) != (record.name, record.address):
                reconfigured.append(record)
        gone = [attrs.evolve(n, member=False) for n in base.values()]
        shutdown = tuple(n for n in gone if n.life in self._departed)
        left = tuple(n for n in gone if n.life not in self._departed)
        local = next((r for r in records if r.node_id == self.node_id), None)
        if local is None:
            raise ValueError(f"node {self.node_id}: PrimaryFormed for a view without it ({event.view.node_ids})")
        same = number == self._view_number and self._is_member and not (joined or reconfigured or left or shutdown)
        self._pending_since = None
        self._departed.clear()
        self._base = tuple(records)
        self._local = local
        self._is_member = True
        self._view_number = number
        if same:
            return  # the same primary again (its lease was regained): nothing to report
        self._changes.append(
            MembershipChange(
                view_number=number,
                members=self._base,
                joined=tuple(joined),
                reconfigured=tuple(reconfigured),
                left=left,
                shutdown=shutdown,
                local=local,
            )
        )

    def _on_stopped(self) -> None:
        if self._stopped:
            return
        if self._is_member:
            self._report_out(shutdown=True)
        self._stopped = True

    def _report_out(self, *, shutdown: bool) -> None:
        """Report the local node out of the membership (LEFT, or SHUTDOWN for a graceful leave)."""
        self._pending_since = None
        local = self._local
        if not self._is_member or local is None:
            return
        local = attrs.evolve(local, member=False)
        self._local = local
        self._is_member = False
        self._base = tuple(n for n in self._base if n.node_id != self.node_id)
        self._changes.append(
            MembershipChange(
                view_number=self._view_number,
                members=(),
                left=() if shutdown else (local,),
                shutdown=(local,) if shutdown else (),
                local=local,
            )
        )

    def _record(self, life: Member, *, initial: int, member: bool) -> ClusterNode:
        node_id = life.node_id
        return ClusterNode(
            node_id=node_id,
            name=self._names.get(node_id, f"node{node_id}"),
            address=self._address_of(node_id) if self._address_of is not None else None,
            member=member,
            boot_timestamp=life.incarnation,
            initial_view_number=initial,
            incarnation=life.incarnation,
        )
