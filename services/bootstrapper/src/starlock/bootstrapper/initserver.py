"""The init server (spec §5.2): ``/init.API/Init`` over aTLS (the node attests, the operator checks).

Steps: bcrypt init secret, KMS from the request's URIs, measurement secret and cluster ID, the
node lock (marks PCR 15), the cleaner, the state disk key, ``node_state.json``, the SSH CA and
host certificate, the driver's ``init_cluster``, ``init_success{kubeconfig, cluster_id}``. On a
failure: one ``init_failure``, the bootstrapper's log in 1024-byte chunks, then an error status.

Unlike upstream, a failure after the node lock is not lost: :attr:`InitServer.fatal_error` holds
it, and the process marks the disk for reset (upstream's ``Serve`` returned nil there).
"""

from __future__ import annotations

import datetime
import logging
import threading
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import bcrypt
import grpc

from starlock.bootstrapper import ssh
from starlock.bootstrapper.cleaner import Cleaner
from starlock.bootstrapper.nodestate import NodeState, Role, write_node_state
from starlock.bootstrapper.statedisk import StateDisk, StateDiskError
from starlock.joinproto import init_pb2, init_pb2_grpc
from starlock.kms import KmsError, open_kms
from starlock.kms.derive import derive_cluster_id
from starlock.nodelock import MarkingError, NodeLockError

__all__ = ["InitParams", "InitServer"]

_log = logging.getLogger("starlock.bootstrapper")
LOG_CHUNK = 1024
DEFAULT_CLUSTER_NAME = "constellation"
MAX_INIT_SECRET = 72  # bcrypt's limit: longer secrets cannot match a bcrypt hash
MAX_PRINCIPALS = 256  # an OpenSSH certificate's principals, as cryptography enforces


class NodeLockLike(Protocol):
    def try_lock_once(self, cluster_id: bytes) -> bool: ...


@dataclass(frozen=True)
class InitParams:
    """What the driver's ``init_cluster`` gets (spec §5.4)."""

    kubernetes_version: str
    cluster_name: str
    conformance_mode: bool
    components: list[Any]
    apiserver_cert_sans: list[str]
    service_cidr: str
    cluster_id: bytes = field(repr=False)


class Driver(Protocol):
    def init_cluster(self, params: InitParams) -> bytes: ...


class InitFailed(Exception):
    def __init__(self, code: grpc.StatusCode, message: str) -> None:
        super().__init__(message)
        self.code = code


class _ReadWriteLock:
    """Init holds it shared; Stop takes it exclusively, so Stop waits for a running Init."""

    def __init__(self) -> None:
        self._cond = threading.Condition()
        self._readers = 0
        self._writer = False

    def acquire_read(self) -> bool:
        with self._cond:
            if self._writer:
                return False
            self._readers += 1
            return True

    def release_read(self) -> None:
        with self._cond:
            self._readers -= 1
            self._cond.notify_all()

    def acquire_write(self) -> None:
        with self._cond:
            self._writer = True
            while self._readers:
                self._cond.wait()


class InitServer(init_pb2_grpc.APIServicer):
    def __init__(
        self,
        *,
        init_secret_hash: bytes,
        node_lock: NodeLockLike,
        disk: StateDisk,
        driver: Driver,
        cleaner: Cleaner,
        ssh_dir: Path,
        principals: Callable[[], list[str]],
        read_logs: Callable[[], bytes],
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
    ) -> None:
        if not init_secret_hash:
            raise ValueError("the init secret hash from the metadata is empty")
        self._hash = init_secret_hash
        self._lock = node_lock
        self._disk = disk
        self._driver = driver
        self._cleaner = cleaner
        self._ssh_dir = ssh_dir
        self._principals = principals
        self._read_logs = read_logs
        self._clock = clock
        self._rw = _ReadWriteLock()
        self.fatal_error: Exception | None = None
        self.stopped = threading.Event()

    def stop(self) -> None:
        """Wait for a running Init, then refuse new ones (the cleaner calls this)."""
        self._rw.acquire_write()
        self.stopped.set()

    def Init(self, request: init_pb2.InitRequest, context: grpc.ServicerContext) -> Iterator[init_pb2.InitResponse]:
        if not self._rw.acquire_read():
            context.abort(grpc.StatusCode.UNAVAILABLE, "the node is no longer accepting Init")
        failure: InitFailed | None = None
        try:
            yield from self._init(request)
        except InitFailed as exc:
            failure = exc
        finally:
            self._rw.release_read()
        if failure is None:
            return
        _log.warning("Init failed", extra={"fields": {"code": failure.code.name, "error": str(failure)}})
        yield init_pb2.InitResponse(init_failure=init_pb2.InitFailureResponse(error=str(failure)))
        logs = self._read_logs()
        for offset in range(0, len(logs), LOG_CHUNK):
            yield init_pb2.InitResponse(log=init_pb2.LogResponseType(log=logs[offset : offset + LOG_CHUNK]))
        context.abort(failure.code, str(failure))

    def _init(self, req: init_pb2.InitRequest) -> Iterator[init_pb2.InitResponse]:
        secret = bytes(req.init_secret)
        if not secret or len(secret) > MAX_INIT_SECRET or not bcrypt.checkpw(secret, self._hash):
            raise InitFailed(grpc.StatusCode.PERMISSION_DENIED, "invalid init secret")
        try:
            kms = open_kms(req.kms_uri, req.storage_uri or "storage://no-store")
        except KmsError as exc:
            raise InitFailed(grpc.StatusCode.INVALID_ARGUMENT, f"creating KMS client: {exc}") from None
        if len(req.measurement_salt) != 32:
            raise InitFailed(grpc.StatusCode.INVALID_ARGUMENT, "measurement_salt must be 32 bytes")
        # checked before the lock: past it, a failure leaves the node unusable
        principals = [*self._principals(), *req.apiserver_cert_sans]
        if len(principals) > MAX_PRINCIPALS:
            raise InitFailed(
                grpc.StatusCode.INVALID_ARGUMENT, f"too many apiserver_cert_sans (at most {MAX_PRINCIPALS} principals)"
            )
        try:
            measurement_secret = kms.get_dek("key-measurementSecret", 32)
            cluster_id = derive_cluster_id(measurement_secret, bytes(req.measurement_salt))
        except KmsError as exc:
            raise InitFailed(grpc.StatusCode.INTERNAL, f"deriving the measurement secret: {exc}") from None
        try:
            acquired = self._lock.try_lock_once(cluster_id)
        except (MarkingError, NodeLockError) as exc:
            self.fatal_error = exc
            raise InitFailed(grpc.StatusCode.INTERNAL, f"locking the node: {exc}") from None
        if not acquired:
            raise InitFailed(grpc.StatusCode.FAILED_PRECONDITION, "node is already being activated")
        # The point of no return: from here a failure leaves the node unusable.
        self._cleaner.clean()
        try:
            kubeconfig = self._bootstrap(req, kms, cluster_id, principals)
        except Exception as exc:
            self.fatal_error = exc
            message = str(exc) if isinstance(exc, StateDiskError | KmsError | InitFailed) else type(exc).__name__
            raise InitFailed(grpc.StatusCode.INTERNAL, f"initializing the node: {message}") from None
        _log.info("Init succeeded", extra={"fields": {"cluster_id": cluster_id.hex()}})
        yield init_pb2.InitResponse(
            init_success=init_pb2.InitSuccessResponse(kubeconfig=kubeconfig, cluster_id=cluster_id)
        )

    def _bootstrap(self, req: init_pb2.InitRequest, kms: Any, cluster_id: bytes, principals: list[str]) -> bytes:
        disk_key = kms.get_dek("key-" + self._disk.uuid(), 32)
        self._disk.update_passphrase(disk_key)
        state_file = self._disk.mount_point() / "constellation" / "node_state.json"
        write_node_state(state_file, NodeState(Role.CONTROL_PLANE, bytes(req.measurement_salt)))
        ssh.install_ca_and_host_certificate(
            self._ssh_dir,
            kms.get_dek("key-ca_emergency_ssh", 32),
            principals,
            self._clock(),
        )
        params = InitParams(
            kubernetes_version=req.kubernetes_version,
            cluster_name=req.cluster_name or DEFAULT_CLUSTER_NAME,
            conformance_mode=req.conformance_mode,
            components=list(req.kubernetes_components),
            apiserver_cert_sans=list(req.apiserver_cert_sans),
            service_cidr=req.service_cidr,
            cluster_id=cluster_id,
        )
        return self._driver.init_cluster(params)
