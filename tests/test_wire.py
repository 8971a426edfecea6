"""The wire codec: round trips of every message type, and a decoder that never raises.

Hostile bytes must come back as :class:`~pyclm.wire.Dropped` with a reason (the key of
a drop counter); any exception out of :func:`~pyclm.wire.decode` is a bug.
"""

from __future__ import annotations

import struct
from collections.abc import Callable

import attrs
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from pyclm import wire
from pyclm.config import MAX_CLUSTER_SIZE
from pyclm.ids import MAX_INCARNATION, MAX_NODE_ID, Member, ViewId
from pyclm.voting.sessions import Session, VotingState
from pyclm.wire import (
    HEADER_SIZE,
    MAGIC,
    MAX_STATE,
    VERSION,
    Ack,
    ClmMessage,
    Dropped,
    Heartbeat,
    Install,
    InstallEntry,
    Leave,
    MessageType,
    Nack,
    Propose,
    Pull,
    QuorumMessage,
    Row,
    Rows,
    decode,
)

SETTINGS = settings(
    max_examples=300,
    derandomize=True,
    database=None,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow],
)

#: Every reason the decoder may give.  A new one must be added here (and to the drop counters' docs).
REASONS = {
    "truncated",
    "bad_magic",
    "bad_version",
    "bad_type",
    "count_too_large",
    "blob_too_large",
    "unsorted_members",
    "trailing_bytes",
    "zero_epoch",
    "bad_varint",
    "bad_state_table",
    "bad_flags",
    "row_mismatch",
    "bad_coordinator",
}


def plain(obj: object) -> object:
    """Messages as nested tuples of field values (rows compare by identity, so unpack them)."""
    cls = type(obj)
    if attrs.has(cls):
        return (cls.__name__, *(plain(getattr(obj, f.name)) for f in attrs.fields(cls)))
    if isinstance(obj, tuple):
        return tuple(plain(x) for x in obj)
    return obj


def head(kind: int, sender: int = 1, incarnation: int = 5, *, magic: bytes = MAGIC, version: int = VERSION) -> bytes:
    return struct.pack("!2sBBIQ", magic, version, kind, sender, incarnation)


def entries(members: list[tuple[int, int]]) -> bytes:
    return b"".join(struct.pack("!IQ", n, i) for n, i in members)


def sorted_members(n: int) -> list[tuple[int, int]]:
    return [(i, 7) for i in range(1, n + 1)]


# ------------------------------------------------------------------ one sample per type

ROW = Row(origin=1, incarnation=5, version=3, entries=(Member(1, 5), Member(2, 9), Member(4, 1)))
OTHER_ROW = Row(origin=4, incarnation=1, version=8, entries=(Member(1, 5), Member(4, 1)))

SAMPLES: dict[MessageType, bytes] = {
    MessageType.HEARTBEAT: wire.encode_heartbeat(
        1, 5, ViewId(7, 1), 3, 0xDEADBEEF, ROW, unsettled=True, lease=(513, (0, 7, 65535))
    ),
    MessageType.PROPOSE: wire.encode_propose(1, 5, ViewId(7, 1), (Member(1, 5), Member(2, 9), Member(4, 1))),
    MessageType.ACK: wire.encode_ack(2, 9, ViewId(7, 1), 3, 6, b"state"),
    MessageType.NACK: wire.encode_nack(2, 9, ViewId(7, 1), 12),
    MessageType.INSTALL: wire.encode_install(
        1,
        5,
        ViewId(7, 1),
        (InstallEntry(1, 3, b"xyz"), InstallEntry(2, 0, b"ab"), InstallEntry(4, 300, b"xyz"), InstallEntry(5, 1, b"")),
    ),
    MessageType.LEAVE: wire.encode_leave(3, 11),
    MessageType.PULL: wire.encode_pull(2, 9, True, ((1, 5, 3), (4, 1, 8))),
    MessageType.ROWS: wire.encode_rows(2, 9, (ROW, OTHER_ROW)),
    MessageType.QUORUM: wire.encode_quorum(2, 9, ViewId(7, 1), b"payload"),
    MessageType.CLM: wire.encode_clm(2, 9, ViewId(7, 1), b"clm payload"),
}

EXPECTED: dict[MessageType, object] = {
    MessageType.HEARTBEAT: (
        "Heartbeat",
        ("Header", MessageType.HEARTBEAT, 1, 5),
        ("ViewId", 7, 1),
        3,
        0xDEADBEEF,
        ("Row", 1, 5, 3, (("Member", 1, 5), ("Member", 2, 9), ("Member", 4, 1))),
        True,
        513,
        (0, 7, 65535),
    ),
    MessageType.PROPOSE: (
        "Propose",
        ("Header", MessageType.PROPOSE, 1, 5),
        ("ViewId", 7, 1),
        (("Member", 1, 5), ("Member", 2, 9), ("Member", 4, 1)),
    ),
    MessageType.ACK: ("Ack", ("Header", MessageType.ACK, 2, 9), ("ViewId", 7, 1), 3, 6, b"state"),
    MessageType.NACK: ("Nack", ("Header", MessageType.NACK, 2, 9), ("ViewId", 7, 1), 12),
    MessageType.INSTALL: (
        "Install",
        ("Header", MessageType.INSTALL, 1, 5),
        ("ViewId", 7, 1),
        (
            ("InstallEntry", 1, 3, b"xyz"),
            ("InstallEntry", 2, 0, b"ab"),
            ("InstallEntry", 4, 300, b"xyz"),
            ("InstallEntry", 5, 1, b""),
        ),
    ),
    MessageType.LEAVE: ("Leave", ("Header", MessageType.LEAVE, 3, 11)),
    MessageType.PULL: ("Pull", ("Header", MessageType.PULL, 2, 9), True, ((1, 5, 3), (4, 1, 8))),
    MessageType.ROWS: (
        "Rows",
        ("Header", MessageType.ROWS, 2, 9),
        (
            ("Row", 1, 5, 3, (("Member", 1, 5), ("Member", 2, 9), ("Member", 4, 1))),
            ("Row", 4, 1, 8, (("Member", 1, 5), ("Member", 4, 1))),
        ),
    ),
    MessageType.QUORUM: ("QuorumMessage", ("Header", MessageType.QUORUM, 2, 9), ("ViewId", 7, 1), b"payload"),
    MessageType.CLM: ("ClmMessage", ("Header", MessageType.CLM, 2, 9), ("ViewId", 7, 1), b"clm payload"),
}


def test_samples_cover_every_message_type() -> None:
    assert set(SAMPLES) == set(MessageType)
    assert set(EXPECTED) == set(MessageType)


@pytest.mark.parametrize("kind", list(MessageType), ids=lambda k: k.name)
def test_round_trip_of_every_type(kind: MessageType) -> None:
    message = decode(SAMPLES[kind])
    assert not isinstance(message, Dropped), message
    assert message.header.type is kind
    assert plain(message) == EXPECTED[kind]


def test_heartbeat_without_view_or_row_round_trips() -> None:
    message = decode(wire.encode_heartbeat(3, 2**64 - 1, None, 0, 0, None))
    assert isinstance(message, Heartbeat)
    assert message.view_id is None
    assert message.row is None
    assert message.unsettled is False
    assert (message.header.sender, message.header.incarnation, message.row_version) == (3, 2**64 - 1, 0)


def test_empty_collections_round_trip() -> None:
    install = decode(wire.encode_install(1, 1, ViewId(1, 1), ()))
    assert isinstance(install, Install)
    assert install.entries == ()
    pull = decode(wire.encode_pull(1, 1, False, ()))
    assert isinstance(pull, Pull)
    assert (pull.want_all, pull.versions) == (False, ())
    rows = decode(wire.encode_rows(1, 1, ()))
    assert isinstance(rows, Rows)
    assert rows.rows == ()
    row = Row(origin=1, incarnation=1, version=0, entries=())
    hb = decode(wire.encode_heartbeat(1, 1, None, 0, 0, row))
    assert isinstance(hb, Heartbeat)
    assert hb.row is not None
    assert hb.row.entries == ()


def test_header_layout() -> None:
    data = wire.encode_leave(0x01020304, 0x05060708090A0B0C)
    assert data == b"\xc1\x4d\x03\x06\x01\x02\x03\x04\x05\x06\x07\x08\x09\x0a\x0b\x0c"
    assert HEADER_SIZE == len(data) == 16


def test_size_helpers_match_the_encoding() -> None:
    row = Row(origin=1, incarnation=5, version=3, entries=tuple(Member(i, 5) for i in range(1, 11)))
    assert len(wire.encode_row(row)) == wire.row_size(10) == row.encoded_size
    assert len(wire.encode_heartbeat(1, 5, None, 3, 0, row)) == wire.HEARTBEAT_OVERHEAD + row.encoded_size
    assert len(wire.encode_heartbeat(1, 5, None, 3, 0, None)) == wire.HEARTBEAT_OVERHEAD


def test_decode_is_cached_by_content() -> None:
    data = SAMPLES[MessageType.PROPOSE]
    assert decode(bytes(bytearray(data))) is decode(data)


def test_row_helpers() -> None:
    assert ROW.key == (5, 3)
    assert ROW.heard == {1: 5, 2: 9, 4: 1}
    copy = Row(origin=1, incarnation=5, version=3, entries=ROW.entries)
    assert copy == ROW and hash(copy) == hash(ROW)  # rows are values
    other = Row(origin=1, incarnation=5, version=3, entries=ROW.entries[:1])
    assert other != ROW  # the same key with other entries (another run, another cluster) is another row


def test_row_digest_ignores_order_and_sees_versions() -> None:
    a = Row(origin=1, incarnation=1, version=1, entries=())
    b = Row(origin=2, incarnation=1, version=4, entries=())
    b2 = Row(origin=2, incarnation=1, version=5, entries=())
    assert wire.row_digest([a, b]) == wire.row_digest([b, a])
    assert wire.row_digest([a, b]) != wire.row_digest([a, b2])
    assert wire.row_digest([]) == 0


# ------------------------------------------------------------------ hypothesis round trips

node_ids = st.integers(0, MAX_NODE_ID)
incarnations = st.integers(0, MAX_INCARNATION)
u32 = st.integers(0, 2**32 - 1)
u64 = st.integers(0, 2**64 - 1)
view_ids = st.builds(ViewId, st.integers(1, 2**64 - 1), node_ids)
blobs = st.binary(max_size=40)
#: Quorum states as an INSTALL sees them: often the same few (members of a settled view agree).
install_states = st.sampled_from([b"", b"a", b"settled state"]) | blobs


@st.composite
def member_tuples(draw: st.DrawFn, min_size: int = 0, max_size: int = 6) -> tuple[Member, ...]:
    heard = draw(st.dictionaries(node_ids, incarnations, min_size=min_size, max_size=max_size))
    return tuple(sorted(Member(n, i) for n, i in heard.items()))


@st.composite
def rows(draw: st.DrawFn) -> Row:
    return Row(origin=draw(node_ids), incarnation=draw(incarnations), version=draw(u32), entries=draw(member_tuples()))


@st.composite
def datagrams(draw: st.DrawFn) -> tuple[bytes, object]:
    """A valid datagram of any type and the decoded message it must give, as :func:`plain` values."""
    kind = draw(st.sampled_from(list(MessageType)))
    sender, incarnation = draw(node_ids), draw(incarnations)
    h = ("Header", kind, sender, incarnation)
    if kind is MessageType.HEARTBEAT:
        view_id = draw(st.none() | view_ids)
        knowledge = draw(u64)
        unsettled = draw(st.booleans())
        lease = None
        if draw(st.booleans()):
            echoes = tuple(draw(st.lists(st.integers(0, 2**16 - 1), max_size=8))) if view_id else ()
            lease = (draw(st.integers(0, 2**16 - 1)), echoes)
        probe, echoes = lease or (0, ())
        if draw(st.booleans()):
            row = Row(origin=sender, incarnation=incarnation, version=draw(u32), entries=draw(member_tuples()))
            data = wire.encode_heartbeat(sender, incarnation, view_id, row.version, knowledge, row, unsettled, lease)
            return data, ("Heartbeat", h, plain(view_id), row.version, knowledge, plain(row), unsettled, probe, echoes)
        version = draw(u32)
        data = wire.encode_heartbeat(sender, incarnation, view_id, version, knowledge, None, unsettled, lease)
        return data, ("Heartbeat", h, plain(view_id), version, knowledge, None, unsettled, probe, echoes)
    if kind is MessageType.PROPOSE:
        others = draw(member_tuples())
        members = (Member(sender, incarnation), *(m for m in others if m.node_id > sender))
        epoch = draw(st.integers(1, 2**64 - 1))
        data = wire.encode_propose(sender, incarnation, ViewId(epoch, sender), members)
        return data, ("Propose", h, ("ViewId", epoch, sender), plain(members))
    if kind is MessageType.ACK:
        view_id, since, last, state = draw(view_ids), draw(u64), draw(u64), draw(blobs)
        data = wire.encode_ack(sender, incarnation, view_id, since, last, state)
        return data, ("Ack", h, plain(view_id), since, last, state)
    if kind is MessageType.NACK:
        view_id, max_epoch = draw(view_ids), draw(u64)
        return wire.encode_nack(sender, incarnation, view_id, max_epoch), ("Nack", h, plain(view_id), max_epoch)
    if kind is MessageType.INSTALL:
        epoch = draw(st.integers(1, 2**64 - 1))
        installed = tuple(draw(st.lists(st.builds(InstallEntry, node_ids, u64, install_states), max_size=8)))
        data = wire.encode_install(sender, incarnation, ViewId(epoch, sender), installed)
        return data, ("Install", h, ("ViewId", epoch, sender), plain(installed))
    if kind is MessageType.LEAVE:
        return wire.encode_leave(sender, incarnation), ("Leave", h)
    if kind is MessageType.PULL:
        want_all = draw(st.booleans())
        versions = tuple(draw(st.lists(st.tuples(node_ids, incarnations, u32), max_size=5)))
        return wire.encode_pull(sender, incarnation, want_all, versions), ("Pull", h, want_all, versions)
    if kind is MessageType.ROWS:
        some = tuple(draw(st.lists(rows(), max_size=4)))
        return wire.encode_rows(sender, incarnation, some), ("Rows", h, plain(some))
    view_id, payload = draw(view_ids), draw(blobs)
    if kind is MessageType.CLM:
        return wire.encode_clm(sender, incarnation, view_id, payload), ("ClmMessage", h, plain(view_id), payload)
    return wire.encode_quorum(sender, incarnation, view_id, payload), ("QuorumMessage", h, plain(view_id), payload)


@SETTINGS
@given(datagrams())
def test_round_trip_property(sample: tuple[bytes, object]) -> None:
    data, expected = sample
    assert plain(decode(data)) == expected


# ------------------------------------------------------------------ never raises


def check_total(data: bytes) -> wire.Message | Dropped:
    """Decode and check the result is a message or a drop with a known reason (never an exception)."""
    result = decode(data)
    if isinstance(result, Dropped):
        assert result.reason in REASONS, result
    else:
        assert isinstance(
            result, (Heartbeat, Propose, Ack, Nack, Install, Leave, Pull, Rows, QuorumMessage, ClmMessage)
        )
    return result


@SETTINGS
@given(st.binary(max_size=200))
def test_decode_arbitrary_bytes_never_raises(data: bytes) -> None:
    check_total(data)


@SETTINGS
@given(st.integers(0, 12), node_ids, incarnations, st.binary(max_size=120))
def test_decode_valid_header_and_arbitrary_body_never_raises(kind: int, sender: int, inc: int, body: bytes) -> None:
    check_total(head(kind, sender, inc) + body)


@SETTINGS
@given(datagrams(), st.data())
def test_flipped_bytes_never_raise(sample: tuple[bytes, object], data: st.DataObject) -> None:
    raw = bytearray(sample[0])
    for _ in range(data.draw(st.integers(1, 3))):
        index = data.draw(st.integers(0, len(raw) - 1))
        raw[index] ^= data.draw(st.integers(1, 255))
    result = check_total(bytes(raw))
    if raw[:2] != MAGIC:
        assert result == Dropped("bad_magic")
    elif raw[2] != VERSION:
        assert result == Dropped("bad_version")
    elif raw[3] not in set(MessageType):
        assert result == Dropped("bad_type")


@SETTINGS
@given(datagrams(), st.binary(min_size=1, max_size=40))
def test_appended_bytes_are_dropped_as_trailing(sample: tuple[bytes, object], extra: bytes) -> None:
    assert decode(sample[0] + extra) == Dropped("trailing_bytes")


@SETTINGS
@given(datagrams(), st.data())
def test_truncation_is_dropped_property(sample: tuple[bytes, object], data: st.DataObject) -> None:
    raw = sample[0]
    cut = data.draw(st.integers(0, len(raw) - 1))
    assert decode(raw[:cut]) == Dropped("truncated")


@pytest.mark.parametrize("kind", list(MessageType), ids=lambda k: k.name)
def test_truncation_at_every_length(kind: MessageType) -> None:
    raw = SAMPLES[kind]
    for cut in range(len(raw)):
        assert decode(raw[:cut]) == Dropped("truncated"), cut


@pytest.mark.parametrize("kind", list(MessageType), ids=lambda k: k.name)
def test_one_appended_byte_is_trailing(kind: MessageType) -> None:
    assert decode(SAMPLES[kind] + b"\x00") == Dropped("trailing_bytes")


@pytest.mark.parametrize("kind", list(MessageType), ids=lambda k: k.name)
def test_wrong_magic_version_or_type(kind: MessageType) -> None:
    raw = SAMPLES[kind]
    assert decode(b"\xc1\x4e" + raw[2:]) == Dropped("bad_magic")
    assert decode(b"\x00\x00" + raw[2:]) == Dropped("bad_magic")
    for version in (0, 1, 2, 4, 255):
        assert decode(raw[:2] + bytes([version]) + raw[3:]) == Dropped("bad_version")
    for bad_kind in (0, 11, 255):
        assert decode(raw[:3] + bytes([bad_kind]) + raw[4:]) == Dropped("bad_type")


def test_short_datagrams() -> None:
    assert decode(b"") == Dropped("truncated")
    assert decode(MAGIC) == Dropped("truncated")
    assert decode(head(MessageType.LEAVE)[:-1]) == Dropped("truncated")


# ------------------------------------------------------------------ bounds

TOO_MANY = MAX_CLUSTER_SIZE + 1


def row_bytes(origin: int, incarnation: int, version: int, members: list[tuple[int, int]], count: int) -> bytes:
    return struct.pack("!IQIH", origin, incarnation, version, count) + entries(members)


BOUND_CASES: dict[str, Callable[[int], bytes]] = {
    "propose": lambda n: head(MessageType.PROPOSE) + struct.pack("!QH", 1, n) + entries(sorted_members(n)),
    "install": lambda n: (
        head(MessageType.INSTALL)
        + struct.pack("!QHHH", 1, n, 1, 0)  # n entries, one (empty) state
        + b"".join(struct.pack("!IBB", i, 0, 0) for i in range(n))
    ),
    "install.states": lambda n: (
        head(MessageType.INSTALL)
        + struct.pack("!QHH", 1, min(n, MAX_CLUSTER_SIZE), n)  # as many states as entries, at most
        + b"".join(struct.pack("!HH", 2, i) for i in range(n))
        + b"".join(struct.pack("!IB", i, 0) + wire.encode_varint(i) for i in range(n))
    ),
    "pull": lambda n: (
        head(MessageType.PULL) + struct.pack("!BH", 0, n) + b"".join(struct.pack("!IQI", i, 1, 1) for i in range(n))
    ),
    "rows": lambda n: (
        head(MessageType.ROWS) + struct.pack("!H", n) + b"".join(row_bytes(i, 1, 1, [], 0) for i in range(n))
    ),
    "rows.entries": lambda n: head(MessageType.ROWS) + struct.pack("!H", 1) + row_bytes(9, 1, 1, sorted_members(n), n),
    "heartbeat.row": lambda n: (
        head(MessageType.HEARTBEAT, 1, 5)
        + struct.pack("!QIIQB", 0, 0, 3, 0, 1)
        + row_bytes(1, 5, 3, sorted_members(n), n)
    ),
}


@pytest.mark.parametrize("case", sorted(BOUND_CASES))
def test_counts_up_to_the_cluster_size_decode(case: str) -> None:
    data = BOUND_CASES[case](MAX_CLUSTER_SIZE)
    result = decode(data)
    assert not isinstance(result, Dropped), result


@pytest.mark.parametrize("case", sorted(BOUND_CASES))
def test_counts_above_the_cluster_size_are_dropped(case: str) -> None:
    assert decode(BOUND_CASES[case](TOO_MANY)) == Dropped("count_too_large")


@pytest.mark.parametrize("count", [TOO_MANY, 0xFFFF])
def test_large_count_is_dropped_before_reading_the_items(count: int) -> None:
    # The count alone, with none of the promised items: rejected for its size, not as truncated.
    assert decode(head(MessageType.PROPOSE) + struct.pack("!QH", 1, count)) == Dropped("count_too_large")
    assert decode(head(MessageType.ROWS) + struct.pack("!H", count)) == Dropped("count_too_large")


BLOB_CASES: dict[str, Callable[[int], bytes]] = {
    "ack": lambda n: head(MessageType.ACK) + struct.pack("!QIQQH", 1, 1, 2, 3, n) + b"s" * n,
    "quorum": lambda n: head(MessageType.QUORUM) + struct.pack("!QIH", 1, 1, n) + b"q" * n,
    "clm": lambda n: head(MessageType.CLM) + struct.pack("!QIH", 1, 1, n) + b"c" * n,
    "install": lambda n: (
        head(MessageType.INSTALL) + struct.pack("!QHHH", 1, 1, 1, n) + b"i" * n + struct.pack("!IBB", 1, 2, 0)
    ),
}


@pytest.mark.parametrize("case", sorted(BLOB_CASES))
def test_blobs_up_to_max_state_decode(case: str) -> None:
    result = decode(BLOB_CASES[case](MAX_STATE))
    assert not isinstance(result, Dropped), result


@pytest.mark.parametrize("case", sorted(BLOB_CASES))
def test_blobs_above_max_state_are_dropped(case: str) -> None:
    assert decode(BLOB_CASES[case](MAX_STATE + 1)) == Dropped("blob_too_large")
    # Cut right after the first length field (and into the blob): too large before truncated.
    assert decode(BLOB_CASES[case](0xFFFF)[: HEADER_SIZE + 32]) == Dropped("blob_too_large")


# ------------------------------------------------------------------ semantic checks of the decoder


@pytest.mark.parametrize(
    ("row", "reason"),
    [
        (Row(origin=1, incarnation=5, version=3, entries=()), None),
        (Row(origin=2, incarnation=5, version=3, entries=()), "row_mismatch"),
        (Row(origin=1, incarnation=6, version=3, entries=()), "row_mismatch"),
        (Row(origin=1, incarnation=5, version=4, entries=()), "row_mismatch"),
    ],
    ids=["consistent", "origin", "incarnation", "version"],
)
def test_heartbeat_row_must_match_the_header(row: Row, reason: str | None) -> None:
    result = decode(wire.encode_heartbeat(1, 5, ViewId(2, 1), 3, 0, row))
    if reason is None:
        assert isinstance(result, Heartbeat)
    else:
        assert result == Dropped(reason)


def test_zero_epochs_are_dropped() -> None:
    zero = ViewId(0, 1)
    assert decode(wire.encode_propose(1, 1, zero, (Member(1, 1),))) == Dropped("zero_epoch")
    assert decode(wire.encode_ack(2, 1, zero, 0, 0, b"")) == Dropped("zero_epoch")
    assert decode(wire.encode_nack(2, 1, zero, 3)) == Dropped("zero_epoch")
    assert decode(wire.encode_install(1, 1, zero, ())) == Dropped("zero_epoch")
    assert decode(wire.encode_quorum(2, 1, zero, b"")) == Dropped("zero_epoch")
    assert decode(wire.encode_clm(2, 1, zero, b"")) == Dropped("zero_epoch")


def test_heartbeat_epoch_zero_means_no_view() -> None:
    data = head(MessageType.HEARTBEAT) + struct.pack("!QIIQB", 0, 9, 0, 0, 0)
    result = decode(data)
    assert isinstance(result, Heartbeat)
    assert result.view_id is None


@pytest.mark.parametrize("flags", [8, 9, 0x80, 0xFF])
def test_unknown_heartbeat_flags_are_dropped(flags: int) -> None:
    assert decode(head(MessageType.HEARTBEAT) + struct.pack("!QIIQB", 1, 1, 0, 0, flags)) == Dropped("bad_flags")


def test_a_lease_section_that_does_not_fit_is_dropped() -> None:
    body = head(MessageType.HEARTBEAT) + struct.pack("!QIIQB", 1, 1, 0, 0, 4)
    assert decode(body) == Dropped("truncated")  # flag set, no section
    assert decode(body + struct.pack("!HH", 5, 2) + struct.pack("!H", 1)) == Dropped("truncated")  # one echo short
    assert decode(body + struct.pack("!HH", 5, 1025)) == Dropped("count_too_large")
    no_view = head(MessageType.HEARTBEAT) + struct.pack("!QIIQB", 0, 0, 0, 0, 4) + struct.pack("!HHH", 5, 1, 3)
    assert decode(no_view) == Dropped("echoes_without_view")
    ok = decode(body + struct.pack("!HHHH", 5, 2, 9, 0))
    assert isinstance(ok, Heartbeat) and (ok.probe, ok.echoes) == (5, (9, 0))


def test_heartbeat_flags() -> None:
    # bit 0: a row follows; bit 1: the sender is unsettled; bit 2: a lease section follows.
    plain_hb = decode(head(MessageType.HEARTBEAT) + struct.pack("!QIIQB", 1, 1, 0, 0, 2))
    assert isinstance(plain_hb, Heartbeat)
    assert (plain_hb.row, plain_hb.unsettled) == (None, True)
    with_row = head(MessageType.HEARTBEAT, 1, 5) + struct.pack("!QIIQB", 1, 1, 3, 0, 3) + row_bytes(1, 5, 3, [], 0)
    both = decode(with_row)
    assert isinstance(both, Heartbeat)
    assert both.row is not None and both.unsettled


@pytest.mark.parametrize("flags", [2, 3, 0xFF])
def test_unknown_pull_flags_are_dropped(flags: int) -> None:
    assert decode(head(MessageType.PULL) + struct.pack("!BH", flags, 0)) == Dropped("bad_flags")


@pytest.mark.parametrize(
    "members",
    [[(2, 1), (1, 1)], [(1, 1), (1, 2)], [(1, 1), (3, 1), (2, 1)]],
    ids=["descending", "duplicate", "unsorted-tail"],
)
def test_unsorted_or_duplicate_members_are_dropped(members: list[tuple[int, int]]) -> None:
    propose = head(MessageType.PROPOSE, sender=1) + struct.pack("!QH", 1, len(members)) + entries(members)
    assert decode(propose) == Dropped("unsorted_members")
    rows = head(MessageType.ROWS) + struct.pack("!H", 1) + row_bytes(1, 1, 1, members, len(members))
    assert decode(rows) == Dropped("unsorted_members")


def test_proposal_must_be_led_by_its_sender() -> None:
    assert decode(wire.encode_propose(2, 1, ViewId(1, 2), (Member(1, 1), Member(2, 1)))) == Dropped("bad_coordinator")
    assert decode(wire.encode_propose(2, 1, ViewId(1, 2), ())) == Dropped("bad_coordinator")
    ok = decode(wire.encode_propose(1, 1, ViewId(1, 1), (Member(1, 1), Member(2, 1))))
    assert isinstance(ok, Propose)


def test_install_and_propose_take_the_coordinator_from_the_sender() -> None:
    # The encoders send only the epoch: the view's coordinator is whoever sent it.
    install = decode(wire.encode_install(4, 1, ViewId(3, 9), ()))
    assert isinstance(install, Install)
    assert install.view_id == ViewId(3, 4)


# ------------------------------------------------------------------ versions 2 and 3: numbers, CLM, the state table


def test_ack_layout_puts_since_and_last_between_the_view_id_and_the_state() -> None:
    data = wire.encode_ack(2, 9, ViewId(7, 1), 0x0102030405060708, 0x1112131415161718, b"st")
    assert data[HEADER_SIZE:] == (
        struct.pack("!QI", 7, 1) + bytes.fromhex("0102030405060708 1112131415161718") + struct.pack("!H", 2) + b"st"
    )
    assert len(data) == HEADER_SIZE + 30 + 2


def test_install_layout_sends_each_distinct_state_once() -> None:
    entries = (InstallEntry(1, 4, b"xy"), InstallEntry(3, 0, b""), InstallEntry(5, 300, b"xy"))
    data = wire.encode_install(1, 5, ViewId(10, 1), entries)
    assert data[HEADER_SIZE:] == (
        struct.pack("!QHH", 10, 3, 2)  # epoch, 3 entries, 2 distinct states
        + struct.pack("!H", 2) + b"xy"  # state 0, first used by node 1
        + struct.pack("!H", 0)  # state 1, first used by node 3
        + struct.pack("!I", 1) + b"\x04" + b"\x00"  # node 1, joined 4, state 0
        + struct.pack("!I", 3) + b"\x00" + b"\x01"  # node 3, joined 0, state 1
        + struct.pack("!I", 5) + b"\xac\x02" + b"\x00"  # node 5, joined 300, state 0
    )  # fmt: skip
    # 28 + Σ(2 + s) over the distinct states + Σ(4 + v + i) over the entries (v, i: varint bytes)
    assert len(data) == 28 + (2 + 2) + (2 + 0) + (4 + 1 + 1) + (4 + 1 + 1) + (4 + 2 + 1)


@SETTINGS
@given(st.lists(st.builds(InstallEntry, node_ids, u64, install_states), max_size=12))
def test_an_install_carries_each_distinct_state_once(entries: list[InstallEntry]) -> None:
    data = wire.encode_install(1, 5, ViewId(10, 1), tuple(entries))
    distinct = {e.state for e in entries}
    varints = sum(len(wire.encode_varint(e.joined)) for e in entries)
    indexes = len(entries)  # fewer than 128 states: one byte each
    assert len(data) == 28 + sum(2 + len(x) for x in distinct) + 4 * len(entries) + varints + indexes
    install = decode(data)
    assert isinstance(install, Install) and install.entries == tuple(entries)


def test_clm_layout() -> None:
    data = wire.encode_clm(2, 9, ViewId(7, 1), b"hello")
    assert data[3] == 10 and MessageType.CLM.value == 10
    assert data[HEADER_SIZE:] == struct.pack("!QIH", 7, 1, 5) + b"hello"
    assert len(data) == wire.CLM_OVERHEAD + 5


@pytest.mark.parametrize("cut", range(1, 30))
def test_an_ack_cut_inside_its_fixed_fields_is_truncated(cut: int) -> None:
    data = wire.encode_ack(2, 9, ViewId(7, 1), 3, 6, b"")
    assert decode(data[: HEADER_SIZE + cut]) == Dropped("truncated")


def test_ack_state_length_must_match_the_bytes() -> None:
    fixed = head(MessageType.ACK, 2, 9) + struct.pack("!QIQQ", 7, 1, 3, 6)
    assert decode(fixed + struct.pack("!H", 3) + b"ab") == Dropped("truncated")  # promises more than it has
    assert decode(fixed + struct.pack("!H", 1) + b"ab") == Dropped("trailing_bytes")  # promises less
    assert decode(fixed + struct.pack("!H", MAX_STATE + 1)) == Dropped("blob_too_large")
    ok = decode(fixed + struct.pack("!H", 2) + b"ab")
    assert isinstance(ok, Ack) and (ok.since, ok.last, ok.state) == (3, 6, b"ab")


def test_ack_numbers_take_the_whole_u64_range() -> None:
    top = 2**64 - 1
    ack = decode(wire.encode_ack(2, 9, ViewId(7, 1), top, top, b""))
    assert isinstance(ack, Ack) and (ack.since, ack.last) == (top, top)


def install_bytes(count: int, *entries: bytes, states: tuple[bytes, ...] = (b"",)) -> bytes:
    """An INSTALL of ``count`` entries (as given) with the state table ``states``."""
    table = struct.pack("!H", len(states)) + b"".join(struct.pack("!H", len(x)) + x for x in states)
    return head(MessageType.INSTALL) + struct.pack("!QH", 4, count) + table + b"".join(entries)


def entry(node_id: int, joined: bytes, index: bytes = b"\x00") -> bytes:
    """An INSTALL entry with ``joined`` and the state ``index`` as given (raw varint bytes, well-formed or not)."""
    return struct.pack("!I", node_id) + joined + index


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (install_bytes(1), "truncated"),  # an entry promised, none there
        (install_bytes(1, struct.pack("!I", 1)), "truncated"),  # no joined
        (install_bytes(1, struct.pack("!I", 1) + b"\x05"), "truncated"),  # no state index
        (install_bytes(1, struct.pack("!I", 1) + b"\x85"), "truncated"),  # joined promises another byte
        (install_bytes(1, struct.pack("!I", 1) + b"\xff" * 9), "truncated"),  # ... up to the tenth
        (install_bytes(1, entry(1, b"\x02", b"\x80")), "truncated"),  # the index promises another byte
        (head(MessageType.INSTALL) + struct.pack("!QHHH", 4, 1, 1, 4) + b"abc", "truncated"),  # short state
        (head(MessageType.INSTALL) + struct.pack("!QH", 4, 1), "truncated"),  # no state count
        (install_bytes(1, states=(b"x", b"y"))[:-3], "truncated"),  # the second state missing
        (install_bytes(2, entry(1, b"\x02")), "truncated"),  # the second entry missing
        (install_bytes(1, entry(1, b"\x02") + b"\x00"), "trailing_bytes"),
        (head(MessageType.INSTALL) + struct.pack("!QHHH", 4, 2, 1, MAX_STATE + 1), "blob_too_large"),
        (install_bytes(MAX_CLUSTER_SIZE + 1, entry(1, b"\x02")), "count_too_large"),
        (head(MessageType.INSTALL) + struct.pack("!QHH", 4, 1, MAX_CLUSTER_SIZE + 1), "count_too_large"),
        (install_bytes(1, entry(1, b"\x80\x00")), "bad_varint"),  # 0 in two bytes
        (install_bytes(1, entry(1, b"\x85\x80\x00")), "bad_varint"),  # 5 in three bytes
        (install_bytes(1, entry(1, b"\xff" * 9 + b"\x02")), "bad_varint"),  # 2**64
        (install_bytes(1, entry(1, b"\xff" * 9 + b"\x7f")), "bad_varint"),  # far above 2**64
        (install_bytes(1, entry(1, b"\x80" * 10 + b"\x01")), "bad_varint"),  # eleven bytes
        (install_bytes(1, entry(1, b"\xff" * 64)), "bad_varint"),  # no end in sight
        (install_bytes(1, entry(1, b"\x02", b"\x80\x00")), "bad_varint"),  # index 0 in two bytes
        (install_bytes(1, entry(1, b"\x02", b"\x01")), "bad_state_table"),  # beyond the table
        (install_bytes(1, entry(1, b"\x02", b"\x01"), states=(b"x", b"y")), "bad_state_table"),  # skips state 0
        (install_bytes(1, entry(1, b"\x02"), states=(b"x", b"y")), "bad_state_table"),  # state 1 unused
        (install_bytes(0, states=(b"x",)), "bad_state_table"),  # a state with no entry at all
        (install_bytes(2, entry(1, b"\x02"), entry(2, b"\x02", b"\x01"), states=(b"x", b"x")), "bad_state_table"),
        (install_bytes(1, entry(1, b"\x02"), states=()), "bad_state_table"),  # an entry and no state
    ],
    ids=[
        "no-entry",
        "no-joined",
        "no-index",
        "joined-cut",
        "joined-cut-at-ten",
        "index-cut",
        "short-state",
        "no-state-count",
        "short-table",
        "short-count",
        "trailing",
        "blob-too-large",
        "too-many",
        "too-many-states",
        "overlong-zero",
        "overlong",
        "joined-2**64",
        "joined-far-too-large",
        "eleven-bytes",
        "endless",
        "overlong-index",
        "index-beyond-table",
        "index-out-of-first-use-order",
        "unused-state",
        "state-without-entries",
        "state-listed-twice",
        "no-state",
    ],
)
def test_hostile_installs_are_dropped(data: bytes, reason: str) -> None:
    assert decode(data) == Dropped(reason)


@pytest.mark.parametrize(
    ("value", "encoded"),
    [
        (0, "00"),
        (1, "01"),
        (127, "7f"),
        (128, "8001"),
        (300, "ac02"),
        (16383, "ff7f"),
        (16384, "808001"),
        (2**35 - 1, "ffffffff7f"),
        (2**35, "808080808001"),
        (2**42 - 1, "ffffffffff7f"),
        (2**63, "80808080808080808001"),
        (2**64 - 1, "ffffffffffffffffff01"),
    ],
)
def test_varint_encoding(value: int, encoded: str) -> None:
    raw = bytes.fromhex(encoded)
    assert wire.encode_varint(value) == raw
    install = decode(install_bytes(1, entry(7, raw)))
    assert isinstance(install, Install) and install.entries == (InstallEntry(7, value, b""),)


@pytest.mark.parametrize("value", [-1, 2**64, 2**70])
def test_varint_encoder_rejects_what_a_u64_cannot_hold(value: int) -> None:
    with pytest.raises(ValueError, match="2\\*\\*64-1"):
        wire.encode_varint(value)


@SETTINGS
@given(u64)
def test_varint_length_is_one_byte_per_seven_bits(value: int) -> None:
    assert len(wire.encode_varint(value)) == max(1, -(-value.bit_length() // 7))


@SETTINGS
@given(
    st.binary(max_size=14) | u64.map(wire.encode_varint),
    st.sampled_from([b"", b"\x00", b"\x00\x00", b"\x01", b"\x80\x00", b"\x00z"]),
)
def test_any_joined_bytes_decode_to_the_one_encoding_or_a_drop(joined: bytes, rest: bytes) -> None:
    # Whatever follows the node id: a value whose shortest encoding is exactly the bytes
    # read, or a drop with a reason; never an exception.
    result = check_total(install_bytes(1, struct.pack("!I", 1) + joined + rest))
    if isinstance(result, Install):
        (only,) = result.entries
        assert wire.encode_varint(only.joined) + b"\x00" == joined + rest  # state 0, the only one
    else:
        assert isinstance(result, Dropped)
        assert result.reason in {"truncated", "bad_varint", "trailing_bytes", "bad_state_table"}


@SETTINGS
@given(
    st.lists(st.binary(max_size=4), max_size=4),
    st.lists(st.tuples(st.integers(0, 5), st.integers(0, 2**64 - 1)), max_size=6),
    st.binary(max_size=3),
)
def test_any_state_table_decodes_to_its_one_encoding_or_a_drop(
    states: list[bytes], refs: list[tuple[int, int]], rest: bytes
) -> None:
    # Tables and indexes of any shape: an INSTALL that decodes re-encodes to exactly the
    # same bytes (distinct states, in order of first use, each used); the rest is dropped.
    data = install_bytes(
        len(refs),
        *(entry(n, wire.encode_varint(joined), wire.encode_varint(index)) for n, (index, joined) in enumerate(refs)),
        states=tuple(states),
    )
    result = check_total(data + rest)
    if isinstance(result, Install):
        assert wire.encode_install(1, 5, ViewId(4, 1), result.entries)[HEADER_SIZE:] == (data + rest)[HEADER_SIZE:]
    else:
        assert isinstance(result, Dropped)
        assert result.reason in {"truncated", "bad_varint", "trailing_bytes", "bad_state_table"}


def test_clm_payload_length_must_match_the_bytes() -> None:
    fixed = head(MessageType.CLM, 2, 9) + struct.pack("!QI", 7, 1)
    assert decode(fixed) == Dropped("truncated")
    assert decode(fixed + struct.pack("!H", 4) + b"abc") == Dropped("truncated")
    assert decode(fixed + struct.pack("!H", 2) + b"abc") == Dropped("trailing_bytes")
    assert decode(fixed + struct.pack("!H", 0xFFFF) + b"abc") == Dropped("blob_too_large")
    ok = decode(fixed + struct.pack("!H", 3) + b"abc")
    assert isinstance(ok, ClmMessage) and (ok.view_id, ok.payload) == (ViewId(7, 1), b"abc")


def test_a_version_1_datagram_is_dropped() -> None:
    # Version 1 had no membership numbers: a v1 ACK must not be misread as a v2 one.
    v1_ack = head(MessageType.ACK, 2, 9, version=1) + struct.pack("!QIH", 7, 1, 0)
    assert decode(v1_ack) == Dropped("bad_version")


def test_a_version_2_install_is_dropped() -> None:
    # Version 2 put a state in every INSTALL entry, with no table: not to be misread as a v3 one.
    v2_install = head(MessageType.INSTALL, version=2) + struct.pack("!QH", 4, 1) + struct.pack("!IBH", 1, 0, 0)
    assert decode(v2_install) == Dropped("bad_version")


# ------------------------------------------------------------------ the UDP limits in docs/wire.md


def largest_that_fits(build: Callable[[int], bytes], mtu: int) -> int:
    n = 0
    while len(build(n + 1)) <= mtu:
        n += 1
    return n


def udp_members(n: int) -> tuple[Member, ...]:
    return tuple(Member(i, MAX_INCARNATION - i) for i in range(1, n + 1))


def udp_heartbeat(n: int, lease: bool = False) -> bytes:
    ms = udp_members(n)
    row = Row(origin=1, incarnation=ms[0].incarnation, version=2**32 - 2, entries=ms)
    echoes = (9, (1,) * n) if lease else None
    return wire.encode_heartbeat(1, ms[0].incarnation, ViewId(2**64 - 1, 1), row.version, 2**64 - 1, row, True, echoes)


def udp_install(n: int, joined: int, state: Callable[[int, int], bytes] = lambda n, i: b"") -> bytes:
    """An INSTALL of n members; ``state(n, i)`` is member i's quorum state."""
    entries = tuple(InstallEntry(i, joined, state(n, i)) for i in range(1, n + 1))
    return wire.encode_install(1, MAX_INCARNATION, ViewId(2**64 - 1, 1), entries)


#: YKD numbers as large as ``joined`` in these limits: 5-byte varints (below 2**35).
BIG = 2**35 - 1


def ykd_settled(n: int, i: int) -> bytes:
    """Every member's report after the view's last primary formed: identical."""
    view = tuple(range(1, n + 1))
    return VotingState(session_number=BIG, last_primary=Session(BIG, view), last_formed=BIG).encode(view)


def ykd_diverged(groups: int | None) -> Callable[[int, int], bytes]:
    """Members in ``groups`` groups (None: each member alone) with their own histories.

    Each group's report has its own last primary and one ambiguous session, each with one
    member outside the view (a node that crashed, with a 3-byte gap): the worst a
    cascade of failures left in the simulator (benchmarks/datagram_sizes.py).
    """

    def state(n: int, i: int) -> bytes:
        k = i % groups if groups else i
        view = tuple(range(1, n + 1))
        last = Session(BIG - 2 * k - 2, (*view, 10**6 + k))
        ambiguous = (Session(BIG - 2 * k - 1, (*view[:-1], 10**6 + k)),)
        return VotingState(session_number=BIG, last_primary=last, ambiguous=ambiguous, last_formed=BIG).encode(view)

    return state


@pytest.mark.parametrize(
    ("build", "ipv4", "ipv6", "enveloped"),
    [
        (udp_heartbeat, 117, 116, 110),
        (lambda n: wire.encode_propose(1, 1, ViewId(2**64 - 1, 1), udp_members(n)), 120, 118, 113),
        (lambda n: udp_install(n, 0), 240, 237, 226),  # everyone joins with this primary
        (lambda n: udp_install(n, 2**35 - 1), 144, 142, 135),  # joined takes 5 bytes
        (lambda n: udp_install(n, 2**42 - 1), 131, 129, 123),  # 6 bytes: still above the heartbeat
        (lambda n: udp_heartbeat(n, lease=True), 100, 99, 94),
        (lambda n: udp_install(n, BIG, ykd_settled), 140, 138, 132),
        (lambda n: udp_install(n, BIG, ykd_diverged(2)), 130, 128, 122),
        (lambda n: udp_install(n, BIG, ykd_diverged(8)), 96, 96, 89),
        (lambda n: udp_install(n, BIG, ykd_diverged(None)), 27, 27, 26),
    ],
    ids=[
        "heartbeat",
        "propose",
        "install-joined-0",
        "install-joined-2**35",
        "install-joined-2**42",
        "lease",
        "ykd-settled",
        "ykd-2-histories",
        "ykd-8-histories",
        "ykd-every-member-its-own",
    ],
)
def test_the_documented_udp_limits(build: Callable[[int], bytes], ipv4: int, ipv6: int, enveloped: int) -> None:
    # docs/wire.md, "Maximum datagram size per transport": n that fits 1472 (IPv4) and 1452
    # (IPv6) bytes, and 1388 (IPv6 with 64 bytes for an authentication envelope).
    fits = (largest_that_fits(build, 1472), largest_that_fits(build, 1452), largest_that_fits(build, 1388))
    assert fits == (ipv4, ipv6, enveloped)
