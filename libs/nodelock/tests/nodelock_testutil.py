"""Helpers shared by the nodelock tests (a uniquely named module, so no clash with other packages)."""

from __future__ import annotations

import hashlib
import hmac
import json
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

WORKER = Path(__file__).with_name("lock_worker.py")
BANKS = ("sha1", "sha256", "sha384", "sha512")


def skip_or_fail(message: str) -> None:
    """Skip with ``message``; under CI (CI=true) a missing component fails the test instead."""
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


def single_extend(cluster_id: bytes, alg: str = "sha256") -> bytes:
    """PCR 15 of bank ``alg`` after one PCR_Event from its reset value: H(0^n ‖ H(cluster_id))."""
    size = hashlib.new(alg).digest_size
    return hashlib.new(alg, bytes(size) + hashlib.new(alg, cluster_id).digest()).digest()


def hkdf_sha256(secret: bytes, salt: bytes, info: bytes, length: int = 32) -> bytes:
    """RFC 5869 HKDF-SHA256 with the standard library (independent of the code under test)."""
    prk = hmac.new(salt, secret, hashlib.sha256).digest()
    out, block, counter = b"", b"", 1
    while len(out) < length:
        block = hmac.new(prk, block + info + bytes([counter]), hashlib.sha256).digest()
        out += block
        counter += 1
    return out[:length]


def read_pcr15(tss: Any, tcti: str, banks: tuple[str, ...] = BANKS) -> dict[str, bytes]:
    """PCR 15 of each bank, read with tpm2-pytss directly (not through starlock.nodelock)."""
    esapi = tss.ESAPI(tcti)
    try:
        _counter, _selection, digests = esapi.pcr_read("+".join(f"{bank}:15" for bank in banks))
    finally:
        esapi.close()
    return dict(zip(banks, (bytes(d) for d in digests), strict=True))


def start_worker(*args: str) -> subprocess.Popen[str]:
    """A separate Python process running lock_worker.py (see there for the protocol)."""
    return subprocess.Popen(
        [sys.executable, str(WORKER), *args],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def run_workers(workers: list[subprocess.Popen[str]], timeout: float = 60) -> list[dict[str, Any]]:
    """Wait until every worker is ready, release them together, return their JSON results."""
    for worker in workers:
        assert worker.stdout is not None
        line = worker.stdout.readline()
        if line.strip() != "ready":
            _out, err = worker.communicate(timeout=timeout)
            raise AssertionError(f"worker did not start: {line!r} {err}")
    for worker in workers:
        assert worker.stdin is not None
        worker.stdin.write("go\n")
        worker.stdin.flush()
    results = []
    for worker in workers:
        out, err = worker.communicate(timeout=timeout)
        assert worker.returncode == 0, err
        results.append(json.loads(out))
    return results
