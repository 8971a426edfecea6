"""Authenticated datagrams: the envelope that seals every pyclm datagram with the cluster key.

* :class:`Keyring` - the keys a node accepts and the one it sends with; rotation at runtime.
* :class:`Envelope` - sans-IO: ``seal(message)`` before sending, ``open(datagram)`` after
  receiving (returns the message or a :class:`~pyclm.wire.Dropped`, never raises).
* :class:`pyclm.transports.secure.SecureTransport` wraps any transport with an envelope.

``docs/security.md`` describes the format, the checks and what they protect against.
"""

from .envelope import HEADER_SIZE, MAGIC, REASONS, VERSION, Envelope, cluster_id, hkdf_sha256
from .keyring import Key, Keyring, new_secret
from .replay import ReplayFilter

__all__ = [
    "HEADER_SIZE",
    "MAGIC",
    "REASONS",
    "VERSION",
    "Envelope",
    "Key",
    "Keyring",
    "ReplayFilter",
    "cluster_id",
    "hkdf_sha256",
    "new_secret",
]
