"""The state directory of a node: created private (mode 0700) and locked while a node uses it."""

from __future__ import annotations

import contextlib
import fcntl
import os
from collections.abc import Iterator
from pathlib import Path

from ..errors import ConfigError


@contextlib.contextmanager
def locked_state_dir(path: Path) -> Iterator[None]:
    """Create ``path`` (0700) if needed and hold its ``lock`` file (with this pid in it);
    ConfigError if another node holds it or the directory cannot be made."""
    try:
        path.mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(path / "lock", os.O_RDWR | os.O_CREAT, 0o600)
    except OSError as exc:
        raise ConfigError("state_dir", f"{path}: {exc.strerror or exc}") from None
    try:
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            other = os.pread(fd, 32, 0).decode(errors="replace").strip() or "?"
            raise ConfigError("state_dir", f"{path} is in use by another pyclm node (pid {other})") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        yield
    finally:
        os.close(fd)
