"""Stable storage: the writes the core asks for, and where they go.

The core never touches a disk.  It hands out :class:`StorageWrite` values in order;
whoever drives it (runtime or simulator) must make each one durable before acting on
any datagram or event the core produced after it.  Both drivers do the simplest thing
that keeps this order: after each input, persist every pending write, then send.

Records are small byte strings under a few keys (``"membership"`` for identity and the
highest view epoch; ``"quorum"`` for the quorum policy).  :class:`FileStorage` keeps one
file per key, replaced atomically (write temp, fsync, rename, fsync directory) and
protected by a checksum, so a crash leaves either the old or the new record.
"""

from __future__ import annotations

import os
import struct
import zlib
from collections.abc import Mapping
from pathlib import Path
from typing import Protocol

import attrs


@attrs.frozen
class StorageWrite:
    key: str
    data: bytes


class Storage(Protocol):
    def load(self) -> Mapping[str, bytes]:
        """Every record, by key (only intact ones: see :attr:`corrupt`)."""
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


_FILE_MAGIC = b"PYCLM1"
_FILE_HEAD = struct.Struct("!6sI")


def _valid_key(key: str) -> bool:
    return bool(key) and key.replace("_", "").isalnum() and key.isascii()


class FileStorage:
    """One checksummed file per key in ``directory``, replaced atomically."""

    def __init__(self, directory: str | os.PathLike[str]) -> None:
        self.directory = Path(directory)
        self.directory.mkdir(parents=True, exist_ok=True, mode=0o700)
        #: Keys whose file exists but failed its checksum at the last :meth:`load`.
        self.corrupt: list[str] = []

    def _path(self, key: str) -> Path:
        if not _valid_key(key):
            raise ValueError(f"a storage key is letters, digits and '_', got {key!r}")
        return self.directory / f"{key}.rec"

    def load(self) -> Mapping[str, bytes]:
        out: dict[str, bytes] = {}
        self.corrupt = []
        for path in sorted(self.directory.glob("*.rec")):
            raw = path.read_bytes()
            if len(raw) < _FILE_HEAD.size:
                self.corrupt.append(path.stem)
                continue
            magic, crc = _FILE_HEAD.unpack_from(raw)
            body = raw[_FILE_HEAD.size :]
            if magic != _FILE_MAGIC or zlib.crc32(body) != crc:
                self.corrupt.append(path.stem)
                continue
            out[path.stem] = body
        return out

    def write(self, key: str, data: bytes) -> None:
        path = self._path(key)
        tmp = path.with_suffix(".tmp")
        with open(tmp, "wb") as f:
            f.write(_FILE_HEAD.pack(_FILE_MAGIC, zlib.crc32(data)) + data)
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
