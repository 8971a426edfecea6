"""Real ``pyclm node`` processes for tests and benchmarks: start, watch, signal, clean up.

Every process is started by :class:`NodeProcesses` and ended by PID, only by it
(SIGKILL on the way out for any still running).  Each node prints ``--events-json``
lines; a reader thread per process collects them, so conditions are checked with
bounded waits (:meth:`NodeProcesses.wait_for`) and never by sleeping a fixed time.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

PYCLM = [sys.executable, "-m", "pyclm.cli"]


def free_udp_port(host: str = "127.0.0.1", rng: random.Random | None = None) -> int:
    """A UDP port nobody on ``host`` uses now (random, so parallel runs do not collide)."""
    rng = rng or random.Random()
    for _ in range(200):
        port = rng.randrange(20000, 60000)
        family = socket.AF_INET6 if ":" in host else socket.AF_INET
        with socket.socket(family, socket.SOCK_DGRAM) as probe:
            try:
                probe.bind((host, port))
            except OSError:
                continue
            return port
    raise RuntimeError("no free UDP port found in 200 tries")


def cluster_args(
    workdir: Path, *, nodes: str, multicast: str, suspect: float, heartbeat: float = 0.1, extra: Sequence[str] = ()
) -> list[str]:
    """The flags every node of a test cluster shares, with a fresh cluster key in ``workdir``."""
    from pyclm.security import Keyring

    key = workdir / "cluster.key"
    Keyring.generate(1).save(key)
    return [
        "--nodes",
        nodes,
        "--multicast",
        multicast,
        "--key-file",
        str(key),
        "--heartbeat-interval",
        str(heartbeat),
        "--suspect-timeout",
        str(suspect),
        *extra,
    ]


class NodeProcess:
    """One ``pyclm node`` process and the event records it printed."""

    def __init__(
        self,
        node_id: int,
        args: Sequence[str],
        *,
        env: dict[str, str],
        log_dir: Path,
        cwd: Path,
        prefix: Sequence[str] = (),
    ) -> None:
        self.node_id = node_id
        self.args = list(args)
        self.records: list[dict[str, Any]] = []
        self.lock = threading.Lock()
        self.stderr_path = log_dir / f"node{node_id}-{time.monotonic_ns()}.log"
        self._stderr = self.stderr_path.open("wb")
        self.proc = subprocess.Popen(
            [*prefix, *PYCLM, "node", *self.args],  # prefix: e.g. ip netns exec NAME (it execs: same PID)
            stdout=subprocess.PIPE,
            stderr=self._stderr,
            env=env,
            cwd=cwd,
        )
        self.started = time.monotonic()
        self._reader = threading.Thread(target=self._read, daemon=True)
        self._reader.start()

    def _read(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            try:
                record = json.loads(line)
            except ValueError:
                continue
            record["_mono"] = time.monotonic()
            with self.lock:
                self.records.append(record)

    @property
    def pid(self) -> int:
        return self.proc.pid

    def alive(self) -> bool:
        return self.proc.poll() is None

    def signal(self, signum: int) -> None:
        if self.alive():
            os.kill(self.proc.pid, signum)

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        self._reader.join(timeout=5)
        self._stderr.close()
        return code

    def last(self, event: str) -> dict[str, Any] | None:
        with self.lock:
            return next((r for r in reversed(self.records) if r["event"] == event), None)

    def state(self) -> tuple[str | None, tuple[int, ...], int | None]:
        """(view, members, primary number or None) as this node's records last said."""
        with self.lock:
            view: str | None = None
            members: tuple[int, ...] = ()
            number: int | None = None
            for record in self.records:
                if record["event"] == "view":
                    view, members, number = record["view"], tuple(record["members"]), None
                elif record["event"] == "primary" and record["view"] == view:
                    number = record["number"]
                elif record["event"] == "primary_lost" and record["view"] == view:
                    number = None
            return view, members, number

    def stderr_text(self) -> str:
        try:
            return self.stderr_path.read_text(errors="replace")
        except OSError:
            return ""


class NodeProcesses:
    """A set of ``pyclm node`` processes; use as a context manager (kills leftovers by PID)."""

    def __init__(self, workdir: Path, common: Sequence[str], *, env: dict[str, str] | None = None) -> None:
        self.workdir = workdir
        self.common = list(common)
        self.env = dict(os.environ if env is None else env)
        src = str(Path(__file__).resolve().parent.parent / "src")
        self.env["PYTHONPATH"] = src + os.pathsep + self.env.get("PYTHONPATH", "")
        self.nodes: dict[int, NodeProcess] = {}
        self.log_dir = workdir / "logs"
        self.log_dir.mkdir(parents=True, exist_ok=True)

    def state_dir(self, node_id: int) -> Path:
        return self.workdir / f"node{node_id}"

    def start(self, node_id: int, *extra: str, prefix: Sequence[str] = ()) -> NodeProcess:
        args = [
            "--node-id",
            str(node_id),
            "--state-dir",
            str(self.state_dir(node_id)),
            "--events-json",
            *self.common,
            *extra,
        ]
        node = NodeProcess(node_id, args, env=self.env, log_dir=self.log_dir, cwd=self.workdir, prefix=prefix)
        self.nodes[node_id] = node
        return node

    def wait_for(self, what: str, predicate: Callable[[], bool], timeout: float) -> float:
        """Seconds until ``predicate()`` held; AssertionError naming ``what`` after ``timeout``."""
        started = time.monotonic()
        deadline = started + timeout
        while time.monotonic() < deadline:
            if predicate():
                return time.monotonic() - started
            for node in self.nodes.values():
                if not node.alive() and node.proc.returncode not in (0, -signal.SIGKILL, -signal.SIGTERM):
                    raise AssertionError(
                        f"node {node.node_id} exited with {node.proc.returncode}:\n{node.stderr_text()}"
                    )
            time.sleep(0.01)
        raise AssertionError(f"timed out after {timeout}s waiting for {what}; {self.describe()}")

    def agree(self, node_ids: Sequence[int], members: Sequence[int]) -> bool:
        """All of ``node_ids`` have installed the same primary view of exactly ``members``."""
        states = [self.nodes[n].state() for n in node_ids]
        return len({s[0] for s in states}) == 1 and all(
            s[1] == tuple(sorted(members)) and s[2] is not None for s in states
        )

    def describe(self) -> str:
        return "; ".join(f"node {n}: {p.state()} alive={p.alive()}" for n, p in sorted(self.nodes.items()))

    def __enter__(self) -> NodeProcesses:
        return self

    def __exit__(self, *exc: object) -> None:
        for node in self.nodes.values():
            if node.alive():
                node.proc.kill()
            with contextlib.suppress(subprocess.TimeoutExpired):
                node.wait(10)
