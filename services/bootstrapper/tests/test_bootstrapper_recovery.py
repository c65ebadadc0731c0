"""The recovery server's answers, one per outcome: the status code, the node's state afterwards,
and no secret in any error. (The whole flow over aTLS with a real process and TPM is in
test_bootstrapper_process.py.)"""

from __future__ import annotations

import base64
import secrets
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

import grpc
import pytest

import starlock.bootstrapper.recovery as recovery
from starlock.bootstrapper.nodestate import NodeState, Role, write_node_state
from starlock.bootstrapper.recovery import RecoveryServer
from starlock.bootstrapper.rejoin import KeyDelivery
from starlock.bootstrapper.statedisk import FileStateDisk
from starlock.joinproto import recover_pb2, recover_pb2_grpc
from starlock.kms import (
    ClusterKMS,
    KmsError,
    KmsFailedPrecondition,
    KmsInvalidArgument,
    KmsPermissionDenied,
    KmsUnavailable,
)
from starlock.kms.derive import derive_cluster_id
from starlock.kms.mastersecret import MasterSecret


class Aborted(Exception):
    def __init__(self, code: grpc.StatusCode, details: str) -> None:
        super().__init__(details)
        self.code = code
        self.details = details


class Context:
    """What a servicer uses of grpc.ServicerContext: ``abort`` raises, as grpc's does, and the
    callbacks run when the call has ended (:meth:`Node.recover` ends it)."""

    def __init__(self) -> None:
        self.callbacks: list[Any] = []

    def abort(self, code: grpc.StatusCode, details: str) -> NoReturn:
        raise Aborted(code, details)

    def add_callback(self, callback: Any) -> bool:
        self.callbacks.append(callback)
        return True


class Lock:
    def __init__(self) -> None:
        self.marked: list[bytes] = []

    def try_lock_once(self, cluster_id: bytes) -> bool:
        if self.marked:
            return False
        self.marked.append(cluster_id)
        return True

    def is_node_bootstrapped(self) -> bool:
        return bool(self.marked)


class Node:
    """An initialized file state disk under ``master`` with node_state.json, and a recovery server."""

    def __init__(self, root: Path, master: MasterSecret) -> None:
        self.master = master
        self.disk = FileStateDisk(root / "disk")
        self.kms = ClusterKMS(master.key, master.salt)
        self.disk.update_passphrase(self.kms.get_dek("key-" + self.disk.uuid(), 32))
        self.salt = secrets.token_bytes(32)
        write_node_state(
            self.disk.mount_point() / "constellation" / "node_state.json", NodeState(Role.CONTROL_PLANE, self.salt)
        )
        self.lock = Lock()
        self.done_calls = 0
        self.server = RecoveryServer(
            disk_uuid=self.disk.uuid(), delivery=KeyDelivery(self.disk, self.lock), on_done=self._done
        )

    def _done(self) -> None:
        self.done_calls += 1

    def recover(self, kms_uri: str, storage_uri: str = "storage://no-store") -> Any:
        message = recover_pb2.RecoverMessage(kms_uri=kms_uri, storage_uri=storage_uri)
        context = Context()
        before = self.done_calls
        try:
            return self.server.Recover(message, context)  # type: ignore[arg-type]
        finally:
            assert self.done_calls == before  # on_done (which stops the server) never runs inside the call
            for callback in context.callbacks:
                callback()

    def refused(self, kms_uri: str, storage_uri: str = "storage://no-store") -> Aborted:
        with pytest.raises(Aborted) as refused:
            self.recover(kms_uri, storage_uri)
        for secret in (self.master.key, self.master.salt):
            for form in (secret.hex(), base64.urlsafe_b64encode(secret).decode(), base64.b64encode(secret).decode()):
                assert form not in refused.value.details
        return refused.value


@pytest.fixture
def node(tmp_path: Path) -> Node:
    return Node(tmp_path, MasterSecret(secrets.token_bytes(32), secrets.token_bytes(32)))


def test_the_right_secret_unlocks_and_marks_once(node: Node) -> None:
    node.recover(node.master.to_uri())
    measurement_secret = node.kms.get_dek("key-measurementSecret", 32)
    assert node.lock.marked == [derive_cluster_id(measurement_secret, node.salt)]
    assert node.done_calls == 1 and node.server.done.is_set() and node.server.fatal_error is None
    node.recover(node.master.to_uri())  # a second operator (or a retry) is answered, nothing runs again
    assert len(node.lock.marked) == 1 and node.done_calls == 1


def test_an_empty_storage_uri_means_no_store(node: Node) -> None:
    node.recover(node.master.to_uri(), storage_uri="")
    assert node.lock.marked


def test_once_recovered_another_secret_is_still_refused(node: Node) -> None:
    node.recover(node.master.to_uri())
    other = MasterSecret(secrets.token_bytes(32), secrets.token_bytes(32))
    assert node.refused(other.to_uri()).code is grpc.StatusCode.PERMISSION_DENIED
    assert len(node.lock.marked) == 1


def test_another_clusters_secret_changes_nothing_and_the_right_one_still_works(node: Node) -> None:
    other = MasterSecret(secrets.token_bytes(32), secrets.token_bytes(32))
    refused = node.refused(other.to_uri())
    assert refused.code is grpc.StatusCode.PERMISSION_DENIED
    assert not node.lock.marked and node.done_calls == 0 and not node.server.done.is_set()
    node.recover(node.master.to_uri())
    assert node.lock.marked and node.done_calls == 1


@pytest.mark.parametrize(
    ("uri", "code", "reason"),
    [
        ("", grpc.StatusCode.INVALID_ARGUMENT, "must start with kms://"),
        ("kms://cluster-kms?key=AAAA", grpc.StatusCode.INVALID_ARGUMENT, "'salt' is missing"),
        ("kms://nowhere?key=AAAA", grpc.StatusCode.INVALID_ARGUMENT, "unknown KMS type"),
        ("kms://cluster-kms?key=not*base64&salt=AAAA", grpc.StatusCode.INVALID_ARGUMENT, "not padded URL-safe"),
    ],
)
def test_malformed_kms_uris_are_invalid_argument(node: Node, uri: str, code: grpc.StatusCode, reason: str) -> None:
    refused = node.refused(uri)
    assert refused.code is code and reason in refused.details
    assert not node.lock.marked and not node.server.done.is_set()


def test_a_secret_pasted_into_a_bad_uri_is_not_repeated(node: Node) -> None:
    key = base64.urlsafe_b64encode(node.master.key).decode()
    refused = node.refused(f"kms://cluster-kms?{key}")  # the value without its name
    assert refused.code is grpc.StatusCode.INVALID_ARGUMENT


def test_only_the_master_secret_is_accepted(node: Node, monkeypatch: pytest.MonkeyPatch) -> None:
    """The caller is not attested: a Vault URI (a server, a token file, a CA file) is never opened."""

    def must_not_open(kms_uri: str, storage_uri: str) -> NoReturn:
        raise AssertionError("open_kms was called for a URI other than cluster-kms")

    monkeypatch.setattr(recovery, "open_kms", must_not_open)
    for uri in (
        "kms://vault?address=https%3A%2F%2Fattacker.example&tokenFile=%2Fetc%2Fshadow&keyName=k",
        "kms://aws?keyName=n&region=r&accessKeyID=a&accessKey=k",
    ):
        refused = node.refused(uri)
        assert refused.code is grpc.StatusCode.UNIMPLEMENTED and "kms://cluster-kms" in refused.details
    assert not node.lock.marked


def test_a_bad_storage_uri_is_invalid(node: Node) -> None:
    refused = node.refused(node.master.to_uri(), storage_uri="storage://nowhere")
    assert refused.code is grpc.StatusCode.INVALID_ARGUMENT and "unknown storage type" in refused.details
    assert not node.lock.marked


@pytest.mark.parametrize(
    ("error", "code"),
    [
        (KmsUnavailable("the KMS is down"), grpc.StatusCode.UNAVAILABLE),
        (KmsPermissionDenied("not allowed"), grpc.StatusCode.PERMISSION_DENIED),
        (KmsInvalidArgument("bad id"), grpc.StatusCode.INVALID_ARGUMENT),
        (KmsFailedPrecondition("key disabled"), grpc.StatusCode.FAILED_PRECONDITION),
        (KmsError("something else"), grpc.StatusCode.INTERNAL),
    ],
)
def test_kms_failures_while_deriving_map_to_their_status(
    node: Node, monkeypatch: pytest.MonkeyPatch, error: KmsError, code: grpc.StatusCode
) -> None:
    class FailingKms:
        def get_dek(self, dek_id: str, length: int) -> bytes:
            raise error

    monkeypatch.setattr(recovery, "open_kms", lambda kms_uri, storage_uri: FailingKms())
    refused = node.refused(node.master.to_uri())
    assert refused.code is code and str(error) in refused.details
    assert not node.lock.marked and not node.server.done.is_set()

    def failing_open(kms_uri: str, storage_uri: str) -> NoReturn:
        raise error

    monkeypatch.setattr(recovery, "open_kms", failing_open)  # a backend that checks its server on open
    refused = node.refused(node.master.to_uri())
    assert refused.code is code and f"creating the KMS client: {error}" in refused.details


def test_a_failure_after_the_unlock_is_fatal_and_reported(node: Node) -> None:
    (node.disk.mount_point() / "constellation" / "node_state.json").write_text("{}")
    refused = node.refused(node.master.to_uri())
    assert refused.code is grpc.StatusCode.INTERNAL and "node_state.json" in refused.details
    assert node.server.fatal_error is not None and node.done_calls == 1  # the process stops and exits 1
    again = node.refused(node.master.to_uri())
    assert again.code is grpc.StatusCode.FAILED_PRECONDITION


def test_recoveries_beyond_one_running_and_one_waiting_are_resource_exhausted(tmp_path: Path) -> None:
    """The client is not attested and a try may cost a LUKS key derivation: a real aTLS recovery
    server runs one Recover, queues one and refuses the rest until they finish."""
    from starlock.atls import ClientConfig, DummyIssuer, DummyValidator
    from starlock.atls.rpc import attested_channel
    from starlock.bootstrapper.recovery import serve_recovery

    node = Node(tmp_path, MasterSecret(secrets.token_bytes(32), secrets.token_bytes(32)))
    entered, release = threading.Event(), threading.Event()
    unlock = node.disk.unlock

    def slow_unlock(key: bytes) -> None:
        entered.set()
        assert release.wait(30)
        unlock(key)

    node.disk.unlock = slow_unlock  # type: ignore[method-assign]
    front = serve_recovery(node.server, DummyIssuer(insecure=True), "127.0.0.1:0")
    config = ClientConfig(validators=[DummyValidator(insecure=True)])
    message = recover_pb2.RecoverMessage(kms_uri=node.master.to_uri(), storage_uri="storage://no-store")
    results: dict[str, grpc.StatusCode] = {}

    def call(name: str) -> None:
        with attested_channel(f"127.0.0.1:{front.port}", config) as channel:
            try:
                recover_pb2_grpc.APIStub(channel).Recover(message, timeout=60)
                results[name] = grpc.StatusCode.OK
            except grpc.RpcError as exc:
                results[name] = exc.code()

    try:
        first = threading.Thread(target=call, args=("first",))
        first.start()
        assert entered.wait(30)  # the first call is inside the unlock
        others = [threading.Thread(target=call, args=(name,)) for name in ("second", "third")]
        for thread in others:
            thread.start()
        deadline = time.monotonic() + 30
        while not results and time.monotonic() < deadline:  # one of them is refused at once
            time.sleep(0.05)
        release.set()
        for thread in (first, *others):
            thread.join(60)
    finally:
        front.stop(grace=1)
    assert results["first"] is grpc.StatusCode.OK
    # whichever arrived second waited and then got the answer of the finished recovery
    assert sorted(c.name for n, c in results.items() if n != "first") == ["OK", "RESOURCE_EXHAUSTED"]
    assert len(node.lock.marked) == 1
