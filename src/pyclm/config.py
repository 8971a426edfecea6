"""Configuration of one membership core.

Every value is validated when the object is built, so a bad setting fails at start-up
with a :class:`~pyclm.errors.ConfigError` that names it.
"""

from __future__ import annotations

import enum
import math
from collections.abc import Callable

import attrs

from .errors import ConfigError
from .ids import MAX_NODE_ID

#: The most nodes the core keeps track of.  A transport may allow fewer (its datagrams
#: must hold a connectivity row of every node): see ``docs/wire.md``.
MAX_CLUSTER_SIZE = 1024


class ConnectivitySource(enum.Enum):
    """Where a node learns whom it hears."""

    #: Its own heartbeats and failure detector decide (the normal mode).
    HEARTBEAT = "heartbeat"
    #: Someone else says (simulator oracle, TIPC topology): heartbeat silence is ignored.
    EXTERNAL = "external"


def _positive(name: str) -> Callable[[object, object, float], None]:
    def check(_inst: object, _attr: object, value: float) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value) or value <= 0:
            raise ConfigError(name, f"must be a positive number of seconds, got {value!r}")

    return check


@attrs.frozen(kw_only=True)
class TimingConfig:
    """Timers of the membership protocol, in seconds."""

    heartbeat_interval: float = attrs.field(default=0.1, validator=_positive("timing.heartbeat_interval"))
    suspect_timeout: float = attrs.field(default=0.5, validator=_positive("timing.suspect_timeout"))
    #: Changes of our row, then of the matrix, are gathered this long before the new row
    #: goes out and before components are computed.
    settle_delay: float = attrs.field(default=0.005, validator=_positive("timing.settle_delay"))
    #: The primary lease (pyclm.lease): how long a primary acts without confirming that
    #: enough of its members still hear it.  None: 0.8 x suspect_timeout (see
    #: lease_duration); 0: no lease.  Must lie between heartbeat_interval and suspect_timeout.
    lease: float | None = None
    #: The largest relative difference of clock *rates* between nodes the lease allows for.
    max_drift: float = 0.001

    def __attrs_post_init__(self) -> None:
        if self.suspect_timeout <= self.heartbeat_interval:
            raise ConfigError(
                "timing.suspect_timeout",
                f"must be longer than heartbeat_interval ({self.heartbeat_interval}), got {self.suspect_timeout}",
            )
        if self.settle_delay >= self.suspect_timeout:
            raise ConfigError("timing.settle_delay", "must be shorter than suspect_timeout")
        lease = self.lease
        if lease is not None and (
            not isinstance(lease, (int, float)) or isinstance(lease, bool) or not math.isfinite(lease) or lease < 0
        ):
            raise ConfigError("timing.lease", f"must be a number of seconds >= 0 (0: no lease), got {lease!r}")
        if lease is not None and lease >= self.suspect_timeout:
            raise ConfigError(
                "timing.lease", f"must be shorter than suspect_timeout ({self.suspect_timeout}), got {lease}"
            )
        if lease and lease <= self.heartbeat_interval:
            raise ConfigError(
                "timing.lease", f"must be longer than heartbeat_interval ({self.heartbeat_interval}), got {lease}"
            )
        drift = self.max_drift
        if not isinstance(drift, (int, float)) or isinstance(drift, bool) or not 0 <= drift < 0.1:
            raise ConfigError("timing.max_drift", f"must be a fraction in [0, 0.1), got {drift!r}")

    @property
    def lease_duration(self) -> float:
        """The lease in seconds (0: none), with the default filled in."""
        if self.lease is not None:
            return float(self.lease)
        # 0.8 x suspect_timeout, or halfway to the heartbeat interval if that is closer.
        return max(0.8 * self.suspect_timeout, (self.heartbeat_interval + self.suspect_timeout) / 2)


def _node_id(_inst: object, _attr: object, value: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or not 0 <= value <= MAX_NODE_ID:
        raise ConfigError("node_id", f"must be an integer in 0..{MAX_NODE_ID}, got {value!r}")


def _max_datagram(_inst: object, _attr: object, value: int) -> None:
    if not isinstance(value, int) or not 512 <= value <= 65507:
        raise ConfigError("max_datagram", f"must be an integer in 512..65507, got {value!r}")


@attrs.frozen(kw_only=True)
class MembershipConfig:
    """What one core needs to know about itself."""

    node_id: int = attrs.field(validator=_node_id)
    timing: TimingConfig = attrs.field(factory=TimingConfig)
    connectivity: ConnectivitySource = ConnectivitySource.HEARTBEAT
    #: The largest datagram the transport carries (UDP: one Ethernet MTU; see docs/wire.md).
    max_datagram: int = attrs.field(default=65000, validator=_max_datagram)
