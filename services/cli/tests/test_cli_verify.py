"""``starlock verify`` against the real verification service on a swtpm node, and against a real
gRPC server that tampers with what the node returns."""

from __future__ import annotations

import base64
import json
import secrets
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor

import grpc
import pytest
from conftest import Booted, free_port, starlock

from starlock.joinproto import verify_pb2, verify_pb2_grpc


@pytest.fixture
def service(booted: Booted) -> Iterator[int]:
    """The real verification service on the node (aTLS, the node's issuer); its gRPC port."""
    port = free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "starlock.verificationservice", "--attestation-variant", "qemu-vtpm",
         "--tcti", booted.tpm.tcti, "--event-log", str(booted.event_log), "--grpc-listen", f"127.0.0.1:{port}",
         "--http-listen", "127.0.0.1:0", "--health-listen", ""],
        stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True,
    )  # fmt: skip
    assert proc.stdout is not None
    line = proc.stdout.readline()
    assert "listening" in line, line
    yield port
    proc.terminate()
    proc.wait(30)


def _verify(booted: Booted, endpoint: str, *extra: str, config: str | None = None) -> subprocess.CompletedProcess[str]:
    return starlock(
        "verify", "--endpoint", endpoint, "--config", config or str(booted.config), "--variant", "qemu-vtpm", *extra,
        timeout=120,
    )  # fmt: skip


def _mark(booted: Booted) -> bytes:
    from starlock.nodelock import mark_node_as_bootstrapped

    cluster_id = secrets.token_bytes(32)
    mark_node_as_bootstrapped(cluster_id, booted.tpm.tcti)
    return cluster_id


def test_verify_a_fresh_node_then_a_marked_one(booted: Booted, service: int) -> None:
    done = _verify(booted, f"127.0.0.1:{service}")
    assert done.returncode == 0, done.stderr
    assert "Result:  VERIFIED" in done.stdout and "user data        OK" in done.stdout

    cluster_id = _mark(booted)
    # the operator's config expects PCR 15 = 0: the marked node is refused (already in aTLS)
    done = _verify(booted, f"127.0.0.1:{service}")
    assert done.returncode == 1 and "index 15" in done.stderr
    # with this cluster's ID, PCR 15 must hold its mark: accepted
    done = _verify(booted, f"127.0.0.1:{service}", "--cluster-id", cluster_id.hex(), "--json")
    assert done.returncode == 0, done.stderr
    report = json.loads(done.stdout)
    assert report["ok"] is True and report["error"] is None
    assert {"name": "user data", "status": "ok", "detail": "VerifyService"} in report["checks"]
    # another cluster's ID: refused
    other = bytes(b ^ 1 for b in cluster_id)
    done = _verify(booted, f"127.0.0.1:{service}", "--cluster-id", other.hex())
    assert done.returncode == 1 and "index 15" in done.stderr
    for bad, message in (("zz", "must be hex"), ("ab" * 31, "32 bytes"), ("", "32 bytes")):
        done = _verify(booted, f"127.0.0.1:{service}", "--cluster-id", bad)
        assert done.returncode == 2 and message in done.stderr


@pytest.fixture
def tamper(booted: Booted, service: int) -> Iterator[Callable[[Callable[[bytes, bytes], bytes]], int]]:
    """A real plain gRPC server answering GetAttestation with what ``change(document, nonce)``
    makes of the real node's answer; returns its port."""
    from starlock.atls import ClientConfig
    from starlock.atls.rpc import attested_channel
    from starlock.attestation.config import load_attestation_config
    from starlock.attestation.validators import validator_for
    from starlock.attestation.variant import Variant

    validator = validator_for(load_attestation_config(booted.config.read_bytes(), Variant.QEMU_VTPM))
    servers: list[grpc.Server] = []

    def start(change: Callable[[bytes, bytes], bytes]) -> int:
        class Relay(verify_pb2_grpc.APIServicer):
            def GetAttestation(self, request: verify_pb2.GetAttestationRequest, context: object) -> object:
                with attested_channel(f"127.0.0.1:{service}", ClientConfig(validators=[validator])) as channel:
                    real = verify_pb2_grpc.APIStub(channel).GetAttestation(request, timeout=60)
                return verify_pb2.GetAttestationResponse(attestation=change(bytes(real.attestation), request.nonce))

        server = grpc.server(ThreadPoolExecutor(max_workers=2))
        verify_pb2_grpc.add_APIServicer_to_server(Relay(), server)
        port = server.add_insecure_port("127.0.0.1:0")
        server.start()
        servers.append(server)
        return port

    yield start
    for server in servers:
        server.stop(1)


def _flip_quote_byte(document: bytes, _nonce: bytes) -> bytes:
    """The last byte of every quote's TPMS_ATTEST (the validator checks the SHA-512 and SHA-256 ones)."""
    doc = json.loads(document)
    for quote in doc["Attestation"]["quotes"]:
        raw = bytearray(base64.b64decode(quote["quote"]))
        raw[-1] ^= 1
        quote["quote"] = base64.b64encode(bytes(raw)).decode()
    return json.dumps(doc).encode()


def _other_user_data(booted: Booted) -> Callable[[bytes, bytes], bytes]:
    from starlock.attestation.qemu import QemuVtpmIssuer

    issuer = QemuVtpmIssuer(booted.tpm.tcti, event_log_path=booted.event_log)
    return lambda _doc, nonce: issuer.issue(b"SomethingElse", nonce)


def _replayed(booted: Booted, service: int) -> Callable[[bytes, bytes], bytes]:
    """An old answer: a genuine document, for a nonce fetched earlier."""
    from starlock.attestation.qemu import QemuVtpmIssuer

    stale = QemuVtpmIssuer(booted.tpm.tcti, event_log_path=booted.event_log).issue(b"VerifyService", b"n" * 32)
    return lambda _doc, _nonce: stale


@pytest.mark.parametrize("kind", ["flipped quote byte", "other user data", "replayed document", "truncated", "empty"])
def test_tampered_documents_are_refused(
    booted: Booted, service: int, tamper: Callable[[Callable[[bytes, bytes], bytes]], int], kind: str
) -> None:
    change = {
        "flipped quote byte": _flip_quote_byte,
        "other user data": _other_user_data(booted),
        "replayed document": _replayed(booted, service),
        "truncated": lambda doc, _n: doc[: len(doc) // 2],
        "empty": lambda _doc, _n: b"",
    }[kind]
    port = tamper(change)
    started = time.monotonic()
    done = _verify(booted, f"127.0.0.1:{port}", "--insecure-plaintext", "--json")
    assert done.returncode == 1, (kind, done.stdout, done.stderr)
    report = json.loads(done.stdout)
    assert report["ok"] is False and report["error"], report
    assert time.monotonic() - started < 60


def test_the_untampered_relay_is_accepted(
    booted: Booted, service: int, tamper: Callable[[Callable[[bytes, bytes], bytes]], int]
) -> None:
    """The control for the test above: the same relay passing the document through unchanged."""
    port = tamper(lambda doc, _n: doc)
    done = _verify(booted, f"127.0.0.1:{port}", "--insecure-plaintext")
    assert done.returncode == 0, done.stderr


def test_unreachable_endpoint_is_exit_2(booted: Booted) -> None:
    done = _verify(booted, f"127.0.0.1:{free_port()}", "--timeout", "5")
    assert done.returncode == 2 and "GetAttestation" in done.stderr and "Traceback" not in done.stderr
