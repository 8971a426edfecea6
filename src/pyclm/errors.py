"""The exceptions pyclm raises.  Hostile network input never raises: it is dropped and counted."""

from __future__ import annotations


class PyclmError(Exception):
    """Base class of pyclm's exceptions."""


class ConfigError(PyclmError, ValueError):
    """A setting is missing, malformed or out of range.

    ``setting`` names it (``"timing.suspect_timeout"``, ``"--node-id"``, ...), so a
    front end can print one line that tells the user what to fix.
    """

    def __init__(self, setting: str, problem: str) -> None:
        super().__init__(f"{setting}: {problem}")
        self.setting = setting
        self.problem = problem


class UsageError(PyclmError, RuntimeError):
    """The API was called in a state that does not allow the call; the message names the fix."""


class LeaveRejected(PyclmError):
    """A validated leave (``Node.leave()``) was called off; the node stays in the cluster.

    ``reason`` is ``"rejected"`` (a validator or a VALIDATE tracker on a member refused),
    ``"timed out"`` (a member, or its trackers, did not answer within the validate
    timeout), ``"view changed"`` (the membership changed while the leave was being
    validated, again and again) or ``"cancelled"``.  ``rejected`` and ``timed_out`` are
    the node ids concerned, ascending.  ``leave(validate=False)`` leaves without asking.
    """

    def __init__(self, node_id: int, *, reason: str, rejected: tuple[int, ...] = (), timed_out: tuple[int, ...] = ()):
        parts = [f"node {node_id}'s leave was called off ({reason})"]
        if rejected:
            parts.append(f"rejected by node(s) {', '.join(map(str, rejected))}")
        if timed_out:
            parts.append(f"no answer in time from node(s) {', '.join(map(str, timed_out))}")
        parts.append("it stays in the cluster; leave(validate=False) leaves without asking")
        super().__init__("; ".join(parts))
        self.node_id = node_id
        self.reason = reason
        self.rejected = rejected
        self.timed_out = timed_out
