"""The primary lease: how long a node may go on acting as primary without news.

Dynamic voting orders primaries; it does not stop a partitioned member of an old primary
from still believing it is primary while a newer one forms.  The lease does, with two
promises, one per side:

**Prober** (a member acting as primary).  Every heartbeat carries a *probe* number; the
node remembers when it sent each.  A member that hears the probe while it is in the same
view *echoes* it on its own heartbeats (a vector: for each member of its view, the newest
probe heard from it).  An echo of a probe sent at ``s`` proves that member was still in
the view after ``s``.  So does any message a member sends in the view at all, for the
node's own acknowledgement of that view (probe 0: sent at ``agreed_at``, before the view
could be installed anywhere).  The node acts as primary only while the members whose
newest confirmation is younger than ``duration`` hold enough of the primary that any later
primary must include one of them (:meth:`QuorumPolicy.confirms`).

**Granter** (every node).  A node that echoed a probe it received at ``r`` - or that
installed a view it may have helped make primary at ``r`` - does not help any view
without that prober (it neither proposes nor acknowledges one) before ``r + hold``.
After a restart it helps no view without some node of its last views (the membership
record keeps them) for ``hold``: it may have granted just before crashing.

Why it works.  A later primary needs a node of every confirming set to leave the view
first, and that node first waits out its grant, which ends after the prober's lease ends
(``s < r``).  So, at any instant, nodes acting as primary act for one primary.

**Clock assumption.**  Lease and hold are measured on different nodes' clocks.  The
argument needs the granter's clock to run no slower than the prober's by more than the
configured drift: ``hold = duration * (1 + max_drift)``.  No synchronisation of clock
*values* is needed, only bounded *rates* (quartz: tens of ppm; default margin 0.1 %).
"""

from __future__ import annotations

from collections import deque
from collections.abc import Callable, Iterable

from .ids import ViewId

#: Probe numbers are 16 bits on the wire, wrapping; 0 means "no probe".
_PROBE_MODULUS = 2**16
_REMEMBERED = 256  # probes whose send time we keep (echoes older than that are useless anyway)


class Lease:
    """Both sides of the lease for one node; sans-IO: every method takes ``now``.

    Heartbeats arrive by the thousand per second in a large view, so receiving one only
    notes what it carries (:meth:`note_probe`, :meth:`note_echo`); the work is done when
    a heartbeat is sent (:meth:`echoes`) and when the lease is checked (:meth:`expiry`).
    """

    def __init__(
        self, duration: float, max_drift: float, now: float, *, restarted: bool, recent: tuple[int, ...] | None
    ) -> None:
        """``restarted``: this node may have granted leases in an earlier life, to the
        nodes ``recent`` (None: to anyone)."""
        self.duration = duration
        self.hold = duration * (1.0 + max_drift)
        # prober
        self._probe = 0
        self._sent: dict[int, float] = {}  # probe -> when we sent it (the last _REMEMBERED)
        self._order: deque[int] = deque()
        self._view: ViewId | None = None
        self._agreed_at = 0.0
        self._echo: dict[int, int] = {}  # member -> newest echo of ours it sent in our view
        self._spoke: set[int] = set()  # members that sent anything in our view (probe 0)
        # granter
        self._probes: dict[int, tuple[int, float]] = {}  # prober -> (newest probe, when it arrived)
        self._grants: dict[int, float] = {}  # prober -> when we last gave it reason to trust us
        self._restart_hold = now + self.hold if restarted else now
        self._recent = recent

    # ------------------------------------------------------------------ prober

    def next_probe(self, now: float) -> int:
        """The probe number for a heartbeat sent now."""
        self._probe = probe = self._probe % (_PROBE_MODULUS - 1) + 1
        self._sent[probe] = now
        self._order.append(probe)
        if len(self._order) > _REMEMBERED:
            self._sent.pop(self._order.popleft(), None)
        return probe

    def view_installed(self, view_id: ViewId, agreed_at: float) -> None:
        """A new view: confirmations start over; ``agreed_at`` is when we first acked or proposed it."""
        self._view = view_id
        self._agreed_at = agreed_at
        self._echo = {}
        self._spoke = set()

    def note_echo(self, member: int, echo: int) -> bool:
        """``member`` sent a heartbeat in our view echoing our probe ``echo`` (0: none).

        Returns whether it is the member's first word in the view.
        """
        if echo:
            self._echo[member] = echo
        return self.note_message(member)

    def note_message(self, member: int) -> bool:
        """``member`` sent something in our view: it installed it after our acknowledgement.

        Returns whether it is the member's first word in the view.
        """
        if member in self._spoke:
            return False
        self._spoke.add(member)
        return True

    def confirmed(self, member: int) -> float | None:
        """The send time of our newest probe ``member`` confirmed in our view (None: nothing yet)."""
        if member not in self._spoke:
            return None
        at = self._agreed_at
        echo = self._echo.get(member)
        if echo is not None:
            sent = self._sent.get(echo)
            if sent is not None and sent > at:
                at = sent
        return at

    def expiry(self, me: int, members: Iterable[int], confirms: Callable[[list[int]], bool]) -> float | None:
        """When acting as primary must stop, from the confirmations so far (None: not confirmed).

        The members are taken newest confirmation first until they are enough; the lease
        lasts ``duration`` from the oldest confirmation among those.
        """
        ranked = []
        for m in members:
            if m != me and (at := self.confirmed(m)) is not None:
                ranked.append((at, m))
        ranked.sort(reverse=True)
        chosen = [me] + [m for _, m in ranked]
        if confirms(chosen[:1]):
            return float("inf")
        if not confirms(chosen):
            return None
        # ``confirms`` is monotone: the shortest enough prefix, by bisection.
        low, high = 1, len(chosen)  # confirms(chosen[:low]) is false, confirms(chosen[:high]) true
        while high - low > 1:
            mid = (low + high) // 2
            if confirms(chosen[:mid]):
                high = mid
            else:
                low = mid
        return ranked[high - 2][0] + self.duration

    def fresh(self, me: int, members: Iterable[int], now: float) -> list[int]:
        """``me`` and the members confirmed within the last ``duration``: a cheap first check."""
        limit = now - self.duration
        out = [me]
        for m in members:
            if m != me and (at := self.confirmed(m)) is not None and at > limit:
                out.append(m)
        return out

    # ------------------------------------------------------------------ granter

    def note_probe(self, prober: int, probe: int, now: float) -> None:
        """A heartbeat from ``prober`` carrying ``probe``: the one to echo if we vouch for it."""
        if probe:
            self._probes[prober] = (probe, now)

    def echoes(self, members: Iterable[int], vouching: Callable[[int], bool]) -> tuple[int, ...]:
        """The echo vector for our view's ``members`` (0 for those we do not vouch for).

        Echoing a probe grants its prober until the probe's arrival plus ``hold``.
        """
        probes, grants = self._probes, self._grants
        out = []
        for m in members:
            heard = probes.get(m)
            if heard is None or not vouching(m):
                out.append(0)
                continue
            probe, arrived = heard
            if grants.get(m, -1.0) < arrived:
                grants[m] = arrived
            out.append(probe)
        return tuple(out)

    def release(self, prober: int) -> None:
        """``prober``'s life ended (it left gracefully, or it restarted): it acts as nobody's primary."""
        self._probes.pop(prober, None)
        self._grants.pop(prober, None)

    def granted_view(self, members: Iterable[int], now: float) -> None:
        """We installed a view that may be primary: every member may count on us from now."""
        for member in members:
            self._grants[member] = now

    def hold_until(self, keep: Callable[[int], bool]) -> float:
        """The earliest time we may help a view made of the nodes for which ``keep`` is true."""
        until = 0.0
        recent = self._recent
        if recent is None or not all(keep(n) for n in recent):
            until = self._restart_hold  # a view without some node our last life vouched for
        for prober, granted in self._grants.items():
            if not keep(prober):
                until = max(until, granted + self.hold)
        return until

    def forget_grants_before(self, now: float) -> None:
        """Drop grants that no longer hold anything back (keeps the map small)."""
        limit = now - self.hold
        for prober in [p for p, t in self._grants.items() if t < limit]:
            del self._grants[prober]
