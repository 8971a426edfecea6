"""Helpers shared by the benchmarks: loading the committed scenarios, timing, printing."""

from __future__ import annotations

import tomllib
from pathlib import Path
from typing import Any

from pyclm.sim import Scenario, parse_scenario

SCENARIOS = Path(__file__).parent / "scenarios"


def scenario(name: str, **overrides: Any) -> Scenario:
    """A committed benchmark scenario, optionally cut short (``duration``) or changed."""
    data = tomllib.loads((SCENARIOS / f"{name}.toml").read_text(encoding="utf-8"))
    data.update(overrides)
    if "duration" in overrides:
        data["event"] = [e for e in data.get("event", []) if e["at"] <= overrides["duration"]]
    return parse_scenario(data)


def table(rows: list[list[str]]) -> str:
    widths = [max(len(row[i]) for row in rows) for i in range(len(rows[0]))]
    lines = ["  ".join(cell.rjust(w) for cell, w in zip(row, widths, strict=True)) for row in rows]
    lines.insert(1, "  ".join("-" * w for w in widths))
    return "\n".join(lines)
