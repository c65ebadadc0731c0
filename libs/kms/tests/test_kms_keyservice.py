"""The key service on real grpcio servers: Unix socket, mutual TLS, plaintext; every status code."""

from __future__ import annotations

import os
import socket
import stat
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grpc
import pytest

from starlock.joinproto import keyservice_pb2, keyservice_pb2_grpc
from starlock.kms import (
    MAX_DEK_LENGTH,
    ClusterKMS,
    KmsConfigError,
    KmsError,
    KmsFailedPrecondition,
    KmsInvalidArgument,
    KmsPermissionDenied,
    KmsUnavailable,
)
from starlock.kms.keyservice import (
    MAX_DATA_KEY_ID_LENGTH,
    add_insecure_port,
    add_mtls_port,
    add_unix_socket,
    build_server,
)

KEY = bytes(range(32))
SALT = bytes(range(32, 64))


def _call(target: str, data_key_id: str, length: int, creds: grpc.ChannelCredentials | None = None) -> bytes:
    options = [("grpc.ssl_target_name_override", "localhost")] if creds else []
    with grpc.secure_channel(target, creds, options) if creds else grpc.insecure_channel(target) as channel:
        stub = keyservice_pb2_grpc.APIStub(channel)
        resp = stub.GetDataKey(keyservice_pb2.GetDataKeyRequest(data_key_id=data_key_id, length=length), timeout=10)
        return bytes(resp.data_key)


@pytest.fixture
def unix_service(sockdir: Path) -> Iterator[str]:
    server = build_server(ClusterKMS(KEY, SALT))
    address = add_unix_socket(server, sockdir / "ks.sock")
    server.start()
    yield address
    server.stop(None)


def test_get_data_key_over_unix_socket(unix_service: str, sockdir: Path) -> None:
    kms = ClusterKMS(KEY, SALT)
    for data_key_id, length in (("measurementSecret", 32), ("00000000-0000-0000-0000-000000000000", 32), ("v", 1)):
        assert _call(unix_service, data_key_id, length) == kms.get_dek("key-" + data_key_id, length)
    assert len(_call(unix_service, "x", MAX_DEK_LENGTH)) == MAX_DEK_LENGTH
    assert stat.S_IMODE(sockdir.stat().st_mode) == 0o700


@pytest.mark.parametrize(
    ("data_key_id", "length", "fragment"),
    [
        ("x", 0, "can't derive key with length zero"),
        ("", 32, "no data key ID specified"),
        ("", 0, "length zero"),
        ("x", MAX_DEK_LENGTH + 1, "at most 8160"),
        ("x" * (MAX_DATA_KEY_ID_LENGTH + 1), 32, "longer than"),
    ],
)
def test_invalid_argument(unix_service: str, data_key_id: str, length: int, fragment: str) -> None:
    with pytest.raises(grpc.RpcError) as e:
        _call(unix_service, data_key_id, length)
    assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
    assert fragment in e.value.details()


class _Failing:
    def __init__(self, exc: BaseException | None = None, result: bytes = b"") -> None:
        self.exc, self.result = exc, result

    def get_dek(self, dek_id: str, length: int) -> bytes:
        if self.exc is not None:
            raise self.exc
        return self.result

    def close(self) -> None:
        pass


@pytest.mark.parametrize(
    ("backend", "code", "fragment"),
    [
        (_Failing(KmsUnavailable("backend at 127.0.0.1:1 unreachable")), grpc.StatusCode.UNAVAILABLE, "unreachable"),
        (_Failing(KmsPermissionDenied("token refused")), grpc.StatusCode.INTERNAL, "token refused"),
        (_Failing(KmsInvalidArgument("bad name")), grpc.StatusCode.INVALID_ARGUMENT, "bad name"),
        (_Failing(KmsConfigError("misconfigured")), grpc.StatusCode.INTERNAL, "misconfigured"),
        (_Failing(KmsFailedPrecondition("store reset")), grpc.StatusCode.FAILED_PRECONDITION, "store reset"),
        (_Failing(KmsError("boom")), grpc.StatusCode.INTERNAL, "getting data key: boom"),
        (_Failing(RuntimeError("s3cret leaked")), grpc.StatusCode.INTERNAL, "unexpected RuntimeError"),
        (_Failing(result=b"short"), grpc.StatusCode.INTERNAL, "wrong length"),
    ],
)
def test_backend_failures_map_to_status(sockdir: Path, backend: _Failing, code: grpc.StatusCode, fragment: str) -> None:
    server = build_server(backend)
    address = add_unix_socket(server, sockdir / "f.sock")
    server.start()
    try:
        with pytest.raises(grpc.RpcError) as e:
            _call(address, "x", 32)
        assert e.value.code() == code
        assert fragment in e.value.details()
        assert "s3cret" not in e.value.details()
    finally:
        server.stop(None)


def test_backend_receives_prefixed_id(sockdir: Path) -> None:
    seen: list[tuple[str, int]] = []

    class Recorder(_Failing):
        def get_dek(self, dek_id: str, length: int) -> bytes:
            seen.append((dek_id, length))
            return b"k" * length

    server = build_server(Recorder())
    address = add_unix_socket(server, sockdir / "r.sock")
    server.start()
    try:
        _call(address, "measurementSecret", 32)
        _call(address, "Key-Case", 7)
    finally:
        server.stop(None)
    assert seen == [("key-measurementSecret", 32), ("key-Key-Case", 7)]


def test_unix_socket_refuses_shared_directory(tmp_path: Path) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    shared.chmod(0o755)
    with pytest.raises(KmsConfigError, match="chmod 0700"):
        add_unix_socket(build_server(ClusterKMS(KEY, SALT)), shared / "ks.sock")
    private = tmp_path / "private"
    private.mkdir(mode=0o700)
    (private / "ks.sock").write_text("not a socket")
    with pytest.raises(KmsConfigError, match="not a socket"):
        add_unix_socket(build_server(ClusterKMS(KEY, SALT)), private / "ks.sock")


def test_unix_socket_creates_private_directory_and_replaces_stale_socket(sockdir: Path) -> None:
    path = sockdir / "new" / "ks.sock"
    stale = socket.socket(socket.AF_UNIX)
    server = build_server(ClusterKMS(KEY, SALT))
    add_unix_socket(server, path)  # creates sockdir/new with 0700
    assert stat.S_IMODE(path.parent.stat().st_mode) == 0o700
    server.stop(None)
    path.unlink(missing_ok=True)
    stale.bind(str(path))
    stale.close()
    assert path.exists()
    server = build_server(ClusterKMS(KEY, SALT))
    address = add_unix_socket(server, path)
    server.start()
    try:
        assert len(_call(address, "x", 32)) == 32
    finally:
        server.stop(None)


@pytest.fixture
def mtls_service(pki: Any) -> Iterator[int]:
    server = build_server(ClusterKMS(KEY, SALT))
    port = add_mtls_port(
        server, "127.0.0.1", 0, cert_pem=pki.server_cert_pem, key_pem=pki.server_key_pem, ca_pem=pki.ca_pem
    )
    server.start()
    yield port
    server.stop(None)


def test_mutual_tls(mtls_service: int, pki: Any) -> None:
    good = grpc.ssl_channel_credentials(pki.ca_pem, pki.client_key_pem, pki.client_cert_pem)
    assert _call(f"127.0.0.1:{mtls_service}", "x", 32, good) == ClusterKMS(KEY, SALT).get_dek("key-x", 32)


@pytest.mark.parametrize("who", ["no client certificate", "untrusted client CA", "plaintext"])
def test_mutual_tls_refuses(mtls_service: int, pki: Any, who: str) -> None:
    creds = {
        "no client certificate": grpc.ssl_channel_credentials(pki.ca_pem),
        "untrusted client CA": grpc.ssl_channel_credentials(pki.ca_pem, pki.rogue_key_pem, pki.rogue_cert_pem),
        "plaintext": None,
    }[who]
    with pytest.raises(grpc.RpcError) as e:
        _call(f"127.0.0.1:{mtls_service}", "x", 32, creds)
    assert e.value.code() == grpc.StatusCode.UNAVAILABLE


def test_plaintext_on_loopback() -> None:
    server = build_server(ClusterKMS(KEY, SALT))
    port = add_insecure_port(server, "127.0.0.1", 0)
    server.start()
    try:
        assert len(_call(f"127.0.0.1:{port}", "x", 16)) == 16
    finally:
        server.stop(None)


def test_concurrent_calls_are_consistent(unix_service: str) -> None:
    from concurrent.futures import ThreadPoolExecutor

    expected = {f"id{i}": ClusterKMS(KEY, SALT).get_dek(f"key-id{i}", 32) for i in range(40)}
    with ThreadPoolExecutor(8) as pool:
        got = dict(zip(expected, pool.map(lambda i: _call(unix_service, i, 32), expected), strict=True))
    assert got == expected
    assert os.getpid()  # same process: nothing forked


def test_data_key_id_bound_is_in_utf8_bytes(unix_service: str) -> None:
    """An id of exactly MAX_DATA_KEY_ID_LENGTH UTF-8 bytes is served; one byte more is refused,
    counted in bytes, not characters."""
    kms = ClusterKMS(KEY, SALT)
    for longest in ("x" * MAX_DATA_KEY_ID_LENGTH, "\u00e9" * (MAX_DATA_KEY_ID_LENGTH // 2)):
        assert _call(unix_service, longest, 32) == kms.get_dek("key-" + longest, 32)
    for too_long in ("x" * (MAX_DATA_KEY_ID_LENGTH + 1), "\u00e9" * (MAX_DATA_KEY_ID_LENGTH // 2) + "x"):
        with pytest.raises(grpc.RpcError) as e:
            _call(unix_service, too_long, 32)
        assert e.value.code() == grpc.StatusCode.INVALID_ARGUMENT
        assert f"longer than {MAX_DATA_KEY_ID_LENGTH} bytes" in e.value.details()


def test_failures_the_caller_did_not_cause_are_logged_as_warnings(sockdir: Path) -> None:
    """A bad request is logged at INFO; a backend failure (INTERNAL, UNAVAILABLE,
    FAILED_PRECONDITION) at WARNING, so operators see it at the default level."""
    import logging

    from starlock.kms.keyservice._log import LOGGER_NAME

    records: list[logging.LogRecord] = []
    handler = logging.Handler()
    handler.emit = records.append  # type: ignore[method-assign]  # collect the records themselves
    logger = logging.getLogger(LOGGER_NAME)
    logger.addHandler(handler)
    old_level = logger.level
    logger.setLevel(logging.INFO)
    backend = _Failing(KmsUnavailable("backend down"))
    server = build_server(backend)
    address = add_unix_socket(server, sockdir / "l.sock")
    server.start()
    try:
        for data_key_id, length in (("x", 0), ("x", 32)):
            with pytest.raises(grpc.RpcError):
                _call(address, data_key_id, length)
    finally:
        server.stop(None)
        logger.removeHandler(handler)
        logger.setLevel(old_level)
    failed = [(r.levelno, r.fields["code"]) for r in records if r.getMessage() == "GetDataKey failed"]  # type: ignore[attr-defined]
    assert failed == [(logging.INFO, "INVALID_ARGUMENT"), (logging.WARNING, "UNAVAILABLE")]
