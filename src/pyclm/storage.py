"""Stable storage: the writes the core asks for, and where they go.

The core never touches a disk.  It hands out :class:`StorageWrite` values in order;
whoever drives it (runtime or simulator) must make each one durable before acting on
any datagram or event the core produced after it.  Both drivers do the simplest thing
that keeps this order: after each input, persist every pending write, then send.

Records are small byte strings under a few keys (``"membership"`` for identity and the
highest view epoch; ``"quorum"`` for the quorum policy).  ``load()`` returns every record
by key; a record that exists but cannot be read is returned as ``b""``.  No record the
core writes is empty and its decoders reject ``b""``, so the core sees "present but
unreadable" - which, after the node has been a member, it treats as amnesia - rather
than "missing", which would let it start as a brand-new node.

:class:`FileStorage` keeps one file per key, ``<key>.rec``, replaced atomically: write
``<key>.tmp``, fsync it, rename it over ``<key>.rec``, fsync the directory.  A crash
leaves either the old or the new record, never a mix: a crash before the rename leaves
the old file and a ``.tmp`` that ``load()`` ignores and the next write of that key
replaces.  Each file starts with a 14-byte header (format version 2)::

    offset  size  field
         0     5  magic b"PYCLM"
         5     1  format version, an ASCII digit: b"2"
         6     4  length of the record, big-endian
        10     4  CRC-32 of bytes 0..9, then the key (ASCII), then the record
        14     n  the record

The checksum covers the key, so a file copied or renamed to another key is unreadable
too.  Version 1 files (``b"PYCLM1"``, then the CRC-32 of the record, then the record),
written before the version field existed, are still read.  A file of any other version,
with a bad checksum or cut short is unreadable: ``b""`` in ``load()``, its key listed in
:attr:`FileStorage.corrupt` and logged as a warning on the ``pyclm.storage`` logger.
"""

from __future__ import annotations

import logging
import os
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import attrs

log = logging.getLogger("pyclm.storage")


@attrs.frozen
class StorageWrite:
    key: str
    data: bytes


class Storage(Protocol):
    def load(self) -> Mapping[str, bytes]:
        """Every record, by key; one that exists but cannot be read maps to ``b""``."""
        ...

    def write(self, key: str, data: bytes) -> None:
        """Make ``data`` the durable record under ``key`` before returning."""


class MemoryStorage:
    """Storage that lives in the process (simulator, tests): survives simulated crashes."""

    def __init__(self) -> None:
        self.records: dict[str, bytes] = {}
        self.writes = 0

    def load(self) -> Mapping[str, bytes]:
        return dict(self.records)

    def write(self, key: str, data: bytes) -> None:
        self.records[key] = data
        self.writes += 1


_FILE_MAGIC = b"PYCLM"
_FILE_VERSION = b"2"
_FILE_PREFIX = struct.Struct("!5scI")  # magic, version digit, record length: checksummed with the record
_CRC = struct.Struct("!I")
_FILE_HEAD_SIZE = _FILE_PREFIX.size + _CRC.size
_FILE_HEAD_V1 = struct.Struct("!6sI")  # b"PYCLM1", CRC-32 of the record


def _valid_key(key: str) -> bool:
    return bool(key) and key.replace("_", "").isalnum() and key.isascii()


def _checksum(prefix: bytes, key: str, data: bytes) -> int:
    return zlib.crc32(data, zlib.crc32(key.encode("ascii"), zlib.crc32(prefix)))


def _encode_file(key: str, data: bytes) -> bytes:
    prefix = _FILE_PREFIX.pack(_FILE_MAGIC, _FILE_VERSION, len(data))
    return prefix + _CRC.pack(_checksum(prefix, key, data)) + data


def _decode_file(key: str, raw: bytes) -> bytes | str:
    """The record in the file ``raw`` of ``key``, or why it cannot be read."""
    if len(raw) < len(_FILE_MAGIC) + 1:
        return "cut short"
    if raw[:5] != _FILE_MAGIC:
        return "not a pyclm record"
    version = raw[5:6]
    if version == b"1":
        if len(raw) < _FILE_HEAD_V1.size:
            return "cut short"
        _magic, crc = _FILE_HEAD_V1.unpack_from(raw)
        data = raw[_FILE_HEAD_V1.size :]
        return data if zlib.crc32(data) == crc else "bad checksum"
    if version != _FILE_VERSION:
        return f"unknown format version {version!r}"
    if len(raw) < _FILE_HEAD_SIZE:
        return "cut short"
    _magic, _version, length = _FILE_PREFIX.unpack_from(raw)
    (crc,) = _CRC.unpack_from(raw, _FILE_PREFIX.size)
    data = raw[_FILE_HEAD_SIZE:]
    if len(data) != length:
        return f"{len(data)} record bytes where the header says {length}"
    return data if _checksum(raw[: _FILE_PREFIX.size], key, data) == crc else "bad checksum"


class FileStorage:
    """One checksummed file per key in ``directory``, replaced atomically (see the module docstring).

    One process at a time: two writers of one directory would share its temp files.
    """

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        #: Keys whose file exists but could not be read at the last :meth:`load`.
        self.corrupt: list[str] = []

    def _path(self, key: str) -> Path:
        if not _valid_key(key):
            raise ValueError(f"a storage key is letters, digits and '_', got {key!r}")
        return self.directory / f"{key}.rec"

    def load(self) -> Mapping[str, bytes]:
        """Every ``<key>.rec`` record; an unreadable one maps to ``b""`` and is listed in :attr:`corrupt`.

        ``.tmp`` files (a write cut short before its rename) and files that are not named
        after a valid key are ignored.
        """
        out: dict[str, bytes] = {}
        self.corrupt = []
        for path in sorted(self.directory.glob("*.rec")):
            key = path.stem
            if not _valid_key(key):
                continue
            record = _decode_file(key, path.read_bytes())
            if isinstance(record, str):
                log.warning('%s: unreadable (%s): loaded as present but unreadable (b"")', path, record)
                self.corrupt.append(key)
                record = b""
            out[key] = record
        return out

    def write(self, key: str, data: bytes) -> None:
        """Replace the record under ``key``; durable (file and directory entry) when this returns."""
        path = self._path(key)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:  # truncates a temp file an earlier crash left behind
            f.write(_encode_file(key, data))
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
        fd = os.open(self.directory, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


_MEMBERSHIP = struct.Struct("!BQQI")
_MEMBERSHIP_VERSION = 2  # version 1 had no member list
_COUNT = struct.Struct("!H")


@attrs.frozen
class MembershipRecord:
    """What the core keeps across restarts.

    Its last incarnation, the highest view id it accepted, and the nodes of its last
    installed and accepted views (``recent``): the nodes it may have vouched for, for the
    primary lease, just before it stopped.  ``recent`` is None in a version-1 record
    (unknown: the lease then assumes the worst).
    """

    incarnation: int
    max_epoch: int
    max_coordinator: int
    recent: tuple[int, ...] | None = ()

    def encode(self) -> bytes:
        recent = self.recent or ()
        head = _MEMBERSHIP.pack(_MEMBERSHIP_VERSION, self.incarnation, self.max_epoch, self.max_coordinator)
        return head + _COUNT.pack(len(recent)) + struct.pack(f"!{len(recent)}I", *recent)

    @classmethod
    def decode(cls, data: bytes) -> MembershipRecord | None:
        """The record in ``data``, or None if it is not a complete, valid record of a known version."""
        if len(data) < _MEMBERSHIP.size:
            return None
        version, incarnation, epoch, coordinator = _MEMBERSHIP.unpack_from(data)
        if version == 1 and len(data) == _MEMBERSHIP.size:
            return cls(incarnation, epoch, coordinator, None)
        if version != _MEMBERSHIP_VERSION or len(data) < _MEMBERSHIP.size + _COUNT.size:
            return None
        (count,) = _COUNT.unpack_from(data, _MEMBERSHIP.size)
        start = _MEMBERSHIP.size + _COUNT.size
        if len(data) != start + 4 * count:
            return None
        recent = struct.unpack_from(f"!{count}I", data, start)
        if list(recent) != sorted(set(recent)):
            return None
        return cls(incarnation, epoch, coordinator, recent)
