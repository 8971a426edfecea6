"""TimeoutDetector: exact deadlines, in the order nodes were last heard."""

from __future__ import annotations

from pyclm.detector import FailureDetector, TimeoutDetector


def test_nothing_tracked() -> None:
    detector = TimeoutDetector(0.5)
    assert detector.deadline() is None
    assert detector.expired(100.0) == []
    assert detector.longest_silence(3.0) == 0.0


def test_a_node_expires_exactly_at_its_deadline() -> None:
    detector = TimeoutDetector(0.5)
    detector.heard(1, 10.0)
    assert detector.deadline() == 10.5
    assert detector.expired(10.4999) == []
    assert detector.expired(10.5) == [1]
    assert detector.deadline() is None  # no longer tracked ...
    assert detector.expired(11.0) == []  # ... so not suspected twice
    detector.heard(1, 12.0)
    assert detector.deadline() == 12.5


def test_hearing_again_moves_the_deadline() -> None:
    detector = TimeoutDetector(0.5)
    detector.heard(1, 1.0)
    detector.heard(2, 1.2)
    detector.heard(1, 1.4)
    assert detector.deadline() == 1.7  # node 2 is now the most silent
    assert detector.longest_silence(1.5) == 1.5 - 1.2
    assert detector.expired(1.8) == [2]
    assert detector.expired(1.9) == [1]


def test_expired_in_order_of_silence() -> None:
    detector = TimeoutDetector(1.0)
    for node, t in ((3, 0.1), (1, 0.2), (2, 4.0)):
        detector.heard(node, t)
    assert detector.expired(5.0) == [3, 1, 2]


def test_forget() -> None:
    detector = TimeoutDetector(0.5)
    detector.heard(1, 0.0)
    detector.heard(2, 0.1)
    detector.forget(1)
    detector.forget(9)  # unknown: fine
    assert detector.deadline() == 0.6
    assert detector.last_heard(1) is None
    assert detector.last_heard(2) == 0.1


def test_it_is_a_failure_detector() -> None:
    detector: FailureDetector = TimeoutDetector(0.5)
    detector.heard(4, 0.0)
    assert detector.expired(0.5) == [4]
