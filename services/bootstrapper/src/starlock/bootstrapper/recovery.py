"""The recovery server (spec §1.6, §4.4): ``/recoverproto.API/Recover`` over aTLS on port 9999.

After a reboot of the whole cluster no join service is up to hand out rejoin tickets, so a
control-plane node waits for the operator: ``starlock recover`` checks the node's attestation
(aTLS; the node attests, as for Init) and sends the KMS URI (``kms://cluster-kms?key=...&salt=...``,
i.e. the master secret) and the storage URI. The node builds the KMS from them, derives
``key-measurementSecret`` and ``key-<disk uuid>`` (32 bytes each) and delivers both to the same
:class:`~starlock.bootstrapper.rejoin.KeyDelivery` the rejoin client uses.

Where we differ from upstream (disk-mapper's recovery server) on purpose: upstream answers OK as
soon as it has derived the keys, so an operator who sent the wrong master secret learns it only
from a node that never comes back. Here the answer comes after the key opened the state disk:
a key that does not open it is PERMISSION_DENIED, nothing is changed, and the server keeps
waiting for the right secret. The URIs carry the master secret: they are never logged, and no
error message repeats them (the KMS library's errors name parameters, never values). The caller
is not attested, so only a ``kms://cluster-kms`` URI is accepted: another backend's URI names
servers and local files the node would otherwise open for anyone.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import grpc

from starlock.bootstrapper.rejoin import KeyDelivery, RejoinError, WrongDiskKey
from starlock.joinproto import recover_pb2, recover_pb2_grpc
from starlock.kms import (
    ClusterKmsConfig,
    KmsConfigError,
    KmsError,
    KmsFailedPrecondition,
    KmsInvalidArgument,
    KmsNotSupported,
    KmsPermissionDenied,
    KmsUnavailable,
    open_kms,
    parse_kms_uri,
)

__all__ = ["MAX_CONCURRENT_RECOVERIES", "RECOVERY_PORT", "RecoveryServer", "serve_recovery"]

RECOVERY_PORT = 9999
#: Recover calls in flight at once (one running, one waiting); beyond, RESOURCE_EXHAUSTED.
MAX_CONCURRENT_RECOVERIES = 2
_log = logging.getLogger("starlock.bootstrapper")

#: KMS failures while opening it or deriving the keys (a Vault backend can fail there) → gRPC status.
_KMS_CODES: tuple[tuple[type[KmsError], grpc.StatusCode], ...] = (
    (KmsUnavailable, grpc.StatusCode.UNAVAILABLE),
    (KmsPermissionDenied, grpc.StatusCode.PERMISSION_DENIED),
    (KmsInvalidArgument, grpc.StatusCode.INVALID_ARGUMENT),
    (KmsFailedPrecondition, grpc.StatusCode.FAILED_PRECONDITION),
)


def _kms_code(exc: KmsError) -> grpc.StatusCode:
    return next((code for kind, code in _KMS_CODES if isinstance(exc, kind)), grpc.StatusCode.INTERNAL)


class RecoveryServer(recover_pb2_grpc.APIServicer):
    """Derives the node's keys from the operator's KMS URIs and delivers them.

    ``on_done`` runs once the node is unlocked and marked and the answer has been sent (the process
    then stops waiting for a rejoin ticket, and stops this server). A failure past the unlock (the
    node state, marking PCR 15) is fatal for the node: it is kept in :attr:`fatal_error` and
    ``on_done`` runs too.
    """

    def __init__(self, *, disk_uuid: str, delivery: KeyDelivery, on_done: Callable[[], None]) -> None:
        self._uuid = disk_uuid
        self._delivery = delivery
        self._on_done = on_done
        self.fatal_error: RejoinError | None = None
        self.done = threading.Event()

    def Recover(
        self, request: recover_pb2.RecoverMessage, context: grpc.ServicerContext
    ) -> recover_pb2.RecoverResponse:
        if self.fatal_error is not None:
            context.abort(grpc.StatusCode.FAILED_PRECONDITION, "the node failed after an earlier recovery")
        # Also once the node is back: the keys are checked against those that unlocked it.
        disk_key, measurement_secret = self._derive(request, context)
        try:
            self._delivery.deliver(disk_key, measurement_secret, source="recovery")
        except WrongDiskKey:
            _log.warning("recovery refused: the derived key does not open the state disk")
            context.abort(
                grpc.StatusCode.PERMISSION_DENIED,
                "the key derived from this KMS does not open the node's state disk "
                "(another cluster's master secret or salt?); nothing was changed",
            )
        except RejoinError as exc:
            self.fatal_error = exc
            self._finish(context)
            context.abort(grpc.StatusCode.INTERNAL, f"the state disk opened, then recovery failed: {exc}")
        self._finish(context)
        return recover_pb2.RecoverResponse()

    def _derive(self, request: recover_pb2.RecoverMessage, context: grpc.ServicerContext) -> tuple[bytes, bytes]:
        # The caller is not attested: only the master secret may be sent here. Another backend's URI
        # (kms://vault names a server, a token file, a CA file) would let anyone reaching this port
        # make the node read local files and call a server of their choice.
        try:
            if not isinstance(parse_kms_uri(request.kms_uri), ClusterKmsConfig):
                context.abort(
                    grpc.StatusCode.UNIMPLEMENTED,
                    "recovery takes the cluster's master secret (kms://cluster-kms?key=...&salt=...) only",
                )
        except KmsConfigError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"creating the KMS client: {exc}")
        try:
            kms = open_kms(request.kms_uri, request.storage_uri or "storage://no-store")
        except KmsNotSupported as exc:
            context.abort(grpc.StatusCode.UNIMPLEMENTED, f"creating the KMS client: {exc}")
        except KmsConfigError as exc:
            context.abort(grpc.StatusCode.INVALID_ARGUMENT, f"creating the KMS client: {exc}")
        except KmsError as exc:  # a Vault backend checks its server when it is opened
            context.abort(_kms_code(exc), f"creating the KMS client: {exc}")
        try:
            return kms.get_dek("key-" + self._uuid, 32), kms.get_dek("key-measurementSecret", 32)
        except KmsError as exc:
            context.abort(_kms_code(exc), f"deriving the node's keys: {exc}")

    def _finish(self, context: grpc.ServicerContext) -> None:
        """Done; ``on_done`` (which stops the server) runs once this call's answer is out."""
        if self.done.is_set():
            return
        self.done.set()
        if not context.add_callback(self._on_done):  # the call has already ended
            self._on_done()


def serve_recovery(server: RecoveryServer, issuer: Any, listen: str) -> Any:
    """The recovery server on ``listen`` behind aTLS (the node attests; the operator checks)."""
    from starlock.atls import ServerConfig
    from starlock.atls.rpc import AttestedServer

    grpc_server = grpc.server(
        # One worker: recoveries are serialized anyway. The client is not attested, and each try
        # may cost a LUKS key derivation (memory-hard): one waits, more are RESOURCE_EXHAUSTED.
        ThreadPoolExecutor(max_workers=1, thread_name_prefix="recovery"),
        options=[("grpc.keepalive_time_ms", 15_000)],
        maximum_concurrent_rpcs=MAX_CONCURRENT_RECOVERIES,
    )
    recover_pb2_grpc.add_APIServicer_to_server(server, grpc_server)  # type: ignore[no-untyped-call]  # generated, untyped
    return AttestedServer(grpc_server, ServerConfig(issuer=issuer), listen).start()
