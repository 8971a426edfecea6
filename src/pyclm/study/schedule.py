"""Cascading connectivity changes: the schedules of the availability study.

A schedule is a list of :class:`Change`: at time ``at`` (in message-delay units) the
processes are split into the given components.  It depends only on its seed, the number
of processes, the number of changes and the mean gap between them, so every policy runs
on exactly the same schedule (a paired comparison).

Our change model (the Ingols-Keidar papers do not give theirs in a form we could
retrieve): changes come at exponentially distributed gaps; each is a *split* (a random
component of two or more processes, each of its members going to either side with
probability 1/2, redrawn until both sides are non-empty) or a *merge* (two random
components join), with probability 1/2 each; when only one kind is possible, that kind.
"""

from __future__ import annotations

import random

import attrs

Components = tuple[tuple[int, ...], ...]


@attrs.frozen
class Change:
    at: float
    components: Components  # every process in exactly one, each ascending; sorted by first member


def _canonical(groups: list[list[int]]) -> Components:
    return tuple(sorted(tuple(sorted(g)) for g in groups))


def make_schedule(seed: int, processes: int, changes: int, mean_gap: float, start: float) -> list[Change]:
    """``changes`` changes after ``start``, the first one gap after it."""
    rng = random.Random(seed)
    groups: list[list[int]] = [list(range(1, processes + 1))]
    out: list[Change] = []
    t = start
    for _ in range(changes):
        t += rng.expovariate(1.0 / mean_gap)
        splittable = [g for g in groups if len(g) >= 2]
        if splittable and (len(groups) < 2 or rng.random() < 0.5):
            group = rng.choice(splittable)
            while True:
                sides = [rng.random() < 0.5 for _ in group]
                if any(sides) and not all(sides):
                    break
            groups.remove(group)
            groups.append([p for p, side in zip(group, sides, strict=True) if side])
            groups.append([p for p, side in zip(group, sides, strict=True) if not side])
        else:
            a, b = rng.sample(range(len(groups)), 2)
            merged = groups[a] + groups[b]
            groups = [g for i, g in enumerate(groups) if i not in (a, b)]
            groups.append(merged)
        groups = [list(g) for g in _canonical(groups)]
        out.append(Change(t, _canonical(groups)))
    return out
