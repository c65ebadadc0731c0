"""``starlock-verificationservice``: the node's attestation over gRPC and HTTP, drained on SIGTERM.

Both endpoints are served over aTLS with the node's issuer by default (Starlock deviation; upstream
serves them plain, which ``--insecure-plaintext`` restores). Fatal start-up errors are one JSON
log line and exit status 1; bad usage exits 2.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import os
import secrets
import threading
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import grpc

from starlock.atls import AtlsConfigError, ServerConfig
from starlock.atls.rpc import AttestedServer
from starlock.atls.signals import stop_on_signals
from starlock.atls.tunnel import start_tunnel_server
from starlock.attestation import AttestationError, Issuer, Variant
from starlock.joinproto import verify_pb2_grpc
from starlock.verificationservice._gate import Gate
from starlock.verificationservice._log import configure_logging
from starlock.verificationservice._net import split_listen
from starlock.verificationservice.core import VerificationServiceError, attest, describe_cause
from starlock.verificationservice.httpserver import HttpEndpoint
from starlock.verificationservice.metrics import HealthServer, Metrics
from starlock.verificationservice.server import Attester, VerifyServicer

__all__ = ["StartupError", "VerificationService", "main", "parse_args", "start"]

_log = logging.getLogger("starlock.verificationservice")

#: Upstream's ``keepalive.ServerParameters{Time: 15 * time.Second}``.
KEEPALIVE_MS = 15_000
#: A GetAttestationRequest with a 64-byte nonce is 66 bytes; anything much larger is refused by grpcio.
MAX_GRPC_MESSAGE = 4096


class StartupError(Exception):
    """A fatal start-up error; the message is one line for the log."""


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="starlock-verificationservice",
        description="Constellation-compatible verification service: this node's attestation for a caller's nonce.",
    )
    p.add_argument(
        "--version", action="version", version=f"%(prog)s {importlib.metadata.version('starlock-verificationservice')}"
    )
    p.add_argument("--attestation-variant", "-attestation-variant", required=True, help="qemu-vtpm, or dummy (tests)")
    p.add_argument(
        "--tcti", default="device:/dev/tpmrm0", help="the node's TPM (qemu-vtpm; default device:/dev/tpmrm0)"
    )
    p.add_argument("--event-log", type=Path, default=None, help="TCG event log (default: the kernel's, when readable)")
    p.add_argument("--insecure-dummy", action="store_true", help="allow the dummy variant (tests only)")
    p.add_argument(
        "--insecure-plaintext",
        action="store_true",
        help="serve gRPC and HTTP without aTLS, as upstream (for upstream `constellation verify` clients)",
    )
    p.add_argument("--grpc-listen", default="0.0.0.0:9090", help="gRPC host:port (default 0.0.0.0:9090)")
    p.add_argument("--http-listen", default="0.0.0.0:8080", help="HTTP host:port (default 0.0.0.0:8080)")
    p.add_argument(
        "--health-listen",
        default="127.0.0.1:9091",
        help="plain HTTP host:port for /healthz, /readyz, /metrics (default 127.0.0.1:9091; empty: off)",
    )
    p.add_argument("--shutdown-grace", type=float, default=10.0, help="seconds in-flight requests get on SIGTERM")
    p.add_argument(
        "--http-request-timeout",
        type=float,
        default=10.0,
        help="seconds for an HTTP request head (and keep-alive idle)",
    )
    p.add_argument("--max-workers", type=int, default=16, help="gRPC handler threads")
    p.add_argument("--max-connections", type=int, default=256, help="established connections per endpoint")
    p.add_argument("-v", type=int, default=0, metavar="N", help="log verbosity (2 requests, 4 general, 6 detail)")
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = _parser()
    args = p.parse_args(argv)
    if args.max_workers < 1 or args.max_connections < 1 or args.shutdown_grace < 0 or args.http_request_timeout <= 0:
        p.error("--max-workers and --max-connections must be >= 1, --shutdown-grace >= 0, --http-request-timeout > 0")
    for flag in ("grpc_listen", "http_listen") + (("health_listen",) if args.health_listen else ()):
        try:
            split_listen(getattr(args, flag))
        except ValueError as exc:
            p.error(f"--{flag.replace('_', '-')}: {exc}")
    if args.attestation_variant == "dummy" and not args.insecure_dummy:
        p.error("the dummy variant proves nothing: it needs --insecure-dummy (tests only)")
    return args


def make_issuer(args: argparse.Namespace) -> Issuer:
    """The node's issuer, as the bootstrapper builds it (qemu-vtpm on ``--tcti``; dummy for tests)."""
    try:
        variant = Variant.from_string(args.attestation_variant)
    except AttestationError as exc:
        raise StartupError(str(exc)) from None
    if variant is Variant.QEMU_VTPM:
        from starlock.attestation.qemu import QemuVtpmIssuer

        return QemuVtpmIssuer(args.tcti, event_log_path=args.event_log)
    if variant is Variant.DUMMY and args.insecure_dummy:
        from starlock.atls import DummyIssuer

        return DummyIssuer(insecure=True)
    raise StartupError(
        f"attestation variant {variant.value!r}: this service issues for qemu-vtpm (and dummy, for tests) only; "
        "the cloud variants need their instance-metadata adapters, which are not implemented yet"
    )


@dataclass
class VerificationService:
    """A running service (what :func:`main` starts; tests start it in-process too)."""

    attester: Attester
    grpc_port: int
    http_port: int
    ready: threading.Event
    live: threading.Event
    health: HealthServer | None
    atls: bool
    closers: list[Callable[[], None]] = field(default_factory=list)

    @property
    def metrics(self) -> Metrics:
        return self.attester.metrics

    @property
    def health_port(self) -> int | None:
        return None if self.health is None else self.health.port

    def stop(self, grace: float = 10.0) -> bool:
        """Refuse new requests, let those in flight finish (up to ``grace`` s), then close. True if drained."""
        self.ready.clear()
        drained = self.attester.gate.drain(grace)
        if not drained:
            _log.warning(
                "shutdown grace ran out with requests in flight",
                extra={"fields": {"grace": grace, "in_flight": self.attester.gate.in_flight}},
            )
        for close in reversed(self.closers):  # front ends first, then what they forward to
            close()
        self.live.clear()
        if self.health is not None:
            self.health.stop()
        return drained


def _grpc_server(servicer: VerifyServicer, max_workers: int) -> grpc.Server:
    server = grpc.server(
        ThreadPoolExecutor(max_workers=max_workers, thread_name_prefix="verify-grpc"),
        options=[
            ("grpc.keepalive_time_ms", KEEPALIVE_MS),
            ("grpc.max_receive_message_length", MAX_GRPC_MESSAGE),
        ],
    )
    verify_pb2_grpc.add_APIServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]  # generated
    return server


def _stop_grpc(server: grpc.Server) -> None:
    server.stop(1.0).wait()


def start(args: argparse.Namespace, issuer: Issuer | None = None) -> VerificationService:
    """Check the issuer, bind and start both endpoints (and health); StartupError when fatal.

    ``issuer`` replaces the one the flags describe (tests wrap the real one).
    """
    issuer = issuer if issuer is not None else make_issuer(args)
    try:  # attest once now, as upstream's first request would: a missing TPM fails the start
        attest(issuer, secrets.token_bytes(32))
    except VerificationServiceError as exc:
        cause = describe_cause(exc)
        raise StartupError(f"the {issuer.variant.value} issuer cannot attest: {exc}: {cause}") from None
    metrics, gate = Metrics(), Gate()
    attester = Attester(issuer, metrics, gate)
    ready, live = threading.Event(), threading.Event()
    live.set()
    service = VerificationService(attester, 0, 0, ready, live, None, atls=not args.insecure_plaintext)
    try:
        server = _grpc_server(VerifyServicer(attester), args.max_workers)
        if args.insecure_plaintext:
            _log.warning(
                "--insecure-plaintext: serving gRPC and HTTP WITHOUT aTLS on the network (upstream behaviour); "
                "clients must check the document's nonce themselves"
            )
            service.grpc_port = server.add_insecure_port(args.grpc_listen)
            if service.grpc_port == 0:
                raise StartupError(f"grpcio cannot listen on {args.grpc_listen}")
            server.start()
            service.closers.append(lambda: _stop_grpc(server))
            http = HttpEndpoint(
                split_listen(args.http_listen),
                attester,
                max_connections=args.max_connections,
                request_timeout=args.http_request_timeout,
            )
            service.closers.append(http.start().stop)
            service.http_port = http.port
        else:
            config = ServerConfig(issuer=issuer)
            front = AttestedServer(server, config, args.grpc_listen, max_connections=args.max_connections)
            front.start()
            service.closers.append(lambda: front.stop(grace=1.0))
            service.grpc_port = front.port
            # HTTP: a loopback backend behind an aTLS tunnel of the atls library
            backend = HttpEndpoint(
                ("127.0.0.1", 0),
                attester,
                behind_atls=True,
                max_connections=args.max_connections,
                request_timeout=args.http_request_timeout,
            ).start()
            service.closers.append(backend.stop)
            tunnel = start_tunnel_server(
                args.http_listen, f"127.0.0.1:{backend.port}", config, max_connections=args.max_connections
            )
            service.closers.append(tunnel.stop)
            service.http_port = tunnel.port
        if args.health_listen:
            service.health = HealthServer(split_listen(args.health_listen), metrics, ready, live).start()
    except (OSError, AtlsConfigError, StartupError) as exc:
        service.stop(0)
        if isinstance(exc, StartupError):
            raise
        raise StartupError(f"cannot serve: {type(exc).__name__}: {exc}") from None
    ready.set()
    _log.info(
        "verification service listening",
        extra={
            "fields": {
                "grpc_port": service.grpc_port,
                "http_port": service.http_port,
                "health_port": service.health_port,
                "transport": "atls" if service.atls else "plaintext",
                "variant": issuer.variant.value,
            }
        },
    )
    return service


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.v < 6:  # libtss2 writes its own multi-line errors to stderr; ours name the cause in one line
        os.environ.setdefault("TSS2_LOG", "all+none")
    configure_logging(args.v)
    stop = stop_on_signals()
    try:
        service = start(args)
    except StartupError as exc:
        _log.error("cannot start the verification service", extra={"fields": {"error": str(exc)}})
        return 1
    transport = "atls" if service.atls else "plaintext"
    print(
        f"listening grpc={service.grpc_port} http={service.http_port} health={service.health_port or '-'} "
        f"transport={transport}",
        flush=True,
    )
    while not stop.wait(1.0):
        pass
    _log.info("shutting down; in-flight requests finish", extra={"fields": {"grace": args.shutdown_grace}})
    service.stop(args.shutdown_grace)
    _log.info("verification service stopped")
    return 0
