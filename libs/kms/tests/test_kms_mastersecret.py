"""The master secret JSON file and the key service's raw secret files (spec §3.5, §3.6)."""

from __future__ import annotations

import base64
import contextlib
import json
import stat
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from starlock.kms import (
    KmsConfigError,
    MasterSecret,
    read_master_secret_file,
    read_secret_files,
    write_master_secret_file,
)
from starlock.kms.mastersecret import MAX_SECRET_FILE_SIZE

KEY = bytes(range(32))
SALT = bytes(range(32, 64))


def test_json_is_gos_tab_indented_format(tmp_path: Path) -> None:
    secret = MasterSecret(KEY, SALT)
    path = tmp_path / "constellation-mastersecret.json"
    write_master_secret_file(path, secret)
    text = path.read_text()
    assert text == (
        '{\n\t"key": "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=",\n'
        '\t"salt": "ICEiIyQlJicoKSorLC0uLzAxMjM0NTY3ODk6Ozw9Pj8="\n}'
    )
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert read_master_secret_file(path) == secret
    with pytest.raises(KmsConfigError, match="cannot create"):
        write_master_secret_file(path, MasterSecret.generate())
    assert read_master_secret_file(path) == secret  # unchanged
    other = MasterSecret.generate()
    write_master_secret_file(path, other, overwrite=True)
    assert read_master_secret_file(path) == other


def test_generate() -> None:
    a, b = MasterSecret.generate(), MasterSecret.generate()
    assert len(a.key) == 32
    assert len(a.salt) == 32
    assert a != b
    a.check_lengths()


def test_compact_json_and_extra_members() -> None:
    doc = {"salt": base64.b64encode(SALT).decode(), "key": base64.b64encode(KEY).decode(), "other": 1}
    assert MasterSecret.from_json(json.dumps(doc)) == MasterSecret(KEY, SALT)


@pytest.mark.parametrize(
    ("data", "fragment"),
    [
        (b"", "not valid JSON"),
        (b"\xff\xfe", "not valid UTF-8 JSON"),
        (b"[]", "must be an object"),
        (b'{"key": "AAAA"}', "'salt' is missing"),
        (b'{"key": 1, "salt": "AAAA"}', "'key' is missing, empty or not a string"),
        (b'{"key": "", "salt": "AAAA"}', "'key' is missing, empty"),
        (b'{"key": "AAA", "salt": "AAAA"}', "'key' is not padded standard base64"),
        (b'{"key": "AA-_", "salt": "AAAA"}', "'key' is not padded standard base64"),
        (b'{"key": "AAAA", "key": "AAAA", "salt": "AAAA"}', "duplicate member"),
        (b'{"key": "AAAA", "salt": "AAAA"}', "master secret is 3 bytes, need at least 16"),
        (b"[" * 100000, "larger than"),
        (b"[" * 50000, "not valid"),
    ],
)
def test_json_errors(data: bytes, fragment: str) -> None:
    with pytest.raises(KmsConfigError, match=fragment):
        MasterSecret.from_json(data)


def test_short_salt_and_opt_out() -> None:
    doc = json.dumps({"key": base64.b64encode(KEY).decode(), "salt": base64.b64encode(b"s" * 31).decode()})
    with pytest.raises(KmsConfigError, match="salt is 31 bytes, need at least 32"):
        MasterSecret.from_json(doc)
    assert MasterSecret.from_json(doc, check_lengths=False).salt == b"s" * 31


def test_raw_secret_files(tmp_path: Path) -> None:
    (tmp_path / "mastersecret").write_bytes(KEY)
    (tmp_path / "salt").write_bytes(SALT)
    assert read_secret_files(tmp_path / "mastersecret", tmp_path / "salt") == MasterSecret(KEY, SALT)
    (tmp_path / "short").write_bytes(KEY[:15])
    with pytest.raises(KmsConfigError, match="master secret is 15 bytes"):
        read_secret_files(tmp_path / "short", tmp_path / "salt")
    with pytest.raises(KmsConfigError, match="salt is 15 bytes"):
        read_secret_files(tmp_path / "mastersecret", tmp_path / "short")
    with pytest.raises(KmsConfigError, match="cannot read salt file"):
        read_secret_files(tmp_path / "mastersecret", tmp_path / "absent")
    (tmp_path / "big").write_bytes(b"x" * (MAX_SECRET_FILE_SIZE + 1))
    with pytest.raises(KmsConfigError, match="larger than"):
        read_secret_files(tmp_path / "big", tmp_path / "salt")


def test_equality_is_by_value() -> None:
    assert MasterSecret(KEY, SALT) == MasterSecret(bytearray(KEY), SALT)  # type: ignore[arg-type]
    assert MasterSecret(KEY, SALT) != MasterSecret(KEY, KEY)
    assert MasterSecret(KEY, SALT) != "x"


# --- hypothesis -----------------------------------------------------------------------------

json_values = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(max_size=50),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=12,
)


@given(st.binary(max_size=400))
def test_fuzz_bytes_raise_only_config_errors(data: bytes) -> None:
    with contextlib.suppress(KmsConfigError):
        MasterSecret.from_json(data)


@given(st.dictionaries(st.sampled_from(["key", "salt", "Key", "x"]), json_values | st.text(max_size=60)))
def test_fuzz_json_documents(doc: dict[str, object]) -> None:
    with contextlib.suppress(KmsConfigError):
        MasterSecret.from_json(json.dumps(doc))


@given(st.binary(min_size=16, max_size=64), st.binary(min_size=32, max_size=64))
def test_round_trip_and_errors_without_secret(key: bytes, salt: bytes) -> None:
    secret = MasterSecret(key, salt)
    assert MasterSecret.from_json(secret.to_json()) == secret
    broken = secret.to_json().replace(b'",', b'"!,')
    with pytest.raises(KmsConfigError) as e:
        MasterSecret.from_json(broken)
    for s in (key, salt):
        for form in (s.hex(), base64.b64encode(s).decode().rstrip("=")):
            assert form not in str(e.value)


def test_overwrite_never_exposes_the_secret_with_the_old_mode_or_through_a_symlink(tmp_path: Path) -> None:
    from starlock.kms import MasterSecret, read_master_secret_file, write_master_secret_file

    secret = MasterSecret(bytes(range(32)), bytes(range(32, 64)))
    loose = tmp_path / "loose.json"
    loose.write_text("{}")
    loose.chmod(0o644)
    write_master_secret_file(loose, secret, overwrite=True)
    assert loose.stat().st_mode & 0o777 == 0o600
    assert read_master_secret_file(loose) == secret

    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("untouched")
    link = tmp_path / "link.json"
    link.symlink_to(elsewhere)
    write_master_secret_file(link, secret, overwrite=True)
    assert not link.is_symlink()
    assert elsewhere.read_text() == "untouched"
    assert not list(tmp_path.glob(".*"))  # no temporary file left behind
