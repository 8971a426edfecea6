"""The timeout failure detector."""

from __future__ import annotations

from pyclm.detector import FailureDetector, TimeoutDetector


def test_never_heard_is_suspected() -> None:
    detector = TimeoutDetector(0.5)
    assert detector.suspects([1, 2], now=0.0) == [1, 2]
    assert detector.last_heard(1) is None


def test_suspected_strictly_after_the_timeout() -> None:
    detector = TimeoutDetector(0.5)
    detector.heard(1, 10.0)
    assert detector.last_heard(1) == 10.0
    assert detector.suspects([1], now=10.25) == []
    assert detector.suspects([1], now=10.5) == []  # exactly the timeout: not yet
    assert detector.suspects([1], now=10.5001) == [1]


def test_hearing_again_resets_the_clock() -> None:
    detector = TimeoutDetector(1.0)
    detector.heard(1, 0.0)
    detector.heard(1, 0.9)
    assert detector.suspects([1], now=1.5) == []
    assert detector.suspects([1], now=1.91) == [1]


def test_only_candidates_are_judged_in_their_order() -> None:
    detector = TimeoutDetector(1.0)
    detector.heard(2, 5.0)
    assert detector.suspects([3, 2, 1], now=5.5) == [3, 1]
    assert detector.suspects([], now=100.0) == []


def test_forget_drops_the_history() -> None:
    detector = TimeoutDetector(1.0)
    detector.heard(1, 5.0)
    detector.forget(1)
    detector.forget(99)  # unknown: no error
    assert detector.last_heard(1) is None
    assert detector.suspects([1], now=5.0) == [1]


def test_timeout_detector_is_a_failure_detector() -> None:
    detector: FailureDetector = TimeoutDetector(1.0)  # checked by mypy
    detector.heard(4, 0.0)
    assert detector.suspects([4], now=0.5) == []
