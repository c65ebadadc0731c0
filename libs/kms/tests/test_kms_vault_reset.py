"""A lost or reset Vault/OpenBao store never turns into new keys for existing ids (issue: data loss).

Before the store marker, a missing KV entry read as "new id" and Transit ``encrypt`` re-created a
missing KEK: after an OpenBao dev server restarted on the same address and token, every existing
id came back OK with a *different* key. Each test here fails on that behaviour.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import hvac.exceptions
import pytest
from bao_server import KEK_NAME, BaoServer, initialize_store, start_bao

from starlock.kms.interface import KmsFailedPrecondition
from starlock.kms.vault import VaultStoreError, WrappedKeyError, open_vault_kms

MARKER_FILE = ".starlock-store.json"


@pytest.fixture
def bao(tmp_path: Path) -> Iterator[BaoServer]:
    server = start_bao(tmp_path / "bao")
    try:
        yield server
    finally:
        server.stop()


def _restart_empty(bao: BaoServer, tmp_path: Path) -> BaoServer:
    """Stop the dev server and start a fresh one on the same address and token (all data gone;
    Transit re-mounted and a KEK of the same name created again, as start_bao prepares it)."""
    bao.stop()
    port = int(bao.address.rsplit(":", 1)[1])
    return start_bao(tmp_path / "bao-again", port=port, token=bao.root_token)


def _kv_has(bao: BaoServer, path: str) -> bool:
    try:
        bao.client().secrets.kv.v2.read_secret_version(path=path, mount_point="secret", raise_on_deleted_version=True)
    except hvac.exceptions.InvalidPath:
        return False
    return True


@pytest.mark.parametrize("kind", ["kv", "dir"])
def test_uninitialized_store_creates_nothing(bao: BaoServer, tmp_path: Path, kind: str) -> None:
    params = {"storeDir": str(tmp_path / "store")} if kind == "dir" else {"kvPrefix": "fresh/dek"}
    kms = open_vault_kms(bao.kms_uri(**params))
    with pytest.raises(VaultStoreError, match=r"never initialized.*--initialize-vault-store") as info:
        kms.get_dek("key-disk-1", 32)
    assert isinstance(info.value, KmsFailedPrecondition)  # the key service answers FAILED_PRECONDITION
    assert bao.root_token not in str(info.value)
    if kind == "dir":
        assert list((tmp_path / "store").iterdir()) == []
    else:
        assert not _kv_has(bao, "fresh/dek/key-disk-1")
    kms.close()


def test_reset_server_does_not_rekey_existing_ids(bao: BaoServer, tmp_path: Path) -> None:
    uri = initialize_store(bao.kms_uri())
    kms = open_vault_kms(uri)
    disk_key = kms.get_dek("key-disk-1", 32)
    kms.close()

    again = _restart_empty(bao, tmp_path)
    try:
        assert again.kms_uri() == uri  # same address, same token, same key name: only the data is gone
        kms = open_vault_kms(uri)
        for dek_id in ("key-disk-1", "key-disk-2"):
            with pytest.raises(VaultStoreError, match="reset or replaced") as info:
                kms.get_dek(dek_id, 32)
            assert disk_key.hex() not in str(info.value)
        assert not _kv_has(again, "starlock/dek/key-disk-1")  # nothing was created
        kms.close()
    finally:
        again.stop()


def test_reset_transit_with_kept_directory_store(bao: BaoServer, tmp_path: Path) -> None:
    store = tmp_path / "store"
    uri = initialize_store(bao.kms_uri(storeDir=str(store)))
    kms = open_vault_kms(uri)
    kms.get_dek("key-disk-1", 32)
    kms.close()

    again = _restart_empty(bao, tmp_path)  # the KEK now has other key material
    try:
        kms = open_vault_kms(uri)
        with pytest.raises(WrappedKeyError):
            kms.get_dek("key-disk-1", 32)  # an existing key does not unwrap: refused, not replaced
        with pytest.raises(VaultStoreError, match="does not unwrap the marker"):
            kms.get_dek("key-disk-2", 32)  # and no new key is wrapped by a KEK that is not the old one
        assert sorted(p.name for p in store.iterdir()) == [MARKER_FILE, "key-disk-1.json"]
        kms.close()
    finally:
        again.stop()


def test_deleted_kek_is_not_recreated(bao: BaoServer, tmp_path: Path) -> None:
    client = bao.client()
    client.secrets.transit.create_key("doomed-kek")
    uri = initialize_store(bao.kms_uri(keyName="doomed-kek", storeDir=str(tmp_path / "store")))
    kms = open_vault_kms(uri)
    kms.get_dek("key-disk-1", 32)
    client.secrets.transit.update_key_configuration("doomed-kek", deletion_allowed=True)
    client.secrets.transit.delete_key("doomed-kek")
    with pytest.raises(VaultStoreError, match="deleted or replaced"):
        kms.get_dek("key-disk-2", 32)
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.secrets.transit.read_key("doomed-kek")  # Transit did not upsert it
    kms.close()


@pytest.mark.parametrize("kind", ["kv", "dir"])
def test_initialize_once_then_idempotent(bao: BaoServer, tmp_path: Path, kind: str) -> None:
    params = {"storeDir": str(tmp_path / "store")} if kind == "dir" else {"kvPrefix": "init/dek"}
    kms = open_vault_kms(bao.kms_uri(**params))
    assert kms.initialize_store() is True
    assert kms.initialize_store() is False
    other = open_vault_kms(bao.kms_uri(**params))
    assert other.initialize_store() is False  # another key service sees the same marker
    key = kms.get_dek("key-a", 32)
    assert other.get_dek("key-a", 32) == key
    if kind == "dir":
        marker = json.loads((tmp_path / "store" / MARKER_FILE).read_text())
        assert marker["format"] == "starlock-vault-store-v1"
        assert marker["transit_key"] == KEK_NAME
        assert marker["canary"].startswith("vault:v1:")
    kms.close()
    other.close()


@pytest.mark.parametrize(
    "marker",
    [
        {},
        {"format": "starlock-vault-store-v1"},
        {"format": "other", "transit_key": KEK_NAME, "store_id": "00", "canary": "vault:v1:AA=="},
        {"format": "starlock-vault-store-v1", "transit_key": KEK_NAME, "store_id": "zz", "canary": "vault:v1:AA=="},
        {
            "format": "starlock-vault-store-v1",
            "transit_key": KEK_NAME,
            "store_id": "00" * 16,
            "canary": "vault:v1:AA==",
        },
    ],
)
def test_forged_or_malformed_marker_is_refused(bao: BaoServer, tmp_path: Path, marker: dict[str, str]) -> None:
    store = tmp_path / "store"
    store.mkdir(mode=0o700)
    (store / MARKER_FILE).write_text(json.dumps(marker))
    kms = open_vault_kms(bao.kms_uri(storeDir=str(store)))
    with pytest.raises(VaultStoreError):
        kms.get_dek("key-a", 32)
    assert [p.name for p in store.iterdir()] == [MARKER_FILE]
    kms.close()


def test_canary_from_another_store_is_refused(bao: BaoServer, tmp_path: Path) -> None:
    """The canary is bound to its store id: a marker copied with another store id does not pass."""
    first = tmp_path / "first"
    initialize_store(bao.kms_uri(storeDir=str(first)))
    marker = json.loads((first / MARKER_FILE).read_text())
    marker["store_id"] = "11" * 16
    second = tmp_path / "second"
    second.mkdir(mode=0o700)
    (second / MARKER_FILE).write_text(json.dumps(marker))
    kms = open_vault_kms(bao.kms_uri(storeDir=str(second)))
    with pytest.raises(VaultStoreError, match="does not unwrap the marker"):
        kms.get_dek("key-a", 32)
    kms.close()


def test_keyservice_initializes_the_store_then_serves(bao: BaoServer, tmp_path: Path) -> None:
    """The operator's step: `starlock-keyservice --initialize-vault-store`, a real process."""
    import os
    import subprocess
    import sys

    store = tmp_path / "store"
    uri_file = tmp_path / "kms-uri"
    fd = os.open(uri_file, os.O_WRONLY | os.O_CREAT, 0o600)
    os.write(fd, bao.kms_uri(storeDir=str(store)).encode())
    os.close(fd)
    command = [
        sys.executable,
        "-m",
        "starlock.kms.keyservice",
        "--initialize-vault-store",
        "--kms-uri-file",
        str(uri_file),
    ]
    first = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert first.returncode == 0, first.stderr
    assert '"store initialized"' in first.stderr + first.stdout
    assert bao.root_token not in first.stderr + first.stdout
    assert (store / MARKER_FILE).is_file()
    second = subprocess.run(command, capture_output=True, text=True, timeout=60, check=False)
    assert second.returncode == 0
    assert "already initialized" in second.stderr + second.stdout
    kms = open_vault_kms(bao.kms_uri(storeDir=str(store)))
    assert len(kms.get_dek("key-a", 32)) == 32
    kms.close()
    # not together with a transport
    usage = subprocess.run(
        [*command, "--unix", str(tmp_path / "s.sock")], capture_output=True, text=True, timeout=60, check=False
    )
    assert usage.returncode == 2 and "no transport flags" in usage.stderr
