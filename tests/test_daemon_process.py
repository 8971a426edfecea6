"""``pyclm node`` as a process: flags, signals, the CLI over the control socket, attaching programs.

These run the daemon over the memory transport (a cluster of one), so they need no
network; the multi-node runs over UDP are in test_udp_cluster.py and test_netns_cluster.py.
"""

from __future__ import annotations

import grp
import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import anyio
import pytest

import pyclm.saf
from _procs import PYCLM, NodeProcess, NodeProcesses
from pyclm.clm import LeaveProposal, LeaveStep
from pyclm.remote import attach
from pyclm.saf import saAis, saClm

MEMORY = ["--transport", "memory", "--nodes", "1", "--heartbeat-interval", "0.05", "--suspect-timeout", "0.25"]
E = saAis.eSaAisErrorT
#: A Python another user may run (this venv's may sit in root's home); Debian's python3.
SYSTEM_PYTHON = "/usr/bin/python3"


def _cli(*args: str, timeout: float = 30) -> subprocess.CompletedProcess[str]:
    return subprocess.run([*PYCLM, *args], capture_output=True, text=True, timeout=timeout)


def _primary(nodes: NodeProcesses, node: NodeProcess) -> None:
    nodes.wait_for("node 1 primary", lambda: node.state()[2] is not None, timeout=20)


@pytest.mark.parametrize(
    ("args", "line"),
    [
        (["node", "--node-id", "1"], "pyclm: nodes: missing: the quorum policy needs the cluster's node ids"),
        (["node", "--node-id", "1", "--nodes", "1", "--ttl", "x"], "pyclm node: argument --ttl: invalid int value"),
        (["node", "--node-id", "1", "--nodes", "1", "--multicast", "10.1.1.1:5"], "pyclm: multicast: 10.1.1.1 is not"),
        (["node", "--node-id", "1", "--nodes", "1", "--bogus"], "pyclm: unrecognized arguments: --bogus"),
    ],
)
def test_a_bad_setting_is_one_line_and_exit_2(tmp_path: Path, args: list[str], line: str) -> None:
    result = _cli(*args, "--state-dir", str(tmp_path / "s"))
    assert result.returncode == 2
    assert result.stderr.count("\n") == 1 and result.stderr.startswith(line), result.stderr
    assert not (tmp_path / "s").exists()  # nothing was created


def test_status_watch_and_sigterm(tmp_path: Path) -> None:
    with NodeProcesses(tmp_path, MEMORY) as nodes:
        node = nodes.start(1)
        _primary(nodes, node)
        state = str(nodes.state_dir(1))
        text = _cli("status", "--state-dir", state)
        assert text.returncode == 0, text.stderr
        assert "view 1.1: primary #1" in text.stdout and "(this node)" in text.stdout
        status = json.loads(_cli("status", "--json", "--state-dir", state).stdout)
        assert status["node"] == 1 and status["primary_number"] == 1
        watch = subprocess.Popen([*PYCLM, "watch", "--json", "--state-dir", state], stdout=subprocess.PIPE, text=True)
        try:
            assert watch.stdout is not None
            first = json.loads(watch.stdout.readline())
            assert first["ok"] and first["status"]["primary"]
            node.signal(signal.SIGTERM)  # a graceful leave: watch sees the node SHUTDOWN, then the end
            rest = [json.loads(line) for line in watch.stdout]
        finally:
            watch.kill()
            watch.wait(10)
        shutdown = [r for r in rest if r.get("event") == "membership" and r["shutdown"]]
        assert [[n["node_id"] for n in r["shutdown"]] for r in shutdown] == [[1]]
        assert node.wait(20) == 0
    log = node.stderr_text()
    assert "level=info logger=pyclm.daemon node=1" in log and "left the cluster" in log
    view = node.last("view")
    assert view is not None and abs(view["wall"] - time.time()) < 120 and view["t"] >= 0


class _Refuse:
    def __init__(self) -> None:
        self.asked = 0

    def begin_leave_step(self, step: LeaveStep, proposal: LeaveProposal, answer: object) -> None:
        self.asked += 1
        answer(step is not LeaveStep.VALIDATE)  # type: ignore[operator]


def test_a_rejected_leave_stays_until_a_second_signal(tmp_path: Path) -> None:
    with NodeProcesses(tmp_path, MEMORY) as nodes:
        node = nodes.start(1)
        _primary(nodes, node)
        refuse = _Refuse()

        async def attached() -> None:
            async with attach(state_dir=nodes.state_dir(1)) as remote:
                remote.add_leave_participant(refuse)
                node.signal(signal.SIGTERM)
                with anyio.fail_after(20):
                    while "leave rejected, staying in the cluster" not in node.stderr_text():
                        await anyio.sleep(0.02)
                assert node.alive() and remote.running and refuse.asked == 1
                node.signal(signal.SIGTERM)  # the second signal leaves without asking
                with anyio.fail_after(20):
                    while not remote.stopped:
                        await anyio.sleep(0.02)

        anyio.run(attached)
        assert node.wait(20) == 0
        assert refuse.asked == 1


def test_a_saf_program_speaks_for_the_daemon(tmp_path: Path) -> None:
    with NodeProcesses(tmp_path, MEMORY) as nodes:
        node = nodes.start(1)
        _primary(nodes, node)
        with pyclm.saf.bind_daemon(state_dir=nodes.state_dir(1)):
            handle = saClm.SaClmHandleT()
            assert saClm.saClmInitialize_4(handle, None, saAis.SaVersionT("B", 4, 1)) == E.SA_AIS_OK
            info = saClm.SaClmClusterNodeT_4()
            assert saClm.saClmClusterNodeGet_4(handle, 1, saAis.saAis.SA_TIME_ONE_SECOND, info) == E.SA_AIS_OK
            assert info.nodeId == 1 and info.member and info.nodeName.value == b"node1"
            assert saClm.saClmFinalize(handle) == E.SA_AIS_OK
        # Outside the block the facade speaks for no node.
        assert saClm.saClmInitialize_4(saClm.SaClmHandleT(), None, saAis.SaVersionT("B", 4, 1)) == (
            E.SA_AIS_ERR_UNAVAILABLE
        )
        node.signal(signal.SIGTERM)
        assert node.wait(20) == 0


def test_no_daemon_no_binding(tmp_path: Path) -> None:
    from pyclm.daemon.client import ControlError

    with pytest.raises(ControlError, match="no control socket"):
        pyclm.saf.bind_daemon(state_dir=tmp_path)
    assert not [t for t in threading.enumerate() if t.name == "pyclm-saf-daemon"]


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root: the test connects as another user and group")
def test_the_control_group_reaches_the_socket() -> None:
    """With control_group the socket is 0660 in a state dir the group may traverse (0710)."""
    group = grp.getgrnam("daemon")
    base = Path(tempfile.mkdtemp(prefix="pyclm-group-", dir="/tmp"))  # /tmp: reachable by anybody
    try:
        base.chmod(0o711)
        with NodeProcesses(base, [*MEMORY, "--control-group", "daemon"]) as nodes:
            node = nodes.start(1)
            _primary(nodes, node)
            sock = nodes.state_dir(1) / "control.sock"
            assert stat.S_IMODE(sock.stat().st_mode) == 0o660 and sock.stat().st_gid == group.gr_gid
            assert stat.S_IMODE(nodes.state_dir(1).stat().st_mode) == 0o710
            probe = "import socket, sys; s = socket.socket(socket.AF_UNIX); s.connect(sys.argv[1]); print('ok')"
            as_group = subprocess.run(
                [SYSTEM_PYTHON, "-c", probe, str(sock)],
                user=65534,
                group=group.gr_gid,
                extra_groups=[],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert as_group.stdout.strip() == "ok", as_group.stderr
            as_other = subprocess.run(
                [SYSTEM_PYTHON, "-c", probe, str(sock)],
                user=65534,
                group=65534,
                extra_groups=[],
                capture_output=True,
                text=True,
                timeout=30,
            )
            assert "Permission denied" in as_other.stderr
            node.signal(signal.SIGTERM)
            assert node.wait(20) == 0
    finally:
        shutil.rmtree(base, ignore_errors=True)


def test_a_node_whose_key_file_is_bad_names_the_setting(tmp_path: Path) -> None:
    key = tmp_path / "cluster.key"
    key.write_text("active = 1\n")
    key.chmod(0o600)
    result = _cli("node", "--node-id", "1", "--nodes", "1", "--key-file", str(key), "--state-dir", str(tmp_path / "s"))
    assert result.returncode == 2
    assert result.stderr.startswith("pyclm: key_file: ") and result.stderr.count("\n") == 1, result.stderr


def _kernel_has_tipc() -> bool:
    try:
        socket.socket(socket.AF_TIPC, socket.SOCK_RDM).close()
    except (AttributeError, OSError):
        return False
    return True


@pytest.mark.skipif(_kernel_has_tipc(), reason="this kernel has TIPC: the TIPC suite (tests/tipc) runs the node")
def test_tipc_without_the_kernel_module_is_one_line(tmp_path: Path) -> None:
    args = ("node", "--node-id", "1", "--nodes", "1", "--transport", "tipc", "--state-dir", str(tmp_path / "s"))
    result = _cli(*args)
    assert result.returncode == 2
    assert result.stderr.startswith("pyclm: transport: ") and "modprobe tipc" in result.stderr, result.stderr
    assert result.stderr.count("\n") == 1
