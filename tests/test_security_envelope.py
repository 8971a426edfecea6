"""The envelope: round trips, the documented layout, rotation, and every way a datagram is dropped.

Keys are fixed bytes and hypothesis is derandomised, so every run is the same.
"""

from __future__ import annotations

import hmac
import re
import struct
import sys
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from pyclm import wire
from pyclm.errors import ConfigError, UsageError
from pyclm.security import (
    HEADER_SIZE,
    REASONS,
    Envelope,
    Key,
    Keyring,
    ReplayFilter,
    aead,
    cluster_id,
    envelope,
    hkdf_sha256,
)
from pyclm.wire import Dropped

SETTINGS = settings(
    max_examples=300, derandomize=True, database=None, deadline=None, suppress_health_check=[HealthCheck.too_slow]
)

S1 = bytes(range(32))
S2 = bytes(range(64, 112))
RING = Keyring(active=1, keys=(Key(id=1, secret=S1),))
BOTH = RING.install(2, S2)
CLUSTER = "prod"
MODES = ["hmac", "gcm"]


def message(sender: int, incarnation: int = 5, body: bytes = b"") -> bytes:
    """A wire message: a LEAVE header, plus ``body`` (the envelope never reads past the header)."""
    return wire.encode_leave(sender, incarnation) + body


def pair(mode: str = "hmac", keyring: Keyring | None = RING, **kwargs: object) -> tuple[Envelope, Envelope]:
    """Nodes 1 and 2 of cluster CLUSTER."""
    encrypt = mode == "gcm"
    a = Envelope(node_id=1, cluster_name=CLUSTER, keyring=keyring, encrypt=encrypt, **kwargs)  # type: ignore[arg-type]
    b = Envelope(node_id=2, cluster_name=CLUSTER, keyring=keyring, encrypt=encrypt, **kwargs)  # type: ignore[arg-type]
    return a, b


def reason(result: bytes | Dropped) -> str:
    assert isinstance(result, Dropped), result
    return result.reason


def nonzero(envelope_: Envelope) -> dict[str, int]:
    return {name: value for name, value in envelope_.counters().items() if value}


# ------------------------------------------------------------------ round trips and layout


@pytest.mark.parametrize(("mode", "overhead"), [("hmac", 61), ("gcm", 45), ("insecure", 29)])
def test_round_trip_and_overhead(mode: str, overhead: int) -> None:
    a, b = pair(mode, keyring=None if mode == "insecure" else RING)
    assert a.overhead == overhead
    for body in (b"", b"x" * 200, bytes(range(256)) * 10):
        sent = message(1, body=body)
        datagram = a.seal(sent)
        assert len(datagram) == len(sent) + overhead
        assert b.open(datagram) == sent
    assert nonzero(a) == {"tx_sealed": 3}
    assert nonzero(b) == {"rx_ok": 3}


def test_gcm_hides_the_message_and_hmac_does_not() -> None:
    secret = b"attack at dawn, the password is hunter2"
    assert secret in pair("hmac")[0].seal(message(1, body=secret))
    assert secret not in pair("gcm")[0].seal(message(1, body=secret))


def test_a_node_opens_both_modes_so_encryption_can_be_switched_on_node_by_node() -> None:
    plain = Envelope(node_id=1, cluster_name=CLUSTER, keyring=RING)
    secret = Envelope(node_id=2, cluster_name=CLUSTER, keyring=RING, encrypt=True)
    assert secret.open(plain.seal(message(1))) == message(1)
    assert plain.open(secret.seal(message(2))) == message(2)


def test_the_hmac_layout_is_the_documented_one() -> None:
    a, _ = pair("hmac")
    a.seal(message(1))
    sent = message(1, 0x0102030405060708, b"body")
    datagram = a.seal(sent)
    fields = struct.unpack_from("!2sBBB4sIQQ", datagram)
    assert fields == (b"\xc1\x53", 1, 0x01, 1, cluster_id(CLUSTER), 1, 0x0102030405060708, 2)
    assert cluster_id(CLUSTER) == bytes.fromhex("6754af96")  # sha256(b"prod")[:4]
    assert datagram[29:-32] == sent
    # An independent HKDF (cryptography's): salt = cluster name, info names the purpose.
    key = HKDF(hashes.SHA256(), 32, CLUSTER.encode(), b"pyclm envelope v1 hmac-sha256").derive(S1)
    assert datagram[-32:] == hmac.digest(key, datagram[:-32], "sha256")


def test_the_gcm_layout_is_the_documented_one() -> None:
    a, _ = pair("gcm")
    sent = message(1, 77, b"body")
    datagram = a.seal(sent)
    fields = struct.unpack_from("!2sBBB4sIQQ", datagram)
    assert fields == (b"\xc1\x53", 1, 0x03, 1, cluster_id(CLUSTER), 1, 77, 1)
    info = b"pyclm envelope v1 aes-256-gcm" + struct.pack("!IQ", 1, 77)
    key = HKDF(hashes.SHA256(), 32, CLUSTER.encode(), info).derive(S1)
    nonce = struct.pack("!IQ", 1, 1)  # sender, sequence
    assert AESGCM(key).decrypt(nonce, datagram[29:], datagram[:29]) == sent
    assert len(datagram) == 29 + len(sent) + 16


def test_sequence_numbers_start_at_1_and_grow() -> None:
    a, _ = pair()
    sequences = [struct.unpack_from("!Q", a.seal(message(1)), 21)[0] for _ in range(5)]
    assert sequences == [1, 2, 3, 4, 5]


def test_hkdf_matches_rfc_5869() -> None:
    ikm = bytes([0x0B]) * 22
    okm1 = "3cb25f25faacd57a90434f64d0362f2a2d2d0a90cf1a5a4c5db02d56ecc4c5bf34007208d5b887185865"
    assert hkdf_sha256(ikm, salt=bytes(range(13)), info=bytes(range(0xF0, 0xFA)), length=42).hex() == okm1
    okm3 = "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"
    assert hkdf_sha256(ikm, salt=b"", info=b"", length=42).hex() == okm3


@SETTINGS
@given(st.binary(min_size=1, max_size=80), st.binary(max_size=40), st.binary(max_size=40), st.integers(1, 200))
def test_hkdf_agrees_with_cryptography(secret: bytes, salt: bytes, info: bytes, length: int) -> None:
    expected = HKDF(hashes.SHA256(), length, salt, info).derive(secret)
    assert hkdf_sha256(secret, salt=salt, info=info, length=length) == expected


# ------------------------------------------------------------------ keys


@pytest.mark.parametrize("mode", MODES)
def test_rotation_loses_nothing(mode: str) -> None:
    a, b = pair(mode, keyring=BOTH)  # both hold keys 1 and 2 and send with 1
    a.set_keyring(BOTH.use(2))  # a has moved to key 2, b has not yet
    assert a.seal(message(1))[4] == 2  # the key id byte
    assert b.open(a.seal(message(1))) == message(1)
    assert a.open(b.seal(message(2))) == message(2)
    late, later = b.seal(message(2)), b.seal(message(2))  # sealed under key 1, still in flight
    b.set_keyring(BOTH.use(2))
    assert a.open(b.seal(message(2))) == message(2)
    assert a.open(late) == message(2)  # key 1 is still accepted until it is removed
    for node in (a, b):
        node.set_keyring(BOTH.use(2).remove(1))
    assert b.open(a.seal(message(1))) == message(1)
    assert a.open(b.seal(message(2))) == message(2)
    assert reason(a.open(later)) == "unknown_key"
    assert nonzero(a) == {"tx_sealed": 3, "rx_ok": 4, "rx_dropped_unknown_key": 1}


@pytest.mark.parametrize("mode", MODES)
def test_a_key_with_the_same_id_and_another_secret_is_a_forgery(mode: str) -> None:
    a, _ = pair(mode)
    other = Envelope(node_id=2, cluster_name=CLUSTER, keyring=Keyring(active=1, keys=(Key(id=1, secret=S2),)))
    assert reason(other.open(a.seal(message(1)))) == "forged"


@pytest.mark.parametrize("mode", MODES)
def test_an_unknown_key_id(mode: str) -> None:
    a, b = pair(mode, keyring=BOTH.use(2))
    b.set_keyring(RING)
    assert reason(b.open(a.seal(message(1)))) == "unknown_key"


def test_insecure_mode_is_chosen_at_construction() -> None:
    insecure = Envelope(node_id=1, cluster_name=CLUSTER, keyring=None)
    with pytest.raises(UsageError, match="insecure mode"):
        insecure.set_keyring(RING)
    with pytest.raises(ConfigError, match="encrypt: encryption needs a keyring"):
        Envelope(node_id=1, cluster_name=CLUSTER, keyring=None, encrypt=True)


@pytest.mark.parametrize(
    ("kwargs", "setting"),
    [
        ({"node_id": -1}, "node_id"),
        ({"node_id": 2**32}, "node_id"),
        ({"cluster_name": ""}, "cluster_name"),
        ({"cluster_name": "x" * 256}, "cluster_name"),
        ({"cluster_name": "bad\udc80"}, "cluster_name"),
        ({"cluster_name": "new\nline"}, "cluster_name"),
        ({"keyring": "secret"}, "keyring"),
        ({"max_datagram": 28}, "max_datagram"),
    ],
)
def test_bad_settings_name_themselves(kwargs: dict[str, object], setting: str) -> None:
    settings_: dict[str, object] = {"node_id": 1, "cluster_name": CLUSTER, "keyring": RING, **kwargs}
    with pytest.raises(ConfigError) as caught:
        Envelope(**settings_)  # type: ignore[arg-type]
    assert caught.value.setting == setting


def test_sealing_misuse_raises() -> None:
    a, _ = pair()
    with pytest.raises(ValueError, match="16-byte header"):
        a.seal(b"short")
    with pytest.raises(ValueError, match="node 1's messages, got one from node 2"):
        a.seal(message(2))


def hide_cryptography(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(aead, "_aesgcm", None)
    for name in ("cryptography.exceptions", "cryptography.hazmat.primitives.ciphers.aead"):
        monkeypatch.setitem(sys.modules, name, None)


def test_encrypt_without_cryptography_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    hide_cryptography(monkeypatch)
    with pytest.raises(ConfigError, match="pip install 'pyclm\\[crypto\\]'") as caught:
        Envelope(node_id=1, cluster_name=CLUSTER, keyring=RING, encrypt=True)
    assert caught.value.setting == "encrypt"


def test_without_cryptography_an_encrypted_datagram_is_dropped_not_raised(monkeypatch: pytest.MonkeyPatch) -> None:
    datagram = pair("gcm")[0].seal(message(1))
    hide_cryptography(monkeypatch)
    b = Envelope(node_id=2, cluster_name=CLUSTER, keyring=RING)
    assert reason(b.open(datagram)) == "encryption_unavailable"
    assert b.open(Envelope(node_id=3, cluster_name=CLUSTER, keyring=RING).seal(message(3))) == message(3)


# ------------------------------------------------------------------ dropped, never raised


def forge(
    header: tuple[int, ...] | None = None,
    payload: bytes = b"",
    *,
    secret: bytes = S1,
    cluster_name: str = CLUSTER,
    header_cluster: bytes | None = None,
) -> bytes:
    """An HMAC datagram built by hand from the documented layout: (flags, key id, sender,
    incarnation, sequence) and the payload, tagged under ``secret`` and ``cluster_name``."""
    flags, key_id, sender, incarnation, sequence = header or (1, 1, 1, 5, 1)
    cid = header_cluster if header_cluster is not None else cluster_id(cluster_name)
    signed = struct.pack("!2sBBB4sIQQ", b"\xc1\x53", 1, flags, key_id, cid, sender, incarnation, sequence) + payload
    return signed + hmac.digest(envelope.mac_key(secret, cluster_name), signed, "sha256")


def test_forge_builds_what_seal_builds() -> None:
    a, _ = pair()
    assert forge(payload=message(1)) == a.seal(message(1))


@pytest.mark.parametrize("mode", MODES)
def test_a_bad_tag_is_forged_and_does_not_poison_the_window(mode: str) -> None:
    a, b = pair(mode)
    datagram = bytearray(a.seal(message(1)))
    datagram[-1] ^= 1
    assert reason(b.open(bytes(datagram))) == "forged"
    datagram[-1] ^= 1
    assert b.open(bytes(datagram)) == message(1)  # the forgery recorded nothing
    assert nonzero(b) == {"rx_ok": 1, "rx_dropped_forged": 1}


def sealed_samples(mode: str) -> st.SearchStrategy[bytes]:
    def seal(sender: int, incarnation: int, body: bytes) -> bytes:
        return Envelope(node_id=sender, cluster_name=CLUSTER, keyring=BOTH, encrypt=mode == "gcm").seal(
            message(sender, incarnation, body)
        )

    return st.builds(seal, st.integers(3, 2**32 - 1), st.integers(0, 2**64 - 1), st.binary(max_size=300))


@pytest.mark.parametrize("mode", MODES)
def test_flipped_bits_anywhere_are_dropped(mode: str) -> None:
    @SETTINGS
    @given(sealed_samples(mode), st.data())
    def check(datagram: bytes, data: st.DataObject) -> None:
        raw = bytearray(datagram)
        for _ in range(data.draw(st.integers(1, 4))):
            raw[data.draw(st.integers(0, len(raw) - 1))] ^= 1 << data.draw(st.integers(0, 7))
        receiver = Envelope(node_id=2, cluster_name=CLUSTER, keyring=BOTH)
        assume(bytes(raw) != datagram)  # the flips cancelled out
        result = receiver.open(bytes(raw))
        assert isinstance(result, Dropped) and result.reason in REASONS, result

    check()


@pytest.mark.parametrize(("mode", "tag"), [("hmac", 32), ("gcm", 16)])
def test_truncated_at_every_length(mode: str, tag: int) -> None:
    a, _ = pair(mode)
    datagram = a.seal(message(1, body=b"x" * 40))
    for cut in range(len(datagram)):
        _, b = pair(mode)
        # Shorter than header and tag: truncated.  Longer: no length field says so, the tag does.
        assert reason(b.open(datagram[:cut])) == ("truncated" if cut < HEADER_SIZE + tag else "forged"), cut


def test_oversized_datagrams_are_dropped_before_any_work() -> None:
    _, b = pair(max_datagram=1000)
    a, _ = pair()
    assert reason(b.open(a.seal(message(1, body=bytes(1000))))) == "oversized"
    assert b.open(a.seal(message(1, body=bytes(1000 - 16 - 61)))) == message(1, body=bytes(1000 - 16 - 61))
    _, default = pair()
    assert reason(default.open(bytes(65536))) == "oversized"


@SETTINGS
@given(st.binary(max_size=400))
def test_arbitrary_bytes_never_raise(data: bytes) -> None:
    for mode, keyring in (("hmac", RING), ("gcm", RING), ("insecure", None)):
        result = pair(mode, keyring)[1].open(data)
        assert isinstance(result, Dropped) and result.reason in REASONS


@SETTINGS
@given(st.integers(0, 255), st.integers(0, 255), st.integers(0, 2**32 - 1), st.integers(0, 2**64 - 1),
       st.integers(0, 2**64 - 1), st.binary(max_size=120), st.booleans())  # fmt: skip
def test_a_valid_looking_header_with_arbitrary_rest_never_raises(
    flags: int, key_id: int, sender: int, incarnation: int, sequence: int, rest: bytes, secure: bool
) -> None:
    header = struct.pack(
        "!2sBBB4sIQQ", b"\xc1\x53", 1, flags, key_id, cluster_id(CLUSTER), sender, incarnation, sequence
    )
    result = Envelope(node_id=2, cluster_name=CLUSTER, keyring=RING if secure else None).open(header + rest)
    if isinstance(result, bytes):  # only insecure mode lets an unauthenticated payload through
        assert not secure and flags == 0 and key_id == 0 and result == rest
    else:
        assert result.reason in REASONS


def test_structural_drops() -> None:
    _, b = pair()
    good = pair()[0].seal(message(1))
    assert reason(b.open(b"\xc1\x4d" + good[2:])) == "bad_magic"  # a bare wire message
    assert reason(b.open(wire.encode_leave(1, 5) + bytes(40))) == "bad_magic"
    assert reason(b.open(good[:2] + b"\x02" + good[3:])) == "bad_version"
    for flags in (0x02, 0x04, 0x80, 0xFF):
        assert reason(b.open(good[:3] + bytes([flags]) + good[4:])) == "bad_flags"


def test_foreign_cluster_and_a_cluster_id_collision() -> None:
    other = Envelope(node_id=1, cluster_name="staging", keyring=RING)
    _, b = pair()
    assert reason(b.open(other.seal(message(1)))) == "foreign_cluster"
    # Same 4-byte id (a collision), but the MAC key is derived from the other name: forged.
    collided = forge(payload=message(1), cluster_name="staging", header_cluster=cluster_id(CLUSTER))
    assert reason(b.open(collided)) == "forged"


def test_insecure_and_secure_do_not_mix_and_say_which_way() -> None:
    insecure = Envelope(node_id=1, cluster_name=CLUSTER, keyring=None)
    secure = Envelope(node_id=2, cluster_name=CLUSTER, keyring=RING)
    assert reason(secure.open(insecure.seal(message(1)))) == "unauthenticated"
    assert reason(insecure.open(secure.seal(message(2)))) == "unexpected_auth"
    assert nonzero(secure) == {"tx_sealed": 1, "rx_dropped_unauthenticated": 1}
    assert nonzero(insecure) == {"tx_sealed": 1, "rx_dropped_unexpected_auth": 1}


def test_insecure_mode_still_checks_cluster_identity_and_replay() -> None:
    a, b = pair(keyring=None)
    datagram = a.seal(message(1))
    assert b.open(datagram) == message(1)
    assert reason(b.open(datagram)) == "replayed"
    assert reason(b.open(datagram[:4] + b"\x07" + datagram[5:])) == "bad_key_id"
    assert reason(Envelope(node_id=2, cluster_name="x", keyring=None).open(datagram)) == "foreign_cluster"
    liar = datagram[:9] + struct.pack("!I", 9) + datagram[13:21] + struct.pack("!Q", 99) + datagram[29:]
    assert reason(b.open(liar)) == "identity_mismatch"


def test_identity_mismatch_is_checked_after_the_tag() -> None:
    _, b = pair()
    # Authentic (a key holder made it), but the envelope says node 1 and the message node 3.
    assert reason(b.open(forge((1, 1, 1, 5, 1), message(3, 5)))) == "identity_mismatch"
    assert reason(b.open(forge((1, 1, 1, 5, 2), message(1, 6)))) == "identity_mismatch"
    assert reason(b.open(forge((1, 1, 1, 5, 3), b"tiny"))) == "identity_mismatch"
    assert reason(b.open(forge((1, 1, 3, 5, 4), message(1, 5))[:-1] + b"\x00")) == "forged"  # tag first
    assert b.open(forge((1, 1, 1, 5, 5), message(1, 5))) == message(1, 5)


def test_own_echo_and_another_life_with_our_id() -> None:
    a, _ = pair()
    echo = a.seal(message(1, 5))
    assert reason(a.open(echo)) == "own"
    assert reason(a.open(forge((1, 1, 1, 4, 9), message(1, 4)))) == "same_id"  # a different life claims id 1
    assert reason(a.open(forge((1, 1, 1, 4, 10), message(1, 4))[:-1] + b"\x00")) == "forged"
    assert nonzero(a) == {"tx_sealed": 1, "rx_own": 1, "rx_dropped_same_id": 1, "rx_dropped_forged": 1}


# ------------------------------------------------------------------ replay


@pytest.mark.parametrize("mode", MODES)
def test_a_replayed_datagram_is_dropped(mode: str) -> None:
    a, b = pair(mode)
    datagram = a.seal(message(1))
    assert b.open(datagram) == message(1)
    assert reason(b.open(datagram)) == "replayed"
    assert nonzero(b) == {"rx_ok": 1, "rx_dropped_replayed": 1}


def test_out_of_order_within_the_window_is_accepted_once() -> None:
    a, b = pair(window=8)
    datagrams = [a.seal(message(1)) for _ in range(12)]  # sequences 1..12
    assert b.open(datagrams[9]) == message(1)  # 10 first
    assert b.open(datagrams[4]) == message(1)  # 5: inside the window 3..10
    assert reason(b.open(datagrams[4])) == "replayed"
    assert reason(b.open(datagrams[1])) == "replayed"  # 2: at the floor (10 - 8), the window no longer knows
    assert b.open(datagrams[2]) == message(1)  # 3: the lowest the window still covers
    assert b.open(datagrams[11]) == message(1)  # 12 slides the window to 5..12
    assert reason(b.open(datagrams[2])) == "replayed"
    assert b.open(datagrams[10]) == message(1)
    assert reason(b.open(datagrams[9])) == "replayed"


def test_an_older_incarnation_after_a_newer_one_is_stale() -> None:
    _, b = pair()
    old_life = Envelope(node_id=1, cluster_name=CLUSTER, keyring=RING)
    new_life = Envelope(node_id=1, cluster_name=CLUSTER, keyring=RING)
    old = [old_life.seal(message(1, 5)) for _ in range(3)]
    assert b.open(old[0]) == message(1, 5)
    assert b.open(new_life.seal(message(1, 6))) == message(1, 6)  # a restart: the window starts again
    assert reason(b.open(old[1])) == "stale_incarnation"
    assert b.open(new_life.seal(message(1, 6))) == message(1, 6)


def test_replay_filter_window_and_eviction() -> None:
    replay = ReplayFilter(window=64, max_senders=2)
    assert replay.accept(1, 1, 100) is None
    assert replay.accept(1, 1, 200) is None  # a jump past the whole window
    assert replay.accept(1, 1, 137) is None  # 200 - 63: the last slot
    assert replay.accept(1, 1, 136) == "replayed"
    assert replay.accept(1, 1, 100) == "replayed"
    assert replay.accept(1, 0, 500) == "stale_incarnation"
    assert replay.accept(2, 1, 1) is None
    assert replay.accept(1, 1, 201) is None  # 1 is now the most recently heard
    assert replay.accept(3, 1, 1) is None  # evicts 2
    assert len(replay) == 2
    assert replay.accept(2, 1, 1) is None  # forgotten: accepted again (hence the large default bound)
    with pytest.raises(ValueError, match="window"):
        ReplayFilter(window=0)


def test_forged_gcm_datagrams_do_not_fill_the_cipher_cache() -> None:
    _, b = pair("gcm", max_senders=4)
    for sender in range(10, 50):
        datagram = bytearray(
            Envelope(node_id=sender, cluster_name=CLUSTER, keyring=RING, encrypt=True).seal(message(sender))
        )
        datagram[-1] ^= 1
        assert reason(b.open(bytes(datagram))) == "forged"
    assert len(b._ciphers) == 0
    for sender in range(10, 20):
        b.open(Envelope(node_id=sender, cluster_name=CLUSTER, keyring=RING, encrypt=True).seal(message(sender)))
    assert len(b._ciphers) == 4  # bounded


# ------------------------------------------------------------------ counters


def test_every_reason_is_counted(monkeypatch: pytest.MonkeyPatch) -> None:
    """One datagram per drop reason: each counter ends at exactly 1."""
    b = Envelope(node_id=2, cluster_name=CLUSTER, keyring=RING, window=4)
    b.seal(message(2, 5))
    sealer = Envelope(node_id=1, cluster_name=CLUSTER, keyring=RING)
    first, second = sealer.seal(message(1, 7)), sealer.seal(message(1, 7))
    assert b.open(second) == message(1, 7)
    samples = {
        "truncated": b"\xc1\x53",
        "oversized": bytes(70000),
        "bad_magic": bytes(100),
        "bad_version": first[:2] + b"\x09" + first[3:],
        "bad_flags": first[:3] + b"\x02" + first[4:],
        "foreign_cluster": Envelope(node_id=1, cluster_name="dev", keyring=RING).seal(message(1)),
        "own": b.seal(message(2, 5)),
        "unauthenticated": Envelope(node_id=1, cluster_name=CLUSTER, keyring=None).seal(message(1)),
        "unknown_key": forge((1, 9, 1, 7, 50), message(1, 7)),
        "forged": first[:-1] + bytes([first[-1] ^ 1]),
        "identity_mismatch": forge((1, 1, 1, 7, 51), message(3, 7)),
        "same_id": forge((1, 1, 2, 4, 1), message(2, 4)),
        "stale_incarnation": forge((1, 1, 1, 6, 1), message(1, 6)),
        "replayed": second,
        "encryption_unavailable": Envelope(node_id=1, cluster_name=CLUSTER, keyring=RING, encrypt=True).seal(
            message(1)
        ),
    }
    insecure = Envelope(node_id=2, cluster_name=CLUSTER, keyring=None)
    insecure_samples = {
        "unexpected_auth": first,
        "bad_key_id": first[:3] + b"\x00" + first[4:-32],
    }
    assert set(samples) | set(insecure_samples) == set(REASONS)
    for expected, datagram in samples.items():
        if expected == "encryption_unavailable":
            hide_cryptography(monkeypatch)
        assert reason(b.open(datagram)) == expected
    for expected, datagram in insecure_samples.items():
        assert reason(insecure.open(datagram)) == expected
    counters = b.counters()
    assert counters.pop("rx_ok") == 1 and counters.pop("tx_sealed") == 2
    assert set(counters.values()) == {0, 1}
    assert {name for name, value in counters.items() if value} == {
        "rx_own" if r == "own" else f"rx_dropped_{r}" for r in samples
    }
    b.counters()["rx_ok"] = 99  # a copy
    assert b.counters()["rx_ok"] == 1


# ------------------------------------------------------------------ docs/security.md stays true

DOC = Path(__file__).resolve().parent.parent / "docs" / "security.md"


def test_the_docs_list_every_reason_in_the_order_checked() -> None:
    section = DOC.read_text(encoding="utf-8").split("## Opening: the checks, in order")[1].split("\n## ")[0]
    rows = re.findall(r"^\| \d+ \| `(\w+)` \| `(\w+)` \|", section, re.MULTILINE)
    assert [name for name, _ in rows] == list(REASONS)
    counters = Envelope(node_id=1, cluster_name=CLUSTER, keyring=RING).counters()
    assert {counter for _, counter in rows} | {"rx_ok", "tx_sealed"} == set(counters)


def test_the_docs_overheads_and_cluster_sizes() -> None:
    section = DOC.read_text(encoding="utf-8").split("## Sizes")[1].split("\n## ")[0]
    overheads = {"insecure": pair("x", keyring=None)[0].overhead, "HMAC": pair("hmac")[0].overhead}
    overheads["AES-GCM"] = pair("gcm")[0].overhead
    for mode, overhead in overheads.items():
        row = re.search(rf"^\| {mode} \| (\d+) \| (\d+) \| (\d+) \| (\d+) / (\d+) \|$", section, re.MULTILINE)
        assert row is not None, mode
        numbers = [int(n) for n in row.groups()]
        assert numbers[0] == overhead
        assert numbers[1:] == [
            (1472 - overhead - 59) // 12,  # a heartbeat with its row: 59 + 12 n bytes (docs/wire.md)
            (1452 - overhead - 59) // 12,
            (1472 - overhead - 63) // 14,  # with the lease section: 63 + 14 n
            (1452 - overhead - 63) // 14,
        ]
