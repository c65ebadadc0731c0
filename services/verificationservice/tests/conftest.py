"""Real parts for the verification service: a booted swtpm node, the service in-process and as a
process on loopback ports, and clients (aTLS-checking, TLS-only and plain) for both endpoints.

* ``node``: swtpm after a synthetic measured boot, its qemu-vtpm issuer and golden measurements.
* ``serve``: the service in-process (``start(parse_args(...), issuer=...)``), stopped afterwards.
* ``run_service``: ``python -m starlock.verificationservice`` as a process; its ports come from the
  ``listening grpc=N http=M health=K`` line it prints; SIGTERM (then SIGKILL) at the end.
"""

from __future__ import annotations

import base64
import json
import os
import re
import secrets
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import grpc
import pytest

from starlock.atls import ClientConfig, DummyValidator
from starlock.atls.rpc import attested_channel
from starlock.joinproto import verify_pb2, verify_pb2_grpc
from starlock.verificationservice.cli import VerificationService, parse_args, start

LOOPBACK = ["--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", "--health-listen", "127.0.0.1:0"]
DUMMY = ["--attestation-variant", "dummy", "--insecure-dummy"]


def skip_or_fail(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@dataclass
class Node:
    """A booted software-TPM node: its swtpm, qemu-vtpm issuer, event log and golden measurements."""

    tpm: Any
    issuer: Any
    event_log: Path
    measurements: dict[str, dict[str, object]]

    def validator(self) -> Any:
        from starlock.attestation import Variant, load_attestation_config, validator_for

        return validator_for(load_attestation_config({"measurements": self.measurements}, Variant.QEMU_VTPM))

    def flags(self) -> list[str]:
        return ["--attestation-variant", "qemu-vtpm", "--tcti", self.tpm.tcti, "--event-log", str(self.event_log)]


@pytest.fixture
def node(tmp_path: Path) -> Iterator[Node]:
    try:
        import tpm2_pytss  # noqa: F401

        from starlock.attestation.swtpm import SwtpmNotFound, booted_swtpm, find_swtpm

        binary = find_swtpm()
    except (ImportError, SwtpmNotFound) as exc:
        skip_or_fail(f"swtpm / tpm2-pytss not available: {exc}")
        raise
    from starlock.attestation.qemu import QemuVtpmIssuer

    with booted_swtpm(tmp_path, binary=binary) as booted:
        issuer = QemuVtpmIssuer(booted.tcti, event_log_path=booted.event_log)
        yield Node(booted.tpm, issuer, booted.event_log, booted.measurements(pcr15=None))


@pytest.fixture
def serve() -> Iterator[Callable[..., VerificationService]]:
    started: list[VerificationService] = []

    def make(*flags: str, issuer: Any = None) -> VerificationService:
        service = start(parse_args([*flags, *LOOPBACK]), issuer=issuer)
        started.append(service)
        return service

    yield make
    for service in started:
        if service.live.is_set():
            service.stop(grace=1)


# --- processes ---------------------------------------------------------------------------------


@dataclass
class Proc:
    popen: subprocess.Popen[str]
    stderr_path: Path
    ports: dict[str, int] = field(default_factory=dict)

    def logs(self) -> list[dict[str, Any]]:
        lines = self.stderr_path.read_text().splitlines()
        return [json.loads(line) for line in lines if line.startswith("{")]

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 20) -> int:
        self.popen.send_signal(sig)
        return self.popen.wait(timeout=timeout)


_LISTENING = re.compile(r"listening grpc=(\d+) http=(\d+) health=(\d+|-) transport=(\w+)")


@pytest.fixture
def run_service(tmp_path: Path) -> Iterator[Callable[..., Proc]]:
    procs: list[Proc] = []

    def run(*flags: str, wait: bool = True) -> Proc:
        errpath = tmp_path / f"stderr-{len(procs)}.log"
        popen = subprocess.Popen(
            [sys.executable, "-m", "starlock.verificationservice", *flags],
            stdout=subprocess.PIPE,
            stderr=errpath.open("w"),
            text=True,
            env={**os.environ, "PYTHONUNBUFFERED": "1"},
        )
        proc = Proc(popen, errpath)
        procs.append(proc)
        if wait:
            assert popen.stdout is not None
            line = popen.stdout.readline()  # blocks until the line or exit (EOF)
            found = _LISTENING.search(line)
            assert found, f"no listening line: {line!r}; stderr: {errpath.read_text()[-2000:]}"
            grpc_port, http_port, health_port, _ = found.groups()
            proc.ports = {"grpc": int(grpc_port), "http": int(http_port)}
            if health_port != "-":
                proc.ports["health"] = int(health_port)
        return proc

    yield run
    for proc in procs:
        if proc.popen.poll() is None:
            proc.popen.terminate()
            try:
                proc.popen.wait(timeout=15)
            except subprocess.TimeoutExpired:
                proc.popen.kill()
                proc.popen.wait()
        if proc.popen.stdout is not None:
            proc.popen.stdout.close()


# --- clients -----------------------------------------------------------------------------------


def grpc_attestation(port: int, nonce: bytes, *, validator: Any = None, plaintext: bool = False) -> bytes:
    """GetAttestation over aTLS (checking the server with ``validator``) or, with ``plaintext``, plain gRPC."""
    request = verify_pb2.GetAttestationRequest(nonce=nonce)
    if plaintext:
        with grpc.insecure_channel(f"127.0.0.1:{port}") as channel:
            reply = verify_pb2_grpc.APIStub(channel).GetAttestation(request, timeout=30)
    else:
        config = ClientConfig(validators=[validator or DummyValidator(insecure=True)])
        with attested_channel(f"127.0.0.1:{port}", config) as channel:
            reply = verify_pb2_grpc.APIStub(channel).GetAttestation(request, timeout=30)
    return bytes(reply.attestation)


@dataclass
class HttpReply:
    status: int
    headers: dict[str, str]
    body: bytes

    def json(self) -> Any:
        return json.loads(self.body)


def parse_http(raw: bytes) -> HttpReply:
    head, _, body = raw.partition(b"\r\n\r\n")
    lines = head.decode("latin-1").split("\r\n")
    headers = {k.strip().lower(): v.strip() for k, _, v in (line.partition(":") for line in lines[1:])}
    return HttpReply(int(lines[0].split()[1]), headers, body)


def _read_all(recv: Callable[[int], bytes]) -> bytes:
    chunks = []
    while chunk := recv(65536):
        chunks.append(chunk)
    return b"".join(chunks)


def http_raw(port: int, request: bytes, *, mode: str = "atls", validator: Any = None) -> HttpReply:
    """Send ``request`` as is and read until the server closes.

    ``mode``: ``atls`` (the server's aTLS certificate checked with ``validator``, dummy by default),
    ``tls`` (TLS without checking the certificate, a fresh base64 nonce as SNI), ``plain``.
    """
    if mode == "atls":
        config = ClientConfig(validators=[validator or DummyValidator(insecure=True)])
        with config.connect(f"127.0.0.1:{port}", timeout=30) as conn:
            conn.sendall(request)
            return parse_http(_read_all(conn.recv))
    sock = socket.create_connection(("127.0.0.1", port), timeout=30)
    if mode == "tls":
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
        ctx.check_hostname = False
        ctx.verify_mode = ssl.CERT_NONE
        sni = base64.b64encode(secrets.token_bytes(32)).decode()
        sock = ctx.wrap_socket(sock, server_hostname=sni)
    with sock:
        sock.sendall(request)
        return parse_http(_read_all(sock.recv))


def http_get(port: int, target: str, **kwargs: Any) -> HttpReply:
    return http_raw(port, f"GET {target} HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\r\n".encode(), **kwargs)


def b64url(data: bytes, *, padded: bool = True) -> str:
    text = base64.urlsafe_b64encode(data).decode()
    return text if padded else text.rstrip("=")


def document_from_http(reply: HttpReply) -> bytes:
    assert reply.status == 200, reply.body
    assert reply.headers["content-type"] == "application/json"
    body = reply.json()
    assert list(body) == ["data"]
    return base64.b64decode(body["data"], validate=True)


def wait_closed(port: int, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
        except OSError:
            return
        time.sleep(0.1)
    raise AssertionError(f"port {port} still accepts connections")
