"""The deterministic cluster simulator: scenarios, network model, invariant checks."""

from .checker import InvariantChecker, InvariantViolation
from .engine import SimulationResult, Simulator, simulate
from .network import NetworkConditions, NetworkModel
from .scenario import Scenario, ScenarioEvent, load_scenario, parse_quorum, parse_scenario

__all__ = [
    "InvariantChecker",
    "InvariantViolation",
    "NetworkConditions",
    "NetworkModel",
    "Scenario",
    "ScenarioEvent",
    "SimulationResult",
    "Simulator",
    "load_scenario",
    "parse_quorum",
    "parse_scenario",
    "simulate",
]
