"""Benchmark: key derivation and the key service's GetDataKey throughput.

1. **Derivations/s in-process**: ``ClusterKMS.get_dek`` (32-byte DEK) vs raw HKDF-SHA256 from
   ``cryptography`` with the same inputs, in the same run.
2. **GetDataKey RPCs/s**: the real ``starlock-keyservice`` process on a Unix socket, loaded by
   concurrent client processes, vs an empty grpcio unary handler for ``/kms.API/GetDataKey``
   (same thread pool, same socket kind, same clients) in the same run. Target: >= 0.8 of the
   empty handler.
3. **GetDataKey RPCs/s with the Vault backend** (cached and first use): see the marked section
   at the end; runs only when ``starlock.kms.vault`` and a ``bao`` binary are present.

Prints numbers and ratios only; nothing here is asserted by tests.

    python benchmarks/kms.py [--seconds 3] [--clients 1] [--depth 16] [--rounds 2]
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from starlock.kms import ClusterKMS

KEY = bytes(range(32))
SALT = bytes(range(32, 64))

# An empty unary handler on the same method path, same executor size as the key service.
EMPTY_SERVER = """
import signal, sys, threading
from concurrent import futures
import grpc
from starlock.joinproto import keyservice_pb2

def handler(request, context):
    return keyservice_pb2.GetDataKeyResponse()

server = grpc.server(futures.ThreadPoolExecutor(max_workers=16), handlers=[grpc.method_handlers_generic_handler(
    "kms.API", {"GetDataKey": grpc.unary_unary_rpc_method_handler(
        handler, request_deserializer=keyservice_pb2.GetDataKeyRequest.FromString,
        response_serializer=keyservice_pb2.GetDataKeyResponse.SerializeToString)})])
server.add_insecure_port("unix:" + sys.argv[1])
stop = threading.Event()
signal.signal(signal.SIGTERM, lambda *_: stop.set())
server.start()
print("ready", flush=True)
stop.wait()
server.stop(5).wait()
"""

# A load client: keeps DEPTH calls in flight (grpc futures, one thread) until the deadline.
CLIENT = """
import sys, time
import grpc
from starlock.joinproto import keyservice_pb2, keyservice_pb2_grpc

target, seconds, depth, start_at = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
channel = grpc.insecure_channel(target)
stub = keyservice_pb2_grpc.APIStub(channel)
req = keyservice_pb2.GetDataKeyRequest(data_key_id="measurementSecret", length=32)
stub.GetDataKey(req, timeout=30)  # connect and warm up
time.sleep(max(0.0, start_at - time.time()))
deadline = time.monotonic() + seconds
n = 0
while time.monotonic() < deadline:
    batch = [stub.GetDataKey.future(req, timeout=30) for _ in range(depth)]
    for f in batch:
        f.result()
    n += depth
print(n)
"""


def _rate(fn: Callable[[], object], seconds: float) -> float:
    fn()
    count, start = 0, time.perf_counter()
    while (elapsed := time.perf_counter() - start) < seconds:
        for _ in range(100):
            fn()
        count += 100
    return count / elapsed


def bench_derivation(seconds: float) -> None:
    kms = ClusterKMS(KEY, SALT)
    info = b"key-measurementSecret"
    ours = _rate(lambda: kms.get_dek("key-measurementSecret", 32), seconds)
    raw = _rate(lambda: HKDF(SHA256(), 32, SALT, info).derive(KEY), seconds)
    print(f"derivation  ClusterKMS.get_dek: {ours:12,.0f}/s")
    print(f"derivation  raw HKDF (crypto):  {raw:12,.0f}/s   ratio {ours / raw:.2f}")


def _wait_line(proc: subprocess.Popen[str], needle: str, stream: str = "stdout") -> str:
    pipe = proc.stdout if stream == "stdout" else proc.stderr
    assert pipe is not None
    for line in pipe:
        if needle in line:
            return line
    raise RuntimeError(f"server exited before {needle!r} (rc={proc.poll()})")


@contextmanager
def _server(argv: list[str], needle: str, stream: str) -> Iterator[subprocess.Popen[str]]:
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        _wait_line(proc, needle, stream)
        yield proc
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(30)


def _load(target: str, seconds: float, clients: int, threads: int) -> float:
    start_at = time.time() + 1.5  # all clients connected and warmed up before the window opens
    procs = [
        subprocess.Popen(
            [sys.executable, "-c", CLIENT, target, str(seconds), str(threads), str(start_at)],
            stdout=subprocess.PIPE,
            text=True,
        )
        for _ in range(clients)
    ]
    total = sum(int(p.communicate(timeout=seconds + 60)[0].strip()) for p in procs)
    return total / seconds


def bench_rpc(seconds: float, clients: int, depth: int, rounds: int) -> None:
    """Alternate empty handler and key service ``rounds`` times; report the best of each."""
    d = Path(tempfile.mkdtemp(prefix="slbench-", dir="/tmp"))
    d.chmod(0o700)
    try:
        (d / "mastersecret").write_bytes(KEY)
        (d / "salt").write_bytes(SALT)
        empty_sock, ks_sock = d / "empty.sock", d / "ks.sock"
        ks_argv = [sys.executable, "-m", "starlock.kms.keyservice", "--unix", str(ks_sock)]
        ks_argv += ["--master-secret", str(d / "mastersecret"), "--salt", str(d / "salt")]
        empty = ours = 0.0
        for _ in range(rounds):
            with _server([sys.executable, "-c", EMPTY_SERVER, str(empty_sock)], "ready", "stdout"):
                empty = max(empty, _load(f"unix:{empty_sock}", seconds, clients, depth))
            with _server(ks_argv, "key service listening", "stderr"):
                ours = max(ours, _load(f"unix:{ks_sock}", seconds, clients, depth))
        setup = f"{clients} client procs x {depth} in flight, unix, best of {rounds}"
        print(f"GetDataKey  empty grpcio handler: {empty:10,.0f}/s  ({setup})")
        print(f"GetDataKey  starlock-keyservice:  {ours:10,.0f}/s   ratio {ours / empty:.2f} (target >= 0.80)")
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# VAULT BACKEND SECTION (hook for the lead): "GetDataKey/s with the Vault backend (cached and
# first use)". Fill in once starlock.kms.vault has landed: start `bao server -dev` on loopback
# (see libs/kms/tests/bao_server.py), start starlock-keyservice with --kms-uri kms://vault?...,
# then measure (a) first use: distinct data_key_ids (each creates and wraps a new DEK) and
# (b) cached: the same id repeatedly. Print both next to the cluster-KMS number above.
# ---------------------------------------------------------------------------------------------
def bench_vault(seconds: float, clients: int, depth: int) -> None:
    print("GetDataKey  vault backend:        not measured (hook: bench_vault in benchmarks/kms.py)")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--clients", type=int, default=1, help="client processes")
    ap.add_argument("--depth", type=int, default=16, help="calls in flight per client process")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds; best of each is reported")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {json.dumps(vars(args))}")
    bench_derivation(args.seconds)
    bench_rpc(args.seconds, args.clients, args.depth, args.rounds)
    bench_vault(args.seconds, args.clients, args.depth)


if __name__ == "__main__":
    main()
