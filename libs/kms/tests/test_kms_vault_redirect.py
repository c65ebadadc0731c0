"""The Vault client never follows a redirect: the token and data keys stay with the configured server.

Two real HTTP servers on loopback: one answers every request with a 3xx pointing at the other,
which records whatever reaches it. The second one must receive nothing.
"""

from __future__ import annotations

import base64
import http.server
import json
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from starlock.kms.interface import KmsError, KmsUnavailable
from starlock.kms.vault import WrappedKeyError, open_vault_kms, parse_vault_uri
from starlock.kms.vault._client import VaultClient

TOKEN = "s.redirect-test-token-0123456789"
PLAINTEXT = bytes(range(100, 132))


class _Server:
    def __init__(self, handler: type[http.server.BaseHTTPRequestHandler]) -> None:
        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self.httpd.daemon_threads = True
        self.received: list[tuple[str, str, dict[str, str], bytes]] = []
        self.httpd.received = self.received  # type: ignore[attr-defined]  # read by the handler
        self.thread = threading.Thread(target=self.httpd.serve_forever, args=(0.05,), daemon=True)
        self.thread.start()

    @property
    def origin(self) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(5)


class _Recorder(http.server.BaseHTTPRequestHandler):
    """Records every request (method, path, headers, body) and answers like a happy Vault."""

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        self.server.received.append((self.command, self.path, dict(self.headers), body))  # type: ignore[attr-defined]
        answer = json.dumps({"data": {"ciphertext": "vault:v1:AAAA", "plaintext": "AAAA", "data": {}}}).encode()
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(answer)))
        self.end_headers()
        self.wfile.write(answer)

    do_GET = do_POST = do_PUT = _handle

    def log_message(self, format: str, *args: object) -> None:
        pass


def _redirector(status: int, target: str) -> type[http.server.BaseHTTPRequestHandler]:
    class Redirector(http.server.BaseHTTPRequestHandler):
        def _handle(self) -> None:
            self.rfile.read(int(self.headers.get("Content-Length") or 0))
            self.send_response(status)
            self.send_header("Location", target + self.path)
            self.send_header("Content-Length", "0")
            self.end_headers()

        do_GET = do_POST = do_PUT = _handle

        def log_message(self, format: str, *args: object) -> None:
            pass

    return Redirector


@pytest.fixture
def recorder() -> Iterator[_Server]:
    server = _Server(_Recorder)
    yield server
    server.close()


@pytest.fixture
def redirect_to(recorder: _Server) -> Iterator[Callable[[int], _Server]]:
    started: list[_Server] = []

    def start(status: int) -> _Server:
        server = _Server(_redirector(status, recorder.origin))
        started.append(server)
        return server

    yield start
    for server in started:
        server.close()


OPERATIONS: dict[str, Callable[[VaultClient], object]] = {
    "transit encrypt": lambda c: c.transit_encrypt(PLAINTEXT, b"aad"),
    "transit decrypt": lambda c: c.transit_decrypt("vault:v1:AAAA", b"aad"),
    "kv read": lambda c: c.kv_read("starlock/dek/key-a"),
    "kv create": lambda c: c.kv_create("starlock/dek/key-a", {"ciphertext": "vault:v1:AAAA"}),
}


@pytest.mark.parametrize("status", [301, 302, 303, 307, 308])
@pytest.mark.parametrize("operation", sorted(OPERATIONS))
def test_client_refuses_redirects(
    recorder: _Server, redirect_to: Callable[[int], _Server], operation: str, status: int
) -> None:
    redirector = redirect_to(status)
    config = parse_vault_uri(f"kms://vault?address={redirector.origin}&keyName=k&token={TOKEN}")
    client = VaultClient(config, TOKEN)
    try:
        with pytest.raises(KmsError) as info:
            OPERATIONS[operation](client)
    finally:
        client.close()
    assert type(info.value) is KmsError  # not retryable, not a "wrong key" verdict
    message = str(info.value)
    assert f"vault {operation} at {redirector.origin}" in message
    assert f"HTTP {status} redirecting to {recorder.origin}" in message
    assert "redirects are refused" in message
    assert TOKEN not in message
    assert recorder.received == [], "a redirect was followed"


def test_store_initialization_does_not_send_the_canary_elsewhere(
    tmp_path: Path, recorder: _Server, redirect_to: Callable[[int], _Server]
) -> None:
    redirector = redirect_to(307)
    kms = open_vault_kms(
        f"kms://vault?address={redirector.origin}&keyName=k&token={TOKEN}&storeDir={tmp_path / 'store'}"
    )
    with pytest.raises(KmsError, match=r"transit encrypt.*HTTP 307 redirecting to http://127\.0\.0\.1:\d+;"):
        kms.initialize_store()
    kms.close()
    assert recorder.received == []
    assert list((tmp_path / "store").iterdir()) == []  # nothing written


def test_get_dek_over_kv_store_is_refused(recorder: _Server, redirect_to: Callable[[int], _Server]) -> None:
    redirector = redirect_to(308)
    kms = open_vault_kms(f"kms://vault?address={redirector.origin}&keyName=k&token={TOKEN}")
    with pytest.raises(KmsError, match="kv read") as info:
        kms.get_dek("key-a", 32)
    kms.close()
    assert not isinstance(info.value, (KmsUnavailable, WrappedKeyError))
    assert recorder.received == []


def test_redirect_origin_hides_user_info_path_and_query() -> None:
    from starlock.kms.vault._client import _origin

    assert _origin("https://user:" + TOKEN + "@evil.example:8443/v1/x?token=" + TOKEN) == "https://evil.example:8443"
    assert _origin("http://[::1]:80/") == "http://[::1]:80"
    assert _origin("http://h:99999/") == "an unparsable Location"
    assert base64.b64encode(PLAINTEXT).decode() not in _origin("http://h/" + base64.b64encode(PLAINTEXT).decode())
