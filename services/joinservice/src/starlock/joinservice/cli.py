"""``starlock-joinservice``: start-up as upstream (spec §2.1), serve, drain on SIGTERM.

Fatal start-up errors are one JSON log line and exit status 1.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import logging
import threading
import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import grpc

from starlock.atls import ServerConfig
from starlock.atls.rpc import AttestedServer
from starlock.atls.signals import stop_on_signals
from starlock.attestation import AttestationError, Variant
from starlock.joinproto import join_pb2_grpc
from starlock.joinservice import certcache
from starlock.joinservice._log import configure_logging
from starlock.joinservice.errors import JoinServiceError
from starlock.joinservice.keyclient import KeyServiceClient
from starlock.joinservice.kube import KubeAdapter, new_api_client
from starlock.joinservice.metrics import HealthServer, Metrics
from starlock.joinservice.server import JoinServicer
from starlock.joinservice.ticket import ClusterFiles, TicketIssuer
from starlock.joinservice.validator import ConfigLoadError, ConfigWatcher, UpdatableValidator

__all__ = ["JoinService", "main", "parse_args"]

_log = logging.getLogger("starlock.joinservice")
MAX_SALT_BYTES = 4096


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="starlock-joinservice", description="Constellation-compatible join service.")
    p.add_argument(
        "--version", action="version", version=f"%(prog)s {importlib.metadata.version('starlock-joinservice')}"
    )
    p.add_argument("--cloud-provider", "-cloud-provider", default="", help="aws, azure, gcp, openstack or qemu")
    p.add_argument(
        "--key-service-endpoint",
        "-key-service-endpoint",
        default="unix:/run/starlock/keyservice/keyservice.sock",
        help="unix:/path/to/socket, or host:port with --key-service-tls-*",
    )
    p.add_argument("--key-service-tls-cert", type=Path, default=None)
    p.add_argument("--key-service-tls-key", type=Path, default=None)
    p.add_argument("--key-service-tls-ca", type=Path, default=None)
    p.add_argument("--attestation-variant", "-attestation-variant", required=True)
    p.add_argument("-v", type=int, default=0, metavar="N", help="log verbosity (2 requests, 4 general, 6 detail)")
    p.add_argument("--config-dir", type=Path, default=Path("/var/config"), help="attestationConfig, measurementSalt")
    p.add_argument("--kubernetes-dir", type=Path, default=Path("/etc/kubernetes"), help="admin.conf and pki/")
    p.add_argument(
        "--kubeadm-config", type=Path, default=Path("/var/kubeadm-config/ClusterConfiguration"), help="for certSANs"
    )
    p.add_argument("--listen", default=":9090", help="aTLS listener host:port (default :9090)")
    p.add_argument("--kubeconfig", type=Path, default=None, help="kubeconfig outside a pod (default: in-cluster)")
    p.add_argument("--metrics-listen", default="", help="host:port for /metrics, /healthz, /readyz (plain HTTP)")
    p.add_argument(
        "--api-server-endpoint",
        default="",
        help="host:port handed to nodes (upstream: own VPC IP from cloud metadata + :6443)",
    )
    p.add_argument("--insecure-dummy", action="store_true", help="allow the dummy variant (tests only)")
    p.add_argument(
        "--require-csr-ip-is-peer", action="store_true", help="refuse kubelet CSRs whose IP SANs are not the peer's"
    )
    p.add_argument("--shutdown-grace", type=float, default=30.0, help="seconds in-flight tickets get on SIGTERM")
    p.add_argument("--max-workers", type=int, default=32, help="gRPC handler threads")
    p.add_argument("--config-poll-interval", type=float, default=0.5, help=argparse.SUPPRESS)
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    p = _parser()
    args = p.parse_args(argv)
    if args.max_workers < 1 or args.shutdown_grace < 0:
        p.error("--max-workers must be >= 1 and --shutdown-grace >= 0")
    return args


def _endpoint(listen: str) -> str:
    return f"0.0.0.0{listen}" if listen.startswith(":") else listen  # noqa: S104 - aTLS; upstream listens on :9090


def _read_salt(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            salt = f.read(MAX_SALT_BYTES + 1)
    except OSError as exc:
        raise JoinServiceError(f"cannot read the measurement salt {path}: {exc.strerror}") from None
    if not salt or len(salt) > MAX_SALT_BYTES:
        raise JoinServiceError(f"the measurement salt {path} is empty or larger than {MAX_SALT_BYTES} bytes")
    return salt


@dataclass
class JoinService:
    """A running join service (what :func:`main` starts; tests start it in-process too)."""

    front: AttestedServer
    servicer: JoinServicer
    watcher: ConfigWatcher
    keys: KeyServiceClient
    metrics: Metrics
    ready: threading.Event
    live: threading.Event
    health: HealthServer | None

    @property
    def port(self) -> int:
        return self.front.port

    def stop(self, grace: float = 30.0) -> None:
        self.ready.clear()
        drained = self.servicer.drain(grace)
        if not drained:
            _log.warning("shutdown grace ran out with tickets in flight", extra={"fields": {"grace": grace}})
        self.watcher.stop()
        self.front.stop(grace=1.0)
        self.keys.close()
        self.live.clear()
        if self.health is not None:
            self.health.stop()


def start(args: argparse.Namespace) -> JoinService:
    """Start-up order of spec §2.1; raises JoinServiceError (or ConfigLoadError) when fatal."""
    try:
        variant = Variant.from_string(args.attestation_variant)
    except (ValueError, AttestationError):
        raise JoinServiceError(f"unknown attestation variant {args.attestation_variant!r}") from None
    kube = KubeAdapter(new_api_client(args.kubeconfig))
    metrics = Metrics()
    ask = certcache.ask_from_cache(
        kube,
        certcache.kds_fetcher() if variant in certcache.SNP_CACHE_VARIANTS else lambda _v: None,
        variant,
        lambda ok: metrics.kds_fetches.labels("ok" if ok else "error").inc(),
    )

    def failed(exc: AttestationError) -> None:
        metrics.attestation_failures.labels(getattr(exc, "check", None) or type(exc).__name__).inc()

    validator = UpdatableValidator(
        args.config_dir / "attestationConfig",
        variant,
        ask_pem=ask,
        insecure_dummy=args.insecure_dummy,
        on_failure=failed,
        on_reload=lambda ok: metrics.config_reloads.labels("ok" if ok else "error").inc(),
    )
    if not args.api_server_endpoint:
        raise JoinServiceError(
            f"cloud provider {args.cloud_provider or '(none)'}: reading the own VPC IP from cloud metadata is not "
            "implemented in Starlock; give --api-server-endpoint host:port"
        )
    keys = KeyServiceClient(
        args.key_service_endpoint,
        tls_cert=args.key_service_tls_cert,
        tls_key=args.key_service_tls_key,
        tls_ca=args.key_service_tls_ca,
    )
    salt = _read_salt(args.config_dir / "measurementSalt")
    files = ClusterFiles(args.kubernetes_dir, args.kubeadm_config)
    files.ca()  # fail at start, not per ticket, when the CA is unreadable
    issuer = TicketIssuer(
        keys,
        kube,
        files,
        measurement_salt=salt,
        api_server_endpoint=args.api_server_endpoint,
        require_csr_ip_is_peer=args.require_csr_ip_is_peer,
    )
    servicer = JoinServicer(issuer, metrics, variant=variant.value)
    server = grpc.server(ThreadPoolExecutor(max_workers=args.max_workers, thread_name_prefix="join"))
    join_pb2_grpc.add_APIServicer_to_server(servicer, server)  # type: ignore[no-untyped-call]  # generated, untyped
    front = AttestedServer(server, ServerConfig(validators=[validator]), _endpoint(args.listen))
    watcher = ConfigWatcher(validator, interval=args.config_poll_interval)
    ready, live = threading.Event(), threading.Event()
    live.set()
    health = HealthServer(args.metrics_listen, metrics, ready, live) if args.metrics_listen else None
    front.start()
    watcher.start()
    if health is not None:
        health.start()
    service = JoinService(front, servicer, watcher, keys, metrics, ready, live, health)
    threading.Thread(target=_await_key_service, args=(keys, ready, live), name="readiness", daemon=True).start()
    _log.info(
        "join service listening",
        extra={"fields": {"port": front.port, "variant": variant.value, "key_service": args.key_service_endpoint}},
    )
    return service


def _await_key_service(keys: KeyServiceClient, ready: threading.Event, live: threading.Event) -> None:
    delay = 0.2
    while live.is_set() and not ready.is_set():
        try:
            keys.ping(timeout=5.0)
        except JoinServiceError as exc:
            _log.warning("key service not answering yet", extra={"fields": {"error": str(exc)}})
            time.sleep(delay)
            delay = min(delay * 2, 5.0)
            continue
        ready.set()
        _log.info("ready: validator loaded and key service answered")


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    configure_logging(args.v)
    try:
        service = start(args)
    except (JoinServiceError, ConfigLoadError, OSError) as exc:
        _log.error("cannot start the join service", extra={"fields": {"error": str(exc)}})
        return 1
    stop = stop_on_signals()
    print(f"listening on port {service.port}", flush=True)
    while not stop.wait(1.0):
        pass
    _log.info("shutting down; in-flight tickets finish", extra={"fields": {"grace": args.shutdown_grace}})
    service.stop(args.shutdown_grace)
    _log.info("join service stopped")
    return 0
