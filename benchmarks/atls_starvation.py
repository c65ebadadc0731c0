"""Benchmark: a legitimate aTLS gRPC call while loopback connections that prove nothing hold the port.

The front end (``AttestedServer``, default limits, the server attests with the dummy variant and
does not attest clients, so anyone can complete a handshake) is attacked from 127.0.0.2 with:

* ``established``: completed aTLS handshakes, then silence;
* ``stalled``: a complete ClientHello, then silence (the server answers and waits for the client);
* ``partial``: half a ClientHello;
* ``silent``: TCP connections that send nothing.

For each scenario it prints the time of a legitimate call (a new channel: TCP, aTLS handshake,
one unary call) without the attack and under it (median and worst of ``--calls``):

* ``another-address``: the attack above, fewer established connections than the 256 slots;
* ``all-slots-idle``: the attacker also holds every established slot; a slot idle for
  ``reclaim_idle_after`` (10 s) is reclaimed for the legitimate client, so the call is made after
  waiting that long;
* ``same-address``: the attacker on 127.0.0.1 like the client, per-source limit off.

Only 127.0.0.0/8 is used; every connection is closed at the end of its scenario.

    python benchmarks/atls_starvation.py [--silent 1000] [--partial 200] [--stalled 100] [--established 200]
"""

from __future__ import annotations

import argparse
import base64
import contextlib
import ipaddress
import logging
import os
import socket
import statistics
import time
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc
from OpenSSL import SSL

from starlock.atls import AdmissionLimits, AtlsConnection, ClientConfig, DummyIssuer, DummyValidator, ServerConfig
from starlock.atls.rpc import AttestedServer, attested_channel
from starlock.joinproto import keyservice_pb2, keyservice_pb2_grpc


class KeyService(keyservice_pb2_grpc.APIServicer):
    def GetDataKey(self, request: Any, context: grpc.ServicerContext) -> Any:
        return keyservice_pb2.GetDataKeyResponse(data_key=b"k" * request.length)


def _client_hello() -> bytes:
    conn = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
    conn.set_tlsext_host_name(base64.b64encode(os.urandom(32)))
    conn.set_connect_state()
    with contextlib.suppress(SSL.WantReadError):
        conn.do_handshake()
    return conn.bio_read(65536)


class Attack:
    def __init__(self, port: int, source: str) -> None:
        if not ipaddress.ip_address(source).is_loopback:
            raise SystemExit("this benchmark attacks loopback only")
        self.port, self.source = port, source
        self.sockets: list[socket.socket] = []
        self.connections: list[AtlsConnection] = []

    def _connect(self) -> socket.socket:
        sock = socket.create_connection(("127.0.0.1", self.port), timeout=15, source_address=(self.source, 0))
        self.sockets.append(sock)
        return sock

    def open(self, established: int, stalled: int, partial: int, silent: int) -> float:
        start = time.monotonic()
        client = ClientConfig(handshake_timeout=15)
        for _ in range(established):
            self.connections.append(client.wrap(self._connect(), timeout=15))
        hello = _client_hello()
        for _ in range(stalled):
            self._connect().sendall(hello)
        for _ in range(partial):
            self._connect().sendall(hello[: len(hello) // 2])
        for _ in range(silent):
            self._connect()
        return time.monotonic() - start

    def close(self) -> None:
        for sock in self.sockets:
            sock.close()


def legit_call(port: int, validator: DummyValidator) -> float:
    start = time.monotonic()
    with attested_channel(f"127.0.0.1:{port}", ClientConfig(validators=[validator])) as channel:
        reply = keyservice_pb2_grpc.APIStub(channel).GetDataKey(
            keyservice_pb2.GetDataKeyRequest(data_key_id="disk", length=32), timeout=30
        )
    assert reply.data_key == b"k" * 32
    return time.monotonic() - start


def _calls(port: int, validator: DummyValidator, count: int) -> list[float]:
    times = []
    for _ in range(count):
        try:
            times.append(legit_call(port, validator))
        except grpc.RpcError as exc:
            print(f"  legitimate call FAILED: {exc.code()}")
            times.append(float("inf"))
    return times


def _ms(times: list[float]) -> str:
    return f"median {statistics.median(times) * 1000:7.1f} ms, worst {max(times) * 1000:7.1f} ms"


def scenario(name: str, args: argparse.Namespace, *, source: str, established: int, wait: float, **kw: Any) -> None:
    issuer, validator = DummyIssuer(insecure=True), DummyValidator(insecure=True)
    server = grpc.server(ThreadPoolExecutor(max_workers=8))
    keyservice_pb2_grpc.add_APIServicer_to_server(KeyService(), server)
    front = AttestedServer(server, ServerConfig(issuer), "127.0.0.1:0", **kw).start()
    attack = Attack(front.port, source)
    try:
        baseline = _calls(front.port, validator, args.calls)
        opened = attack.open(established, args.stalled, args.partial, args.silent)
        time.sleep(wait)
        attacked = _calls(front.port, validator, args.calls)
        budget, acceptor = front._relay.budget, front._relay.acceptor
        print(
            f"{name}: {len(attack.sockets)} attacking connections from {source} opened in {opened:.1f} s "
            f"({established} established, {args.stalled} stalled, {args.partial} partial, {args.silent} silent)\n"
            f"  server: {budget.established_count} established, {budget.handshakes} handshakes, "
            f"{acceptor.waiting} waiting\n"
            f"  legitimate call without attack: {_ms(baseline)}\n"
            f"  legitimate call under attack:   {_ms(attacked)} (made {wait:.0f} s after the attack opened)"
        )
    finally:
        attack.close()
        front.stop(grace=1)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--silent", type=int, default=1000)
    parser.add_argument("--partial", type=int, default=200)
    parser.add_argument("--stalled", type=int, default=100)
    parser.add_argument("--established", type=int, default=200)
    parser.add_argument("--calls", type=int, default=5)
    args = parser.parse_args()
    logging.basicConfig(level=logging.ERROR)  # the dummy and per-connection warnings are expected here
    defaults = AdmissionLimits()
    scenario("another-address", args, source="127.0.0.2", established=args.established, wait=0)
    scenario("all-slots-idle", args, source="127.0.0.2", established=256, wait=defaults.reclaim_idle_after or 0)
    same = AdmissionLimits(max_handshakes_per_source=None)
    scenario("same-address", args, source="127.0.0.1", established=args.established, wait=0, limits=same)


if __name__ == "__main__":
    main()
