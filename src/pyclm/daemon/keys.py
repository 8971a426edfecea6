"""Key rotation at runtime: the control socket's ``key.*`` ops.

The running node's keyring lives in its envelope (:mod:`pyclm.security`); the key file
(``key_file``) is its durable copy.  Each op builds the new keyring, writes it to the
key file atomically, then hands it to the envelope, then writes the audit line: after a
crash at any point the file holds either the old or the new ring, and a restart reads
the one the node last confirmed or the one before.  Rotation across a cluster without
downtime (docs/security.md, "Rotating keys"): install the new key on every node, then
``use`` it on every node, then remove the old one everywhere.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
from collections.abc import Callable, Mapping
from pathlib import Path
from typing import Any

from ..security import Keyring
from .audit import AuditLog
from .control import Connection, Handler, RequestError


def _key_id(request: Mapping[str, Any]) -> int:
    key_id = request.get("id")
    if not isinstance(key_id, int) or isinstance(key_id, bool):
        raise RequestError("id: must be a key id (an integer)")
    return key_id


class KeyOps:
    """The ``key.list`` / ``key.install`` / ``key.use`` / ``key.remove`` handlers."""

    def __init__(
        self,
        key_file: Path | None,
        get: Callable[[], Keyring | None],
        apply: Callable[[Keyring], None],
        audit: AuditLog,
    ) -> None:
        self.key_file = key_file
        self._get = get
        self._apply = apply
        self._audit = audit

    def handlers(self) -> dict[str, Handler]:
        return {
            "key.list": self._list,
            "key.install": self._install,
            "key.use": self._use,
            "key.remove": self._remove,
        }

    def _ring(self) -> Keyring:
        ring = self._get()
        if ring is None or self.key_file is None:
            raise RequestError("this node runs without keys (--insecure): there is no keyring to change")
        return ring

    async def _list(self, request: Mapping[str, Any], conn: Connection) -> None:
        ring = self._ring()
        await conn.send({"ok": True, "active": ring.active, "ids": list(ring.ids)})

    async def _install(self, request: Mapping[str, Any], conn: Connection) -> None:
        key_id = _key_id(request)
        secret_text = request.get("secret")
        try:
            if not isinstance(secret_text, str):
                raise ValueError
            secret = base64.b64decode(secret_text, validate=True)
        except (ValueError, binascii.Error):
            self._audit.write("key.install", conn.peer, id=key_id, ok=False, error="secret is not base64")
            raise RequestError("secret: must be the key in base64") from None
        await self._change(conn, "key.install", key_id, lambda ring: ring.install(key_id, secret))

    async def _use(self, request: Mapping[str, Any], conn: Connection) -> None:
        key_id = _key_id(request)
        await self._change(conn, "key.use", key_id, lambda ring: ring.use(key_id))

    async def _remove(self, request: Mapping[str, Any], conn: Connection) -> None:
        key_id = _key_id(request)
        await self._change(conn, "key.remove", key_id, lambda ring: ring.remove(key_id))

    async def _change(self, conn: Connection, op: str, key_id: int, fn: Callable[[Keyring], Keyring]) -> None:
        ring = self._ring()
        assert self.key_file is not None
        try:
            new = fn(ring)
        except ValueError as exc:  # ConfigError is one: names the problem
            self._audit.write(op, conn.peer, id=key_id, ok=False, error=str(exc))
            raise RequestError(str(exc)) from None
        try:
            new.save(self.key_file)
        except OSError as exc:
            error = f"could not write the key file {self.key_file}: {exc.strerror or exc}; nothing changed"
            with contextlib.suppress(OSError):
                self._audit.write(op, conn.peer, id=key_id, ok=False, error=error)
            raise RequestError(error) from None
        self._apply(new)
        self._audit.write(op, conn.peer, id=key_id, ok=True, active=new.active, ids=list(new.ids))
        await conn.send({"ok": True, "active": new.active, "ids": list(new.ids)})


def read_secret(path: Path) -> str:
    """A key for ``pyclm key install``: the file's first key (a keyring file), as base64."""
    ring = Keyring.load(path)
    secret = ring.secret(ring.active)
    assert secret is not None  # a keyring always holds its active key
    return base64.b64encode(secret).decode()
