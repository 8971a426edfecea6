"""The oracle: YKD with perfect knowledge of what became of every attempt (our definition).

A comparison policy for the availability study (docs/voting.md, "Comparison policies"):
a ceiling for the dynamic-voting family, not something a real node can run.  Every
oracle node of one run shares a :class:`SessionTruth` that sees every attempt, every
formation and every view change.  The oracle keeps YKD's state, rounds and rule and
replaces YKD's resolution (:meth:`YKD.resolve`) by the truth:

- the newest primary is the newest session formed **anywhere** (or the newest any member
  reports, if that is newer: the truth only knows what happened since it was created);
- of the sessions the members report as ambiguous and newer than it, exactly those that
  have not formed and still **can** form bind the view.

A session *can still form* unless the truth knows it cannot: some member left its view
(installed a later one, stopped, or was declared gone by the driver) without having sent
its attempt, or every member has left the view.  A session the truth never heard of may
form, as far as it knows.

Two more things make the truth's answers safe to act on, although nodes install a view
at different moments: the truth decides once per view (the first member to install it
resolves, the others reuse that answer, so all of them attempt the same session), and a
view's session number is above every session number the truth has seen, so a session
decided later is numbered higher.

How to drive it
---------------
The driver creates one ``SessionTruth`` per run and passes it in the ``[quorum]``
options: ``QuorumConfig(policy="oracle", votes=..., options={"truth": truth})``.  The
policies tell the truth what they do themselves (:meth:`SessionTruth.view_installed`,
:meth:`~SessionTruth.attempted`, :meth:`~SessionTruth.formed`); the driver tells it what
only the driver knows, which makes the oracle more available but is never needed for
safety:

- :meth:`SessionTruth.node_stopped` when a node crashes or leaves;
- :meth:`SessionTruth.view_left` when a node can certainly form nothing more in its view
  (e.g. an attempt sent to it in that view was dropped, and nothing is retransmitted).

Telling it too early is a driver bug that would make the oracle unsafe: the truth raises
:class:`~pyclm.errors.UsageError` if that node then forms there.
"""

from __future__ import annotations

import enum
from collections.abc import Mapping

import attrs

from ..errors import ConfigError, UsageError
from ..ids import View, ViewId
from .base import QuorumConfig, register_policy
from .sessions import Session, VotingState
from .ykd import YKD


class Outcome(enum.Enum):
    FORMED = "formed"
    POSSIBLE = "may still form"
    IMPOSSIBLE = "can no longer form"


class SessionTruth:
    """What a driver that sees every node knows about the sessions of one run.

    One per run: a truth shared by two runs mixes their sessions (still safe, less available).
    """

    def __init__(self) -> None:
        self._view_of: dict[Session, ViewId] = {}
        self._attempted: dict[Session, set[int]] = {}
        self._formed: set[Session] = set()
        self._installed: dict[int, ViewId] = {}
        self._left: set[tuple[int, ViewId]] = set()
        self._resolved: dict[ViewId, tuple[Session, tuple[Session, ...]]] = {}
        self._floors: dict[ViewId, int] = {}
        self.newest_formed: Session | None = None
        #: The highest session number attempted or reserved so far.
        self.highest = 0

    # ------------------------------------------------------------------ told by the policies

    def view_installed(self, node_id: int, view_id: ViewId) -> None:
        """``node_id`` installed ``view_id``: it has left every older view."""
        self._installed[node_id] = view_id

    def attempted(self, node_id: int, view_id: ViewId, session: Session) -> None:
        """``node_id`` sent its attempt for ``session`` in ``view_id`` (after writing it down)."""
        self._view_of.setdefault(session, view_id)
        self._attempted.setdefault(session, set()).add(node_id)
        self.highest = max(self.highest, session.number)

    def formed(self, node_id: int, view_id: ViewId, session: Session) -> None:
        """``node_id`` formed ``session`` in ``view_id``."""
        if (node_id, view_id) in self._left:
            raise UsageError(
                f"node {node_id} formed session {session} in view {view_id} after the driver said it had left "
                "that view: call view_left only when the node can certainly form nothing more there"
            )
        self._view_of.setdefault(session, view_id)
        self._formed.add(session)
        if self.newest_formed is None or session > self.newest_formed:
            self.newest_formed = session

    # ------------------------------------------------------------------ told by the driver

    def view_left(self, node_id: int, view_id: ViewId) -> None:
        """``node_id`` can form nothing more in ``view_id`` (it is cut off from a member for good)."""
        self._left.add((node_id, view_id))

    def node_stopped(self, node_id: int) -> None:
        """``node_id`` crashed, left, or starts a new life: it is in none of the views it was in."""
        for session, view_id in self._view_of.items():
            if node_id in session.members:
                self._left.add((node_id, view_id))
        self._installed.pop(node_id, None)

    # ------------------------------------------------------------------ asked by the policies

    def outcome(self, session: Session) -> Outcome:
        if session in self._formed:
            return Outcome.FORMED
        view_id = self._view_of.get(session)
        if view_id is None:
            return Outcome.POSSIBLE  # never heard of: assume the worst
        attempted = self._attempted.get(session, set())
        gone = [m for m in session.members if self._has_left(m, view_id)]
        if len(gone) == len(session.members) or any(m not in attempted for m in gone):
            return Outcome.IMPOSSIBLE
        return Outcome.POSSIBLE

    def _has_left(self, node_id: int, view_id: ViewId) -> bool:
        if (node_id, view_id) in self._left:
            return True
        installed = self._installed.get(node_id)
        return installed is not None and installed > view_id

    def number_floor(self, view_id: ViewId) -> int:
        """The lowest session number ``view_id`` may use (fixed when first asked)."""
        return self._floors.setdefault(view_id, self.highest)

    def resolve(
        self, view_id: ViewId, newest: Session, binding: list[Session], numbers: int
    ) -> tuple[Session, tuple[Session, ...]]:
        """Refine YKD's resolution for ``view_id`` by what actually happened.

        ``newest`` and ``binding`` are what YKD's rules make of the members' reports,
        ``numbers`` the highest session number they report.  The answer is decided when
        first asked for a view; later calls for it return the same.
        """
        resolved = self._resolved.get(view_id)
        if resolved is None:
            if self.newest_formed is not None and self.newest_formed > newest:
                newest = self.newest_formed
            kept = tuple(s for s in binding if s.number > newest.number and self.outcome(s) is Outcome.POSSIBLE)
            # Reserve the view's session number: a view resolved later is numbered higher.
            self.highest = max(self.highest, numbers + 1)
            resolved = self._resolved[view_id] = (newest, kept)
        return resolved


@register_policy
class Oracle(YKD):
    """YKD resolving ambiguous sessions by a :class:`SessionTruth` (``quorum.policy = "oracle"``)."""

    name = "oracle"
    option_names = YKD.option_names | {"truth"}

    def __init__(
        self,
        config: QuorumConfig,
        node_id: int,
        stored: bytes | None,
        *,
        history: bool = False,
        retry_interval: float = 0.1,
    ) -> None:
        truth = config.options.get("truth")
        if truth is None:
            raise ConfigError(
                "quorum.truth",
                "the oracle policy needs a driver that knows the truth of every attempt, such as the "
                "availability study; the simulator and real nodes have none "
                "(in code: options={'truth': pyclm.voting.SessionTruth()}, one per run)",
            )
        if not isinstance(truth, SessionTruth):
            raise ConfigError("quorum.truth", f"must be a SessionTruth made by the driver, got {type(truth).__name__}")
        super().__init__(config, node_id, stored, history=history, retry_interval=retry_interval)
        self.truth = truth
        truth.node_stopped(node_id)  # a new life: the views of an earlier one are over

    def view_installed(self, view: View, states: Mapping[int, bytes], now: float) -> None:
        self.truth.view_installed(self.node_id, view.view_id)
        super().view_installed(view, states, now)
        if self.attempted:
            self.truth.attempted(self.node_id, view.view_id, Session(self.state.session_number, view.node_ids))

    def ack_state(self, view: View | None = None) -> bytes:
        if self.session is not None and self.view is not None:
            # Reporting for a newer view ends our part in this one (YKD.ack_state).
            self.truth.view_left(self.node_id, self.view.view_id)
        return super().ack_state(view)

    def _report(self, data: bytes | None, view: View) -> VotingState:
        report = super()._report(data, view)
        assert self.view is not None  # set by view_installed before the reports are read
        floor = self.truth.number_floor(self.view.view_id)
        if report.amnesiac or report.session_number >= floor:
            return report
        return attrs.evolve(report, session_number=floor)

    def resolve(self, reports: Mapping[int, VotingState]) -> tuple[Session, list[Session]]:
        """YKD's resolution, refined by the truth: the newest primary formed anywhere, and of
        the sessions YKD's rules leave binding, those that may still form."""
        newest, binding = super().resolve(reports)
        counted = [r.session_number for r in reports.values() if not r.amnesiac]
        if not counted or self.view is None:
            return newest, binding
        newest, kept = self.truth.resolve(self.view.view_id, newest, binding, max(counted))
        return newest, list(kept)

    def _maybe_form(self) -> None:
        session = self.session
        super()._maybe_form()
        if session is not None and self.session is None and self.view is not None:
            self.truth.formed(self.node_id, self.view.view_id, session)
