"""AES-256-GCM through the optional ``cryptography`` package (``pip install 'pyclm[crypto]'``).

The only module that imports ``cryptography``, and only when encryption is first needed:
pyclm runs without it as long as ``encrypt`` is off and no encrypted datagram arrives.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ..errors import ConfigError

if TYPE_CHECKING:
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

#: AES-256: the per-life keys are 32 bytes.
KEY_SIZE = 32
#: The GCM nonce: the sender's id (u32) and the datagram's sequence number (u64).
NONCE_SIZE = 12
#: GCM's authentication tag, appended to the ciphertext.
TAG_SIZE = 16

_INSTALL_HINT = "AES-GCM needs the 'cryptography' package: pip install 'pyclm[crypto]'"

_aesgcm: type[AESGCM] | None = None
_invalid: tuple[type[Exception], ...] = ()


def available() -> bool:
    """Whether ``cryptography`` can be imported (imports it the first time)."""
    global _aesgcm, _invalid
    if _aesgcm is None:
        try:
            from cryptography.exceptions import InvalidTag
            from cryptography.hazmat.primitives.ciphers.aead import AESGCM
        except ImportError:
            return False
        _aesgcm, _invalid = AESGCM, (InvalidTag, ValueError, OverflowError)
    return True


def require(setting: str = "encrypt") -> None:
    """Raise :class:`~pyclm.errors.ConfigError` naming ``setting`` when ``cryptography`` is missing."""
    if not available():
        raise ConfigError(setting, _INSTALL_HINT)


class Cipher:
    """AES-256-GCM under one key; build it only after :func:`available` returned True."""

    __slots__ = ("_aead",)

    def __init__(self, key: bytes) -> None:
        assert _aesgcm is not None, "call aead.available() or aead.require() first"
        self._aead = _aesgcm(key)

    def seal(self, nonce: bytes, plaintext: bytes, associated: bytes) -> bytes:
        """The ciphertext followed by the 16-byte tag."""
        return self._aead.encrypt(nonce, plaintext, associated)

    def open(self, nonce: bytes, sealed: bytes | memoryview, associated: bytes | memoryview) -> bytes | None:
        """The plaintext, or None if the tag does not match (or the input cannot be a GCM message)."""
        try:
            return self._aead.decrypt(nonce, sealed, associated)
        except _invalid:
            return None
