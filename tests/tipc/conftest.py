"""Tests that need a kernel with TIPC: where they run, and why a skip there is a failure.

Our hosts' kernel has no TIPC (``socket(AF_TIPC)`` fails with EAFNOSUPPORT).  So this directory
runs twice in CI, in two different ways:

* in the plain ``pytest`` run on the host, every test here is skipped, before any of its
  fixtures run, with the reason :data:`HOST_SKIP_REASON`;
* ``scripts/tipc-tests.sh`` runs it again inside a qemu guest whose kernel has TIPC
  (``scripts/tipc-vm/run.sh``), with ``PYCLM_REQUIRE_TIPC=1``.  There a TIPC socket that
  cannot be made is a failure, and so is **any** skip of a test in this directory (a ``skipif``,
  an ``importorskip``, a ``pytest.skip()`` in a test or fixture, a module-level skip): the
  guest has everything these tests need (root, ``ip``, ``tipc``, the kernel modules), so a
  skip there means the harness is broken, and a CI run that is green because its TIPC tests
  quietly skipped would be worse than none.  A test that must not run in the guest belongs
  elsewhere; an expected failure is ``xfail``, which stays an xfail.

Where the kernel does have TIPC and nothing is required (a developer machine), the tests run.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Generator

import pytest

REQUIRE_TIPC = "PYCLM_REQUIRE_TIPC"
HOST_SKIP_REASON = "runs in the TIPC guest (scripts/tipc-tests.sh)"


def tipc_unavailable() -> str | None:
    """Why no TIPC socket can be made here, or None when one can."""
    family = getattr(socket, "AF_TIPC", None)
    if family is None:
        return "this Python has no socket.AF_TIPC"
    try:
        socket.socket(family, socket.SOCK_RDM).close()
    except OSError as error:
        return f"socket(AF_TIPC, SOCK_RDM) fails: {error}"
    return None


def tipc_required() -> bool:
    return os.environ.get(REQUIRE_TIPC) == "1"


_UNAVAILABLE = tipc_unavailable()


@pytest.hookimpl(tryfirst=True)
def pytest_runtest_setup(item: pytest.Item) -> None:
    # A hook, not an autouse fixture: it runs before every fixture, including module- and
    # session-scoped ones that would already try to build namespaces or TIPC bearers.
    if _UNAVAILABLE is None:
        return
    if tipc_required():
        pytest.fail(f"{REQUIRE_TIPC}=1, but {_UNAVAILABLE}", pytrace=False)
    pytest.skip(HOST_SKIP_REASON)


def _skip_reason(longrepr: object) -> str:
    # A skip's longrepr is (path, line, "Skipped: reason"); anything else, print as it is.
    reason = str(longrepr[2]) if isinstance(longrepr, tuple) and len(longrepr) == 3 else str(longrepr)
    return reason.removeprefix("Skipped: ")


def _required_but_skipped(reason: str) -> str:
    return (
        f"skipped where TIPC is required ({REQUIRE_TIPC}=1): every TIPC test must run in the guest, "
        f"so this skip is a failure. The skip said: {reason}"
    )


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(
    item: pytest.Item, call: pytest.CallInfo[None]
) -> Generator[None, pytest.TestReport, pytest.TestReport]:
    report = yield
    if tipc_required() and report.skipped and not hasattr(report, "wasxfail"):
        report.outcome = "failed"
        report.longrepr = _required_but_skipped(_skip_reason(report.longrepr))
    return report


@pytest.hookimpl(wrapper=True)
def pytest_make_collect_report(
    collector: pytest.Collector,
) -> Generator[None, pytest.CollectReport, pytest.CollectReport]:
    # Skips while collecting: pytest.importorskip, pytest.skip(allow_module_level=True).
    report = yield
    if tipc_required() and report.skipped:
        report.outcome = "failed"
        report.longrepr = _required_but_skipped(_skip_reason(report.longrepr))
    return report
