"""Stable storage: memory, files (atomic, checksummed) and the membership record."""

from __future__ import annotations

import os
import struct
from pathlib import Path

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from pyclm.storage import FileStorage, MembershipRecord, MemoryStorage, Storage, StorageWrite

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


@pytest.mark.parametrize("offset", [0, 5, 6, 9, 10, -1])
def test_a_flipped_byte_is_reported_corrupt(tmp_path: Path, offset: int) -> None:
    storage = FileStorage(tmp_path)
    storage.write("membership", b"0123456789")
    storage.write("quorum", b"fine")
    path = tmp_path / "membership.rec"
    raw = bytearray(path.read_bytes())
    raw[offset] ^= 0x40
    path.write_bytes(bytes(raw))
    assert storage.load() == {"quorum": b"fine"}
    assert storage.corrupt == ["membership"]


def test_truncated_files_are_corrupt(tmp_path: Path) -> None:
    storage = FileStorage(tmp_path)
    storage.write("membership", b"0123456789")
    path = tmp_path / "membership.rec"
    full = path.read_bytes()
    for cut in (0, 3, 9, len(full) - 1):
        path.write_bytes(full[:cut])
        assert storage.load() == {}
        assert storage.corrupt == ["membership"]
    path.write_bytes(full)
    assert storage.load() == {"membership": b"0123456789"}
    assert storage.corrupt == []  # reset by every load


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
