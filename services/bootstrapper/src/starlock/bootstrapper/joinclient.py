"""The join client (spec §5.5): ask a join service for a ticket, then lock, re-key, write, join.

Per round every endpoint is tried in order (empty hosts skipped, unlike upstream) with a fresh
kubelet key and CSR, the SSH host key and principals, over aTLS with this node's issuer. With a
ticket: the cluster ID, the node lock (marks PCR 15; not acquired → an Init won, return), the
cleaner, the state disk re-keyed, the control-plane files, the kubelet certificate and key, the
SSH CA and host certificate (all 0600, never overwriting), ``node_state.json``, and the driver's
``join_cluster`` (up to 3 attempts).
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import Any, Protocol

import grpc
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519

from starlock.atls import ClientConfig
from starlock.atls.rpc import attested_channel
from starlock.bootstrapper.kubeletcert import KUBELET_CERT_FILE, KUBELET_KEY_FILE, key_pem, kubelet_csr
from starlock.bootstrapper.nodestate import NodeState, Role, write_node_state
from starlock.bootstrapper.ssh import CA_PUB, HOST_CERT, HOST_KEY, write_private
from starlock.bootstrapper.statedisk import StateDisk
from starlock.joinproto import join_pb2, join_pb2_grpc
from starlock.kms.derive import derive_cluster_id

__all__ = ["JoinClient", "JoinPaths", "JoinTiming"]

_log = logging.getLogger("starlock.bootstrapper")
JOIN_ATTEMPTS = 3


class JoinError(Exception):
    """A fatal error after the node lock: the node cannot continue (mark the disk for reset)."""


class Driver(Protocol):
    def join_cluster(
        self, api_server_endpoint: str, ca_pin: str, token: str, *, control_plane: bool, components: list[Any]
    ) -> None: ...


class NodeLockLike(Protocol):
    def try_lock_once(self, cluster_id: bytes) -> bool: ...


@dataclass(frozen=True)
class JoinTiming:
    """Spec §5.9 defaults; tests use milliseconds."""

    interval: float = 30.0
    timeout: float = 30.0


@dataclass(frozen=True)
class JoinPaths:
    ssh_dir: Path  # /var/run/state/ssh
    pki_dir: Path  # /etc/kubernetes/pki
    kubelet_pki_dir: Path  # /run/state/kubelet/pki


def _wire_public_key(key: ed25519.Ed25519PublicKey) -> bytes:
    raw = key.public_bytes(serialization.Encoding.Raw, serialization.PublicFormat.Raw)
    name = b"ssh-ed25519"
    return len(name).to_bytes(4, "big") + name + len(raw).to_bytes(4, "big") + raw


class JoinClient:
    def __init__(
        self,
        *,
        issuer: Any,
        endpoints: Callable[[], list[str]],
        disk: StateDisk,
        node_lock: NodeLockLike,
        driver: Driver,
        on_locked: Callable[[], None],
        role: Role,
        node_name: str,
        node_ip: str,
        principals: Callable[[], list[str]],
        paths: JoinPaths,
        timing: JoinTiming = JoinTiming(),
    ) -> None:
        self._issuer = issuer
        self._endpoints = endpoints
        self._disk = disk
        self._lock = node_lock
        self._driver = driver
        self._on_locked = on_locked
        self._role = role
        self._node_name = node_name
        self._node_ip = node_ip
        self._principals = principals
        self._paths = paths
        self._timing = timing
        self._stop = threading.Event()
        self._done = threading.Event()
        self.joined = False

    def stop(self) -> None:
        """Ask the loop to end and wait until :meth:`start` returned (the cleaner calls this)."""
        self._stop.set()
        self._done.wait()

    def start(self) -> None:
        """Loop until joined, stopped, or an Init won the node lock; raises :class:`JoinError`."""
        try:
            while not self._stop.is_set():
                outcome = self._round()
                if outcome is not None:
                    return
                self._stop.wait(self._timing.interval)
        finally:
            self._done.set()

    def _round(self) -> bool | None:
        for endpoint in self._endpoints():
            host = endpoint.rpartition(":")[0]
            if not host or self._stop.is_set():
                continue
            try:
                ticket, key = self._request_ticket(endpoint)
            except grpc.RpcError as exc:
                code = exc.code() if hasattr(exc, "code") else None
                _log.warning(
                    "join ticket refused", extra={"fields": {"endpoint": endpoint, "code": getattr(code, "name", "")}}
                )
                continue
            return self._start_node_and_join(ticket, key)
        return None

    def _csr(self) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
        return kubelet_csr(self._node_name, self._node_ip)

    def _request_ticket(self, endpoint: str) -> tuple[join_pb2.IssueJoinTicketResponse, ec.EllipticCurvePrivateKey]:
        key, csr = self._csr()
        host_key = b""
        host_key_path = self._paths.ssh_dir / HOST_KEY
        if host_key_path.exists():
            private = serialization.load_ssh_private_key(host_key_path.read_bytes(), password=None)
            public = private.public_key()
            if isinstance(public, ed25519.Ed25519PublicKey):
                host_key = _wire_public_key(public)
        request = join_pb2.IssueJoinTicketRequest(
            disk_uuid=self._disk.uuid(),
            certificate_request=csr,
            is_control_plane=self._role is Role.CONTROL_PLANE,
            host_public_key=host_key,
            host_certificate_principals=self._principals(),
        )
        with attested_channel(endpoint, ClientConfig(issuer=self._issuer)) as channel:
            reply = join_pb2_grpc.APIStub(channel).IssueJoinTicket(request, timeout=self._timing.timeout)  # type: ignore[no-untyped-call]  # generated, untyped
        return reply, key

    def _start_node_and_join(self, ticket: join_pb2.IssueJoinTicketResponse, key: ec.EllipticCurvePrivateKey) -> bool:
        cluster_id = derive_cluster_id(bytes(ticket.measurement_secret), bytes(ticket.measurement_salt))
        if not self._lock.try_lock_once(cluster_id):
            _log.info("node lock taken by an Init; the join client stops")
            return False
        self._on_locked()  # the cleaner: stops the init server
        try:
            self._disk.update_passphrase(bytes(ticket.state_disk_key))
            for item in ticket.control_plane_files:
                name = PurePosixPath(item.name)
                if name.is_absolute() or ".." in name.parts or not item.name:
                    raise JoinError(f"control-plane file name {item.name!r} is not a relative path")
                write_private(self._paths.pki_dir / name, bytes(item.data))
            write_private(self._paths.kubelet_pki_dir / KUBELET_CERT_FILE, bytes(ticket.kubelet_cert))
            write_private(self._paths.kubelet_pki_dir / KUBELET_KEY_FILE, key_pem(key))
            write_private(self._paths.ssh_dir / CA_PUB, bytes(ticket.authorized_ca_public_key))
            if ticket.host_certificate:
                write_private(self._paths.ssh_dir / HOST_CERT, bytes(ticket.host_certificate))
            state_file = self._disk.mount_point() / "constellation" / "node_state.json"
            write_node_state(state_file, NodeState(self._role, bytes(ticket.measurement_salt)))
        except Exception as exc:
            raise JoinError(f"preparing the node after the node lock: {type(exc).__name__}: {exc}") from None
        last: Exception | None = None
        for attempt in range(1, JOIN_ATTEMPTS + 1):
            try:
                self._driver.join_cluster(
                    ticket.api_server_endpoint,
                    ticket.discovery_token_ca_cert_hash,
                    ticket.token,
                    control_plane=self._role is Role.CONTROL_PLANE,
                    components=list(ticket.kubernetes_components),
                )
                self.joined = True
                _log.info(
                    "node joined the cluster", extra={"fields": {"attempt": attempt, "cluster_id": cluster_id.hex()}}
                )
                return True
            except Exception as exc:  # the driver's errors hold no secret (see its docs)
                last = exc
                _log.warning("joining failed", extra={"fields": {"attempt": attempt, "error": type(exc).__name__}})
        raise JoinError(f"joining the cluster failed {JOIN_ATTEMPTS} times: {type(last).__name__}: {last}")


def now_utc() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)
