"""Stable storage: memory, files (atomic, versioned, checksummed; a killed writer) and the membership record."""

from __future__ import annotations

import os
import random
import re
import signal
import struct
import subprocess
import sys
import time
import zlib
from collections.abc import Mapping
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyclm.config import MembershipConfig
from pyclm.core import Membership
from pyclm.storage import FileStorage, MembershipRecord, MemoryStorage, Storage, StorageWrite
from pyclm.voting import YKD, QuorumConfig

SETTINGS = settings(max_examples=100, derandomize=True, database=None, deadline=None)


def test_memory_storage() -> None:
    storage: Storage = MemoryStorage()
    assert storage.load() == {}
    storage.write("membership", b"one")
    storage.write("membership", b"two")
    storage.write("quorum", b"q")
    assert storage.load() == {"membership": b"two", "quorum": b"q"}
    assert isinstance(storage, MemoryStorage)
    assert storage.writes == 3


def test_memory_storage_load_is_a_copy() -> None:
    storage = MemoryStorage()
    storage.write("a", b"1")
    loaded = storage.load()
    assert isinstance(loaded, dict)
    loaded["a"] = b"changed"
    assert storage.load() == {"a": b"1"}


def test_file_storage_round_trip(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path / "state")
    assert storage.load() == {}
    storage.write("membership", b"\x00\x01binary\xff")
    storage.write("quorum", b"")
    assert storage.load() == {"membership": b"\x00\x01binary\xff", "quorum": b""}
    assert storage.corrupt == []
    # A second instance (a restarted process) reads the same records.
    assert FileStorage(tmp_path / "state").load() == {"membership": b"\x00\x01binary\xff", "quorum": b""}


def test_file_storage_replaces_atomically(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    storage.write("membership", b"old")
    storage.write("membership", b"new")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["membership.rec"]  # no .tmp left behind
    assert storage.load() == {"membership": b"new"}


def test_file_storage_ignores_a_temp_file_left_by_a_crash(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    storage.write("membership", b"durable")
    (tmp_path / "membership.tmp").write_bytes(b"half a rec")  # crash before the rename
    assert storage.load() == {"membership": b"durable"}
    assert storage.corrupt == []
    storage.write("membership", b"next")  # the next write simply overwrites the temp file
    assert sorted(p.name for p in tmp_path.iterdir()) == ["membership.rec"]
    assert storage.load() == {"membership": b"next"}


def test_file_layout_version_2(tmp_path: Path) -> None:
    FileStorage(tmp_path).write("quorum", b"abc")
    raw = (tmp_path / "quorum.rec").read_bytes()
    prefix = b"PYCLM2" + struct.pack("!I", 3)
    crc = zlib.crc32(b"abc", zlib.crc32(b"quorum", zlib.crc32(prefix)))
    assert raw == prefix + struct.pack("!I", crc) + b"abc"


def test_a_version_1_file_is_still_read(tmp_path: Path) -> None:
    (tmp_path / "membership.rec").write_bytes(b"PYCLM1" + struct.pack("!I", zlib.crc32(b"old")) + b"old")
    storage = FileStorage(tmp_path)
    assert storage.load() == {"membership": b"old"}
    assert storage.corrupt == []
    storage.write("membership", b"new")  # rewritten in the current format
    assert (tmp_path / "membership.rec").read_bytes().startswith(b"PYCLM2")
    assert storage.load() == {"membership": b"new"}


def test_an_unknown_format_version_is_unreadable(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    storage = FileStorage(tmp_path)
    storage.write("membership", b"0123456789")
    path = tmp_path / "membership.rec"
    path.write_bytes(b"PYCLM3" + path.read_bytes()[6:])
    assert storage.load() == {"membership": b""}
    assert storage.corrupt == ["membership"]
    assert "unknown format version b'3'" in caplog.text


def test_a_record_copied_to_another_key_is_unreadable(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    storage.write("quorum", b"voting state")
    (tmp_path / "membership.rec").write_bytes((tmp_path / "quorum.rec").read_bytes())
    assert storage.load() == {"membership": b"", "quorum": b"voting state"}
    assert storage.corrupt == ["membership"]


# Header: magic 0-4, version 5, length 6-9, CRC 10-13; the record from 14 on.
@pytest.mark.parametrize("offset", [0, 4, 5, 6, 9, 10, 13, 14, -1])
def test_a_flipped_byte_makes_the_record_present_but_unreadable(tmp_path: Path, offset: int) -> None:
    storage = FileStorage(tmp_path)
    storage.write("membership", b"0123456789")
    storage.write("quorum", b"fine")
    path = tmp_path / "membership.rec"
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x40
    path.write_bytes(bytes(raw))
    assert storage.load() == {"membership": b"", "quorum": b"fine"}
    assert storage.corrupt == ["membership"]


def test_truncated_files_are_present_but_unreadable(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    storage.write("membership", b"0123456789")
    path = tmp_path / "membership.rec"
    full = path.read_bytes()
    for cut in (0, 3, 5, 6, 9, 13, 14, len(full) - 1):
        path.write_bytes(full[:cut])
        assert storage.load() == {"membership": b""}, cut
        assert storage.corrupt == ["membership"]
    path.write_bytes(full + b"x")  # trailing bytes: the length no longer matches
    assert storage.load() == {"membership": b""}
    path.write_bytes(full)
    assert storage.load() == {"membership": b"0123456789"}
    assert storage.corrupt == []  # reset by every load


def test_files_not_named_after_a_key_are_ignored(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    storage.write("membership", b"m")
    (tmp_path / "a.b.rec").write_bytes(b"junk")
    (tmp_path / "notes.txt").write_bytes(b"junk")
    assert storage.load() == {"membership": b"m"}
    assert storage.corrupt == []


def test_a_crash_between_temp_write_and_rename_keeps_the_old_record(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    storage = FileStorage(tmp_path)
    storage.write("membership", b"old")

    def power_cut(src: object, dst: object) -> None:
        raise OSError("simulated crash before the rename")

    with monkeypatch.context() as patch:
        patch.setattr(os, "replace", power_cut)
        with pytest.raises(OSError, match="simulated crash"):
            storage.write("membership", b"new")
    # The complete new record sits in the temp file; the restarted process reads the old one.
    assert sorted(p.name for p in tmp_path.iterdir()) == ["membership.rec", "membership.tmp"]
    restarted = FileStorage(tmp_path)
    assert restarted.load() == {"membership": b"old"}
    assert restarted.corrupt == []
    restarted.write("membership", b"newer")
    assert sorted(p.name for p in tmp_path.iterdir()) == ["membership.rec"]
    assert restarted.load() == {"membership": b"newer"}


def test_the_core_treats_an_unreadable_membership_file_as_a_past_member(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    storage = FileStorage(tmp_path)
    storage.write("membership", MembershipRecord(5, 3, 1).encode())
    path = tmp_path / "membership.rec"
    path.write_bytes(path.read_bytes()[:-1])
    stored = storage.load()
    assert stored == {"membership": b""}
    quorum = QuorumConfig(policy="ykd", votes={1: 1, 2: 1, 3: 1})
    config = MembershipConfig(node_id=1)
    core = Membership(config, quorum, stored=stored, wall_clock_ns=10**18, now=0.0, rng=random.Random(0))
    assert isinstance(core.policy, YKD)
    assert core.policy.state.amnesiac  # not a brand-new node: it may have been in views
    assert "stored membership record is unreadable" in caplog.text
    assert "voting state missing after being a member" in caplog.text


@pytest.mark.parametrize("key", ["", "a/b", "../escape", "a.b", "a-b", "with space", "ключ", "a\x00b", "/abs"])
def test_bad_keys_are_rejected(tmp_path: Path, key: str) -> None:
    storage = FileStorage(tmp_path / "state")
    with pytest.raises(ValueError, match="storage key"):
        storage.write(key, b"x")
    assert list((tmp_path / "state").iterdir()) == []
    assert sorted(p.name for p in tmp_path.iterdir()) == ["state"]


@pytest.mark.parametrize("key", ["membership", "quorum", "a_b", "X1"])
def test_good_keys(tmp_path: Path, key: str) -> None:
    storage = FileStorage(tmp_path)
    storage.write(key, b"v")
    assert storage.load() == {key: b"v"}


def test_file_storage_creates_a_private_directory(tmp_path: Path) -> None:
    old = os.umask(0o022)
    try:
        FileStorage(tmp_path / "a" / "b")
    finally:
        os.umask(old)
    assert (tmp_path / "a" / "b").is_dir()
    assert (tmp_path / "a" / "b").stat().st_mode & 0o077 == 0


def test_membership_record_round_trip() -> None:
    record = MembershipRecord(incarnation=2**64 - 1, max_epoch=7, max_coordinator=2**32 - 1, recent=(1, 5))
    data = record.encode()
    assert len(data) == 21 + 2 + 8
    assert MembershipRecord.decode(data) == record


def test_a_version_1_record_is_read_with_its_recent_nodes_unknown() -> None:
    data = struct.pack("!BQQI", 1, 9, 7, 3)
    assert MembershipRecord.decode(data) == MembershipRecord(9, 7, 3, None)
    assert MembershipRecord.decode(data + b"\x00\x00") is None


@SETTINGS
@given(
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**64 - 1),
    st.integers(0, 2**32 - 1),
    st.lists(st.integers(0, 2**32 - 1), max_size=20, unique=True),
)
def test_membership_record_round_trip_property(
    incarnation: int, epoch: int, coordinator: int, recent: list[int]
) -> None:
    record = MembershipRecord(incarnation, epoch, coordinator, tuple(sorted(recent)))
    assert MembershipRecord.decode(record.encode()) == record


@SETTINGS
@given(st.binary(max_size=40))
def test_membership_record_decode_never_raises(data: bytes) -> None:
    result = MembershipRecord.decode(data)
    if result is not None and result.recent is not None:
        assert result.encode() == data


def test_membership_record_rejects_other_lengths_and_versions() -> None:
    data = MembershipRecord(1, 2, 3).encode()
    assert MembershipRecord.decode(data[:-1]) is None
    assert MembershipRecord.decode(data + b"\x00") is None
    assert MembershipRecord.decode(b"\x03" + data[1:]) is None
    assert MembershipRecord.decode(b"") is None


def test_storage_write_value() -> None:
    assert StorageWrite("membership", b"x") == StorageWrite("membership", b"x")


# ------------------------------------------------------------------ a real process, killed


WRITER = Path(__file__).with_name("_storage_writer.py")
KILLS = 20


def check_written(record: bytes) -> int:
    """``record`` is one of the two payloads the writer script alternates, complete: its counter."""
    match = re.fullmatch(rb"(even|odd):(\d+):(x*)", record)
    assert match is not None, record[:40]
    kind, counter, filler = match.group(1), int(match.group(2)), match.group(3)
    assert kind == (b"even" if counter % 2 == 0 else b"odd")
    assert len(filler) == (4000 if kind == b"even" else 9000)
    return counter


def counter_in(stored: Mapping[str, bytes]) -> int:
    """The counter of the writer's record in ``stored`` (-1 if there is none yet)."""
    return check_written(stored["membership"]) if "membership" in stored else -1


@pytest.mark.skipif(not hasattr(signal, "SIGKILL"), reason="needs SIGKILL")
def test_a_writer_killed_at_random_never_leaves_a_torn_record(tmp_path: Path) -> None:
    rng = random.Random(7)
    directory = tmp_path / "state"  # one directory for every run: each starts over the last one's debris
    deadline = time.monotonic() + 60.0
    for run in range(KILLS):
        first = run * 10**9
        child = subprocess.Popen([sys.executable, str(WRITER), str(directory), str(first)], stderr=subprocess.PIPE)
        try:
            # Wait (bounded) until this run's first record is durable, then let it write a while.
            while counter_in(FileStorage(directory).load()) < first:
                assert child.poll() is None, child.stderr.read() if child.stderr else child.returncode
                assert time.monotonic() < deadline, "the writer did not write in time"
                time.sleep(0.001)
            time.sleep(rng.uniform(0.0, 0.03))
        finally:
            os.kill(child.pid, signal.SIGKILL)
            child.wait(timeout=10)
            if child.stderr:
                child.stderr.close()
        assert child.returncode == -signal.SIGKILL
        storage = FileStorage(directory)
        stored = storage.load()
        assert storage.corrupt == []
        assert list(stored) == ["membership"]  # a .tmp left by the kill is not a record
        assert check_written(stored["membership"]) >= first
