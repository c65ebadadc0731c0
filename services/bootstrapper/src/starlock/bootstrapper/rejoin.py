"""The rejoin after a reboot (spec §4.4; the disk-mapper's part upstream).

A node whose state disk is initialized but whose PCR 15 is zero was bootstrapped before and has
rebooted. It asks a join service for ``IssueRejoinTicket{disk_uuid}`` over aTLS with its issuer
(the join service checks the same attestation as for a join, PCR 15 = 0 included), unlocks its
state disk with the returned key, reads ``node_state.json`` (32-byte salt required), derives the
cluster ID from the returned measurement secret and that salt, and marks PCR 15 again. The
bootstrapper then finds the node bootstrapped and only starts the kubelet.

Starlock runs this as an automatic branch of ``starlock-bootstrapper`` at start (there is no
separate disk-mapper in the initramfs). On a control plane the recovery server
(:mod:`starlock.bootstrapper.recovery`, port 9999) runs beside the rejoin client; both hand the
keys to one :class:`KeyDelivery`, and the first delivery that opens the disk wins.
"""

from __future__ import annotations

import hashlib
import hmac
import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

import grpc

from starlock.atls import ClientConfig
from starlock.atls.rpc import attested_channel
from starlock.bootstrapper.nodestate import NodeState, NodeStateError, read_node_state
from starlock.bootstrapper.statedisk import StateDisk, StateDiskError
from starlock.joinproto import join_pb2, join_pb2_grpc
from starlock.kms.derive import derive_cluster_id

__all__ = ["KeyDelivery", "RejoinClient", "RejoinError", "WrongDiskKey"]

_log = logging.getLogger("starlock.bootstrapper")


class RejoinError(Exception):
    """The rejoin cannot complete: the key does not open the disk, or the node state is bad."""


class WrongDiskKey(RejoinError):
    """The delivered disk key does not open the state disk; nothing was changed."""


class NodeLockLike(Protocol):
    def try_lock_once(self, cluster_id: bytes) -> bool: ...

    def is_node_bootstrapped(self) -> bool: ...


class KeyDelivery:
    """Where the rejoin client and the recovery server deliver (disk key, measurement secret).

    The first delivery whose key opens the state disk unlocks it, reads ``node_state.json``,
    derives the cluster ID and marks PCR 15; later deliveries get the same node state if they
    bring the same keys, else :class:`WrongDiskKey`. Deliveries are serialized, so two sources
    never unlock or mark at once.
    """

    def __init__(self, disk: StateDisk, node_lock: NodeLockLike) -> None:
        self._disk = disk
        self._lock = node_lock
        self._mutex = threading.Lock()
        self.state: NodeState | None = None
        self._delivered = b""

    def deliver(self, disk_key: bytes, measurement_secret: bytes, *, source: str) -> NodeState:
        """Unlock and re-mark the node; raises :class:`WrongDiskKey` (nothing changed) or :class:`RejoinError`."""
        digest = hashlib.sha256(disk_key + measurement_secret).digest()
        with self._mutex:
            if self.state is not None:
                # Already unlocked: a later source must have brought the same keys, or it is refused.
                if not hmac.compare_digest(digest, self._delivered):
                    raise WrongDiskKey(f"the {source} keys differ from those that unlocked the node")
                return self.state
            self.state = self._finish(disk_key, measurement_secret, source)
            self._delivered = digest
            return self.state

    def _finish(self, disk_key: bytes, secret: bytes, source: str) -> NodeState:
        try:
            self._disk.unlock(disk_key)
        except StateDiskError as exc:
            raise WrongDiskKey(f"the {source} key does not open the state disk: {exc}") from None
        state_file = self._disk.mount_point() / "constellation" / "node_state.json"
        try:
            state = read_node_state(state_file)
        except NodeStateError as exc:
            raise RejoinError(f"reading {state_file}: {exc}") from None
        if len(state.measurement_salt) != 32:
            raise RejoinError(f"{state_file}: the measurement salt is not 32 bytes")
        if len(secret) != 32:
            raise RejoinError(f"the {source} measurement secret is not 32 bytes")
        cluster_id = derive_cluster_id(secret, state.measurement_salt)
        marked = self._lock.try_lock_once(cluster_id)
        if not marked and not self._lock.is_node_bootstrapped():
            raise RejoinError(f"PCR 15 could not be marked after the {source}")
        _log.info(
            "node rejoined: state disk unlocked, PCR 15 marked",
            extra={"fields": {"role": state.role.value, "cluster_id": cluster_id.hex(), "source": source}},
        )
        return state


class RejoinClient:
    def __init__(
        self,
        *,
        issuer: Any,
        endpoints: Callable[[], list[str]],
        delivery: KeyDelivery,
        disk_uuid: str,
        interval: float = 30.0,
        timeout: float = 30.0,
    ) -> None:
        self._issuer = issuer
        self._endpoints = endpoints
        self._delivery = delivery
        self._uuid = disk_uuid
        self._interval = interval
        self._timeout = timeout
        self._stop = threading.Event()

    def stop(self) -> None:
        self._stop.set()

    def run(self) -> NodeState | None:
        """Rejoin; returns the node state, or None when stopped first. Raises :class:`RejoinError`."""
        while not self._stop.is_set():
            try:
                endpoints = self._endpoints()
            except Exception as exc:  # a failed lookup skips the round, as upstream
                _log.warning("rejoin: no endpoints this round", extra={"fields": {"error": type(exc).__name__}})
                endpoints = []
            for endpoint in endpoints:
                if self._stop.is_set():
                    return None
                try:
                    ticket = self._request(endpoint, self._uuid)
                except grpc.RpcError as exc:
                    code = exc.code() if hasattr(exc, "code") else None
                    _log.warning(
                        "rejoin ticket refused",
                        extra={"fields": {"endpoint": endpoint, "code": getattr(code, "name", "")}},
                    )
                    continue
                return self._delivery.deliver(
                    bytes(ticket.state_disk_key), bytes(ticket.measurement_secret), source="rejoin"
                )
            self._stop.wait(self._interval)
        return None

    def _request(self, endpoint: str, uuid: str) -> join_pb2.IssueRejoinTicketResponse:
        with attested_channel(endpoint, ClientConfig(issuer=self._issuer)) as channel:
            stub = join_pb2_grpc.APIStub(channel)  # type: ignore[no-untyped-call]  # generated, untyped
            reply: join_pb2.IssueRejoinTicketResponse = stub.IssueRejoinTicket(
                join_pb2.IssueRejoinTicketRequest(disk_uuid=uuid), timeout=self._timeout
            )
        return reply
