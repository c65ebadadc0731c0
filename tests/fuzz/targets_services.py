"""Fuzz targets of the join and init requests, as the services receive them.

The bytes are the serialized request (what gRPC hands the deserializer); the handlers run on
in-memory adapters, without a server:

* join: ``IssueJoinTicketRequest`` → :meth:`TicketIssuer.join` (all request checks, the CSR
  signing, the SSH host certificate), ``IssueRejoinTicketRequest`` → :meth:`TicketIssuer.rejoin`.
  Only :class:`BadRequest` may escape (any other error of a request would be a wrong status).
* init: ``InitRequest`` → ``InitServer._init`` up to ``init_success``. Only ``InitFailed`` may
  escape, and a request must never fail after the node lock (``fatal_error`` set): a malformed
  request has to be refused before the point of no return (ARCHITECTURE principle 5).

Protobuf's ``DecodeError`` is the typed error of the deserializer and may escape too.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import shutil
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID
from fuzz_common import InvariantViolation, check
from google.protobuf.message import DecodeError

OneInput = Callable[[bytes], None]

NOW = datetime.datetime(2026, 1, 15, 12, 0, tzinfo=datetime.UTC)
INIT_SECRET = b"fuzz-init-secret-0123456789"
DISK_UUID = "6f1c2b9e-4a51-4d7e-9d58-0b3f2a9c1e77"


def _tmpdir(prefix: str) -> Path:
    path = Path(tempfile.mkdtemp(prefix=prefix))
    import atexit

    atexit.register(shutil.rmtree, path, True)
    return path


def _csr(cn: str, org: str = "system:nodes", ips: tuple[str, ...] = ("10.9.0.5",)) -> bytes:
    import ipaddress

    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name([x509.NameAttribute(NameOID.ORGANIZATION_NAME, org), x509.NameAttribute(NameOID.COMMON_NAME, cn)])
    )
    if ips:
        san = x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(ip)) for ip in ips])
        builder = builder.add_extension(san, critical=False)
    return builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def _ssh_wire_key() -> bytes:
    public = ed25519.Ed25519PrivateKey.generate().public_key()
    line = public.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH)
    return base64.b64decode(line.split()[1])


def _self_signed_ca() -> tuple[bytes, bytes]:
    key = ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kubernetes")])
    cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(NOW - datetime.timedelta(days=1))
        .not_valid_after(NOW + datetime.timedelta(days=3650))
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
        .sign(key, hashes.SHA256())
    )
    key_pem = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )
    return cert.public_bytes(serialization.Encoding.PEM), key_pem


class _Keys:
    def get_data_key(self, data_key_id: str, length: int, *, timeout: float | None = None) -> bytes:
        return hashlib.shake_256(data_key_id.encode()).digest(length)


class _Kube:
    def create_secret(self, manifest: dict[str, Any]) -> None:
        pass

    def components_reference(self) -> str:
        return "k8s-components-1"

    def components_config_map(self, name: str) -> tuple[str, str]:
        return '[{"url": "https://example.invalid/kubelet", "hash": "sha256:00", "installPath": "/x"}]', "v1.30.4"

    def apply_worker_joining_node(self, node: str, components_ref: str, deadline: datetime.datetime) -> None:
        pass

    def claim_control_plane(
        self, node: str, components_ref: str, deadline: datetime.datetime, now: datetime.datetime
    ) -> None:
        pass


def _cluster_files() -> Any:
    from starlock.joinservice.ticket import CONTROL_PLANE_FILES, ClusterFiles

    root = _tmpdir("starlock-fuzz-k8s-")
    (root / "pki" / "etcd").mkdir(parents=True)
    ca_pem, key_pem = _self_signed_ca()
    for name in CONTROL_PLANE_FILES:
        (root / "pki" / name).write_bytes(b"-----BEGIN FAKE-----\n" + name.encode() + b"\n-----END FAKE-----\n")
    (root / "pki" / "ca.crt").write_bytes(ca_pem)
    (root / "pki" / "ca.key").write_bytes(key_pem)
    ca_data = base64.b64encode(ca_pem).decode()
    (root / "admin.conf").write_text(
        "apiVersion: v1\nkind: Config\ncurrent-context: admin\n"
        f"clusters:\n- name: c\n  cluster:\n    certificate-authority-data: {ca_data}\n    server: https://10.9.0.1:6443\n"
        "contexts:\n- name: admin\n  context:\n    cluster: c\n    user: admin\n"
    )
    return ClusterFiles(root)


def build_join_request() -> OneInput:
    from starlock.joinproto import join_pb2
    from starlock.joinservice.errors import BadRequest
    from starlock.joinservice.ticket import TicketIssuer

    issuer = TicketIssuer(
        _Keys(),
        _Kube(),
        _cluster_files(),
        measurement_salt=bytes(32),
        api_server_endpoint="10.9.0.1:6443",
        clock=lambda: NOW,
        require_csr_ip_is_peer=True,
    )

    def one(data: bytes) -> None:
        if not data:
            return
        if data[0] & 1:
            rejoin = join_pb2.IssueRejoinTicketRequest.FromString(data[1:])
            ticket = issuer.rejoin(rejoin)
            check(len(ticket.response.state_disk_key) == 32, "rejoin state disk key is not 32 bytes")
            return
        request = join_pb2.IssueJoinTicketRequest.FromString(data[1:])
        try:
            ticket = issuer.join(request, "10.9.0.5:41234")
        except BadRequest:
            raise
        except DecodeError as exc:  # not from the request parse: a wrong status for a request
            raise InvariantViolation(f"join raised DecodeError: {exc}") from exc
        check(ticket.node != "", "a ticket for no node")
        check(len(ticket.response.state_disk_key) == 32, "state disk key is not 32 bytes")

    return one


def join_seeds() -> list[bytes]:
    from starlock.joinproto import join_pb2

    requests = [
        join_pb2.IssueJoinTicketRequest(
            disk_uuid=DISK_UUID, certificate_request=_csr("system:node:worker-0"), is_control_plane=False
        ),
        join_pb2.IssueJoinTicketRequest(
            disk_uuid=DISK_UUID.upper(),
            certificate_request=_csr("system:node:Control_Plane.0", ips=()),
            is_control_plane=True,
            host_public_key=_ssh_wire_key(),
            host_certificate_principals=["10.9.0.5", "cp-0.example"],
        ),
    ]
    seeds = [b"\x00" + r.SerializeToString() for r in requests]
    seeds.append(b"\x01" + join_pb2.IssueRejoinTicketRequest(disk_uuid=DISK_UUID).SerializeToString())
    return seeds


class _NodeLock:
    def try_lock_once(self, cluster_id: bytes) -> bool:
        return True


class _Disk:
    def __init__(self, root: Path) -> None:
        self.root = root

    def uuid(self) -> str:
        return DISK_UUID

    def mount_point(self) -> Path:
        return self.root

    def is_initialized(self) -> bool:
        return False

    def update_passphrase(self, key: bytes) -> None:
        check(len(key) == 32, "state disk key is not 32 bytes")

    def unlock(self, key: bytes) -> None:
        pass

    def mark_for_reset(self) -> None:
        pass


class _Driver:
    def init_cluster(self, params: Any) -> bytes:
        return b"apiVersion: v1\nkind: Config\n"


def build_init_request() -> OneInput:
    import bcrypt
    from targets_kms import no_vault_io

    from starlock.bootstrapper import Cleaner
    from starlock.bootstrapper.initserver import InitFailed, InitServer
    from starlock.joinproto import init_pb2

    no_vault_io()
    secret_hash = bcrypt.hashpw(INIT_SECRET, bcrypt.gensalt(rounds=4))
    root = _tmpdir("starlock-fuzz-init-")
    ssh_dir, disk_dir = root / "ssh", root / "disk"
    ssh_dir.mkdir()
    host_key = ed25519.Ed25519PrivateKey.generate().private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH, serialization.NoEncryption()
    )

    def one(data: bytes) -> None:
        request = init_pb2.InitRequest.FromString(data)
        for path in (ssh_dir, disk_dir):
            shutil.rmtree(path, ignore_errors=True)
            path.mkdir()
        (ssh_dir / "ssh_host_ed25519_key").write_bytes(host_key)
        server = InitServer(
            init_secret_hash=secret_hash,
            node_lock=_NodeLock(),
            disk=_Disk(disk_dir),  # the StateDisk protocol, in memory
            driver=_Driver(),
            cleaner=Cleaner(),
            ssh_dir=ssh_dir,
            principals=lambda: ["10.9.0.2"],
            read_logs=lambda: b"",
            clock=lambda: NOW,
        )
        try:
            responses = list(server._init(request))
        except InitFailed:
            if server.fatal_error is not None:
                raise InvariantViolation(
                    "the init request failed after the node lock (the node is now unusable): "
                    f"{type(server.fatal_error).__name__}: {server.fatal_error}"
                ) from None
            raise
        check(len(responses) == 1 and responses[0].HasField("init_success"), "Init ended without init_success")

    return one


def init_seeds() -> list[bytes]:
    from starlock.joinproto import init_pb2

    base = {
        "kms_uri": "kms://cluster-kms?key=QUJDREVGR0hJSktMTU5PUFFSU1RVVldYWVphYmNkZWY=&salt=c2FsdHNhbHRzYWx0c2FsdA==",
        "measurement_salt": bytes(range(32)),
        "init_secret": INIT_SECRET,
        "kubernetes_version": "v1.30.4",
    }
    requests = [
        init_pb2.InitRequest(**base),
        init_pb2.InitRequest(
            **base,
            storage_uri="storage://no-store",
            cluster_name="fuzz",
            apiserver_cert_sans=["10.9.0.1", "api.example"],
            service_cidr="10.96.0.0/12",
            conformance_mode=True,
        ),
        init_pb2.InitRequest(**{**base, "kms_uri": "kms://vault?address=https://v:8200&keyName=k&token=t"}),
    ]
    return [r.SerializeToString() for r in requests]


def allowed_join() -> tuple[type[BaseException], ...]:
    from starlock.joinservice.errors import BadRequest

    return (DecodeError, BadRequest)


def allowed_init() -> tuple[type[BaseException], ...]:
    from starlock.bootstrapper.initserver import InitFailed

    return (DecodeError, InitFailed)
