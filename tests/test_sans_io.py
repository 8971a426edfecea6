"""The core stays sans-IO: no clock, no sockets, no event loop, no threads.

Walks ``src/pyclm`` with :mod:`ast` (nothing is imported) and fails when a core module
imports one of :data:`FORBIDDEN`, or reaches into the I/O glue.  Time enters the core
as ``now`` and randomness as an injected ``random.Random``; only the glue may touch the
outside world.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pyclm

PACKAGE = Path(pyclm.__file__).resolve().parent

FORBIDDEN = frozenset({"asyncio", "anyio", "trio", "socket", "time", "threading", "selectors", "subprocess"})

#: The I/O glue, relative to ``src/pyclm``: everything else is core.
EXCLUDED = frozenset(
    {
        "runtime.py",  # the anyio node runtime: owns the clock, the transport and the storage
        "_streams.py",  # the runtime's subscriber streams and listeners (anyio events, a lock)
        "_leaving.py",  # the runtime's validated-leave driver (anyio tasks and events, a lock)
        "cli.py",  # the command line: reads the wall clock, files, argv
        "_taskgroups.py",  # an anyio helper shared by the runtime and the memory transport
        # FileStorage does file I/O (os.fsync, os.replace) for the driver; the core itself only
        # builds StorageWrite/MembershipRecord values from this module and never calls its I/O.
        "storage.py",
        # The availability study's runner: worker processes, result files, progress rates.
        # Its model and schedules (study/model.py, study/schedule.py) are core like the simulator.
        "study/availability.py",
        "study/plots.py",
        # Attaching to a pyclm node daemon over its control socket (anyio tasks, a lock).
        "remote.py",
    }
)
#: Whole directories of glue.
EXCLUDED_DIRS = frozenset(
    {
        "transports",
        # The SAF facade: file descriptors, threads and event loops for the handles; the
        # CLM semantics it serves are core (clm/).
        "saf",
        # `pyclm node`: sockets, signals, files, the wall clock; it drives a runtime Node.
        "daemon",
    }
)

#: Modules that must be checked: if one of them moves or is excluded by mistake, this test says so.
REQUIRED_CORE = frozenset(
    {
        "__init__.py",
        "core.py",
        "wire.py",
        "connectivity.py",
        "detector.py",
        "ids.py",
        "events.py",
        "config.py",
        "errors.py",
        "voting/__init__.py",
        "voting/base.py",
        "voting/majority.py",
        "voting/sessions.py",
        "voting/ykd.py",
        "lease.py",
        "clm/__init__.py",
        "clm/leave.py",
        "clm/leave_events.py",
        "clm/leave_wire.py",
        "clm/leaver.py",
        "clm/responder.py",
        "clm/membership.py",
        "clm/model.py",
        "clm/tracking.py",
        "study/model.py",
        "study/schedule.py",
        "sim/__init__.py",
        "sim/checker.py",
        "sim/engine.py",
        "sim/network.py",
        "sim/scenario.py",
        "security/__init__.py",
        "security/aead.py",
        "security/envelope.py",
        "security/keyring.py",
        "security/replay.py",
    }
)

#: Glue modules the core must not import either (that would drag the I/O in through the back door).
GLUE_MODULES = frozenset({"runtime", "_streams", "_leaving", "transports", "cli", "saf", "daemon", "remote"})


def core_modules() -> list[str]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE).as_posix()
        if rel in EXCLUDED or rel.split("/")[0] in EXCLUDED_DIRS:
            continue
        out.append(rel)
    return out


def imported_top_level(source: str) -> set[str]:
    """Top-level names of the absolute imports in ``source`` (``import a.b`` and ``from a.b import c`` give ``a``)."""
    names: set[str] = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.Import):
            names.update(alias.name.split(".")[0] for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module.split(".")[0])
    return names


def imported_package_modules(source: str, rel: str) -> set[str]:
    """First component (below ``pyclm``) of every module of this package that ``source`` imports."""
    package = rel.split("/")[:-1]
    names = set()
    for node in ast.walk(ast.parse(source)):
        if isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)] if node.level > 1 else package
                parts = [*base, *(node.module.split(".") if node.module else [])]
                if not parts:  # "from . import x" at the top of the package
                    parts = [alias.name for alias in node.names]
                names.add(parts[0])
            elif node.module and node.module.split(".")[0] == "pyclm":
                parts = node.module.split(".")[1:] or [alias.name for alias in node.names]
                names.add(parts[0])
        elif isinstance(node, ast.Import):
            for alias in node.names:
                parts = alias.name.split(".")
                if parts[0] == "pyclm" and len(parts) > 1:
                    names.add(parts[1])
    return names


def test_the_core_set_is_what_we_think() -> None:
    found = set(core_modules())
    missing = REQUIRED_CORE - found
    assert not missing, f"core modules not checked (moved, renamed or excluded?): {sorted(missing)}"
    assert not found & EXCLUDED


def test_core_modules_do_no_io() -> None:
    offenders = {}
    for rel in core_modules():
        bad = imported_top_level((PACKAGE / rel).read_text(encoding="utf-8")) & FORBIDDEN
        if bad:
            offenders[rel] = sorted(bad)
    assert not offenders, f"sans-IO core modules import I/O: {offenders}"


def test_core_modules_do_not_import_the_glue() -> None:
    offenders = {}
    for rel in core_modules():
        if rel == "__init__.py":
            continue  # the package front re-exports pyclm.Node from the runtime: a facade, not core logic
        bad = imported_package_modules((PACKAGE / rel).read_text(encoding="utf-8"), rel) & GLUE_MODULES
        if bad:
            offenders[rel] = sorted(bad)
    assert not offenders, f"core modules import the I/O glue: {offenders}"


def test_the_import_walker_sees_every_form() -> None:
    source = "\n".join(
        [
            "import time",
            "import asyncio.subprocess",
            "from socket import socket",
            "import threading as t",
            "from .time import x",  # relative: a sibling module, not the stdlib
            "def f():",
            "    import selectors",  # nested imports count too
            "try:",
            "    import trio",
            "except ImportError:",
            "    pass",
        ]
    )
    assert imported_top_level(source) & FORBIDDEN == {"time", "asyncio", "socket", "threading", "selectors", "trio"}
    assert imported_top_level("import math\nfrom collections import deque") & FORBIDDEN == set()


def test_the_package_walker_resolves_relative_imports() -> None:
    source = "from ..runtime import Node\nfrom .checker import X\nfrom pyclm.transports.udp import U\nimport pyclm.cli"
    assert imported_package_modules(source, "sim/engine.py") == {"runtime", "sim", "transports", "cli"}
    assert imported_package_modules("from .runtime import Node\nfrom . import wire", "core.py") == {"runtime", "wire"}


def test_only_the_aead_module_imports_cryptography_and_only_lazily() -> None:
    """``cryptography`` is an optional extra: importing pyclm must not need it."""
    importers = sorted(
        path.relative_to(PACKAGE).as_posix()
        for path in PACKAGE.rglob("*.py")
        if "cryptography" in imported_top_level(path.read_text(encoding="utf-8"))
    )
    assert importers == ["security/aead.py"]
    tree = ast.parse((PACKAGE / "security/aead.py").read_text(encoding="utf-8"))
    for statement in tree.body:  # at module level only under `if TYPE_CHECKING:`; functions import it lazily
        if isinstance(statement, ast.FunctionDef | ast.ClassDef):
            continue
        if isinstance(statement, ast.If) and ast.unparse(statement.test) == "TYPE_CHECKING":
            continue
        assert "cryptography" not in imported_top_level(ast.unparse(statement)), ast.unparse(statement)
