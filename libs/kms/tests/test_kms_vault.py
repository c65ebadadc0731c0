"""The Vault/OpenBao KMS against a real OpenBao dev server (one per module, see bao_server.py)."""

from __future__ import annotations

import base64
import hashlib
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import hvac.exceptions
import pytest
from bao_server import KEK_NAME, BaoServer, initialize_store, start_bao

from starlock.kms.interface import KMS, MAX_DEK_LENGTH, KmsError, KmsInvalidArgument, KmsPermissionDenied
from starlock.kms.vault import (
    DekLengthMismatch,
    DirectoryWrappedKeyStore,
    VaultKMS,
    VaultStoreError,
    WrappedKeyError,
    open_vault_kms,
)
from starlock.kms.vault._kms import wrap_aad

StoreKind = str  # "kv" or "dir"
MARKER_FILE = ".starlock-store.json"


@pytest.fixture(scope="module")
def bao(tmp_path_factory: pytest.TempPathFactory) -> Iterator[BaoServer]:
    server = start_bao(tmp_path_factory.mktemp("bao"))
    try:
        yield server
    finally:
        server.stop()
    assert not server.is_running()


_counter = 0


@pytest.fixture
def uri_for(bao: BaoServer, tmp_path: Path) -> Callable[[StoreKind], str]:
    """A KMS URI on a store private to this test (own KV prefix or own directory)."""
    global _counter  # noqa: PLW0603
    _counter += 1
    prefix = f"test{_counter}/dek"

    def make(kind: StoreKind) -> str:
        if kind == "kv":
            return initialize_store(bao.kms_uri(kvPrefix=prefix))
        return initialize_store(bao.kms_uri(storeDir=str(tmp_path / "store")))

    return make


def _kv_entry(bao: BaoServer, uri: str, name: str) -> dict[str, object]:
    prefix = dict(p.split("=", 1) for p in uri.split("?", 1)[1].split("&"))["kvPrefix"].replace("%2F", "/")
    response = bao.client().secrets.kv.v2.read_secret_version(
        path=f"{prefix}/{name}", mount_point="secret", raise_on_deleted_version=True
    )
    return dict(response["data"]["data"]) | {"_version": response["data"]["metadata"]["version"]}


@pytest.mark.parametrize("kind", ["kv", "dir"])
def test_create_then_reuse_after_restart(uri_for: Callable[[StoreKind], str], kind: StoreKind) -> None:
    uri = uri_for(kind)
    kms = open_vault_kms(uri)
    assert isinstance(kms, KMS)
    dek = kms.get_dek("key-measurementSecret", 32)
    assert len(dek) == 32
    assert kms.get_dek("key-measurementSecret", 32) == dek
    other = kms.get_dek("key-MEASUREMENTSECRET", 32)  # ids are case-sensitive
    assert other != dek
    kms.close()
    kms.close()  # idempotent
    with pytest.raises(KmsError, match="closed"):
        kms.get_dek("key-measurementSecret", 32)
    with pytest.raises(KmsError, match="closed"):
        kms.initialize_store()

    restarted = open_vault_kms(uri)  # a "key-service restart": new object, same store
    assert restarted.get_dek("key-measurementSecret", 32) == dek
    assert restarted.get_dek("key-MEASUREMENTSECRET", 32) == other
    restarted.close()


def test_stored_record_is_wrapped_and_bound(bao: BaoServer, uri_for: Callable[[StoreKind], str]) -> None:
    uri = uri_for("kv")
    kms = open_vault_kms(uri)
    dek = kms.get_dek("key-abc", 48)
    record = _kv_entry(bao, uri, "key-abc")
    assert record["format"] == "starlock-wrapped-dek-v1"
    assert record["dek_id"] == "key-abc"
    assert record["length"] == 48
    assert record["transit_key"] == KEK_NAME
    assert isinstance(record["ciphertext"], str)
    assert record["ciphertext"].startswith("vault:v1:")
    assert dek.hex() not in json.dumps(record)
    assert record["_version"] == 1
    kms.close()


def test_directory_store_layout(tmp_path: Path, uri_for: Callable[[StoreKind], str]) -> None:
    kms = open_vault_kms(uri_for("dir"))
    kms.get_dek("key-0f6a1b2c-aaaa-bbbb-cccc-0123456789ab", 32)
    kms.get_dek("key-projects/p/disks/pvc-1", 16)  # not a plain name: stored under its hash
    names = sorted(p.name for p in (tmp_path / "store").iterdir() if p.name != MARKER_FILE)
    hashed = "~sha256-" + hashlib.sha256(b"key-projects/p/disks/pvc-1").hexdigest() + ".json"
    assert names == sorted(["key-0f6a1b2c-aaaa-bbbb-cccc-0123456789ab.json", hashed])
    assert (tmp_path / "store").stat().st_mode & 0o777 == 0o700
    kms.close()


@pytest.mark.parametrize("kind", ["kv", "dir"])
def test_length_mismatch_is_refused(uri_for: Callable[[StoreKind], str], kind: StoreKind) -> None:
    kms = open_vault_kms(uri_for(kind))
    kms.get_dek("key-x", 32)
    with pytest.raises(DekLengthMismatch, match=r"stored with length 32 bytes, requested 64") as info:
        kms.get_dek("key-x", 64)
    assert isinstance(info.value, KmsInvalidArgument)
    kms.close()


@pytest.mark.parametrize(
    ("dek_id", "length"),
    [("", 32), ("key-a", 0), ("key-a", -1), ("key-a", MAX_DEK_LENGTH + 1), ("key-a", True), ("\ud800", 32)],
)
def test_invalid_arguments(uri_for: Callable[[StoreKind], str], dek_id: str, length: int) -> None:
    kms = open_vault_kms(uri_for("dir"))
    with pytest.raises(KmsInvalidArgument):
        kms.get_dek(dek_id, length)
    kms.close()


def test_largest_dek(uri_for: Callable[[StoreKind], str]) -> None:
    kms = open_vault_kms(uri_for("kv"))
    dek = kms.get_dek("key-big", MAX_DEK_LENGTH)
    assert len(dek) == MAX_DEK_LENGTH
    assert open_vault_kms(uri_for("kv")).get_dek("key-big", MAX_DEK_LENGTH) == dek
    kms.close()


def test_moved_entry_does_not_unwrap(tmp_path: Path, uri_for: Callable[[StoreKind], str]) -> None:
    kms = open_vault_kms(uri_for("dir"))
    kms.get_dek("key-a", 32)
    store = tmp_path / "store"
    record = json.loads((store / "key-a.json").read_text())

    # Copied verbatim under another id: the record's own id no longer matches.
    (store / "key-b.json").write_text(json.dumps(record))
    with pytest.raises(WrappedKeyError, match="records the id 'key-a'"):
        kms.get_dek("key-b", 32)

    # Copied and relabelled: Transit refuses, the ciphertext is bound to 'key-a' (associated data).
    (store / "key-c.json").write_text(json.dumps(record | {"dek_id": "key-c"}))
    with pytest.raises(WrappedKeyError, match="does not unwrap"):
        kms.get_dek("key-c", 32)

    # Relabelled length: bound too.
    (store / "key-a.json").write_text(json.dumps(record | {"length": 16}))
    with pytest.raises(WrappedKeyError, match="does not unwrap"):
        kms.get_dek("key-a", 16)
    kms.close()


def test_corrupt_entry_is_a_clear_error(tmp_path: Path, uri_for: Callable[[StoreKind], str]) -> None:
    kms = open_vault_kms(uri_for("dir"))
    store = tmp_path / "store"
    (store / "key-z.json").write_text("{not json")
    with pytest.raises(WrappedKeyError, match="not valid JSON"):
        kms.get_dek("key-z", 32)
    kms.close()


def test_wrong_transit_key_name_in_record(tmp_path: Path, bao: BaoServer) -> None:
    store = tmp_path / "store"
    kms = open_vault_kms(initialize_store(bao.kms_uri(storeDir=str(store))))
    kms.get_dek("key-a", 32)
    bao.client().secrets.transit.create_key("other-kek")
    other = open_vault_kms(bao.kms_uri(storeDir=str(store), keyName="other-kek"))
    with pytest.raises(WrappedKeyError, match="wrapped with transit key 'starlock-kek'"):
        other.get_dek("key-a", 32)
    kms.close()
    other.close()


# -- concurrency ---------------------------------------------------------------------------------

_CHILD = """
import hashlib, os, sys, threading, time
from starlock.kms.vault import open_vault_kms
uri, dek_id, go = sys.argv[1:4]
kms = open_vault_kms(uri)
results = []
def worker():
    results.append(hashlib.sha256(kms.get_dek(dek_id, 32)).hexdigest())
threads = [threading.Thread(target=worker) for _ in range(4)]
while not os.path.exists(go):
    time.sleep(0.001)
for t in threads: t.start()
for t in threads: t.join()
print(" ".join(results))
"""


@pytest.mark.parametrize("kind", ["kv", "dir"])
def test_concurrent_first_use_threads_and_processes(
    bao: BaoServer, tmp_path: Path, uri_for: Callable[[StoreKind], str], kind: StoreKind
) -> None:
    token_file = tmp_path / "token"
    token_file.write_text(bao.root_token + "\n")
    uri = uri_for(kind).replace(f"token={bao.root_token}", f"tokenFile={token_file}")
    go = tmp_path / "go"
    children = [
        subprocess.Popen([sys.executable, "-c", _CHILD, uri, "key-shared", str(go)], stdout=subprocess.PIPE, text=True)
        for _ in range(3)
    ]
    kms = open_vault_kms(uri)
    local: list[str] = []
    errors: list[BaseException] = []
    barrier = threading.Barrier(8)

    def worker() -> None:
        barrier.wait()
        try:
            local.append(hashlib.sha256(kms.get_dek("key-shared", 32)).hexdigest())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=worker) for _ in range(8)]
    time.sleep(0.5)  # let the children import and open their KMS
    go.touch()
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    remote: list[str] = []
    for child in children:
        out, _ = child.communicate(timeout=60)
        assert child.returncode == 0
        remote += out.split()
    assert not errors
    assert len(local) == 8
    assert len(remote) == 12
    assert len(set(local + remote)) == 1  # one key won; every caller got it
    if kind == "kv":
        assert _kv_entry(bao, uri, "key-shared")["_version"] == 1  # exactly one write succeeded
    else:
        # no temp files
        assert sorted(p.name for p in (tmp_path / "store").iterdir()) == [MARKER_FILE, "key-shared.json"]
    kms.close()


def test_directory_store_object_is_usable_directly(tmp_path: Path, bao: BaoServer) -> None:
    store = DirectoryWrappedKeyStore(tmp_path / "s")
    assert store.get("key-a") is None
    kms = open_vault_kms(initialize_store(bao.kms_uri(storeDir=str(tmp_path / "s"))))
    kms.get_dek("key-a", 32)
    entry = store.get("key-a")
    assert entry is not None
    assert entry.length == 32
    kms.close()


# -- credentials ----------------------------------------------------------------------------------


@pytest.mark.parametrize("kind", ["kv", "dir"])
def test_wrong_token_is_permission_denied(
    bao: BaoServer, tmp_path: Path, uri_for: Callable[[StoreKind], str], kind: StoreKind
) -> None:
    wrong = "s.wrong-" + "0123456789abcdef"
    uri = uri_for(kind).replace(f"token={bao.root_token}", f"token={wrong}")
    kms = open_vault_kms(uri)
    with pytest.raises(KmsPermissionDenied, match="permission denied") as info:
        kms.get_dek("key-a", 32)
    assert wrong not in str(info.value)
    assert wrong not in repr(kms)
    if kind == "dir":
        assert [p.name for p in (tmp_path / "store").iterdir()] == [MARKER_FILE]
    kms.close()


def test_token_without_kv_policy_is_permission_denied(bao: BaoServer, uri_for: Callable[[StoreKind], str]) -> None:
    client = bao.client()
    client.sys.create_or_update_policy(
        "transit-only",
        f'path "transit/encrypt/{KEK_NAME}" {{ capabilities = ["update"] }}\n'
        f'path "transit/decrypt/{KEK_NAME}" {{ capabilities = ["update"] }}\n',
    )
    token = client.auth.token.create(policies=["transit-only"], ttl="10m")["auth"]["client_token"]
    uri = uri_for("kv").replace(f"token={bao.root_token}", f"token={token}")
    kms = open_vault_kms(uri)
    with pytest.raises(KmsPermissionDenied, match="kv read") as info:
        kms.get_dek("key-a", 32)
    assert token not in str(info.value)
    kms.close()


def test_least_privilege_policy_works(bao: BaoServer, tmp_path: Path) -> None:
    """The policy the README recommends is enough (and has no 'create' on transit: no key upsert)."""
    client = bao.client()
    client.sys.create_or_update_policy(
        "starlock-kms",
        f'path "transit/encrypt/{KEK_NAME}" {{ capabilities = ["update"] }}\n'
        f'path "transit/decrypt/{KEK_NAME}" {{ capabilities = ["update"] }}\n'
        'path "secret/data/starlock/dek/*" { capabilities = ["create", "read"] }\n',
    )
    token = client.auth.token.create(policies=["starlock-kms"], ttl="10m")["auth"]["client_token"]
    kms = open_vault_kms(initialize_store(bao.kms_uri(token=token, kvPrefix="starlock/dek")))
    dek = kms.get_dek("key-policy-test", 32)
    assert open_vault_kms(bao.kms_uri(token=token)).get_dek("key-policy-test", 32) == dek
    typo = open_vault_kms(bao.kms_uri(token=token, keyName="starlock-kke"))
    with pytest.raises(VaultStoreError, match="initialized for transit key 'starlock-kek'"):
        typo.get_dek("key-other", 32)  # a mistyped key name is not silently created
    with pytest.raises(VaultStoreError, match="initialized for transit key"):
        typo.initialize_store()  # nor by initializing the store again
    with pytest.raises(hvac.exceptions.InvalidPath):
        client.secrets.transit.read_key("starlock-kke")
    kms.close()
    typo.close()


# -- KEK rotation ---------------------------------------------------------------------------------


def test_kek_rotation(bao: BaoServer, tmp_path: Path) -> None:
    client = bao.client()
    client.secrets.transit.create_key("rotating-kek")
    uri = initialize_store(bao.kms_uri(keyName="rotating-kek", storeDir=str(tmp_path / "store")))
    kms = open_vault_kms(uri)
    old = kms.get_dek("key-old", 32)
    client.secrets.transit.rotate_key("rotating-kek")
    new = kms.get_dek("key-new", 32)

    records = {p.stem: json.loads(p.read_text()) for p in (tmp_path / "store").iterdir() if p.name != MARKER_FILE}
    assert records["key-old"]["ciphertext"].startswith("vault:v1:")
    assert records["key-new"]["ciphertext"].startswith("vault:v2:")  # newest version wraps new keys
    restarted = open_vault_kms(uri)
    assert restarted.get_dek("key-old", 32) == old  # old wrapped keys still unwrap
    assert restarted.get_dek("key-new", 32) == new
    kms.close()
    restarted.close()


# -- integration with the URI factory ------------------------------------------------------------


def test_factory_opens_vault_backend(bao: BaoServer, tmp_path: Path) -> None:
    from starlock.kms.factory import open_kms

    kms = open_kms(initialize_store(bao.kms_uri(storeDir=str(tmp_path / "store"))))
    assert isinstance(kms, VaultKMS)
    assert len(kms.get_dek("key-a", 32)) == 32
    kms.close()


# -- the store marker: each of its fields binds ----------------------------------------------------

_MARKER_AAD = b"starlock-vault-store-marker-v1\x00"


def _marker_store(bao: BaoServer, tmp_path: Path) -> tuple[VaultKMS, Path]:
    """An initialized directory store (and its KMS) that serves and creates keys."""
    store = tmp_path / "store"
    kms = open_vault_kms(initialize_store(bao.kms_uri(storeDir=str(store))))
    kms.get_dek("key-existing", 32)  # the unchanged marker lets keys be created
    return kms, store


def _edit_marker(store: Path, **fields: str) -> None:
    marker = json.loads((store / MARKER_FILE).read_text())
    (store / MARKER_FILE).write_text(json.dumps(marker | fields))


def _assert_refused(kms: VaultKMS, store: Path, message: str) -> None:
    with pytest.raises(VaultStoreError, match=message):
        kms.get_dek("key-new", 32)
    assert sorted(p.name for p in store.iterdir()) == [MARKER_FILE, "key-existing.json"]  # nothing created
    assert len(kms.get_dek("key-existing", 32)) == 32  # existing keys are served as before


@pytest.mark.parametrize("value", ["", "starlock-vault-store-v", "starlock-vault-store-v10", "starlock-vault-store-v2"])
def test_marker_of_another_format_is_refused(bao: BaoServer, tmp_path: Path, value: str) -> None:
    kms, store = _marker_store(bao, tmp_path)
    _edit_marker(store, format=value)  # the canary still unwraps: only the format check refuses it
    _assert_refused(kms, store, "has a malformed marker")
    kms.close()


@pytest.mark.parametrize("value", ["", "starlock-ke", "starlock-kek-old"])
def test_marker_for_another_transit_key_is_refused(bao: BaoServer, tmp_path: Path, value: str) -> None:
    kms, store = _marker_store(bao, tmp_path)
    _edit_marker(store, transit_key=value)  # a prefix or an extension of this KMS's key name, or empty
    _assert_refused(kms, store, f"initialized for transit key '{value}', but this KMS uses '{KEK_NAME}'")
    kms.close()


def _wrap(bao: BaoServer, plaintext: bytes, aad: bytes) -> str:
    """A canary wrapped by the KEK itself (hvac directly), bound to ``aad`` as the KMS binds it."""
    aad_b64 = base64.b64encode(aad).decode()
    response = bao.client().secrets.transit.encrypt_data(
        KEK_NAME, plaintext=base64.b64encode(plaintext).decode(), context=aad_b64, associated_data=aad_b64
    )
    return str(response["data"]["ciphertext"])


@pytest.mark.parametrize("unwraps_to", ["prefix", "extension", "other"])
def test_canary_must_unwrap_to_exactly_the_store_id(bao: BaoServer, tmp_path: Path, unwraps_to: str) -> None:
    """A genuine canary of the KEK, bound to the store id, that unwraps to something else."""
    kms, store = _marker_store(bao, tmp_path)
    store_id = bytes.fromhex(json.loads((store / MARKER_FILE).read_text())["store_id"])
    plaintext = {"prefix": store_id[:-1], "extension": store_id + b"\x00", "other": bytes(16)}[unwraps_to]
    _edit_marker(store, canary=_wrap(bao, plaintext, _MARKER_AAD + store_id))
    _assert_refused(kms, store, "does not unwrap the marker")
    kms.close()


@pytest.mark.parametrize("store_id", [b"", b"\x01" * 15, b"\x01" * 17], ids=["empty", "15-bytes", "17-bytes"])
def test_marker_store_id_must_be_16_bytes(bao: BaoServer, tmp_path: Path, store_id: bytes) -> None:
    """An empty store id once matched the empty result of a canary Transit refuses: a marker with
    any garbage canary passed. The id has the size initialization writes, or the marker is refused."""
    kms, store = _marker_store(bao, tmp_path)
    canary = _wrap(bao, store_id, _MARKER_AAD + store_id) if store_id else "vault:v1:AA=="
    _edit_marker(store, store_id=store_id.hex(), canary=canary)
    _assert_refused(kms, store, "has a malformed marker")
    kms.close()


@pytest.mark.parametrize("recorded", ["starlock-ke", "starlock-kek-old"])
def test_record_naming_another_transit_key_is_refused(bao: BaoServer, tmp_path: Path, recorded: str) -> None:
    """The record names a prefix or an extension of the KMS's key name: refused, though the KEK that
    wrapped it would unwrap it."""
    kms, store = _marker_store(bao, tmp_path)
    record = json.loads((store / "key-existing.json").read_text())
    (store / "key-existing.json").write_text(json.dumps(record | {"transit_key": recorded}))
    with pytest.raises(WrappedKeyError, match=f"wrapped with transit key '{recorded}', but this KMS uses"):
        kms.get_dek("key-existing", 32)
    kms.close()


def test_soft_deleted_kv_entries_are_not_replaced(bao: BaoServer, uri_for: Callable[[StoreKind], str]) -> None:
    """A KV entry (or the marker) whose latest version is deleted still exists (cas=0 fails): it is
    neither overwritten nor taken for absent; the operator is told to undelete it."""
    uri = uri_for("kv")
    prefix = dict(p.split("=", 1) for p in uri.split("?", 1)[1].split("&"))["kvPrefix"].replace("%2F", "/")
    kms = open_vault_kms(uri)
    kms.get_dek("key-a", 32)
    kv = bao.client().secrets.kv.v2
    kv.delete_latest_version_of_secret(path=f"{prefix}/key-a", mount_point="secret")
    with pytest.raises(KmsError, match="KV entry for DEK 'key-a' exists but its latest version is deleted"):
        kms.get_dek("key-a", 32)
    kv.delete_latest_version_of_secret(path=f"{prefix}/.starlock-store", mount_point="secret")
    with pytest.raises(KmsError, match="KV store marker exists but its latest version is deleted"):
        kms.initialize_store()
    kms.close()


def test_record_whose_ciphertext_unwraps_to_another_length_is_refused(bao: BaoServer, tmp_path: Path) -> None:
    """A ciphertext wrapped under the right associated data but holding 16 bytes, in a 32-byte record
    (written by someone with Transit encrypt access): refused, a short key is never returned."""
    kms, store = _marker_store(bao, tmp_path)
    record = json.loads((store / "key-existing.json").read_text())
    record |= {"dek_id": "key-short", "ciphertext": _wrap(bao, bytes(16), wrap_aad("key-short", 32))}
    (store / "key-short.json").write_text(json.dumps(record))
    with pytest.raises(WrappedKeyError, match="'key-short' unwrapped to 16 bytes, its record says 32"):
        kms.get_dek("key-short", 32)
    kms.close()
