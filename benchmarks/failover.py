"""Fail-over time: SIGKILL one member, time until every survivor has installed the new membership.

    python -m benchmarks.failover --system corosync --nodes 5 --trials 7 --token-ms 1000
        [--idle-secs 30] [--out benchmarks/results/failover.json] [--keep-logs]

Needs root: every member runs in its own network namespace of a :class:`tests.netns.Lab` (one
bridge in a hub namespace; nothing in the root namespace changes).  Missing tools are installed
with apt-get (``nftables``; ``corosync`` for ``--system corosync``).

What is measured, per trial:

* T0 = ``time.monotonic_ns()`` right before ``os.kill(victim, SIGKILL)``.
* Every member has an observer that stamps each membership change with ``time.monotonic_ns()``
  the moment the change reaches user space (CLOCK_MONOTONIC is one clock for all processes).
  "agree" = the last survivor's first view after T0 whose members are exactly all but the victim;
  "first" = the first survivor's.  The harness waits on these events, it does not poll, so its
  own timing does not enter the numbers.
* Then the victim is restarted; "rejoin" = restart -> every member (the victim too) has a view of
  all n.  The next trial starts once all agree and a short settle time has passed.
* Victims rotate as in the peer baselines: trial t kills node ``(2t + 1) mod n + 1`` (2, 4, 1, 3,
  5, 2, 4 for n = 5), so node 1, corosync's usual ring representative, is killed as well.

Idle cost: after the cluster formed and settled 3 s, CPU % of one core per member process from
``/proc/<pid>/stat`` utime+stime over ``--idle-secs``, and VmRSS at the end of that window.

Corosync observer.  A corosync quorum-API client (``quorum_model_initialize`` with
``QUORUM_MODEL_V1``, ``quorum_trackstart(CS_TRACK_CHANGES | CS_TRACK_CURRENT)``, blocking
``quorum_dispatch``) written with ``ctypes`` against ``libquorum.so.5``, which the ``corosync``
package already installs: no compiler and no -dev packages.  It runs in the member's namespace
(libqb IPC uses abstract unix sockets, which are per network namespace) as
``python -m benchmarks.failover --watch-quorum`` and prints one JSON line per nodelist/quorum
callback.  Resolution: the callback's delivery latency, well under 1 ms.  The alternatives are
worse: polling ``corosync-quorumtool -s -p`` every 10 ms in each namespace costs a process start
(~5-10 ms of CPU) per poll per node, which loads the 2 cores under test and quantizes to the poll
period; corosync's own log with ``timestamp: hires`` has 1 ms resolution but only wall-clock
text stamps and no flush guarantee, so it is kept only as a cross-check (``--keep-logs``).

Each corosync runs as ``ip netns exec <ns> sh -c 'mount --bind <dir>/run /run && exec corosync -f
...'``: ``ip netns exec`` gives the command a private mount namespace, so the bind mount is seen
by that corosync alone (it hard-codes ``/var/run/corosync.pid``).  ``ip netns exec`` and ``sh``
exec, so the PID we hold is corosync's.  Every process started here is ended by that PID.
"""

from __future__ import annotations

import argparse
import ctypes
import json
import os
import shlex
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterable, Iterator, Sequence
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO, TYPE_CHECKING, Any, Protocol

import attrs

if TYPE_CHECKING:
    # tests/ has no __init__.py, so mypy (like pytest) knows its helpers by top-level names;
    # importing the same file as tests.netns would make mypy stop: "source file found twice".
    from netns import Lab, ensure_tools
else:
    from tests.netns import Lab, ensure_tools  # run from the repo root: tests/ is a namespace package

REPO = Path(__file__).resolve().parent.parent
#: The multicast group of the pyclm members (inside the lab's namespaces only).
PYCLM_GROUP = "239.255.77.1:5405"
DEFAULT_OUT = REPO / "benchmarks" / "results" / "failover.json"
CLOCK_TICKS = os.sysconf("SC_CLK_TCK")
SETTLE_SECS = 3.0  # after formation, before the idle window (as the peer baselines did)
TRIAL_GAP_SECS = 2.0  # after a rejoin, before the next kill
COROSYNC_PACKAGES = {"corosync": "corosync", "corosync-cmapctl": "corosync"}


# ---- results --------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Trial:
    """One SIGKILL: who died, and how long until the survivors agreed and the victim was back."""

    victim: int
    agree_s: float | None  # kill -> last survivor has the view without the victim (None: timed out)
    first_s: float | None  # kill -> first survivor has it
    view: str | None  # the view id the survivors installed ("mixed:..." if they differ)
    rejoin_s: float | None  # restart -> every member has the full view again


@attrs.frozen(kw_only=True)
class Result:
    system: str
    version: str
    nodes: int
    settings: dict[str, str]  # what the system was configured with and reports at run time
    victim_rule: str
    form_s: float  # all started -> all n have the full view
    trials: list[Trial]
    median_s: float | None
    min_s: float | None
    max_s: float | None
    failed_trials: int
    idle_secs: float
    idle_cpu_pct: float  # mean over members, % of one core
    idle_cpu_pct_per_node: dict[int, float]
    rss_mib: float  # mean over members
    rss_mib_per_node: dict[int, float]
    machine: dict[str, str]


def victim_for(trial: int, n: int) -> int:
    """Node killed in ``trial`` (0-based): ``(2t + 1) mod n + 1``, the peer baselines' rotation."""
    return (2 * trial + 1) % n + 1


# ---- membership observation -----------------------------------------------------------------


@attrs.frozen(kw_only=True)
class View:
    t_ns: int  # time.monotonic_ns() when the member's observer got the change
    members: frozenset[int]
    view_id: str


class ViewLog:
    """Views reported by every member's observer, with waits that wake on each new view."""

    def __init__(self) -> None:
        self._views: dict[int, list[View]] = {}
        self._changed = threading.Condition()

    def record(self, node: int, view: View) -> None:
        with self._changed:
            self._views.setdefault(node, []).append(view)
            self._changed.notify_all()

    def first_after(self, node: int, members: frozenset[int], after_ns: int) -> View | None:
        with self._changed:
            return next((v for v in self._views.get(node, []) if v.t_ns > after_ns and v.members == members), None)

    def wait_all(
        self, nodes: Iterable[int], members: frozenset[int], after_ns: int, timeout: float
    ) -> dict[int, View] | None:
        """Each node's first view after ``after_ns`` equal to ``members``; None if not all within ``timeout``."""
        nodes = list(nodes)
        found: dict[int, View] = {}

        def complete() -> bool:
            for node in nodes:
                if node not in found and (view := self.first_after(node, members, after_ns)):
                    found[node] = view
            return len(found) == len(nodes)

        with self._changed:
            ok = self._changed.wait_for(complete, timeout=timeout)
        return found if ok else None


class Cluster(Protocol):
    """What the fail-over harness needs from a system under test (corosync now, pyclm next)."""

    n: int
    views: ViewLog

    def start(self, i: int) -> None:
        """Start member ``i`` (and its observer); returns at once."""

    def kill(self, i: int) -> int:
        """SIGKILL member ``i``; return ``time.monotonic_ns()`` taken right before the signal."""

    def pid(self, i: int) -> int:
        """Member ``i``'s process id (for CPU and RSS)."""


@attrs.frozen(kw_only=True)
class Measurement:
    form_s: float
    idle_cpu_pct_per_node: dict[int, float]
    rss_mib_per_node: dict[int, float]
    trials: list[Trial]


def measure_failover(
    cluster: Cluster,
    trials: int,
    *,
    idle_secs: float,
    agree_timeout: float,
    form_timeout: float,
    log: Callable[[str], None] = print,
) -> Measurement:
    """Start every member, wait for one full view, measure idle cost, then run the kill trials."""
    everyone = frozenset(range(1, cluster.n + 1))
    t0 = time.monotonic_ns()
    for i in sorted(everyone):
        cluster.start(i)
    formed = cluster.views.wait_all(everyone, everyone, t0, form_timeout)
    if formed is None:
        raise RuntimeError(f"the {cluster.n} members did not agree on a full view within {form_timeout} s")
    form_s = (max(v.t_ns for v in formed.values()) - t0) / 1e9
    log(f"formed: all {cluster.n} members in one view after {form_s:.2f} s")
    time.sleep(SETTLE_SECS)
    cpu, rss = idle_cost([cluster.pid(i) for i in sorted(everyone)], idle_secs)
    cpu_per_node = dict(zip(sorted(everyone), cpu, strict=True))
    rss_per_node = dict(zip(sorted(everyone), rss, strict=True))
    log(f"idle over {idle_secs:.0f} s: CPU % per member {fmt_map(cpu_per_node)}; RSS MiB {fmt_map(rss_per_node)}")
    done: list[Trial] = []
    for t in range(trials):
        victim = victim_for(t, cluster.n)
        survivors = everyone - {victim}
        kill_ns = cluster.kill(victim)
        got = cluster.views.wait_all(survivors, survivors, kill_ns, agree_timeout)
        agree = first = None
        view_id = None
        if got:
            agree = (max(v.t_ns for v in got.values()) - kill_ns) / 1e9
            first = (min(v.t_ns for v in got.values()) - kill_ns) / 1e9
            ids = sorted({v.view_id for v in got.values()})
            view_id = ids[0] if len(ids) == 1 else "mixed:" + ",".join(ids)
        start_ns = time.monotonic_ns()
        cluster.start(victim)
        back = cluster.views.wait_all(everyone, everyone, start_ns, form_timeout)
        rejoin = (max(v.t_ns for v in back.values()) - start_ns) / 1e9 if back else None
        trial = Trial(victim=victim, agree_s=agree, first_s=first, view=view_id, rejoin_s=rejoin)
        done.append(trial)
        log(
            f"trial {t + 1}/{trials}: killed node {victim}: all survivors agree after {fmt(agree)} s "
            f"(first {fmt(first)} s, view {view_id}); rejoined after {fmt(rejoin)} s"
        )
        if back is None:
            raise RuntimeError(f"node {victim} did not rejoin within {form_timeout} s; stopping")
        time.sleep(TRIAL_GAP_SECS)
    return Measurement(form_s=form_s, idle_cpu_pct_per_node=cpu_per_node, rss_mib_per_node=rss_per_node, trials=done)


def idle_cost(pids: Sequence[int], secs: float) -> tuple[list[float], list[float]]:
    """CPU % of one core per process over ``secs`` (utime+stime), and VmRSS in MiB at the end."""
    before = [cpu_ticks(pid) for pid in pids]
    start = time.monotonic()
    time.sleep(secs)
    elapsed = time.monotonic() - start
    cpu = [(cpu_ticks(pid) - b) / CLOCK_TICKS / elapsed * 100 for pid, b in zip(pids, before, strict=True)]
    return cpu, [rss_mib(pid) for pid in pids]


def cpu_ticks(pid: int) -> int:
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return int(fields[11]) + int(fields[12])  # utime, stime (fields 14 and 15 of stat(5))


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return float("nan")


def summarize(system: str, version: str, n: int, settings: dict[str, str], m: Measurement, idle_secs: float) -> Result:
    times = [t.agree_s for t in m.trials if t.agree_s is not None]
    return Result(
        system=system,
        version=version,
        nodes=n,
        settings=settings,
        victim_rule="trial t (0-based) kills node (2t+1) mod n + 1",
        form_s=round(m.form_s, 4),
        trials=m.trials,
        median_s=statistics.median(times) if times else None,
        min_s=min(times) if times else None,
        max_s=max(times) if times else None,
        failed_trials=len(m.trials) - len(times),
        idle_secs=idle_secs,
        idle_cpu_pct=statistics.mean(m.idle_cpu_pct_per_node.values()),
        idle_cpu_pct_per_node=m.idle_cpu_pct_per_node,
        rss_mib=statistics.mean(m.rss_mib_per_node.values()),
        rss_mib_per_node=m.rss_mib_per_node,
        machine={"kernel": os.uname().release, "cpus": str(os.cpu_count())},
    )


# ---- corosync -------------------------------------------------------------------------------


def corosync_conf(lab: Lab, node_dir: Path, token_ms: int) -> str:
    nodes = "".join(
        f"    node {{\n        ring0_addr: {lab.address(k)}\n        nodeid: {k}\n        name: n{k}\n    }}\n"
        for k in lab.nodes
    )
    return f"""totem {{
    version: 2
    cluster_name: pyclmbench
    transport: knet
    crypto_cipher: none
    crypto_hash: none
    token: {token_ms}
    token_coefficient: 0
}}
nodelist {{
{nodes}}}
quorum {{
    provider: corosync_votequorum
}}
logging {{
    to_logfile: yes
    logfile: {node_dir}/corosync.log
    to_stderr: no
    to_syslog: no
    timestamp: hires
    debug: off
}}
system {{
    state_dir: {node_dir}/state
}}
"""


class CorosyncCluster:
    """n corosync daemons, one per lab namespace, each with a quorum-API observer beside it."""

    def __init__(self, lab: Lab, workdir: Path, token_ms: int) -> None:
        self.n = lab.n
        self.lab = lab
        self.workdir = workdir
        self.views = ViewLog()
        self.daemons: dict[int, subprocess.Popen[bytes]] = {}
        self.observers: dict[int, subprocess.Popen[bytes]] = {}
        self.started: list[subprocess.Popen[bytes]] = []  # every process, for the final cleanup
        self._readers: list[threading.Thread] = []
        for i in lab.nodes:
            d = self.node_dir(i)
            (d / "run").mkdir(parents=True)
            (d / "state").mkdir()
            (d / "corosync.conf").write_text(corosync_conf(lab, d, token_ms))

    def node_dir(self, i: int) -> Path:
        return self.workdir / f"n{i}"

    def start(self, i: int) -> None:
        d = self.node_dir(i)
        (d / "run" / "corosync.pid").unlink(missing_ok=True)  # left behind by a SIGKILL
        run_dir, conf = shlex.quote(str(d / "run")), shlex.quote(str(d / "corosync.conf"))
        script = f"mount --bind {run_dir} /run && exec corosync -f -c {conf}"
        with (d / "stdout.log").open("ab") as out:
            daemon = subprocess.Popen(
                [*self.lab.exec_prefix(i), "sh", "-c", script], stdout=out, stderr=subprocess.STDOUT
            )
        self.started.append(daemon)
        self.daemons[i] = daemon
        with (d / "observer.log").open("ab") as err:
            observer = subprocess.Popen(
                [*self.lab.exec_prefix(i), sys.executable, "-m", "benchmarks.failover", "--watch-quorum"],
                stdout=subprocess.PIPE,
                stderr=err,
                cwd=REPO,
            )
        self.started.append(observer)
        self.observers[i] = observer
        reader = threading.Thread(target=self._read, args=(i, observer), daemon=True)
        reader.start()
        self._readers.append(reader)

    def _read(self, i: int, observer: subprocess.Popen[bytes]) -> None:
        assert observer.stdout is not None
        with (self.node_dir(i) / "observer.jsonl").open("ab") as copy:
            for line in observer.stdout:
                copy.write(line)
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if event.get("event") == "nodelist":
                    members = frozenset(int(m) for m in event["members"])
                    self.views.record(i, View(t_ns=int(event["t_ns"]), members=members, view_id=event["ring"]))

    def kill(self, i: int) -> int:
        daemon = self.daemons[i]
        comm = Path(f"/proc/{daemon.pid}/comm").read_text().strip()
        if comm != "corosync":
            raise RuntimeError(f"PID {daemon.pid} of node {i} is {comm!r}, not corosync")
        t0 = time.monotonic_ns()
        os.kill(daemon.pid, signal.SIGKILL)
        daemon.wait(timeout=10)
        observer = self.observers[i]
        try:  # its quorum_dispatch returns once corosync is gone
            observer.wait(timeout=10)
        except subprocess.TimeoutExpired:
            observer.kill()
            observer.wait(timeout=10)
        remove_ipc_leftovers(daemon.pid)
        return t0

    def pid(self, i: int) -> int:
        return self.daemons[i].pid

    def runtime(self, key: str) -> str:
        done = subprocess.run(
            [*self.lab.exec_prefix(1), "corosync-cmapctl", "-g", key],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return done.stdout.strip().rsplit("=", 1)[-1].strip() or done.stderr.strip()

    def stop(self) -> None:
        """End every process started here, by PID: SIGTERM, then SIGKILL after 10 s."""
        stop_processes(self.started, self._readers)
        for p in self.daemons.values():
            remove_ipc_leftovers(p.pid)


def stop_processes(started: Sequence[subprocess.Popen[bytes]], readers: Sequence[threading.Thread]) -> None:
    """SIGTERM every process of ``started`` still running, SIGKILL those not gone 10 s later, join ``readers``."""
    for p in started:
        if p.poll() is None:
            p.terminate()
    deadline = time.monotonic() + 10
    for p in started:
        try:
            p.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait(timeout=10)
    for reader in readers:
        reader.join(timeout=5)


def remove_ipc_leftovers(pid: int) -> None:
    """Delete the libqb ring buffers and blackbox a dead corosync ``pid`` left in /dev/shm.

    A SIGKILLed corosync cannot remove them (8 MiB+ each); a long kill loop would fill /dev/shm.
    Only names carrying this PID as the server's are touched: ``qb-<pid>-...``, ``qb-corosync-<pid>-...``.
    """
    shm = Path("/dev/shm")
    for entry in shm.glob(f"qb-{pid}-*"):
        if entry.is_dir():
            shutil.rmtree(entry, ignore_errors=True)
        else:
            entry.unlink(missing_ok=True)
    for entry in shm.glob(f"qb-corosync-{pid}-*"):
        entry.unlink(missing_ok=True)


def corosync_version() -> str:
    done = subprocess.run(
        ["dpkg-query", "-W", "-f", "${Package} ${Version}\\n", "corosync", "libknet1", "libqb100"],
        capture_output=True,
        text=True,
        timeout=10,
        check=False,
    )
    return "; ".join(done.stdout.split("\n")).strip("; ") or "corosync (version unknown)"


def run_corosync(
    n: int,
    token_ms: int,
    trials: int,
    *,
    idle_secs: float,
    keep_logs: bool = False,
    log: Callable[[str], None] = print,
) -> Result:
    """Fail-over of ``n`` corosync 3 members (knet/UDP, votequorum, ``token: token_ms``, coefficient 0)."""
    ensure_tools(COROSYNC_PACKAGES)
    workdir = Path(tempfile.mkdtemp(prefix="pyclm-failover-corosync-"))
    ok = False
    try:
        with Lab(n) as lab:
            log(f"lab: namespaces {lab.namespace(1)}..{lab.namespace(n)} + {lab.hub}, subnet {lab.subnet}")
            cluster = CorosyncCluster(lab, workdir, token_ms)
            try:
                # consensus defaults to 1.2 x token; a crash is noticed after token, agreed after consensus.
                agree_timeout = 10 + 5 * token_ms / 1000
                m = measure_failover(
                    cluster,
                    trials,
                    idle_secs=idle_secs,
                    agree_timeout=agree_timeout,
                    form_timeout=60 + 2 * n,
                    log=log,
                )
                settings = {
                    "token_ms": str(token_ms),
                    "token_coefficient": "0",
                    "runtime.config.totem.token": cluster.runtime("runtime.config.totem.token"),
                    "runtime.config.totem.consensus": cluster.runtime("runtime.config.totem.consensus"),
                    "transport": "knet (UDP), crypto off, votequorum",
                }
            finally:
                cluster.stop()
        ok = True
        return summarize("corosync", corosync_version(), n, settings, m, idle_secs)
    finally:
        if keep_logs or not ok:
            log(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


# ---- pyclm ----------------------------------------------------------------------------------


class PyclmCluster:
    """n ``pyclm node`` processes, one per lab namespace, over UDP multicast with a cluster key.

    Each prints ``--events-json``; a reader thread stamps every ``primary`` event with
    ``time.monotonic_ns()`` as it arrives (the moment the change reaches user space in
    another process, as for corosync's observer).  The process is the member (``ip netns
    exec`` execs it), so its PID is the one killed and measured.
    """

    def __init__(self, lab: Lab, workdir: Path, *, suspect_s: float, heartbeat_s: float, quorum: str) -> None:
        from pyclm.security import Keyring

        self.n = lab.n
        self.lab = lab
        self.workdir = workdir
        self.views = ViewLog()
        self.procs: dict[int, subprocess.Popen[bytes]] = {}
        self.started: list[subprocess.Popen[bytes]] = []
        self._readers: list[threading.Thread] = []
        self.key = workdir / "cluster.key"
        Keyring.generate(1).save(self.key)
        self.args = [
            "--nodes",
            f"1-{lab.n}",
            "--multicast",
            PYCLM_GROUP,
            "--key-file",
            str(self.key),
            "--suspect-timeout",
            str(suspect_s),
            "--heartbeat-interval",
            str(heartbeat_s),
            "--quorum",
            quorum,
            "--events-json",
            "--log-level",
            "warning",
        ]
        self.env = dict(os.environ, PYTHONPATH=str(REPO / "src"))

    def start(self, i: int) -> None:
        d = self.workdir / f"n{i}"
        command = [
            *self.lab.exec_prefix(i),
            sys.executable,
            "-m",
            "pyclm.cli",
            "node",
            "--node-id",
            str(i),
            "--interface",
            self.lab.address(i),
            "--state-dir",
            str(d),
            *self.args,
        ]
        d.mkdir(parents=True, exist_ok=True)
        with (self.workdir / f"n{i}.log").open("ab") as err:
            proc = subprocess.Popen(command, stdout=subprocess.PIPE, stderr=err, env=self.env, cwd=REPO)
        self.started.append(proc)
        self.procs[i] = proc
        reader = threading.Thread(target=self._read, args=(i, proc), daemon=True)
        reader.start()
        self._readers.append(reader)

    def _read(self, i: int, proc: subprocess.Popen[bytes]) -> None:
        assert proc.stdout is not None
        for line in proc.stdout:
            t_ns = time.monotonic_ns()
            try:
                event = json.loads(line)
            except ValueError:
                continue
            if event.get("event") == "primary":
                self.views.record(i, View(t_ns=t_ns, members=frozenset(event["members"]), view_id=event["view"]))

    def kill(self, i: int) -> int:
        proc = self.procs[i]
        t0 = time.monotonic_ns()
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=10)
        return t0

    def pid(self, i: int) -> int:
        return self.procs[i].pid

    def stop(self) -> None:
        """End every process started here, by PID: SIGTERM (a graceful leave), then SIGKILL after 10 s."""
        stop_processes(self.started, self._readers)


def pyclm_version() -> str:
    import pyclm

    return f"pyclm {pyclm.__version__} (Python {sys.version.split()[0]})"


def run_pyclm(
    n: int,
    trials: int,
    *,
    idle_secs: float,
    suspect_s: float = 1.0,
    heartbeat_s: float = 0.1,
    quorum: str = "ykd",
    keep_logs: bool = False,
    log: Callable[[str], None] = print,
) -> Result:
    """Fail-over of ``n`` ``pyclm node`` processes (UDP multicast, HMAC-SHA256, ``quorum``)."""
    ensure_tools()
    workdir = Path(tempfile.mkdtemp(prefix="pyclm-failover-pyclm-"))
    ok = False
    try:
        with Lab(n) as lab:
            log(f"lab: namespaces {lab.namespace(1)}..{lab.namespace(n)} + {lab.hub}, subnet {lab.subnet}")
            cluster = PyclmCluster(lab, workdir, suspect_s=suspect_s, heartbeat_s=heartbeat_s, quorum=quorum)
            try:
                m = measure_failover(
                    cluster,
                    trials,
                    idle_secs=idle_secs,
                    agree_timeout=10 + 5 * suspect_s,
                    form_timeout=60 + 2 * n,
                    log=log,
                )
            finally:
                cluster.stop()
        ok = True
        settings = {
            "suspect_timeout_s": str(suspect_s),
            "heartbeat_interval_s": str(heartbeat_s),
            "quorum": quorum,
            "transport": "UDP multicast, HMAC-SHA256 (key file)",
        }
        return summarize("pyclm", pyclm_version(), n, settings, m, idle_secs)
    finally:
        if keep_logs or not ok:
            log(f"logs kept in {workdir}")
        else:
            shutil.rmtree(workdir, ignore_errors=True)


def comparison(results: dict[str, Result]) -> str:
    """The side-by-side table: fail-over medians and their ratio, idle cost per node."""
    from ._common import table

    rows = [["system", "nodes", "median s", "range s", "idle CPU %/node", "RSS MiB/node"]]
    for r in results.values():
        span = f"{fmt(r.min_s)}-{fmt(r.max_s)}"
        rows.append([r.system, str(r.nodes), fmt(r.median_s), span, f"{r.idle_cpu_pct:.2f}", f"{r.rss_mib:.1f}"])
    text = table(rows)
    ours, theirs = results.get("pyclm"), results.get("corosync")
    if ours and theirs and ours.median_s and theirs.median_s:
        text += f"\n\npyclm / corosync fail-over time: {ours.median_s / theirs.median_s:.2f}"
    return text


# ---- corosync's quorum observer --------------------------------------------------------------

# Verified against corosync v3.1.7 (the Debian 12 package here, 3.1.7-1+deb12u2), unchanged on
# corosync's main branch:
#   include/corosync/corotypes.h: cs_error_t, cs_dispatch_flags_t, CS_TRACK_*;
#   include/corosync/quorum.h: quorum_model_t, struct quorum_ring_id, the V1 callbacks, quorum_model_v1_data_t;
#   lib/quorum.c: quorum_dispatch, common_lib/error_conversion.c: qb_to_cs_error.
LIBQUORUM = "libquorum.so.5"
CS_OK = 1
CS_ERR_LIBRARY = 2  # qb_to_cs_error(-ECONNREFUSED / -ENOTCONN): no corosync (yet, or any more)
CS_ERR_TRY_AGAIN = 6  # corosync is starting
CS_ERR_BAD_HANDLE = 9
CS_ERRORS = {CS_OK: "CS_OK", CS_ERR_LIBRARY: "CS_ERR_LIBRARY", CS_ERR_TRY_AGAIN: "CS_ERR_TRY_AGAIN"}
CS_ERRORS |= {CS_ERR_BAD_HANDLE: "CS_ERR_BAD_HANDLE", 7: "CS_ERR_INVALID_PARAM", 11: "CS_ERR_ACCESS"}
CS_DISPATCH_BLOCKING = 3  # cs_dispatch_flags_t
CS_TRACK_CURRENT = 0x01
CS_TRACK_CHANGES = 0x02
QUORUM_MODEL_V1 = 1  # quorum_model_t


class QuorumRingId(ctypes.Structure):
    """``struct quorum_ring_id``: uint32 nodeid, 4 bytes padding, uint64 seq (16 bytes, 8-aligned)."""

    _fields_ = [("nodeid", ctypes.c_uint32), ("seq", ctypes.c_uint64)]


_NodeIds = ctypes.POINTER(ctypes.c_uint32)  # const uint32_t *
#: quorum_v1_quorum_notification_fn_t(handle, quorate, ring_id, member_list_entries, member_list)
_QuorumNotifyFn = ctypes.CFUNCTYPE(None, ctypes.c_uint64, ctypes.c_uint32, QuorumRingId, ctypes.c_uint32, _NodeIds)
#: quorum_v1_nodelist_notification_fn_t(handle, ring_id, members, joined, left: each entries + list)
_NodelistNotifyFn = ctypes.CFUNCTYPE(
    None,
    ctypes.c_uint64,
    QuorumRingId,
    ctypes.c_uint32,
    _NodeIds,
    ctypes.c_uint32,
    _NodeIds,
    ctypes.c_uint32,
    _NodeIds,
)


class QuorumModelV1Data(ctypes.Structure):
    """``quorum_model_v1_data_t``: the model (an enum: 4 bytes, then 4 padding) and two callbacks (24 bytes)."""

    _fields_ = [
        ("model", ctypes.c_int),
        ("quorum_notify_fn", _QuorumNotifyFn),
        ("nodelist_notify_fn", _NodelistNotifyFn),
    ]


assert ctypes.sizeof(QuorumRingId) == 16 and QuorumRingId.seq.offset == 8
assert ctypes.sizeof(QuorumModelV1Data) == 24 and QuorumModelV1Data.quorum_notify_fn.offset == 8


def ring_name(ring: QuorumRingId) -> str:
    """corosync's own spelling of a ring id (``CS_PRI_RING_ID``: hex nodeid "." hex seq), as in its log."""
    return f"{ring.nodeid:x}.{ring.seq:x}"


def cs_error_name(err: int) -> str:
    return CS_ERRORS.get(err, f"cs_error_t {err}")


def load_libquorum() -> ctypes.CDLL:
    """``libquorum.so.5`` with the prototypes of include/corosync/quorum.h (all return ``cs_error_t``)."""
    lib = ctypes.CDLL(LIBQUORUM)
    handle_p, u32_p = ctypes.POINTER(ctypes.c_uint64), ctypes.POINTER(ctypes.c_uint32)
    prototypes: dict[str, list[Any]] = {
        # (quorum_handle_t *, quorum_model_t, quorum_model_data_t *, uint32_t *quorum_type, void *context)
        "quorum_model_initialize": [handle_p, ctypes.c_int, ctypes.POINTER(QuorumModelV1Data), u32_p, ctypes.c_void_p],
        "quorum_trackstart": [ctypes.c_uint64, ctypes.c_uint],  # (handle, unsigned int flags)
        "quorum_dispatch": [ctypes.c_uint64, ctypes.c_int],  # (handle, cs_dispatch_flags_t)
        "quorum_finalize": [ctypes.c_uint64],
    }
    for name, argtypes in prototypes.items():
        function = getattr(lib, name)
        function.argtypes = argtypes
        function.restype = ctypes.c_int
    return lib


def watch_quorum(out: IO[str], *, connect_timeout: float = 60.0) -> int:
    """Print every quorum/nodelist callback of the local corosync to ``out`` as one JSON line.

    Connects (retrying while corosync starts, up to ``connect_timeout`` s), tracks current state and
    changes, and dispatches until corosync goes away: then returns 0.  Besides the ``nodelist`` and
    ``quorum`` events there is a ``connected`` line first and a ``disconnected`` line last.  A setup failure, or an
    exception while writing an event, is one line on stderr and a non-zero return.
    """

    def fail(what: str) -> int:
        print(f"watch-quorum: {what}", file=sys.stderr, flush=True)
        return 1

    def emit(event: dict[str, Any]) -> None:
        out.write(json.dumps(event) + "\n")
        out.flush()

    try:
        lib = load_libquorum()
    except (OSError, AttributeError) as e:
        return fail(f"cannot load {LIBQUORUM}: {e}")

    handle = ctypes.c_uint64(0)
    errors: list[Exception] = []

    def ids(entries: int, ids_p: Any) -> list[int]:
        return [int(ids_p[k]) for k in range(entries)]

    def stop(e: Exception) -> None:
        # ctypes would print and swallow an exception from a callback; end the dispatch instead
        # (quorum_finalize from a callback makes quorum_dispatch return after that callback).
        errors.append(e)
        lib.quorum_finalize(handle)

    def on_quorum(_h: int, quorate: int, ring: QuorumRingId, n: int, members: Any) -> None:
        t_ns = time.monotonic_ns()
        try:
            ring_id, member_ids = ring_name(ring), ids(n, members)
            emit({"event": "quorum", "t_ns": t_ns, "quorate": bool(quorate), "ring": ring_id, "members": member_ids})
        except Exception as e:
            stop(e)

    def on_nodelist(
        _h: int, ring: QuorumRingId, n: int, members: Any, nj: int, joined: Any, nl: int, left: Any
    ) -> None:
        t_ns = time.monotonic_ns()
        try:
            event = {"event": "nodelist", "t_ns": t_ns, "ring": ring_name(ring)}
            emit(event | {"members": ids(n, members), "joined": ids(nj, joined), "left": ids(nl, left)})
        except Exception as e:
            stop(e)

    # The ctypes callback objects must outlive the connection: libquorum keeps copies of the pointers.
    model = QuorumModelV1Data(QUORUM_MODEL_V1, _QuorumNotifyFn(on_quorum), _NodelistNotifyFn(on_nodelist))
    quorum_type = ctypes.c_uint32(0)
    deadline = time.monotonic() + connect_timeout
    while True:
        err = lib.quorum_model_initialize(
            ctypes.byref(handle), QUORUM_MODEL_V1, ctypes.byref(model), ctypes.byref(quorum_type), None
        )
        if err == CS_OK:
            break
        if err not in (CS_ERR_TRY_AGAIN, CS_ERR_LIBRARY):
            return fail(f"quorum_model_initialize: {cs_error_name(err)}")
        if time.monotonic() >= deadline:
            return fail(f"quorum_model_initialize: {cs_error_name(err)} for {connect_timeout:g} s (corosync not up?)")
        time.sleep(0.05)
    emit({"event": "connected", "t_ns": time.monotonic_ns(), "quorum_type": quorum_type.value})
    err = lib.quorum_trackstart(handle, CS_TRACK_CHANGES | CS_TRACK_CURRENT)
    if err != CS_OK:
        lib.quorum_finalize(handle)
        return fail(f"quorum_trackstart: {cs_error_name(err)}")
    # Blocks, running the callbacks, until corosync closes the IPC connection (CS_ERR_LIBRARY from
    # -ENOTCONN, or CS_OK when libqb reports a bad handle) or a callback called quorum_finalize.
    err = lib.quorum_dispatch(handle, CS_DISPATCH_BLOCKING)
    if errors:
        return fail(f"in a callback: {errors[0]!r}")
    lib.quorum_finalize(handle)
    with suppress(OSError):  # the reader may be gone as well
        emit({"event": "disconnected", "t_ns": time.monotonic_ns(), "error": cs_error_name(err)})
    return 0


# ---- output ---------------------------------------------------------------------------------


def fmt(x: float | None) -> str:
    return "-" if x is None else f"{x:.3f}"


def fmt_map(values: dict[int, float]) -> str:
    return " ".join(f"n{k}={v:.2f}" for k, v in sorted(values.items()))


def report(result: Result) -> str:
    # Imported here: _common pulls in pyclm.sim, which the quorum observer (this module, run in
    # every namespace) does not need at start-up.
    from ._common import table

    rows = [["trial", "victim", "agree s", "first s", "view", "rejoin s"]]
    for k, t in enumerate(result.trials, 1):
        rows.append([str(k), f"n{t.victim}", fmt(t.agree_s), fmt(t.first_s), t.view or "-", fmt(t.rejoin_s)])
    summary = [
        ["system", "nodes", "median s", "min s", "max s", "failed", "idle CPU %/node", "RSS MiB/node"],
        [
            result.system,
            str(result.nodes),
            fmt(result.median_s),
            fmt(result.min_s),
            fmt(result.max_s),
            str(result.failed_trials),
            f"{result.idle_cpu_pct:.2f}",
            f"{result.rss_mib:.1f}",
        ],
    ]
    settings = ", ".join(f"{k}={v}" for k, v in result.settings.items())
    return f"{table(rows)}\n\n{table(summary)}\n\n{result.version}\n{settings}"


def save(result: Result, path: Path) -> None:
    """Write ``result`` under its system's key, keeping the other systems' results in the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError):
        data = {}
    data[result.system] = attrs.asdict(result)
    path.write_text(json.dumps(data, indent=2, sort_keys=True) + "\n")


@contextmanager
def _terminate_as_exit() -> Iterator[None]:
    """SIGTERM raises SystemExit here, so the labs and every started process are cleaned up."""

    def handler(signum: int, _frame: object) -> None:
        raise SystemExit(128 + signum)

    previous = signal.signal(signal.SIGTERM, handler)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, previous)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--system", choices=["both", "corosync", "pyclm"], default="both")
    parser.add_argument("--nodes", type=int, default=5)
    parser.add_argument("--trials", type=int, default=7)
    parser.add_argument(
        "--token-ms", type=int, default=1000, help="corosync totem token (coefficient 0) = pyclm suspect timeout"
    )
    parser.add_argument("--heartbeat-ms", type=int, default=100, help="pyclm heartbeat interval")
    parser.add_argument("--idle-secs", type=float, default=30.0)
    parser.add_argument("--out", type=Path, default=DEFAULT_OUT)
    parser.add_argument("--keep-logs", action="store_true", help="keep every member's logs (path printed)")
    parser.add_argument("--watch-quorum", action="store_true", help=argparse.SUPPRESS)  # the observer
    args = parser.parse_args(argv)
    if args.watch_quorum:
        return watch_quorum(sys.stdout)
    if args.nodes < 3:
        parser.error("--nodes must be at least 3 (a kill must leave a majority)")
    results: dict[str, Result] = {}
    with _terminate_as_exit():
        systems = ["corosync", "pyclm"] if args.system == "both" else [args.system]
        for system in systems:
            if system == "corosync":
                results[system] = run_corosync(
                    args.nodes, args.token_ms, args.trials, idle_secs=args.idle_secs, keep_logs=args.keep_logs
                )
            else:
                results[system] = run_pyclm(
                    args.nodes,
                    args.trials,
                    idle_secs=args.idle_secs,
                    suspect_s=args.token_ms / 1000,
                    heartbeat_s=args.heartbeat_ms / 1000,
                    keep_logs=args.keep_logs,
                )
            print()
            print(report(results[system]))
            save(results[system], args.out)
    if len(results) > 1:
        print()
        print(comparison(results))
    print(f"\nwritten to {args.out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
