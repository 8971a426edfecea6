"""The envelope: every pyclm datagram sealed with the cluster key, opened without ever raising.

A sealed datagram is a 29-byte header, the wire message (or its AES-GCM ciphertext) and a
tag (``docs/security.md`` has the tables)::

    magic 2 bytes C1 53 | version u8 1 | flags u8 | key id u8 | cluster id 4 bytes
    | sender u32 | incarnation u64 | sequence u64 | payload | tag (32 HMAC or 16 GCM; none)

Flags 0 is insecure mode (no key, no tag), 1 is HMAC-SHA256 over header and message, 3 is
AES-256-GCM with the header as associated data.  Keys are derived with HKDF-SHA256 from
the key's secret with the cluster name as salt, so the MAC binds the full name and the
4-byte cluster id is only a cheap filter.  GCM keys are per sender life (sender,
incarnation): with the nonce = sender + sequence, a nonce never repeats under one key
as long as one :class:`Envelope` seals everything a node life sends.

:meth:`Envelope.open` checks the cheap things first (length, magic, version, flags,
cluster, own echo, mode, key id), then the tag, then that the envelope's sender and
incarnation are the message's, then replay (:mod:`pyclm.security.replay`).  It returns
the message or a :class:`~pyclm.wire.Dropped`, counts either, and never raises.
"""

from __future__ import annotations

import hashlib
import hmac
import struct
from collections import OrderedDict

from ..errors import ConfigError, UsageError
from ..ids import MAX_NODE_ID
from ..wire import Dropped
from . import aead
from .keyring import Keyring
from .replay import DEFAULT_MAX_SENDERS, DEFAULT_WINDOW, ReplayFilter

MAGIC = b"\xc1\x53"
VERSION = 1
FLAG_AUTHENTICATED = 0x01
FLAG_ENCRYPTED = 0x02

#: magic, version, flags, key id, cluster id, sender, incarnation, sequence.
HEADER = struct.Struct("!2sBBB4sIQQ")
HEADER_SIZE = HEADER.size  # 29
MAC_SIZE = 32
#: The (sender, incarnation) bytes in the header, and where the wire header has them.
_IDENTITY = slice(9, 21)
_SENDER = slice(9, 13)
_MESSAGE_IDENTITY = slice(4, 16)
_SEQUENCE = slice(21, 29)
_MESSAGE_HEADER_SIZE = 16
_WIRE_IDENTITY = struct.Struct("!IQ")
_TAG_SIZES = {0: 0, FLAG_AUTHENTICATED: MAC_SIZE, FLAG_AUTHENTICATED | FLAG_ENCRYPTED: aead.TAG_SIZE}

#: The largest datagram :meth:`Envelope.open` looks at by default (a UDP datagram's limit).
DEFAULT_MAX_DATAGRAM = 65535

_MAC_INFO = b"pyclm envelope v1 hmac-sha256"
_AEAD_INFO = b"pyclm envelope v1 aes-256-gcm"

#: Every reason :meth:`Envelope.open` may drop a datagram for, cheapest check first.
#: ``own`` (our own multicast, looped back) is not an error and is counted as ``rx_own``;
#: each other reason as ``rx_dropped_<reason>``.
REASONS = (
    "truncated",
    "oversized",
    "bad_magic",
    "bad_version",
    "bad_flags",
    "foreign_cluster",
    "own",
    "unauthenticated",
    "unexpected_auth",
    "bad_key_id",
    "unknown_key",
    "encryption_unavailable",
    "forged",
    "identity_mismatch",
    "same_id",
    "stale_incarnation",
    "replayed",
)


def hkdf_sha256(secret: bytes, *, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """HKDF with SHA-256 (RFC 5869): extract with ``salt``, expand with ``info`` to ``length`` bytes."""
    if not 0 < length <= 255 * 32:
        raise ValueError(f"HKDF-SHA256 makes 1 to {255 * 32} bytes, not {length}")
    prk = hmac.digest(salt, secret, "sha256")
    out, block = b"", b""
    for counter in range(1, (length + 31) // 32 + 1):
        block = hmac.digest(prk, block + info + bytes([counter]), "sha256")
        out += block
    return out[:length]


def cluster_id(cluster_name: str) -> bytes:
    """The envelope's 4-byte cluster id: the first bytes of SHA-256 of the UTF-8 name."""
    return hashlib.sha256(cluster_name.encode("utf-8")).digest()[:4]


def mac_key(secret: bytes, cluster_name: str) -> bytes:
    """The HMAC-SHA256 key of one cluster key."""
    return hkdf_sha256(secret, salt=cluster_name.encode("utf-8"), info=_MAC_INFO)


def life_key(secret: bytes, cluster_name: str, sender: int, incarnation: int) -> bytes:
    """The AES-256-GCM key of one sender life under one cluster key."""
    info = _AEAD_INFO + _WIRE_IDENTITY.pack(sender, incarnation)
    return hkdf_sha256(secret, salt=cluster_name.encode("utf-8"), info=info, length=aead.KEY_SIZE)


class Envelope:
    """Seals what one node sends and opens what it receives; sans-IO.

    ``keyring=None`` is insecure mode: datagrams carry the envelope (cluster id,
    sequence numbers) but no tag.  ``encrypt=True`` seals with AES-GCM (needs the
    ``crypto`` extra); a node accepts both HMAC and GCM datagrams under its keys either
    way, so encryption can be switched on node by node.  One envelope serves one node
    life: a second envelope for the same (node, incarnation) would reuse sequence
    numbers, whose datagrams receivers drop as replayed (and, with GCM, reuse nonces).
    """

    def __init__(
        self,
        *,
        node_id: int,
        cluster_name: str,
        keyring: Keyring | None,
        encrypt: bool = False,
        window: int = DEFAULT_WINDOW,
        max_senders: int = DEFAULT_MAX_SENDERS,
        max_datagram: int = DEFAULT_MAX_DATAGRAM,
    ) -> None:
        if not isinstance(node_id, int) or isinstance(node_id, bool) or not 0 <= node_id <= MAX_NODE_ID:
            raise ConfigError("node_id", f"must be an integer in 0..{MAX_NODE_ID}, got {node_id!r}")
        if not isinstance(cluster_name, str) or not 1 <= len(cluster_name.encode("utf-8", "ignore")) <= 255:
            raise ConfigError("cluster_name", f"must be a non-empty name of at most 255 bytes, got {cluster_name!r}")
        if not cluster_name.isprintable():
            raise ConfigError("cluster_name", f"must be printable text, got {cluster_name!r}")
        if not isinstance(max_datagram, int) or isinstance(max_datagram, bool) or max_datagram < HEADER_SIZE:
            raise ConfigError(
                "max_datagram", f"must be a number of bytes of at least {HEADER_SIZE}, got {max_datagram!r}"
            )
        if keyring is not None and not isinstance(keyring, Keyring):
            raise ConfigError("keyring", f"must be a Keyring or None (insecure mode), got {type(keyring).__name__}")
        if encrypt:
            if keyring is None:
                raise ConfigError("encrypt", "encryption needs a keyring (insecure mode has no key)")
            aead.require("encrypt")
        self.node_id = node_id
        self.cluster_name = cluster_name
        self.encrypt = bool(encrypt)
        self.max_datagram = max_datagram
        self._cluster_id = cluster_id(cluster_name)
        self._replay = ReplayFilter(window=window, max_senders=max_senders)
        self._max_ciphers = max_senders
        self._ciphers: OrderedDict[tuple[bytes, int, int], aead.Cipher] = OrderedDict()
        self._keyring: Keyring | None = None
        self._secrets: dict[int, bytes] = {}
        self._mac_keys: dict[int, bytes] = {}
        self._sequence = 0
        self._incarnation: int | None = None  # of the last message sealed
        self._counters = {"tx_sealed": 0, "rx_ok": 0, "rx_own": 0}
        self._counters.update((f"rx_dropped_{reason}", 0) for reason in REASONS if reason != "own")
        self._drop_counter = {reason: "rx_own" if reason == "own" else f"rx_dropped_{reason}" for reason in REASONS}
        if keyring is not None:
            self._install(keyring)

    # ------------------------------------------------------------------ configuration

    @property
    def keyring(self) -> Keyring | None:
        return self._keyring

    @property
    def overhead(self) -> int:
        """Bytes the envelope adds to each message it seals: 29 insecure, 61 HMAC, 45 GCM."""
        if self._keyring is None:
            return HEADER_SIZE
        return HEADER_SIZE + (aead.TAG_SIZE if self.encrypt else MAC_SIZE)

    def set_keyring(self, keyring: Keyring) -> None:
        """Seal with ``keyring.active`` from the next datagram on; open under any key it holds.

        The mode is chosen at construction: an insecure envelope cannot take a keyring.
        """
        if self._keyring is None:
            raise UsageError("this envelope is in insecure mode (built with keyring=None): build a new Envelope")
        if not isinstance(keyring, Keyring):
            raise TypeError(f"set_keyring takes a Keyring, got {type(keyring).__name__}")
        self._install(keyring)

    def _install(self, keyring: Keyring) -> None:
        self._keyring = keyring
        self._secrets = {key.id: key.secret for key in keyring.keys}
        self._mac_keys = {key.id: mac_key(key.secret, self.cluster_name) for key in keyring.keys}
        held = set(self._secrets.values())
        for cache_key in [k for k in self._ciphers if k[0] not in held]:
            del self._ciphers[cache_key]

    def counters(self) -> dict[str, int]:
        """A copy of the counters: ``tx_sealed``, ``rx_ok``, ``rx_own``, ``rx_dropped_<reason>``."""
        return dict(self._counters)

    # ------------------------------------------------------------------ sealing

    def seal(self, message: bytes) -> bytes:
        """The datagram to send for ``message``, a wire message from this node.

        Sender and incarnation are read from the message's header, so a message shorter
        than that header, or from another node, is a ``ValueError`` (misuse).
        """
        if len(message) < _MESSAGE_HEADER_SIZE:
            raise ValueError(f"seal takes a wire message (16-byte header at least), got {len(message)} bytes")
        sender, incarnation = _WIRE_IDENTITY.unpack_from(message, 4)
        if sender != self.node_id:
            raise ValueError(f"this envelope seals node {self.node_id}'s messages, got one from node {sender}")
        self._sequence += 1
        self._incarnation = incarnation
        self._counters["tx_sealed"] += 1
        keyring = self._keyring
        if keyring is None:
            return self._header(0, 0, sender, incarnation) + message
        if not self.encrypt:
            signed = self._header(FLAG_AUTHENTICATED, keyring.active, sender, incarnation) + message
            return signed + hmac.digest(self._mac_keys[keyring.active], signed, "sha256")
        header = self._header(FLAG_AUTHENTICATED | FLAG_ENCRYPTED, keyring.active, sender, incarnation)
        cipher = self._cipher(self._secrets[keyring.active], sender, incarnation)
        return header + cipher.seal(header[_SENDER] + header[_SEQUENCE], message, header)

    def _header(self, flags: int, key_id: int, sender: int, incarnation: int) -> bytes:
        return HEADER.pack(MAGIC, VERSION, flags, key_id, self._cluster_id, sender, incarnation, self._sequence)

    def _cipher(self, secret: bytes, sender: int, incarnation: int) -> aead.Cipher:
        """The cached cipher of a sender life, made and cached if need be (for sealing)."""
        cache_key = (secret, sender, incarnation)
        cipher = self._ciphers.get(cache_key)
        if cipher is None:
            cipher = aead.Cipher(life_key(secret, self.cluster_name, sender, incarnation))
            self._remember(cache_key, cipher)
        else:
            self._ciphers.move_to_end(cache_key)
        return cipher

    def _remember(self, cache_key: tuple[bytes, int, int], cipher: aead.Cipher) -> None:
        self._ciphers[cache_key] = cipher
        if len(self._ciphers) > self._max_ciphers:
            self._ciphers.popitem(last=False)

    def _decrypt(self, secret: bytes, sender: int, incarnation: int, datagram: bytes) -> bytes | None:
        """The plaintext of a GCM datagram, or None.  A new life's cipher is cached only
        once a datagram opened under it, so forgeries cannot push real lives out."""
        cache_key = (secret, sender, incarnation)
        cipher = self._ciphers.get(cache_key)
        fresh = cipher is None
        if cipher is None:
            cipher = aead.Cipher(life_key(secret, self.cluster_name, sender, incarnation))
        view = memoryview(datagram)
        nonce = datagram[_SENDER] + datagram[_SEQUENCE]
        plaintext = cipher.open(nonce, view[HEADER_SIZE:], view[:HEADER_SIZE])
        if plaintext is not None:
            if fresh:
                self._remember(cache_key, cipher)
            else:
                self._ciphers.move_to_end(cache_key)
        return plaintext

    # ------------------------------------------------------------------ opening

    def open(self, datagram: bytes) -> bytes | Dropped:
        """The wire message inside ``datagram``, or ``Dropped(reason)``; counted, never raises."""
        result = self._open(datagram)
        if isinstance(result, str):
            self._counters[self._drop_counter[result]] += 1
            return Dropped(result)
        self._counters["rx_ok"] += 1
        return result

    def _open(self, datagram: bytes) -> bytes | str:
        size = len(datagram)
        if size < HEADER_SIZE:
            return "truncated"
        if size > self.max_datagram:
            return "oversized"
        magic, version, flags, key_id, cluster, sender, incarnation, sequence = HEADER.unpack_from(datagram)
        if magic != MAGIC:
            return "bad_magic"
        if version != VERSION:
            return "bad_version"
        tag_size = _TAG_SIZES.get(flags)
        if tag_size is None:
            return "bad_flags"
        if size < HEADER_SIZE + tag_size:
            return "truncated"
        if cluster != self._cluster_id:
            return "foreign_cluster"
        if sender == self.node_id and incarnation == self._incarnation:
            return "own"
        if not flags:
            if self._keyring is not None:
                return "unauthenticated"
            if key_id:
                return "bad_key_id"
            message = datagram[HEADER_SIZE:]
        else:
            if self._keyring is None:
                return "unexpected_auth"
            secret = self._secrets.get(key_id)
            if secret is None:
                return "unknown_key"
            if flags & FLAG_ENCRYPTED:
                if not aead.available():
                    return "encryption_unavailable"
                opened = self._decrypt(secret, sender, incarnation, datagram)
                if opened is None:
                    return "forged"
                message = opened
            else:
                tag = hmac.digest(self._mac_keys[key_id], memoryview(datagram)[:-MAC_SIZE], "sha256")
                if not hmac.compare_digest(tag, datagram[-MAC_SIZE:]):
                    return "forged"
                message = datagram[HEADER_SIZE:-MAC_SIZE]
        if message[_MESSAGE_IDENTITY] != datagram[_IDENTITY]:  # also catches a message shorter than 16 bytes
            return "identity_mismatch"
        if sender == self.node_id:
            return "same_id"
        return self._replay.accept(sender, incarnation, sequence) or message
