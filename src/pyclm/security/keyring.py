"""The cluster keys: which secrets a node accepts, and which one it sends with.

A :class:`Keyring` is an immutable value.  Rotation without downtime is three steps, each
a new keyring handed to :meth:`pyclm.security.Envelope.set_keyring` on every node:

1. ``install`` the new key everywhere: it is accepted but nobody sends with it yet;
2. ``use`` it, node by node: a node that still sends with the old key is still heard,
   because everybody holds both;
3. ``remove`` the old key once every node sends with the new one.

On disk a keyring is a small TOML file, readable by its owner only::

    active = 1
    [[key]]
    id = 1
    secret = "base64 of at least 32 random bytes"

Secrets never appear in ``repr()``.  :meth:`Keyring.load` and :meth:`Keyring.save` are the
only file I/O here; they run when the operator asks, never on the datagram path.
"""

from __future__ import annotations

import base64
import binascii
import os
import secrets
import tomllib
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import attrs

from ..errors import ConfigError

#: Key ids are one byte on the wire; 0 means "no key" (insecure mode).
MIN_KEY_ID = 1
MAX_KEY_ID = 255
#: The shortest secret accepted (HMAC-SHA256 gains nothing from more than 64).
MIN_SECRET_SIZE = 32
#: The size of the secrets :meth:`Keyring.generate` makes.
GENERATED_SECRET_SIZE = 32


def _check_key_id(key_id: object, setting: str = "key.id") -> int:
    if not isinstance(key_id, int) or isinstance(key_id, bool) or not MIN_KEY_ID <= key_id <= MAX_KEY_ID:
        raise ConfigError(setting, f"a key id is an integer from {MIN_KEY_ID} to {MAX_KEY_ID}, got {key_id!r}")
    return key_id


@attrs.frozen(kw_only=True)
class Key:
    """One cluster key: an id (1 to 255) and a secret of at least 32 bytes (not in repr)."""

    id: int = attrs.field()
    secret: bytes = attrs.field(repr=False)

    @id.validator
    def _check_id(self, _attribute: object, value: int) -> None:
        _check_key_id(value)

    @secret.validator
    def _check_secret(self, _attribute: object, value: bytes) -> None:
        if not isinstance(value, bytes):
            raise ConfigError(f"key {self.id}: secret", f"must be bytes, got {type(value).__name__}")
        if len(value) < MIN_SECRET_SIZE:
            raise ConfigError(
                f"key {self.id}: secret",
                f"is {len(value)} bytes, needs at least {MIN_SECRET_SIZE} (Keyring.generate makes one)",
            )


def _sorted_keys(keys: Iterable[Key]) -> tuple[Key, ...]:
    return tuple(sorted(keys, key=lambda key: key.id))


@attrs.frozen(kw_only=True)
class Keyring:
    """The keys a node accepts (``keys``, ascending by id) and the one it sends with (``active``).

    Every method returns a new keyring; misuse raises :class:`~pyclm.errors.ConfigError`
    naming the fix.
    """

    active: int
    keys: tuple[Key, ...] = attrs.field(converter=_sorted_keys)

    def __attrs_post_init__(self) -> None:
        ids = [key.id for key in self.keys]
        if not ids:
            raise ConfigError("key", "a keyring holds at least one key (no keyring at all is insecure mode)")
        if len(set(ids)) != len(ids):
            raise ConfigError("key.id", f"each key id appears once, got {ids}")
        _check_key_id(self.active, "active")
        if self.active not in ids:
            raise ConfigError("active", f"key {self.active} is not in the keyring (ids: {ids})")

    # ------------------------------------------------------------------ reading

    @property
    def ids(self) -> tuple[int, ...]:
        return tuple(key.id for key in self.keys)

    def secret(self, key_id: int) -> bytes | None:
        """The secret of ``key_id``, or None if the keyring does not hold it."""
        for key in self.keys:
            if key.id == key_id:
                return key.secret
        return None

    # ------------------------------------------------------------------ changing (new keyrings)

    @classmethod
    def generate(cls, key_id: int = 1) -> Keyring:
        """A new keyring with one random key, ``key_id``, as the sending key."""
        return cls(active=key_id, keys=(Key(id=key_id, secret=new_secret()),))

    def install(self, key_id: int, secret: bytes) -> Keyring:
        """Accept ``key_id`` too (the sending key stays as it is).

        Installing a key the keyring already holds with the same secret changes nothing;
        with a different secret it is an error (remove the old one first).
        """
        key = Key(id=key_id, secret=secret)
        held = self.secret(key_id)
        if held is not None:
            if secrets.compare_digest(held, secret):
                return self
            raise ConfigError("key.id", f"key {key_id} is already installed with another secret: remove it first")
        return attrs.evolve(self, keys=(*self.keys, key))

    def use(self, key_id: int) -> Keyring:
        """Send with ``key_id`` from now on; it must be installed."""
        if self.secret(key_id) is None:
            raise ConfigError("active", f"key {key_id} is not installed (ids: {list(self.ids)}): install it first")
        return attrs.evolve(self, active=key_id)

    def remove(self, key_id: int) -> Keyring:
        """Stop accepting ``key_id``; the sending key cannot be removed."""
        if self.secret(key_id) is None:
            raise ConfigError("key.id", f"key {key_id} is not installed (ids: {list(self.ids)})")
        if key_id == self.active:
            raise ConfigError("active", f"key {key_id} is the sending key: use another key before removing it")
        return attrs.evolve(self, keys=tuple(key for key in self.keys if key.id != key_id))

    # ------------------------------------------------------------------ the key file

    @classmethod
    def from_toml(cls, text: str) -> Keyring:
        """Parse a key file's text; :class:`~pyclm.errors.ConfigError` names what is wrong."""
        try:
            document = tomllib.loads(text)
        except tomllib.TOMLDecodeError as error:
            raise ConfigError("key file", f"not valid TOML: {error}") from None
        unknown = set(document) - {"active", "key"}
        if unknown:
            raise ConfigError("key file", f"unknown setting(s) {sorted(unknown)}: only 'active' and [[key]] tables")
        if "active" not in document:
            raise ConfigError("active", "missing: name the id of the key to send with")
        tables = document.get("key")
        if not isinstance(tables, list) or not tables:
            raise ConfigError("key", "missing: at least one [[key]] table with an id and a secret")
        return cls(active=document["active"], keys=_parse_keys(tables))

    def to_toml(self) -> str:
        """The key file's text (the secrets in it: keep it private)."""
        lines = [f"active = {self.active}"]
        for key in self.keys:
            lines += ["", "[[key]]", f"id = {key.id}", f'secret = "{base64.b64encode(key.secret).decode("ascii")}"']
        return "\n".join(lines) + "\n"

    @classmethod
    def load(cls, path: str | os.PathLike[str]) -> Keyring:
        """Read a key file.  It must be private: a file that its group or others may read
        or write (``mode & 0o077``) is refused, as are missing, unreadable or malformed ones.
        Every error is a :class:`~pyclm.errors.ConfigError` whose setting is the file."""
        name = os.fspath(path)
        try:
            fd = os.open(name, os.O_RDONLY | getattr(os, "O_NOFOLLOW", 0))
        except OSError as error:
            raise ConfigError(name, f"cannot open the key file: {error.strerror or error}") from None
        try:
            mode = os.fstat(fd).st_mode
            if os.name == "posix" and mode & 0o077:
                raise ConfigError(
                    name, f"the key file is accessible to group or others (mode {mode & 0o777:o}): chmod 600 {name}"
                )
            with os.fdopen(fd, "rb", closefd=False) as f:
                raw = f.read()
        except OSError as error:
            raise ConfigError(name, f"cannot read the key file: {error.strerror or error}") from None
        finally:
            os.close(fd)
        try:
            return cls.from_toml(raw.decode("utf-8"))
        except UnicodeDecodeError:
            raise ConfigError(name, "the key file is not UTF-8 text") from None
        except ConfigError as error:
            raise ConfigError(name, f"{error.setting}: {error.problem}") from None

    def save(self, path: str | os.PathLike[str]) -> None:
        """Write the key file atomically, mode 0600: a temporary file next to it, fsync,
        rename over ``path``, fsync the directory.  Durable when this returns."""
        target = Path(path)
        tmp = target.with_name(target.name + ".tmp")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | getattr(os, "O_NOFOLLOW", 0), 0o600)
        try:
            if os.name == "posix":
                os.fchmod(fd, 0o600)  # a temp file an earlier crash left behind may have had another mode
            os.write(fd, self.to_toml().encode("utf-8"))
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, target)
        if os.name == "posix":
            dir_fd = os.open(target.parent, os.O_RDONLY)
            try:
                os.fsync(dir_fd)
            finally:
                os.close(dir_fd)


def new_secret() -> bytes:
    """A fresh random secret (32 bytes from :mod:`secrets`), e.g. for :meth:`Keyring.install`."""
    return secrets.token_bytes(GENERATED_SECRET_SIZE)


def _parse_keys(tables: Iterable[Any]) -> list[Key]:
    keys = []
    for index, table in enumerate(tables, start=1):
        where = f"[[key]] #{index}"
        if not isinstance(table, dict) or set(table) != {"id", "secret"}:
            fields = sorted(table) if isinstance(table, dict) else table
            raise ConfigError(where, f"needs exactly 'id' and 'secret', got {fields}")
        key_id = _check_key_id(table["id"], f"{where}: id")
        encoded = table["secret"]
        if not isinstance(encoded, str):
            raise ConfigError(f"key {key_id}: secret", "must be a base64 string")
        try:
            secret = base64.b64decode(encoded, validate=True)
        except (binascii.Error, ValueError):
            raise ConfigError(f"key {key_id}: secret", "is not valid base64") from None
        keys.append(Key(id=key_id, secret=secret))
    return keys
