"""A hung Vault/OpenBao costs a caller its own deadline, not the backend's 10 s timeout.

The "server" is a real listening socket that accepts connections (kernel backlog) and never
answers. Calls go through a real grpcio key service or straight to ``VaultKMS``.
"""

from __future__ import annotations

import json
import socket
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import grpc
import pytest

from starlock.joinproto import keyservice_pb2, keyservice_pb2_grpc
from starlock.kms import KmsUnavailable, deadline_scope, time_left
from starlock.kms.keyservice import KeyService, add_unix_socket
from starlock.kms.vault import VaultKMS, open_vault_kms

TOKEN = "s.deadline-test-token"


@pytest.fixture
def hung_listener() -> Iterator[socket.socket]:
    """Accepts TCP connections (backlog) and never reads or answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        yield listener


def _store(directory: Path) -> Path:
    """A directory store as an initialization left it (the canary never gets checked here)."""
    directory.mkdir(mode=0o700)
    marker = {"format": "starlock-vault-store-v1", "transit_key": "k", "store_id": "00" * 16, "canary": "vault:v1:AA=="}
    (directory / ".starlock-store.json").write_text(json.dumps(marker))
    return directory


def _hung_vault(listener: socket.socket, tmp_path: Path) -> VaultKMS:
    port = listener.getsockname()[1]
    # The default timeout (10 s): only the caller's deadline may end the call early.
    return open_vault_kms(
        f"kms://vault?address=http://127.0.0.1:{port}&keyName=k&token={TOKEN}&storeDir={_store(tmp_path / 'store')}"
    )


def test_grpc_caller_gets_unavailable_within_its_deadline(
    hung_listener: socket.socket, tmp_path: Path, sockdir: Path
) -> None:
    kms = _hung_vault(hung_listener, tmp_path)
    service = KeyService(kms, max_workers=4)
    address = add_unix_socket(service.server, sockdir / "ks.sock")
    service.server.start()
    try:
        with grpc.insecure_channel(address) as channel:
            stub = keyservice_pb2_grpc.APIStub(channel)
            for _ in range(2):  # the handler thread is free again after the first call
                started = time.monotonic()
                with pytest.raises(grpc.RpcError) as info:
                    stub.GetDataKey(keyservice_pb2.GetDataKeyRequest(data_key_id="disk-1", length=32), timeout=1.0)
                elapsed = time.monotonic() - started
                assert info.value.code() == grpc.StatusCode.UNAVAILABLE, info.value.details()
                assert "KMS unavailable" in info.value.details()
                assert TOKEN not in info.value.details()
                assert 0.5 < elapsed < 1.0
    finally:
        assert service.shutdown(1.0)
        kms.close()


def test_deadline_scope_bounds_each_vault_request(hung_listener: socket.socket, tmp_path: Path) -> None:
    kms = _hung_vault(hung_listener, tmp_path)
    started = time.monotonic()
    with deadline_scope(started + 0.5), pytest.raises(KmsUnavailable, match="retry later") as info:
        kms.get_dek("key-a", 32)
    assert 0.4 < time.monotonic() - started < 2.0
    assert TOKEN not in str(info.value)
    kms.close()


def test_passed_deadline_sends_nothing(hung_listener: socket.socket, tmp_path: Path) -> None:
    kms = _hung_vault(hung_listener, tmp_path)
    with deadline_scope(time.monotonic() - 1), pytest.raises(KmsUnavailable, match="deadline has passed"):
        kms.get_dek("key-a", 32)
    hung_listener.setblocking(False)
    with pytest.raises(BlockingIOError):
        hung_listener.accept()  # no connection was even opened
    kms.close()


def test_deadlines_are_per_thread(hung_listener: socket.socket, tmp_path: Path) -> None:
    kms = _hung_vault(hung_listener, tmp_path)
    took: dict[float, float] = {}

    def call(budget: float) -> None:
        started = time.monotonic()
        with deadline_scope(started + budget), pytest.raises(KmsUnavailable):
            kms.get_dek(f"key-{budget}", 32)
        took[budget] = time.monotonic() - started

    threads = [threading.Thread(target=call, args=(budget,)) for budget in (0.3, 1.5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(10)
    # each thread is bounded by its own deadline, not by the other's nor by the 10 s client timeout;
    # the upper bounds are loose on purpose (a loaded 2-core machine), the ordering is the point
    assert 0.2 < took[0.3] < took[1.5]
    assert 1.3 < took[1.5] < 6.0
    kms.close()


def test_scopes_nest_and_callables_are_reread() -> None:
    assert time_left() is None
    end = [time.monotonic() + 100.0]
    with deadline_scope(None):
        assert time_left() is None
    with deadline_scope(lambda: end[0]):
        left = time_left()
        assert left is not None and 99 < left <= 100
        with deadline_scope(time.monotonic() + 10):
            left = time_left()
            assert left is not None and 9 < left <= 10
        end[0] = time.monotonic() - 5  # e.g. a shutdown shortened it
        assert time_left() == 0.0
    with deadline_scope(lambda: None):
        assert time_left() is None
    assert time_left() is None


def test_backend_sees_the_callers_remaining_time_and_no_limit_without_one(sockdir: Path) -> None:
    """Deadline propagation through a real gRPC call: the backend's time_left() is the caller's
    remaining time less the answer margin, and None (no limit) for a caller that set no deadline."""
    seen: dict[str, float | None] = {}

    class Recording:
        def get_dek(self, dek_id: str, length: int) -> bytes:
            seen[dek_id] = time_left()
            return b"k" * length

        def close(self) -> None:
            pass

    service = KeyService(Recording(), max_workers=2)
    address = add_unix_socket(service.server, sockdir / "ks.sock")
    service.server.start()
    try:
        with grpc.insecure_channel(address) as channel:
            stub = keyservice_pb2_grpc.APIStub(channel)
            stub.GetDataKey(keyservice_pb2.GetDataKeyRequest(data_key_id="with-deadline", length=32), timeout=5.0)
            stub.GetDataKey(keyservice_pb2.GetDataKeyRequest(data_key_id="no-deadline", length=32))
    finally:
        service.server.stop(None)
    left = seen["key-with-deadline"]
    # 5 s less the 0.5 s kept to send the answer; gRPC's timeout header rounds up a little, so the
    # server can see a few milliseconds more than the caller set (4.507 s seen under load)
    assert left is not None and 2.0 < left <= 4.55
    assert seen["key-no-deadline"] is None
