"""The Vault/OpenBao KMS when the server goes away: retryable KmsUnavailable, nothing stored."""

from __future__ import annotations

import json
import socket
import time
from pathlib import Path

import pytest
from bao_server import initialize_store, running_bao

from starlock.kms.interface import KmsUnavailable
from starlock.kms.vault import open_vault_kms


@pytest.mark.parametrize("kind", ["kv", "dir"])
def test_server_stopped_mid_test(tmp_path: Path, kind: str) -> None:
    store = tmp_path / "store"
    with running_bao(tmp_path / "bao") as bao:
        params = {"storeDir": str(store)} if kind == "dir" else {}
        kms = open_vault_kms(initialize_store(bao.kms_uri(timeout="5", **params)))
        kms.get_dek("key-existing", 32)
        bao.stop()
        assert not bao.is_running()

        for dek_id in ("key-new", "key-existing"):
            started = time.monotonic()
            with pytest.raises(KmsUnavailable, match=r"unreachable.*retry later") as info:
                kms.get_dek(dek_id, 32)
            assert time.monotonic() - started < 5
            assert bao.root_token not in str(info.value)
        if kind == "dir":
            # Nothing half-way: only the entry created while the server was up, no temp files.
            assert sorted(p.name for p in store.iterdir()) == [".starlock-store.json", "key-existing.json"]
        kms.close()


def _initialized_store(store: Path, key_name: str) -> Path:
    """A directory store as an earlier initialization left it (the marker's canary is opaque here)."""
    store.mkdir(mode=0o700)
    marker = {
        "format": "starlock-vault-store-v1",
        "transit_key": key_name,
        "store_id": "00" * 16,
        "canary": "vault:v1:AA==",
    }
    (store / ".starlock-store.json").write_text(json.dumps(marker))
    return store


def test_nothing_listening(tmp_path: Path) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    _initialized_store(tmp_path / "store", "k")
    # The port is closed again: connection refused.
    kms = open_vault_kms(
        f"kms://vault?address=http://127.0.0.1:{port}&keyName=k&token=t0ken-secret&storeDir={tmp_path / 'store'}"
    )
    with pytest.raises(KmsUnavailable) as info:
        kms.get_dek("key-a", 32)
    assert "t0ken-secret" not in str(info.value)
    assert [p.name for p in (tmp_path / "store").iterdir()] == [".starlock-store.json"]
    kms.close()


def test_unresponsive_server_times_out(tmp_path: Path) -> None:
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(8)  # accepts connections (kernel backlog) but never answers
        port = listener.getsockname()[1]
        _initialized_store(tmp_path / "store", "k")
        kms = open_vault_kms(
            f"kms://vault?address=http://127.0.0.1:{port}&keyName=k&token=t&timeout=0.5&storeDir={tmp_path / 'store'}"
        )
        started = time.monotonic()
        with pytest.raises(KmsUnavailable, match=r"Timeout"):
            kms.get_dek("key-a", 32)
        assert time.monotonic() - started < 5
        kms.close()
