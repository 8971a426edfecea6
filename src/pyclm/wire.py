"""The wire format, version 3: encoding and a decoder that never raises.

Every datagram starts with a 16-byte header::

    magic  2 bytes  b"\\xc1\\x4d"
    version  u8     3
    type     u8     one of MessageType
    sender   u32    node id
    incarnation u64 the sender's incarnation

followed by a body whose layout depends on the type (``docs/wire.md`` has the tables).
Fixed-size integers are big-endian; the variable-length ones (an INSTALL entry's
``joined`` and state index) are unsigned LEB128 varints.  An INSTALL sends each
distinct quorum state once, in a table its entries refer to by index: members of a
settled view report identical states, so the message grows by a few bytes per member,
not by a state per member.  Every count is bounded by ``MAX_CLUSTER_SIZE`` and every
byte string by ``MAX_STATE``; a datagram must be consumed exactly.  :func:`decode`
returns a message, or a :class:`Dropped` naming the reason: it never raises, whatever
the bytes.  Decoded messages are immutable and cached by content, so a datagram
multicast to many cores in one process is parsed once.
"""

from __future__ import annotations

import enum
import functools
import hashlib
import itertools
import struct
from collections.abc import Iterable
from functools import cached_property

import attrs

from .config import MAX_CLUSTER_SIZE
from .ids import Member, ViewId, member

MAGIC = b"\xc1\x4d"
VERSION = 3
#: Node ids below this may stand for their own bit position in a mask (see Row.id_mask).
SMALL_IDS = 1 << 16
#: The longest opaque state or payload a quorum policy may put in one message.
MAX_STATE = 16384

_HEADER = struct.Struct("!2sBBIQ")
_ENTRY = struct.Struct("!IQ")
_U8 = struct.Struct("!B")
_U16 = struct.Struct("!H")
_HEARTBEAT = struct.Struct("!QIIQB")
_EPOCH = struct.Struct("!Q")
_EPOCH_COORD = struct.Struct("!QI")
_ACK_HEAD = struct.Struct("!QIQQH")  # view id, since, last, state length
_NACK = struct.Struct("!QIQ")
_ROW_HEAD = struct.Struct("!IQIH")
_VERSION_ENTRY = struct.Struct("!IQI")
_NODE = struct.Struct("!I")
#: The longest varint: 10 bytes of 7 bits hold any u64.
_VARINT_MAX = 10

HEADER_SIZE = _HEADER.size


class MessageType(enum.IntEnum):
    HEARTBEAT = 1
    PROPOSE = 2
    ACK = 3
    NACK = 4
    INSTALL = 5
    LEAVE = 6
    PULL = 7
    ROWS = 8
    QUORUM = 9
    CLM = 10


@attrs.define(frozen=True, slots=False, eq=False)
class Row:
    """Whom ``origin`` (in life ``incarnation``) hears, as of its ``version``.

    Rows are values: a node's own row and the copy its peers decoded are equal, so nodes
    holding the same rows hold equal matrices (which the component computation
    memoises).  Members are interned (:func:`pyclm.ids.member`), so comparing the
    entries of equal rows is an identity check per entry.  ``key`` orders the versions
    of one origin's row.
    """

    origin: int
    incarnation: int
    version: int
    entries: tuple[Member, ...]

    @property
    def key(self) -> tuple[int, int]:
        return (self.incarnation, self.version)

    @cached_property
    def _identity(self) -> tuple[int, int, int]:
        return (self.origin, self.incarnation, self.version)

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Row):
            return NotImplemented
        return self is other or (self._identity == other._identity and self.entries == other.entries)

    def __hash__(self) -> int:
        return hash(self._identity)

    @cached_property
    def heard(self) -> dict[int, int]:
        """node id -> incarnation heard."""
        return {m.node_id: m.incarnation for m in self.entries}

    @cached_property
    def pairs(self) -> frozenset[tuple[int, int]]:
        """(node id, incarnation) of every entry."""
        return frozenset(self.heard.items())

    @cached_property
    def id_mask(self) -> int:
        """The heard node ids as bits (bit n = node n), or -1 when an id is 2**16 or more."""
        mask = 0
        for node_id in self.heard:
            if node_id >= SMALL_IDS:
                return -1
            mask |= 1 << node_id
        return mask

    @cached_property
    def masks(self) -> dict[frozenset[tuple[int, int]], int]:
        """Cache of :mod:`pyclm.connectivity`: this row's mask per incarnation map."""
        return {}

    @cached_property
    def encoded_size(self) -> int:
        return _ROW_HEAD.size + _ENTRY.size * len(self.entries)


@attrs.frozen
class Header:
    type: MessageType
    sender: int
    incarnation: int


@attrs.frozen
class Heartbeat:
    header: Header
    view_id: ViewId | None
    row_version: int
    knowledge: int
    row: Row | None
    #: The sender's component differs from its view and no proposal for it is pending:
    #: its coordinator should propose again.
    unsettled: bool = False
    #: Primary lease (pyclm.lease): the sender's probe number (0: none) and, for each
    #: member of the sender's view in order, the newest probe it heard from that member.
    probe: int = 0
    echoes: tuple[int, ...] = ()


@attrs.frozen
class Propose:
    header: Header
    view_id: ViewId
    members: tuple[Member, ...]


@attrs.frozen
class Ack:
    """A member accepts proposal ``view_id`` and reports its membership numbers and quorum state.

    ``since`` and ``last`` are the acker's membership numbers for its current life (0 =
    none): the primary number at which it became a member of the membership, and the
    number of the last primary it acted as a member of (see :mod:`pyclm.core`).  The
    coordinator turns every member's into its ``joined`` in the INSTALL.
    """

    header: Header
    view_id: ViewId
    since: int
    last: int
    state: bytes


@attrs.frozen
class Nack:
    header: Header
    view_id: ViewId
    max_epoch: int


@attrs.frozen
class InstallEntry:
    """One member's entry in an INSTALL.

    ``joined`` is the primary number at which the member joined the membership, as the
    coordinator worked it out from every member's ACK (:func:`pyclm.core.joined_numbers`);
    0 means it joins at the number this view becomes primary with.  ``state`` is the
    quorum state from its ACK.
    """

    node_id: int
    joined: int
    state: bytes


@attrs.frozen
class Install:
    """The coordinator installs view ``view_id``: every member's entry.

    On the wire each distinct ``state`` travels once (see :func:`encode_install`); the
    decoded entries hold the states themselves.
    """

    header: Header
    view_id: ViewId
    #: One per member of the view, ascending by node id (the core checks that).
    entries: tuple[InstallEntry, ...]


@attrs.frozen
class Leave:
    header: Header


@attrs.frozen
class Pull:
    header: Header
    want_all: bool
    versions: tuple[tuple[int, int, int], ...]


@attrs.frozen
class Rows:
    header: Header
    rows: tuple[Row, ...]


@attrs.frozen
class QuorumMessage:
    header: Header
    view_id: ViewId
    payload: bytes


@attrs.frozen
class ClmMessage:
    """An opaque message of the CLM layer between members of view ``view_id``."""

    header: Header
    view_id: ViewId
    payload: bytes


Message = Heartbeat | Propose | Ack | Nack | Install | Leave | Pull | Rows | QuorumMessage | ClmMessage


@attrs.frozen
class Dropped:
    """Why a datagram was not a valid message (the key of a drop counter)."""

    reason: str


# ---------------------------------------------------------------- encoding


def _head(kind: MessageType, sender: int, incarnation: int) -> bytes:
    return _HEADER.pack(MAGIC, VERSION, kind, sender, incarnation)


def _entries(members: Iterable[Member]) -> bytes:
    return b"".join(_ENTRY.pack(m.node_id, m.incarnation) for m in members)


def encode_row(row: Row) -> bytes:
    return _ROW_HEAD.pack(row.origin, row.incarnation, row.version, len(row.entries)) + _entries(row.entries)


_FLAG_ROW = 1
_FLAG_UNSETTLED = 2
_FLAG_LEASE = 4


def encode_heartbeat(
    sender: int,
    incarnation: int,
    view_id: ViewId | None,
    row_version: int,
    knowledge: int,
    row: Row | None,
    unsettled: bool = False,
    lease: tuple[int, tuple[int, ...]] | None = None,
) -> bytes:
    """``lease``: ``(probe, echoes)``, see :class:`Heartbeat`."""
    epoch, coord = (view_id.epoch, view_id.coordinator) if view_id else (0, 0)
    flags = (_FLAG_ROW if row is not None else 0) | (_FLAG_UNSETTLED if unsettled else 0)
    extra = b""
    if lease is not None:
        probe, echoes = lease
        flags |= _FLAG_LEASE
        extra = _U16.pack(probe) + _U16.pack(len(echoes)) + struct.pack(f"!{len(echoes)}H", *echoes)
    body = _HEARTBEAT.pack(epoch, coord, row_version, knowledge, flags)
    return _head(MessageType.HEARTBEAT, sender, incarnation) + body + extra + (encode_row(row) if row else b"")


def encode_propose(sender: int, incarnation: int, view_id: ViewId, members: tuple[Member, ...]) -> bytes:
    return (
        _head(MessageType.PROPOSE, sender, incarnation)
        + _EPOCH.pack(view_id.epoch)
        + _U16.pack(len(members))
        + _entries(members)
    )


def encode_ack(sender: int, incarnation: int, view_id: ViewId, since: int, last: int, state: bytes) -> bytes:
    return (
        _head(MessageType.ACK, sender, incarnation)
        + _ACK_HEAD.pack(view_id.epoch, view_id.coordinator, since, last, len(state))
        + state
    )


def encode_nack(sender: int, incarnation: int, view_id: ViewId, max_epoch: int) -> bytes:
    return _head(MessageType.NACK, sender, incarnation) + _NACK.pack(view_id.epoch, view_id.coordinator, max_epoch)


def encode_install(sender: int, incarnation: int, view_id: ViewId, entries: tuple[InstallEntry, ...]) -> bytes:
    """The INSTALL of ``view_id`` with ``entries``: each distinct state once, in a table.

    The table lists the distinct states in the order the entries first use them; each
    entry names its state by index.  That order makes the encoding of a message unique.
    """
    table: dict[bytes, int] = {}
    indexes = [table.setdefault(entry.state, len(table)) for entry in entries]
    parts = [
        _head(MessageType.INSTALL, sender, incarnation),
        _EPOCH.pack(view_id.epoch),
        _U16.pack(len(entries)),
        _U16.pack(len(table)),
    ]
    for state in table:
        parts += (_U16.pack(len(state)), state)
    for entry, index in zip(entries, indexes, strict=True):
        parts += (_NODE.pack(entry.node_id), encode_varint(entry.joined), encode_varint(index))
    return b"".join(parts)


def encode_varint(value: int) -> bytes:
    """``value`` (a u64) as an unsigned LEB128 varint, in its shortest form: 1 to 10 bytes.

    7 bits a byte, least significant first; the high bit says another byte follows.
    Numbers below 2**35 take at most 5 bytes.
    """
    if not 0 <= value < 1 << 64:
        raise ValueError(f"a varint holds 0 to 2**64-1, not {value}")
    out = bytearray()
    while value >= 0x80:
        out.append(value & 0x7F | 0x80)
        value >>= 7
    out.append(value)
    return bytes(out)


def encode_leave(sender: int, incarnation: int) -> bytes:
    return _head(MessageType.LEAVE, sender, incarnation)


def encode_pull(sender: int, incarnation: int, want_all: bool, versions: tuple[tuple[int, int, int], ...]) -> bytes:
    return (
        _head(MessageType.PULL, sender, incarnation)
        + _U8.pack(1 if want_all else 0)
        + _U16.pack(len(versions))
        + b"".join(_VERSION_ENTRY.pack(*v) for v in versions)
    )


def encode_rows(sender: int, incarnation: int, rows: tuple[Row, ...]) -> bytes:
    return _head(MessageType.ROWS, sender, incarnation) + _U16.pack(len(rows)) + b"".join(encode_row(r) for r in rows)


def encode_quorum(sender: int, incarnation: int, view_id: ViewId, payload: bytes) -> bytes:
    return _tagged(MessageType.QUORUM, sender, incarnation, view_id, payload)


def encode_clm(sender: int, incarnation: int, view_id: ViewId, payload: bytes) -> bytes:
    return _tagged(MessageType.CLM, sender, incarnation, view_id, payload)


def _tagged(kind: MessageType, sender: int, incarnation: int, view_id: ViewId, payload: bytes) -> bytes:
    """A payload tagged with the view it belongs to (QUORUM, CLM)."""
    return (
        _head(kind, sender, incarnation)
        + _EPOCH_COORD.pack(view_id.epoch, view_id.coordinator)
        + _U16.pack(len(payload))
        + payload
    )


#: Bytes a CLM message needs beyond its payload.
CLM_OVERHEAD = HEADER_SIZE + _EPOCH_COORD.size + _U16.size


#: Bytes a heartbeat needs beyond its row.
HEARTBEAT_OVERHEAD = HEADER_SIZE + _HEARTBEAT.size


def row_size(n_entries: int) -> int:
    return _ROW_HEAD.size + _ENTRY.size * n_entries


# ---------------------------------------------------------------- decoding


class _Malformed(ValueError):
    def __init__(self, reason: str) -> None:
        super().__init__(reason)
        self.reason = reason


def read_varint(data: bytes, pos: int) -> tuple[int, int]:
    """The varint at ``data[pos]`` and the position after it.

    Only a value below 2**64 in its shortest form is read; anything else raises
    ``ValueError`` (``"truncated"``: the data ends inside it; ``"bad_varint"``: overlong,
    more than 10 bytes, or 2**64 or more).
    """
    value = 0
    for i in range(_VARINT_MAX):
        if pos + i >= len(data):
            raise _Malformed("truncated")
        byte = data[pos + i]
        value |= (byte & 0x7F) << (7 * i)
        if byte < 0x80:
            # A last byte of 0 after others is padding: each value has one encoding.
            if (byte == 0 and i > 0) or value >= 1 << 64:
                raise _Malformed("bad_varint")
            return value, pos + i + 1
    raise _Malformed("bad_varint")  # more than 10 bytes


class _Reader:
    __slots__ = ("data", "pos")

    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = HEADER_SIZE

    def take(self, fmt: struct.Struct) -> tuple[int, ...]:
        end = self.pos + fmt.size
        if end > len(self.data):
            raise _Malformed("truncated")
        values = fmt.unpack_from(self.data, self.pos)
        self.pos = end
        return values

    def count(self) -> int:
        (n,) = self.take(_U16)
        if n > MAX_CLUSTER_SIZE:
            raise _Malformed("count_too_large")
        return n

    def blob(self, length: int) -> bytes:
        if length > MAX_STATE:
            raise _Malformed("blob_too_large")
        end = self.pos + length
        if end > len(self.data):
            raise _Malformed("truncated")
        out = self.data[self.pos : end]
        self.pos = end
        return out

    def varint(self) -> int:
        """An unsigned LEB128 varint: below 2**64 and in its shortest form, else malformed."""
        value, self.pos = read_varint(self.data, self.pos)
        return value

    def members(self, n: int) -> tuple[Member, ...]:
        end = self.pos + n * _ENTRY.size
        if end > len(self.data):
            raise _Malformed("truncated")
        out = tuple(member(i, inc) for i, inc in _ENTRY.iter_unpack(self.data[self.pos : end]))
        self.pos = end
        ids = [m.node_id for m in out]
        if any(a >= b for a, b in itertools.pairwise(ids)):
            raise _Malformed("unsorted_members")
        return out

    def row(self) -> Row:
        origin, incarnation, version, n = self.take(_ROW_HEAD)
        if n > MAX_CLUSTER_SIZE:
            raise _Malformed("count_too_large")
        return Row(origin=origin, incarnation=incarnation, version=version, entries=self.members(n))

    def end(self) -> None:
        if self.pos != len(self.data):
            raise _Malformed("trailing_bytes")


def _view_id(epoch: int, coordinator: int) -> ViewId:
    if epoch == 0:
        raise _Malformed("zero_epoch")
    return ViewId(epoch, coordinator)


def _install(header: Header, r: _Reader) -> Install:
    """An INSTALL body: the state table, then the entries (see :func:`encode_install`)."""
    (epoch,) = r.take(_EPOCH)
    n = r.count()
    states = [r.blob(r.take(_U16)[0]) for _ in range(r.count())]
    if len(set(states)) != len(states):
        raise _Malformed("bad_state_table")  # a state listed twice
    entries = []
    used = 0  # the table is in order of first use: the next new index is exactly this
    for _ in range(n):
        (node_id,) = r.take(_NODE)
        joined = r.varint()
        index = r.varint()
        if index > used or index >= len(states):
            raise _Malformed("bad_state_table")  # beyond the table, or out of first-use order
        if index == used:
            used += 1
        entries.append(InstallEntry(node_id, joined, states[index]))
    if used != len(states):
        raise _Malformed("bad_state_table")  # a state no entry uses
    return Install(header, _view_id(epoch, header.sender), tuple(entries))


def _body(header: Header, r: _Reader) -> Message:
    kind = header.type
    if kind is MessageType.HEARTBEAT:
        epoch, coord, row_version, knowledge, flags = r.take(_HEARTBEAT)
        if flags > _FLAG_ROW | _FLAG_UNSETTLED | _FLAG_LEASE:
            raise _Malformed("bad_flags")
        probe = 0
        echoes: tuple[int, ...] = ()
        if flags & _FLAG_LEASE:
            (probe,) = r.take(_U16)
            n = r.count()
            echoes = r.take(struct.Struct(f"!{n}H"))
            if not epoch and n:
                raise _Malformed("echoes_without_view")
        row = r.row() if flags & _FLAG_ROW else None
        if row is not None and (row.origin, row.incarnation, row.version) != (
            header.sender,
            header.incarnation,
            row_version,
        ):
            raise _Malformed("row_mismatch")
        view_id = ViewId(epoch, coord) if epoch else None
        return Heartbeat(
            header, view_id, row_version, knowledge, row, bool(flags & _FLAG_UNSETTLED), probe, tuple(echoes)
        )
    if kind is MessageType.PROPOSE:
        (epoch,) = r.take(_EPOCH)
        members = r.members(r.count())
        if not members or members[0].node_id != header.sender:
            raise _Malformed("bad_coordinator")
        return Propose(header, _view_id(epoch, header.sender), members)
    if kind is MessageType.ACK:
        epoch, coord, since, last, length = r.take(_ACK_HEAD)
        return Ack(header, _view_id(epoch, coord), since, last, r.blob(length))
    if kind is MessageType.NACK:
        epoch, coord, max_epoch = r.take(_NACK)
        return Nack(header, _view_id(epoch, coord), max_epoch)
    if kind is MessageType.INSTALL:
        return _install(header, r)
    if kind is MessageType.LEAVE:
        return Leave(header)
    if kind is MessageType.PULL:
        (flags,) = r.take(_U8)
        if flags > 1:
            raise _Malformed("bad_flags")
        n = r.count()
        return Pull(header, bool(flags), tuple(r.take(_VERSION_ENTRY) for _ in range(n)))  # type: ignore[misc]
    if kind is MessageType.ROWS:
        return Rows(header, tuple(r.row() for _ in range(r.count())))
    # QUORUM or CLM (the only types left after the enum check in decode)
    epoch, coord = r.take(_EPOCH_COORD)
    (length,) = r.take(_U16)
    cls = QuorumMessage if kind is MessageType.QUORUM else ClmMessage
    return cls(header, _view_id(epoch, coord), r.blob(length))


@functools.lru_cache(maxsize=8192)
def decode(data: bytes) -> Message | Dropped:
    """Parse one datagram.  Returns the message or a :class:`Dropped`; never raises."""
    if len(data) < HEADER_SIZE:
        return Dropped("truncated")
    magic, version, kind, sender, incarnation = _HEADER.unpack_from(data)
    if magic != MAGIC:
        return Dropped("bad_magic")
    if version != VERSION:
        return Dropped("bad_version")
    try:
        header = Header(MessageType(kind), sender, incarnation)
    except ValueError:
        return Dropped("bad_type")
    reader = _Reader(data)
    try:
        message = _body(header, reader)
        reader.end()
    except _Malformed as exc:
        return Dropped(exc.reason)
    return message


def row_digest(rows: Iterable[Row]) -> int:
    """A 64-bit digest of which row versions a node holds (order does not matter)."""
    acc = 0
    for row in rows:
        acc ^= _row_hash(row.origin, row.incarnation, row.version)
    return acc


@functools.lru_cache(maxsize=65536)
def _row_hash(origin: int, incarnation: int, version: int) -> int:
    digest = hashlib.blake2b(_VERSION_ENTRY.pack(origin, incarnation, version), digest_size=8).digest()
    return int.from_bytes(digest, "big")
