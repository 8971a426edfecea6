"""The audit log of ``pyclm node``: one JSON line per operator action, durable before the answer.

``STATE_DIR/audit.log`` gets ``{"wall": <Unix seconds>, "op": ..., "peer": {"pid", "uid",
"gid"}, ...details}`` for every action taken through the control socket (key rotation,
node removal), successful or refused (``"ok": false`` and the error).  Secrets are never
written.  Each line is flushed and fsynced before the control socket answers.
"""

from __future__ import annotations

import json
import os
import time
from pathlib import Path
from typing import Any

from .control import Peer


class AuditLog:
    def __init__(self, path: Path) -> None:
        self.path = path

    def write(self, op: str, peer: Peer | None, **details: Any) -> None:
        entry: dict[str, Any] = {"wall": round(time.time(), 3), "op": op}
        if peer is not None:
            entry["peer"] = {"pid": peer.pid, "uid": peer.uid, "gid": peer.gid}
        entry.update(details)
        line = json.dumps(entry, separators=(",", ":")) + "\n"
        created = not self.path.exists()
        fd = os.open(self.path, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o600)
        try:
            os.write(fd, line.encode())
            os.fsync(fd)
        finally:
            os.close(fd)
        if created:  # the new file's name must survive a power failure too
            directory = os.open(self.path.parent, os.O_RDONLY)
            try:
                os.fsync(directory)
            finally:
                os.close(directory)

    def read(self) -> list[dict[str, Any]]:
        """Every entry, oldest first (a torn last line from a crash is skipped)."""
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return []
        out = []
        for line in text.splitlines():
            try:
                entry = json.loads(line)
            except ValueError:
                continue
            if isinstance(entry, dict):
                out.append(entry)
        return out
