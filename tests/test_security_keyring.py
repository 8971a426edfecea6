"""The keyring: rotation steps, validation, secrets kept out of repr, the key file."""

from __future__ import annotations

import base64
import os
import stat
from pathlib import Path

import pytest

from pyclm.errors import ConfigError
from pyclm.security import Key, Keyring, new_secret

S1 = bytes(range(32))
S2 = bytes(range(100, 140))


def ring() -> Keyring:
    return Keyring(active=1, keys=(Key(id=1, secret=S1),))


def test_generate_makes_one_random_active_key() -> None:
    first, second = Keyring.generate(), Keyring.generate(7)
    assert first.ids == (1,) and first.active == 1
    assert second.ids == (7,) and second.active == 7
    assert len(first.secret(1) or b"") == 32
    assert first.secret(1) != second.secret(7)
    assert len(new_secret()) == 32


def test_rotation_install_use_remove() -> None:
    one = ring()
    both = one.install(2, S2)
    assert both.ids == (1, 2) and both.active == 1  # installed: accepted, not used
    assert one.ids == (1,)  # a value: the old keyring is unchanged
    using = both.use(2)
    assert using.active == 2 and using.ids == (1, 2)
    done = using.remove(1)
    assert done.ids == (2,) and done.active == 2
    assert done.secret(2) == S2 and done.secret(1) is None


def test_keys_are_kept_in_id_order() -> None:
    assert ring().install(9, S2).install(3, S2).ids == (1, 3, 9)


def test_misuse_names_the_fix() -> None:
    with pytest.raises(ConfigError, match="sending key: use another key"):
        ring().install(2, S2).remove(1)
    with pytest.raises(ConfigError, match=r"not installed.*install it first"):
        ring().use(2)
    with pytest.raises(ConfigError, match="not installed"):
        ring().remove(2)
    with pytest.raises(ConfigError, match="another secret: remove it first"):
        ring().install(1, S2)
    assert ring().install(1, S1) == ring()  # the same key again changes nothing


@pytest.mark.parametrize("key_id", [0, 256, -1, True, 1.0, "1"])
def test_key_ids_are_1_to_255(key_id: object) -> None:
    with pytest.raises(ConfigError, match="1 to 255"):
        Key(id=key_id, secret=S1)  # type: ignore[arg-type]


def test_secrets_are_at_least_32_bytes() -> None:
    with pytest.raises(ConfigError, match="31 bytes, needs at least 32"):
        ring().install(2, bytes(31))
    with pytest.raises(ConfigError, match="must be bytes"):
        Key(id=1, secret="x" * 40)  # type: ignore[arg-type]


def test_a_keyring_holds_its_active_key_and_unique_ids() -> None:
    with pytest.raises(ConfigError, match="at least one key"):
        Keyring(active=1, keys=())
    with pytest.raises(ConfigError, match="not in the keyring"):
        Keyring(active=2, keys=(Key(id=1, secret=S1),))
    with pytest.raises(ConfigError, match="appears once"):
        Keyring(active=1, keys=(Key(id=1, secret=S1), Key(id=1, secret=S2)))


def test_repr_shows_no_secret() -> None:
    text = repr(ring().install(2, S2))
    assert text == "Keyring(active=1, keys=(Key(id=1), Key(id=2)))"
    for secret in (S1, S2):
        assert repr(secret) not in text and secret.hex() not in text
        assert base64.b64encode(secret).decode() not in text


# ------------------------------------------------------------------ the key file


def test_toml_round_trip_and_format() -> None:
    keyring = ring().install(2, S2).use(2)
    text = keyring.to_toml()
    assert text.startswith("active = 2\n\n[[key]]\nid = 1\n")
    assert f'secret = "{base64.b64encode(S1).decode()}"' in text
    assert Keyring.from_toml(text) == keyring


@pytest.mark.parametrize(
    ("text", "problem"),
    [
        ("active = ", "not valid TOML"),
        ('active = 1\nowner = "me"\n[[key]]\nid = 1\nsecret = "x"', "unknown setting"),
        (f'[[key]]\nid = 1\nsecret = "{base64.b64encode(S1).decode()}"', "active: missing"),
        ("active = 1", "at least one \\[\\[key\\]\\]"),
        ("active = 1\n[[key]]\nid = 1", "exactly 'id' and 'secret'"),
        ('active = 1\n[[key]]\nid = 1\nsecret = "not base64!"', "not valid base64"),
        ("active = 1\n[[key]]\nid = 1\nsecret = 5", "base64 string"),
        ('active = 1\n[[key]]\nid = 300\nsecret = "AAAA"', "1 to 255"),
        (f'active = 1\n[[key]]\nid = 1\nsecret = "{base64.b64encode(bytes(16)).decode()}"', "16 bytes"),
        (f'active = 2\n[[key]]\nid = 1\nsecret = "{base64.b64encode(S1).decode()}"', "key 2 is not in"),
    ],
)
def test_malformed_key_files_are_refused(text: str, problem: str) -> None:
    with pytest.raises(ConfigError, match=problem):
        Keyring.from_toml(text)


def test_save_then_load(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    keyring = ring().install(2, S2)
    keyring.save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert Keyring.load(path) == keyring
    assert [p.name for p in tmp_path.iterdir()] == ["keys.toml"]  # no temporary file left behind
    keyring.use(2).save(path)  # replaces
    assert Keyring.load(path).active == 2


def test_save_tightens_a_leftover_temporary_file(tmp_path: Path) -> None:
    path = tmp_path / "keys.toml"
    leftover = tmp_path / "keys.toml.tmp"
    leftover.write_text("half a key file")
    os.chmod(leftover, 0o644)
    ring().save(path)
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert not leftover.exists()


@pytest.mark.skipif(os.name != "posix", reason="file modes are POSIX")
@pytest.mark.parametrize("mode", [0o640, 0o604, 0o660, 0o610, 0o644])
def test_load_refuses_a_file_others_may_read(tmp_path: Path, mode: int) -> None:
    path = tmp_path / "keys.toml"
    ring().save(path)
    os.chmod(path, mode)
    with pytest.raises(ConfigError, match=f"group or others \\(mode {mode:o}\\): chmod 600") as caught:
        Keyring.load(path)
    assert caught.value.setting == str(path)


def test_load_errors_name_the_file(tmp_path: Path) -> None:
    missing = tmp_path / "nope.toml"
    with pytest.raises(ConfigError, match="cannot open") as caught:
        Keyring.load(missing)
    assert caught.value.setting == str(missing)

    broken = tmp_path / "broken.toml"
    broken.write_text('active = 1\n[[key]]\nid = 1\nsecret = "short"\n')
    os.chmod(broken, 0o600)
    with pytest.raises(ConfigError, match="not valid base64") as caught:
        Keyring.load(broken)
    assert caught.value.setting == str(broken)

    binary = tmp_path / "binary.toml"
    binary.write_bytes(b"\xff\xfe")
    os.chmod(binary, 0o600)
    with pytest.raises(ConfigError, match="not UTF-8"):
        Keyring.load(binary)

    with pytest.raises(ConfigError, match="cannot read"):
        Keyring.load(tmp_path)  # a directory
