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
