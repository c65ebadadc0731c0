"""Both endpoints in-process on loopback, with a qemu-vtpm issuer on swtpm and the dummy issuer.

Every document is checked with the real qemu-vtpm validator (golden measurements of the node's
synthetic boot) for the request's nonce and user data b"VerifyService".
"""

from __future__ import annotations

import contextlib
import secrets
import socket
import threading
import time
import urllib.request
from collections.abc import Callable
from typing import Any

import grpc
import pytest
from conftest import (
    DUMMY,
    Node,
    b64url,
    document_from_http,
    grpc_attestation,
    http_get,
    http_raw,
    wait_closed,
)

from starlock.atls import DummyIssuer
from starlock.attestation import AttestationError, Variant
from starlock.verificationservice.cli import VerificationService, parse_args

Serve = Callable[..., VerificationService]


def _check(node: Node, document: bytes, nonce: bytes) -> None:
    result = node.validator().validate(document, nonce)
    assert result.user_data == b"VerifyService"
    with pytest.raises(AttestationError):
        node.validator().validate(document, secrets.token_bytes(32))


def test_grpc_over_atls_qemu_vtpm(node: Node, serve: Serve) -> None:
    service = serve(*node.flags())
    assert service.atls
    nonce = secrets.token_bytes(32)
    # the channel checks the server's aTLS certificate with the same validator
    document = grpc_attestation(service.grpc_port, nonce, validator=node.validator())
    _check(node, document, nonce)


def test_http_over_atls_qemu_vtpm(node: Node, serve: Serve) -> None:
    service = serve(*node.flags())
    nonce = secrets.token_bytes(48)
    for padded in (True, False):
        reply = http_get(
            service.http_port, f"/any/path?nonce={b64url(nonce, padded=padded)}", validator=node.validator()
        )
        _check(node, document_from_http(reply), nonce)


def test_http_tls_client_without_atls_check(node: Node, serve: Serve) -> None:
    """A client that does not check aTLS still connects (TLS, any nonce as SNI) and checks the document."""
    service = serve(*node.flags())
    nonce = secrets.token_bytes(16)
    reply = http_get(service.http_port, f"/?nonce={b64url(nonce)}", mode="tls")
    _check(node, document_from_http(reply), nonce)


def test_dummy_issuer_both_endpoints(serve: Serve) -> None:
    service = serve(*DUMMY)
    nonce = secrets.token_bytes(8)
    assert grpc_attestation(service.grpc_port, nonce) == DummyIssuer(insecure=True).issue(b"VerifyService", nonce)
    reply = http_get(service.http_port, f"/?nonce={b64url(nonce)}")
    assert document_from_http(reply) == DummyIssuer(insecure=True).issue(b"VerifyService", nonce)


@pytest.mark.parametrize("nonce", [b"", b"x" * 65, b"x" * 1000])
def test_grpc_bad_nonce_invalid_argument(serve: Serve, nonce: bytes) -> None:
    service = serve(*DUMMY)
    with pytest.raises(grpc.RpcError) as caught:
        grpc_attestation(service.grpc_port, nonce)
    assert caught.value.code() is grpc.StatusCode.INVALID_ARGUMENT
    assert "nonce" in caught.value.details()


@pytest.mark.parametrize(
    ("target", "error"),
    [
        ("/", "missing"),
        ("/?nonce=aGk&nonce=aGk", "2 times"),
        ("/?nonce=", "empty"),
        ("/?nonce=a+b/c", "base64"),
        ("/?nonce=aGk==", "padding"),
        ("/?nonce=" + b64url(b"x" * 65), "limit"),
    ],
)
def test_http_bad_nonce_400(serve: Serve, target: str, error: str) -> None:
    service = serve(*DUMMY)
    reply = http_get(service.http_port, target)
    assert reply.status == 400
    assert reply.headers["content-type"] == "application/json"
    assert error in reply.json()["error"]


def test_http_only_get_and_bounded_head(serve: Serve) -> None:
    port = serve(*DUMMY).http_port
    reply = http_raw(port, b"POST /?nonce=aGk HTTP/1.1\r\nHost: n\r\nContent-Length: 2\r\n\r\n{}")
    assert (reply.status, reply.headers["allow"]) == (405, "GET")
    assert "use GET" in reply.json()["error"]
    assert http_raw(port, b"HEAD /?nonce=aGk HTTP/1.1\r\nHost: n\r\n\r\n").status == 405
    assert http_raw(port, b"GET /?nonce=aGk HTTP/1.1\r\nHost: n\r\nContent-Length: 3\r\n\r\nabc").status == 400
    assert http_get(port, "/" + "a" * 5000 + "?nonce=aGk").status == 414
    big = b"".join(b"X-Pad-%d: %s\r\n" % (i, b"p" * 1000) for i in range(20))
    reply = http_raw(port, b"GET /?nonce=aGk HTTP/1.1\r\nHost: n\r\n" + big + b"\r\n")
    assert reply.status == 431
    assert reply.headers["content-type"] == "application/json"
    assert http_raw(port, b"garbage\r\n\r\n").status == 400
    assert http_raw(port, b"GET /?nonce=aGk\r\n\r\n").status == 400  # HTTP/0.9


def test_http_keep_alive_and_idle_timeout(serve: Serve) -> None:
    service = serve(*DUMMY)
    from starlock.atls import ClientConfig, DummyValidator

    with ClientConfig(validators=[DummyValidator(insecure=True)]).connect(f"127.0.0.1:{service.http_port}") as conn:
        for nonce in (b"one", b"two"):
            conn.sendall(f"GET /?nonce={b64url(nonce)} HTTP/1.1\r\nHost: n\r\n\r\n".encode())
            raw = b""
            while b'"}' not in raw:
                raw += conn.recv(65536)
            assert b"200 OK" in raw


def test_http_slow_head_is_cut(serve: Serve) -> None:
    """A client dribbling its request head loses the connection after --http-request-timeout in all."""
    service = serve(*DUMMY, "--insecure-plaintext", "--http-request-timeout", "1")
    with socket.create_connection(("127.0.0.1", service.http_port), timeout=10) as sock:
        began = time.monotonic()
        with contextlib.suppress(OSError):  # the server's reset ends the loop
            for byte in b"GET /?nonce=aGk HTTP/1.1\r\nHost: n\r\nX-Slow: " + b"s" * 20:  # 11 s at this pace
                sock.sendall(bytes([byte]))
                time.sleep(0.2)  # each byte well within the per-read timeout
        assert time.monotonic() - began < 5
    # an idle kept-alive connection is ended the same way
    with socket.create_connection(("127.0.0.1", service.http_port), timeout=10) as sock:
        began = time.monotonic()
        assert sock.recv(1024) == b""
        assert 0.9 < time.monotonic() - began < 5


def test_plain_clients_get_tls_not_http(serve: Serve) -> None:
    """Without --insecure-plaintext both ports speak only aTLS: plain HTTP and plain gRPC fail."""
    service = serve(*DUMMY)
    for port in (service.grpc_port, service.http_port):
        with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
            sock.sendall(b"GET /?nonce=aGk HTTP/1.1\r\nHost: n\r\n\r\n")
            try:
                answer = sock.recv(1024)
            except ConnectionResetError:
                answer = b""
            assert not answer.startswith(b"HTTP/"), answer
    with pytest.raises(grpc.RpcError) as caught:
        grpc_attestation(service.grpc_port, b"nonce", plaintext=True)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


def test_insecure_plaintext_serves_plain(node: Node, serve: Serve) -> None:
    service = serve(*node.flags(), "--insecure-plaintext")
    assert not service.atls
    nonce = secrets.token_bytes(32)
    _check(node, grpc_attestation(service.grpc_port, nonce, plaintext=True), nonce)
    reply = http_get(service.http_port, f"/verify?nonce={b64url(nonce)}", mode="plain")
    _check(node, document_from_http(reply), nonce)
    assert http_get(service.http_port, "/?nonce=", mode="plain").status == 400


def test_tpm_unreachable(node: Node, serve: Serve) -> None:
    plain = serve(*node.flags(), "--insecure-plaintext")
    atls = serve(*node.flags())
    node.tpm.stop()
    with pytest.raises(grpc.RpcError) as caught:
        grpc_attestation(plain.grpc_port, b"nonce", plaintext=True)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert caught.value.details() == "the TPM cannot be reached; try again later"  # no TCTI, no cause
    reply = http_get(plain.http_port, "/?nonce=aGk", mode="plain")
    assert (reply.status, reply.json()) == (503, {"error": "the TPM cannot be reached; try again later"})
    metrics = plain.metrics.render().decode()
    for endpoint in ("grpc", "http"):
        assert f'requests_total{{endpoint="{endpoint}",outcome="unavailable"}} 1.0' in metrics
    # over aTLS the handshake itself needs the TPM: the channel reports UNAVAILABLE too
    with pytest.raises(grpc.RpcError) as caught:
        grpc_attestation(atls.grpc_port, b"nonce", validator=node.validator())
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE


def test_issuer_failure_internal(serve: Serve) -> None:
    class Broken:
        variant = Variant.DUMMY
        calls = 0

        def issue(self, user_data: bytes, nonce: bytes) -> bytes:
            Broken.calls += 1
            if Broken.calls > 1:  # the start-up check passes; requests fail
                raise ValueError("private detail")
            return b"{}"

    service = serve(*DUMMY, "--insecure-plaintext", issuer=Broken())
    with pytest.raises(grpc.RpcError) as caught:
        grpc_attestation(service.grpc_port, b"nonce", plaintext=True)
    assert caught.value.code() is grpc.StatusCode.INTERNAL
    assert "private" not in caught.value.details()
    assert http_get(service.http_port, "/?nonce=aGk", mode="plain").status == 500


class BlockingIssuer:
    """The dummy issuer, held at ``issue`` until released once armed (the aTLS certificates pass)."""

    def __init__(self) -> None:
        self.inner = DummyIssuer(insecure=True)
        self.entered = threading.Event()
        self.release = threading.Event()
        self.armed = False

    @property
    def variant(self) -> Variant:
        return self.inner.variant

    def issue(self, user_data: bytes, nonce: bytes) -> bytes:
        if self.armed and user_data == b"VerifyService":
            self.entered.set()
            self.release.wait(30)
        return self.inner.issue(user_data, nonce)


@pytest.mark.parametrize("plaintext", [False, True])
def test_graceful_stop(serve: Serve, plaintext: bool) -> None:
    issuer = BlockingIssuer()
    flags = [*DUMMY, *(["--insecure-plaintext"] if plaintext else [])]
    service = serve(*flags, issuer=issuer)
    issuer.armed = True
    mode = "plain" if plaintext else "atls"
    results: dict[str, Any] = {}
    in_flight = [
        threading.Thread(
            target=lambda: results.update(grpc=grpc_attestation(service.grpc_port, b"g", plaintext=plaintext))
        ),
        threading.Thread(target=lambda: results.update(http=http_get(service.http_port, "/?nonce=aA", mode=mode))),
    ]
    for thread in in_flight:
        thread.start()
    deadline = time.monotonic() + 20
    while service.attester.gate.in_flight < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert service.attester.gate.in_flight == 2
    stopped: dict[str, bool] = {}
    stopper = threading.Thread(target=lambda: stopped.update(drained=service.stop(grace=20)))
    stopper.start()
    while service.ready.is_set():
        time.sleep(0.01)
    # draining: new requests are refused, the listeners are still up
    with pytest.raises(grpc.RpcError) as caught:
        grpc_attestation(service.grpc_port, b"late", plaintext=plaintext)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert "shutting down" in caught.value.details()
    assert http_get(service.http_port, "/?nonce=aA", mode=mode).status == 503
    issuer.release.set()
    for thread in (*in_flight, stopper):
        thread.join(30)
    assert stopped == {"drained": True}
    assert results["grpc"] == issuer.inner.issue(b"VerifyService", b"g")
    assert document_from_http(results["http"]) == issuer.inner.issue(b"VerifyService", b"h")
    assert not service.live.is_set()
    for port in (service.grpc_port, service.http_port):
        wait_closed(port)


def test_stop_grace_is_bounded(serve: Serve) -> None:
    issuer = BlockingIssuer()
    service = serve(*DUMMY, "--insecure-plaintext", issuer=issuer)
    issuer.armed = True

    def fetch() -> None:
        with contextlib.suppress(Exception):  # the connection is cut when the grace runs out
            http_get(service.http_port, "/?nonce=aA", mode="plain")

    thread = threading.Thread(target=fetch, daemon=True)
    thread.start()
    assert issuer.entered.wait(10)
    began = time.monotonic()
    assert service.stop(grace=0.5) is False
    assert time.monotonic() - began < 5
    issuer.release.set()
    thread.join(10)


def test_health_ready_metrics(serve: Serve) -> None:
    service = serve(*DUMMY)
    assert service.health_port is not None
    base = f"http://127.0.0.1:{service.health_port}"

    def get(path: str) -> tuple[int, str]:
        try:
            with urllib.request.urlopen(base + path, timeout=10) as reply:
                return reply.status, reply.read().decode()
        except urllib.error.HTTPError as exc:
            return exc.code, exc.read().decode()

    assert get("/healthz") == (200, "ok\n")
    assert get("/readyz") == (200, "ok\n")
    grpc_attestation(service.grpc_port, b"nonce")
    http_get(service.http_port, "/?nonce=aGk")
    http_get(service.http_port, "/?nonce=")
    _, metrics = get("/metrics")
    assert 'starlock_verificationservice_requests_total{endpoint="grpc",outcome="ok"} 1.0' in metrics
    assert 'starlock_verificationservice_requests_total{endpoint="http",outcome="ok"} 1.0' in metrics
    assert 'starlock_verificationservice_requests_total{endpoint="http",outcome="invalid_argument"} 1.0' in metrics
    assert 'starlock_verificationservice_request_duration_seconds_count{endpoint="http"} 2.0' in metrics
    service.ready.clear()  # what stop() does first
    assert get("/readyz") == (503, "not ready\n")
    service.ready.set()


def test_defaults() -> None:
    args = parse_args(["--attestation-variant", "qemu-vtpm"])
    assert (args.grpc_listen, args.http_listen, args.health_listen) == (
        "0.0.0.0:9090",
        "0.0.0.0:8080",
        "127.0.0.1:9091",
    )
    assert (args.insecure_plaintext, args.tcti, args.shutdown_grace) == (False, "device:/dev/tpmrm0", 10.0)
