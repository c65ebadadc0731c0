"""The aTLS tunnel: in-process endpoints and the ``starlock-atls tunnel`` command (SIGTERM, loopback only)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator

import pytest
from atls_helpers import Pair

from starlock.atls import AtlsConfigError, ClientConfig, ServerConfig
from starlock.atls.tunnel import start_tunnel_client, start_tunnel_server


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
        assert _roundtrip(client.port, b"second") == b""  # the server holds one connection at a time
        assert first.recv(10) == b""  # closed after 0.5 s without traffic
        first.close()
        time.sleep(0.3)
        assert _roundtrip(client.port, b"third") == b"THIRD"
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
