"""The simulated network's fault model, shared by the simulator and the in-memory transport.

Given a datagram from ``src`` to ``dst`` it answers with the delays after which copies
arrive: none (lost, or the link is down), one, or two (duplicated).  Delays are the
mean latency plus uniform jitter; a reordered datagram is held back by up to ten
latencies more, so later datagrams overtake it.  All randomness comes from the
``random.Random`` it is given, so a seed replays exactly.

Links are directed.  ``partition`` puts nodes in groups (a node not named is alone);
``set_link`` takes one direction down or up again; ``heal`` brings every link up.
"""

from __future__ import annotations

import random
from collections.abc import Callable

import attrs


def _probability(name: str) -> Callable[[object, object, float], None]:
    def check(_inst: object, _attr: object, value: float) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 1.0:
            raise ValueError(f"network.{name}: must be a probability between 0 and 1, got {value!r}")

    return check


def _seconds(name: str) -> Callable[[object, object, float], None]:
    def check(_inst: object, _attr: object, value: float) -> None:
        if not isinstance(value, (int, float)) or isinstance(value, bool) or not 0.0 <= value <= 60.0:
            raise ValueError(f"network.{name}: must be a number of seconds between 0 and 60, got {value!r}")

    return check


@attrs.frozen(kw_only=True)
class NetworkConditions:
    latency: float = attrs.field(default=0.001, validator=_seconds("latency"))
    jitter: float = attrs.field(default=0.0002, validator=_seconds("jitter"))
    loss: float = attrs.field(default=0.0, validator=_probability("loss"))
    duplicate: float = attrs.field(default=0.0, validator=_probability("duplicate"))
    reorder: float = attrs.field(default=0.0, validator=_probability("reorder"))


class NetworkModel:
    def __init__(self, conditions: NetworkConditions, rng: random.Random) -> None:
        self.conditions = conditions
        self.rng = rng
        self._group: dict[int, int] | None = None  # None: no partition
        self._down: set[tuple[int, int]] = set()
        self.all_up = True

    def set_loss(self, loss: float) -> None:
        self.conditions = attrs.evolve(self.conditions, loss=loss)

    def partition(self, groups: list[list[int]]) -> None:
        self._group = {n: i for i, group in enumerate(groups) for n in group}
        self._down.clear()
        self.all_up = False

    def heal(self) -> None:
        self._group = None
        self._down.clear()
        self.all_up = True

    def set_link(self, src: int, dst: int, up: bool) -> None:
        if up:
            self._down.discard((src, dst))
        else:
            self._down.add((src, dst))
        self.all_up = self._group is None and not self._down

    def link_up(self, src: int, dst: int) -> bool:
        if self.all_up:
            return True
        group = self._group
        if group is not None:
            g = group.get(src)
            if g is None or g != group.get(dst):
                return False
        return (src, dst) not in self._down

    def delays(self, src: int, dst: int) -> list[float]:
        """Delays of the copies of one datagram from ``src`` that reach ``dst`` (maybe none)."""
        if not self.link_up(src, dst):
            return []
        c = self.conditions
        rng = self.rng
        if c.loss and rng.random() < c.loss:
            return []
        out = [self._delay(c, rng)]
        if c.duplicate and rng.random() < c.duplicate:
            out.append(self._delay(c, rng))
        return out

    @staticmethod
    def _delay(c: NetworkConditions, rng: random.Random) -> float:
        delay = c.latency
        if c.jitter:
            delay += c.jitter * (2.0 * rng.random() - 1.0)
        if c.reorder and rng.random() < c.reorder:
            delay += 10.0 * c.latency * rng.random()
        return max(delay, 0.0)
