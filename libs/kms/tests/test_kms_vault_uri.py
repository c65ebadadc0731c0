"""``kms://vault?...`` parsing (no server needed)."""

from __future__ import annotations

import dataclasses
import re
import urllib.parse
from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from starlock.kms.interface import KmsConfigError
from starlock.kms.vault import VaultBackendConfig, open_vault_kms, open_vault_kms_from_config, parse_vault_uri
from starlock.kms.vault._kms import MAX_TOKEN_FILE_BYTES

BASE = "kms://vault?address=https://bao.example:8200&keyName=starlock-kek"
TOKEN = "hvs.SECRET-token-value"


def test_minimal_with_defaults() -> None:
    config = parse_vault_uri(BASE + "&tokenFile=/run/secrets/bao-token")
    assert config == VaultBackendConfig(
        address="https://bao.example:8200",
        key_name="starlock-kek",
        token_file="/run/secrets/bao-token",
    )
    assert config.transit_mount == "transit"
    assert config.kv_mount == "secret"
    assert config.kv_prefix == "starlock/dek"
    assert config.store_dir is None
    assert config.timeout == 10.0


def test_all_parameters() -> None:
    config = parse_vault_uri(
        "kms://vault?address=https%3A%2F%2F10.0.0.1%3A8200%2F&keyName=k1&transitMount=team%2Ftransit"
        f"&token={TOKEN}&kvMount=kv&kvPrefix=a/b.c&caFile=/etc/ca.pem&timeout=2.5"
    )
    assert config.address == "https://10.0.0.1:8200"
    assert config.transit_mount == "team/transit"
    assert config.token == TOKEN
    assert config.kv_mount == "kv"
    assert config.kv_prefix == "a/b.c"
    assert config.ca_file == "/etc/ca.pem"
    assert config.timeout == 2.5
    assert parse_vault_uri(config.to_uri()) == config


def test_directory_store() -> None:
    config = parse_vault_uri(BASE + "&token=t&storeDir=/var/lib/starlock/deks")
    assert config.store_dir == "/var/lib/starlock/deks"
    assert parse_vault_uri(config.to_uri()) == config


def test_token_never_in_repr(tmp_path: Path) -> None:
    config = parse_vault_uri(BASE + f"&token={TOKEN}")
    assert TOKEN not in repr(config)
    assert TOKEN not in str(config)
    kms = open_vault_kms(BASE + f"&token={TOKEN}&storeDir={tmp_path / 'store'}")
    assert TOKEN not in repr(kms)
    kms.close()


@pytest.mark.parametrize(
    ("uri", "message"),
    [
        ("kms://cluster-kms?key=a", "host must be 'vault'"),
        ("storage://vault?address=x", "scheme must be 'kms'"),
        ("kms://vault/path?address=x", "must not have a path"),
        ("kms://vault?address=x#frag", "fragment"),
        ("kms://vault", "missing query parameters"),
        ("kms://vault?keyName=k&token=t", "missing required parameter 'address'"),
        ("kms://vault?address=https://h&token=t", "missing required parameter 'keyName'"),
        (BASE, "exactly one of 'token' and 'tokenFile'"),
        (BASE + "&token=t&tokenFile=/t", "exactly one of 'token' and 'tokenFile'"),
        (BASE + "&token=", "'token' is empty"),
        (BASE + "&token", "'token' is empty"),
        (BASE + "&token=a&token=b", "'token' given more than once"),
        (BASE + "&token=a%20b", "'token' must be printable ASCII"),
        (BASE + "&token=t&bogus=1", "unknown parameter 'bogus'"),
        (BASE + "&token=t&hvs.abc=1", "unknown parameter '<not shown>'"),
        (BASE + "&tokenFile=relative/path", "'tokenFile' must be an absolute"),
        (BASE + "&token=t&storeDir=/d&kvPrefix=p", "'storeDir' excludes"),
        (BASE + "&token=t&timeout=0", "'timeout' must be > 0"),
        (BASE + "&token=t&timeout=nan", "'timeout' must be > 0"),
        (BASE + "&token=t&timeout=soon", "'timeout' must be a number"),
        (BASE + "&token=t&kvPrefix=../x", "'kvPrefix' must be"),
        (BASE + "&token=t&transitMount=a//b", "'transitMount' must be"),
        ("kms://vault?address=ftp://h&keyName=k&token=t", "must start with http:// or https://"),
        ("kms://vault?address=http://u:p@h&keyName=k&token=t", "without credentials"),
        ("kms://vault?address=http://h/v1&keyName=k&token=t", "must not have a path"),
        ("kms://vault?address=http://h:99999&keyName=k&token=t", "not a valid http"),
        ("kms://vault?address=https://h&keyName=a/b&token=t", "'keyName' must be a name"),
        ("kms://vault?address=http://127.0.0.1&keyName=k&token=t&caFile=/ca.pem", "needs an https"),
        ("kms://vault?address=http://vault.internal&keyName=k&token=t", "must use https:// unless"),
        ("kms://vault?address=http://10.0.0.5:8200&keyName=k&token=t", "must use https:// unless"),
        ("kms://vault?address=http://h&keyName=k&token=%ff", "not valid percent-encoded UTF-8"),
        (BASE + "&token=t\n", "control characters"),
        ("kms://vault?" + "a" * 9000, "longer than"),
    ],
)
def test_errors(uri: str, message: str) -> None:
    with pytest.raises(KmsConfigError, match=re.escape(message)) as info:
        parse_vault_uri(uri)
    assert "hvs." not in str(info.value)


def test_bad_token_value_is_not_echoed() -> None:
    secret = "hvs.not-printable\x01x"
    with pytest.raises(KmsConfigError) as info:
        parse_vault_uri(BASE + "&token=" + urllib.parse.quote(secret))
    assert "hvs." not in str(info.value)


def test_token_file(tmp_path: Path) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(f"  {TOKEN}\n")
    kms = open_vault_kms(BASE + f"&tokenFile={token_file}&storeDir={tmp_path / 's'}")
    kms.close()

    for content, message in [(b"", "one token"), (b"two words", "one token"), (b"\xff\xfe", "not ASCII")]:
        token_file.write_bytes(content)
        with pytest.raises(KmsConfigError, match=message) as info:
            open_vault_kms(BASE + f"&tokenFile={token_file}")
        assert "two" not in str(info.value)
    with pytest.raises(KmsConfigError, match="cannot read 'tokenFile'"):
        open_vault_kms(BASE + f"&tokenFile={tmp_path / 'missing'}")


def test_token_file_size_bound(tmp_path: Path) -> None:
    """A token file of up to 16 KiB is read; one byte more is refused, without its content."""
    token_file = tmp_path / "token"
    token_file.write_bytes(b"t" * MAX_TOKEN_FILE_BYTES)
    open_vault_kms(BASE + f"&tokenFile={token_file}&storeDir={tmp_path / 's'}").close()
    token_file.write_bytes(b"t" * (MAX_TOKEN_FILE_BYTES + 1))
    with pytest.raises(KmsConfigError, match=f"is larger than {MAX_TOKEN_FILE_BYTES} bytes") as info:
        open_vault_kms(BASE + f"&tokenFile={token_file}&storeDir={tmp_path / 's'}")
    assert "ttt" not in str(info.value)


def test_unusable_store_dir(tmp_path: Path) -> None:
    (tmp_path / "file").write_text("x")
    with pytest.raises(KmsConfigError, match="'storeDir' unusable"):
        open_vault_kms(BASE + f"&token=t&storeDir={tmp_path / 'file'}")


@given(st.text(max_size=300))
def test_arbitrary_strings_raise_only_config_errors(text: str) -> None:
    for candidate in (text, "kms://vault?" + text, BASE + "&" + text):
        try:
            config = parse_vault_uri(candidate)
        except KmsConfigError:
            continue
        assert parse_vault_uri(config.to_uri()) == config


_names = st.from_regex(r"[A-Za-z0-9_-][A-Za-z0-9._-]{0,20}", fullmatch=True)
_paths = st.lists(_names, min_size=1, max_size=3).map(lambda parts: "/" + "/".join(parts))


@given(
    key_name=_names,
    transit_mount=st.lists(_names, min_size=1, max_size=3).map("/".join),
    token=st.from_regex(r"[\x21-\x7e]{1,40}", fullmatch=True),
    store_dir=st.none() | _paths,
    timeout=st.floats(min_value=0.001, max_value=300),
    host=st.sampled_from(["localhost", "127.0.0.1", "[::1]", "bao.internal"]),
    port=st.none() | st.integers(1, 65535),
)
def test_round_trip(
    key_name: str, transit_mount: str, token: str, store_dir: str | None, timeout: float, host: str, port: int | None
) -> None:
    config = VaultBackendConfig(
        address=f"https://{host}" + (f":{port}" if port else ""),
        key_name=key_name,
        token=token,
        transit_mount=transit_mount,
        store_dir=store_dir,
        timeout=timeout,
    )
    assert parse_vault_uri(config.to_uri()) == config


def test_config_without_a_token_source_is_refused() -> None:
    """A configuration built directly (not parsed from a URI) with neither token nor tokenFile."""
    config = dataclasses.replace(parse_vault_uri(BASE + f"&token={TOKEN}"), token=None, token_file=None)
    with pytest.raises(KmsConfigError, match="exactly one of 'token' and 'tokenFile'"):
        open_vault_kms_from_config(config)
