"""The aTLS tunnel: in-process endpoints and the ``starlock-atls tunnel`` command (SIGTERM, loopback only)."""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import sys
import threading
from collections.abc import Iterator
from typing import Any

import pytest
from atls_helpers import Pair

from starlock.atls import (
    AdmissionLimits,
    AtlsConfigError,
    ClientConfig,
    HandshakeError,
    IssuerUnavailable,
    ServerConfig,
)
from starlock.atls.tunnel import start_tunnel_client, start_tunnel_server
from starlock.attestation.tpm_device import TpmError
from starlock.attestation.variant import Variant


@pytest.fixture
def echo_port() -> Iterator[int]:
    """A plain TCP service that answers each message in upper case and half-closes on EOF."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def serve(conn: socket.socket) -> None:
        with conn:
            while data := conn.recv(65536):
                conn.sendall(data.upper())

    def accept() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=serve, args=(conn,), daemon=True).start()

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    listener.close()


def _roundtrip(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)  # half-close travels through the tunnel
        chunks = []
        try:
            while chunk := sock.recv(65536):
                chunks.append(chunk)
        except ConnectionResetError:  # a refused connection is closed with our bytes unread
            pass
    return b"".join(chunks)


def test_tunnel_in_process(echo_port: int, dummy_pair: Pair) -> None:
    server = start_tunnel_server(
        "127.0.0.1:0", f"127.0.0.1:{echo_port}", ServerConfig(dummy_pair.issuer, [dummy_pair.validator])
    )
    client = start_tunnel_client(
        "127.0.0.1:0", f"127.0.0.1:{server.port}", ClientConfig(dummy_pair.issuer, [dummy_pair.validator])
    )
    try:
        payload = os.urandom(300_000).hex().encode()
        assert _roundtrip(client.port, payload) == payload.upper()
        assert _roundtrip(client.port, b"again") == b"AGAIN"
    finally:
        client.stop()
        server.stop()


def test_tunnel_refuses_unattested_peer(echo_port: int, dummy_pair: Pair) -> None:
    server = start_tunnel_server("127.0.0.1:0", f"127.0.0.1:{echo_port}", ServerConfig())
    client = start_tunnel_client(
        "127.0.0.1:0", f"127.0.0.1:{server.port}", ClientConfig(validators=[dummy_pair.validator])
    )
    try:
        assert _roundtrip(client.port, b"hello") == b""
        assert "got extension OIDs []" in str(client.last_error)
    finally:
        client.stop()
        server.stop()


def test_tunnel_client_listens_on_loopback_only(dummy_pair: Pair) -> None:
    with pytest.raises(AtlsConfigError, match="loopback only"):
        start_tunnel_client("0.0.0.0:0", "127.0.0.1:1", ClientConfig())


def test_idle_timeout_and_connection_bound(echo_port: int, dummy_pair: Pair) -> None:
    """One established connection at a time: a second one waits for the slot (its ClientHello is in)
    and gets it when the first is closed after 0.5 s without traffic."""
    server = start_tunnel_server(
        "127.0.0.1:0", f"127.0.0.1:{echo_port}", ServerConfig(dummy_pair.issuer), max_connections=1, idle_timeout=0.5
    )
    client = start_tunnel_client(
        "127.0.0.1:0", f"127.0.0.1:{server.port}", ClientConfig(validators=[dummy_pair.validator])
    )
    try:
        first = socket.create_connection(("127.0.0.1", client.port), timeout=10)
        first.sendall(b"a")
        assert first.recv(10) == b"A"
        assert _roundtrip(client.port, b"second") == b"SECOND"  # served once the idle first one was closed
        assert first.recv(10) == b""  # closed after 0.5 s without traffic
        first.close()
        assert _roundtrip(client.port, b"third") == b"THIRD"
    finally:
        client.stop()
        server.stop()


def test_a_connection_waiting_for_a_slot_is_closed_after_the_admission_timeout(
    echo_port: int, dummy_pair: Pair
) -> None:
    limits = AdmissionLimits(admission_timeout=1.0, reclaim_idle_after=None)
    server = start_tunnel_server(
        "127.0.0.1:0",
        f"127.0.0.1:{echo_port}",
        ServerConfig(dummy_pair.issuer),
        max_connections=1,
        idle_timeout=None,
        limits=limits,
    )
    client = start_tunnel_client(
        "127.0.0.1:0", f"127.0.0.1:{server.port}", ClientConfig(validators=[dummy_pair.validator])
    )
    try:
        first = socket.create_connection(("127.0.0.1", client.port), timeout=10)
        first.sendall(b"a")
        assert first.recv(10) == b"A"
        assert _roundtrip(client.port, b"second") == b""  # no slot within 1 s: closed before its handshake
        assert isinstance(client.last_error, HandshakeError)
        first.sendall(b"b")
        assert first.recv(10) == b"B"  # the first one was never disturbed
        first.close()
    finally:
        client.stop()
        server.stop()


def _cli(*args: str) -> subprocess.Popen[str]:
    return subprocess.Popen(
        [sys.executable, "-m", "starlock.atls.cli", "-v", "2", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _port(proc: subprocess.Popen[str]) -> int:
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert line.startswith("listening on port "), line + (proc.stderr.read() if proc.stderr else "")
    return int(line.split()[-1])


def test_cli_tunnel_and_sigterm(echo_port: int) -> None:
    dummy = ("--insecure-dummy",)
    server = _cli("tunnel", "server", "--listen", "127.0.0.1:0", "--forward", f"127.0.0.1:{echo_port}",
                  "--issuer", "dummy", *dummy)  # fmt: skip
    try:
        server_port = _port(server)
        client = _cli("tunnel", "client", "--listen", "127.0.0.1:0", "--connect", f"127.0.0.1:{server_port}",
                      "--validate", "dummy", *dummy)  # fmt: skip
        try:
            assert _roundtrip(_port(client), b"through the cli") == b"THROUGH THE CLI"
        finally:
            client.send_signal(signal.SIGTERM)
            assert client.wait(10) == 0
    finally:
        server.send_signal(signal.SIGTERM)
        assert server.wait(10) == 0
    assert server.stderr is not None
    logs = server.stderr.read()
    assert "dummy attestation enabled" in logs and "accepted connection" in logs


def test_cli_refuses_dummy_without_opt_in(tmp_path: object) -> None:
    proc = _cli("tunnel", "server", "--listen", "127.0.0.1:0", "--forward", "127.0.0.1:1", "--issuer", "dummy")
    assert proc.wait(10) == 2
    assert proc.stderr is not None and "--insecure-dummy" in proc.stderr.read()


def test_cli_refuses_an_unauthenticated_tunnel() -> None:
    """Security review: a client without --validate would accept any server; a server with neither
    --issuer nor --validate attests nothing. Both need an explicit choice."""
    client = _cli("tunnel", "client", "--listen", "127.0.0.1:0", "--connect", "127.0.0.1:1")
    assert client.wait(10) == 2
    assert client.stderr is not None and "--accept-unattested-server" in client.stderr.read()
    server = _cli("tunnel", "server", "--listen", "127.0.0.1:0", "--forward", "127.0.0.1:1")
    assert server.wait(10) == 2
    assert server.stderr is not None and "attests nothing" in server.stderr.read()


def test_cli_validate_with_qemu_config(echo_port: int, qemu_pair: Pair, tmp_path: object) -> None:
    import json
    from pathlib import Path

    config = Path(str(tmp_path)) / "config.yaml"
    config.write_text(json.dumps({"attestation": {"qemuVTPM": {"measurements": qemu_pair.measurements}}}))
    server = start_tunnel_server("127.0.0.1:0", f"127.0.0.1:{echo_port}", ServerConfig(qemu_pair.issuer))
    try:
        client = _cli("tunnel", "client", "--listen", "127.0.0.1:0", "--connect", f"127.0.0.1:{server.port}",
                      "--validate", str(config))  # fmt: skip
        try:
            assert _roundtrip(_port(client), b"vtpm") == b"VTPM"
        finally:
            client.send_signal(signal.SIGTERM)
            assert client.wait(10) == 0
    finally:
        server.stop()


# --- an issuer that cannot work, failed connections ----------------------------------------------


@pytest.mark.parametrize(
    ("prelude", "tcti", "cause"),
    [
        ("pass", "swtpm:host=127.0.0.1,port=1", "cannot open the TPM with TCTI 'swtpm:host=127.0.0.1,port=1'"),
        ("sys.modules['tpm2_pytss'] = None", "device:/dev/tpmrm0", "TpmSupportMissing: TPM support needs tpm2-pytss"),
    ],
    ids=["no-tpm", "no-tpm2-pytss"],
)
def test_cli_exits_when_the_issuer_cannot_attest(prelude: str, tcti: str, cause: str) -> None:
    """Security review: the tunnel server started "healthy" without a working TPM and then failed
    every connection at INFO. The issuer now attests once at start: exit 1, one line."""
    args = ["tunnel", "server", "--listen", "127.0.0.1:0", "--forward", "127.0.0.1:1", "--issuer", "qemu-vtpm",
            "--tcti", tcti]  # fmt: skip
    code = f"import sys; {prelude}; from starlock.atls.cli import main; sys.exit(main({args!r}))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, check=False)
    assert proc.returncode == 1, proc.stderr
    assert "listening" not in proc.stdout
    errors = [line for line in proc.stderr.splitlines() if "error" in line.lower()]
    assert len(errors) == 1, proc.stderr
    assert errors[0].startswith("starlock-atls: error: the qemu-vtpm issuer cannot attest: ") and cause in errors[0]


class _BrokenIssuer:
    variant = Variant.QEMU_VTPM

    def issue(self, user_data: bytes, nonce: bytes) -> bytes:
        raise TpmError("cannot open the TPM with TCTI 'device:/dev/tpmrm0': tcti:IO failure\n(second line)")


def test_start_refuses_an_issuer_that_cannot_attest(echo_port: int) -> None:
    with pytest.raises(IssuerUnavailable, match=r"^the qemu-vtpm issuer cannot attest: TpmError: .* \(second line\)$"):
        start_tunnel_server("127.0.0.1:0", f"127.0.0.1:{echo_port}", ServerConfig(_BrokenIssuer()))


def test_failed_connections_are_logged_at_warning(
    echo_port: int, dummy_pair: Pair, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="starlock.atls")
    server = start_tunnel_server(
        "127.0.0.1:0", f"127.0.0.1:{echo_port}", ServerConfig(validators=[dummy_pair.validator])
    )
    client = start_tunnel_client(
        "127.0.0.1:0",
        f"127.0.0.1:{server.port}",
        ClientConfig(),
    )
    try:
        assert _roundtrip(client.port, b"hello") == b""  # the client does not attest
    finally:
        client.stop()
        server.stop()
    (rejected,) = [r for r in caplog.records if "rejected connection" in r.getMessage()]
    assert rejected.levelno == logging.WARNING and "got extension OIDs []" in rejected.getMessage()


def test_failed_dials_are_logged_at_warning(dummy_pair: Pair, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="starlock.atls")
    server = start_tunnel_server("127.0.0.1:0", "127.0.0.1:1", ServerConfig(dummy_pair.issuer))
    client = start_tunnel_client("127.0.0.1:0", f"127.0.0.1:{server.port}", ClientConfig(validators=[_Raising()]))
    try:
        assert _roundtrip(client.port, b"hello") == b""
    finally:
        client.stop()
        server.stop()
    (failed,) = [r for r in caplog.records if "aTLS connection to" in r.getMessage()]
    assert failed.levelno == logging.WARNING and "validator backend unreachable" in failed.getMessage()


class _Raising:
    variant = Variant.DUMMY

    def validate(self, document: bytes, nonce: bytes) -> Any:
        raise RuntimeError("validator backend unreachable")
