"""``--shutdown-grace`` as a real process: in-flight calls finish within it, the backend is closed
after them, later calls get UNAVAILABLE (never CANCELLED), and the process exits in time."""

from __future__ import annotations

import collections
import json
import signal
import socket
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from starlock.joinproto import keyservice_pb2, keyservice_pb2_grpc
from starlock.kms import ClusterKMS

# The real service (flags, signals, shutdown) around a backend that counts the calls inside it
# and prints how many were still running when it was closed. argv[1]: "vault" (argv[2]: a file
# holding a kms://vault URI) or "slow" (argv[2]: seconds each call sleeps); the rest are flags.
SERVICE = """
import sys, threading, time
from starlock.kms import ClusterKMS
from starlock.kms.keyservice import parse_args, run

class Slow(ClusterKMS):
    def get_dek(self, dek_id, length):
        time.sleep(float(sys.argv[2]))
        return super().get_dek(dek_id, length)

class Counting:
    def __init__(self, inner):
        self.inner, self.active, self.lock = inner, 0, threading.Lock()
    def get_dek(self, dek_id, length):
        with self.lock:
            self.active += 1
        try:
            return self.inner.get_dek(dek_id, length)
        finally:
            with self.lock:
                self.active -= 1
    def close(self):
        print(f"closed active={self.active} at={time.monotonic()}", flush=True)
        self.inner.close()

if sys.argv[1] == "vault":
    from starlock.kms.vault import open_vault_kms
    inner = open_vault_kms(open(sys.argv[2]).read())
else:
    inner = Slow(bytes(range(32)), bytes(range(32, 64)))
sys.exit(run(parse_args(sys.argv[3:]), kms=Counting(inner)))
"""
ARGV0 = [sys.executable, "-c", SERVICE]
KMS = ClusterKMS(bytes(range(32)), bytes(range(32, 64)))


def _req(data_key_id: str) -> keyservice_pb2.GetDataKeyRequest:
    return keyservice_pb2.GetDataKeyRequest(data_key_id=data_key_id, length=32)


def _wait_requests(ks: Any, n: int, timeout: float = 20.0) -> None:
    deadline = time.monotonic() + timeout
    while sum('"GetDataKey request"' in line for line in list(ks.stderr)) < n:
        assert time.monotonic() < deadline, "".join(ks.stderr)[-2000:]
        time.sleep(0.01)


def _closed(ks: Any) -> tuple[int, float]:
    [line] = [line for line in ks.stdout if line.startswith("closed ")]
    fields = dict(part.split("=") for part in line.split()[1:])
    return int(fields["active"]), float(fields["at"])


@pytest.fixture
def hung_vault_uri(tmp_path: Path) -> Iterator[Path]:
    """A kms://vault URI file for a server that accepts connections and never answers."""
    with socket.socket() as listener:
        listener.bind(("127.0.0.1", 0))
        listener.listen(64)
        store = tmp_path / "store"
        store.mkdir(mode=0o700)
        marker = {
            "format": "starlock-vault-store-v1",
            "transit_key": "k",
            "store_id": "00" * 16,
            "canary": "vault:v1:A",
        }
        (store / ".starlock-store.json").write_text(json.dumps(marker))
        uri = tmp_path / "kms-uri"
        port = listener.getsockname()[1]
        # timeout defaults to 10 s, five times the grace used below
        uri.write_text(f"kms://vault?address=http://127.0.0.1:{port}&keyName=k&token=t0ken&storeDir={store}")
        uri.chmod(0o600)
        yield uri


def test_hung_vault_calls_end_within_the_grace_and_the_backend_closes_after_them(
    hung_vault_uri: Path, sockdir: Path, start_keyservice: Callable[..., Any]
) -> None:
    sock = sockdir / "ks.sock"
    ks = start_keyservice(
        "vault", str(hung_vault_uri), "--unix", str(sock), "--shutdown-grace", "2", "-v", "2", argv0=ARGV0
    )
    ks.wait_for("key service listening")
    with grpc.insecure_channel(f"unix:{sock}") as channel:
        stub = keyservice_pb2_grpc.APIStub(channel)
        calls = [stub.GetDataKey.future(_req(f"disk-{i}"), timeout=60) for i in range(4)]
        _wait_requests(ks, 4)
        t0 = time.monotonic()
        ks.proc.send_signal(signal.SIGTERM)
        for call in calls:
            with pytest.raises(grpc.RpcError) as info:
                call.result()
            # answered by the key service (its backend deadline ran out), not cancelled by gRPC
            assert info.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "KMS unavailable" in info.value.details()
            assert time.monotonic() - t0 < 2.0
    assert ks.terminate(timeout=20, signal_sent=True) == 0
    assert time.monotonic() - t0 < 2.0 + 2.0  # the grace plus a small bound, not the 10 s timeout
    active, closed_at = _closed(ks)
    assert active == 0, "the backend was closed while calls were still using it"
    assert closed_at >= 0  # printed once, after the calls ended
    assert not [r for r in ks.records() if "still running after the shutdown grace" in r["msg"]]
    assert ks.records()[-1]["msg"] == "key service stopped"


def test_backend_that_ignores_its_deadline_does_not_hold_up_the_exit(
    sockdir: Path, start_keyservice: Callable[..., Any]
) -> None:
    sock = sockdir / "ks.sock"
    ks = start_keyservice("slow", "30", "--unix", str(sock), "--shutdown-grace", "1", "-v", "2", argv0=ARGV0)
    ks.wait_for("key service listening")
    with grpc.insecure_channel(f"unix:{sock}") as channel:
        stub = keyservice_pb2_grpc.APIStub(channel)
        calls = [stub.GetDataKey.future(_req(f"disk-{i}"), timeout=60) for i in range(2)]
        _wait_requests(ks, 2)
        t0 = time.monotonic()
        ks.proc.send_signal(signal.SIGTERM)
        assert ks.terminate(timeout=20, signal_sent=True) == 0
        exited = time.monotonic() - t0
        for call in calls:
            with pytest.raises(grpc.RpcError):
                call.result()
    assert exited < 1.0 + 2.0
    assert any("still running after the shutdown grace" in r["msg"] for r in ks.records())
    assert ks.records()[-1]["msg"] == "key service stopped"


def test_calls_queued_for_a_thread_at_sigterm_still_finish(sockdir: Path, start_keyservice: Callable[..., Any]) -> None:
    sock = sockdir / "ks.sock"
    flags = ["--unix", str(sock), "--max-workers", "2", "--shutdown-grace", "20", "-v", "2"]
    ks = start_keyservice("slow", "0.5", *flags, argv0=ARGV0)
    ks.wait_for("key service listening")
    with grpc.insecure_channel(f"unix:{sock}") as channel:
        stub = keyservice_pb2_grpc.APIStub(channel)
        calls = [stub.GetDataKey.future(_req(f"disk-{i}"), timeout=60) for i in range(6)]
        _wait_requests(ks, 2)  # two running, four accepted and waiting for a thread
        time.sleep(0.3)
        ks.proc.send_signal(signal.SIGTERM)
        ks.wait_for("shutting down")
        for i, call in enumerate(calls):
            assert bytes(call.result().data_key) == KMS.get_dek(f"key-disk-{i}", 32)
    assert ks.terminate(timeout=20, signal_sent=True) == 0
    assert _closed(ks)[0] == 0


def test_under_load_calls_are_answered_never_cancelled(sockdir: Path, start_keyservice: Callable[..., Any]) -> None:
    sock = sockdir / "ks.sock"
    ks = start_keyservice("slow", "0.01", "--unix", str(sock), "--shutdown-grace", "10", "-v", "2", argv0=ARGV0)
    ks.wait_for("key service listening")
    with grpc.insecure_channel(f"unix:{sock}") as channel:
        stub = keyservice_pb2_grpc.APIStub(channel)
        calls = {f"disk-{i}": stub.GetDataKey.future(_req(f"disk-{i}"), timeout=60) for i in range(600)}
        _wait_requests(ks, 16)  # SIGTERM while calls are still arriving
        ks.proc.send_signal(signal.SIGTERM)
        codes: dict[str, grpc.StatusCode] = {}
        for data_key_id, call in calls.items():
            try:
                assert bytes(call.result().data_key) == KMS.get_dek("key-" + data_key_id, 32)
                codes[data_key_id] = grpc.StatusCode.OK
            except grpc.RpcError as e:
                codes[data_key_id] = e.code()
    assert ks.terminate(timeout=30, signal_sent=True) == 0
    assert set(collections.Counter(codes.values())) <= {grpc.StatusCode.OK, grpc.StatusCode.UNAVAILABLE}, (
        collections.Counter(codes.values())
    )
    records = ks.records()
    started = {r["data_key_id"] for r in records if r["msg"] == "GetDataKey request"}
    refused = {r["data_key_id"] for r in records if r["msg"] == "GetDataKey refused: shutting down"}
    assert all(codes[i] == grpc.StatusCode.OK for i in started)  # every accepted call finished
    assert all(codes[i] == grpc.StatusCode.UNAVAILABLE for i in refused)
    assert started | refused == set(calls)  # gRPC itself cancelled or refused none
    assert _closed(ks)[0] == 0
