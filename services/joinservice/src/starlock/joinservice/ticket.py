"""Issuing join and rejoin tickets (spec §2.2, §2.3): the steps, on injected adapters.

:class:`TicketIssuer` takes the request and the attested peer and returns the response. Adapters:
the key service client, the Kubernetes adapter, the cluster files (CA, admin.conf, kubeadm
config) and a clock. Checks that need no I/O run first, so a malformed request changes nothing.
"""

from __future__ import annotations

import datetime
import ipaddress
import re
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import yaml

from starlock.joinproto import join_pb2
from starlock.joinservice import components as comps
from starlock.joinservice import kubeletca, sshca, tokens
from starlock.joinservice.errors import BadRequest, JoinServiceError

__all__ = ["CONTROL_PLANE_FILES", "ClusterFiles", "TicketIssuer", "k8s_node_name"]

# spec §2.6: file names under <kubernetes dir>/pki
CONTROL_PLANE_FILES = (
    "ca.key", "sa.key", "front-proxy-ca.key", "etcd/ca.key",
    "ca.crt", "sa.pub", "front-proxy-ca.crt", "etcd/ca.crt",
)  # fmt: skip
WORKER_DEADLINE = datetime.timedelta(hours=48)
# The NodeVersion CR and its components ConfigMap change on upgrades only; reading them once per
# COMPONENTS_TTL seconds instead of per ticket saves two API round trips per ticket.
COMPONENTS_TTL = 2.0
CONTROL_PLANE_DEADLINE = datetime.timedelta(minutes=10)
MAX_FILE_BYTES = 1024 * 1024
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}")
# RFC 1123 subdomain (Kubernetes IsDNS1123Subdomain); upstream's join-service copy of the regex
# had a doubled backslash that refused names with dots: fixed here.
_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


class Keys(Protocol):
    def get_data_key(self, data_key_id: str, length: int, *, timeout: float | None = None) -> bytes: ...


class Kube(Protocol):
    def create_secret(self, manifest: dict[str, Any]) -> None: ...
    def components_reference(self) -> str: ...
    def components_config_map(self, name: str) -> tuple[str, str]: ...
    def apply_worker_joining_node(self, node: str, components_ref: str, deadline: datetime.datetime) -> None: ...
    def claim_control_plane(
        self, node: str, components_ref: str, deadline: datetime.datetime, now: datetime.datetime
    ) -> None: ...


def k8s_node_name(name: str) -> str:
    """Lower-case, ``_`` → ``-``, and an RFC 1123 subdomain of at most 253 characters."""
    out = name.lower().replace("_", "-")
    if len(out) > 253 or not _SUBDOMAIN.fullmatch(out):
        raise BadRequest(f"node name {name[:64]!r} is not a valid Kubernetes node name")
    return out


def _read(path: Path) -> bytes:
    try:
        with path.open("rb") as f:
            data = f.read(MAX_FILE_BYTES + 1)
    except OSError as exc:
        raise JoinServiceError(f"cannot read {path}: {exc.strerror}") from None
    if len(data) > MAX_FILE_BYTES:
        raise JoinServiceError(f"{path} is larger than {MAX_FILE_BYTES} bytes")
    return data


@dataclass
class ClusterFiles:
    """``/etc/kubernetes`` (admin.conf, pki/) and the kubeadm ClusterConfiguration file.

    The CA and the CA pins are read once and re-read when the files change (mtime and size).
    """

    kubernetes_dir: Path
    kubeadm_config: Path | None = None
    _cache: dict[str, tuple[tuple[tuple[int, int], ...], Any]] = field(default_factory=dict, repr=False)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)

    def _cached(self, key: str, paths: tuple[Path, ...], build: Callable[[], Any]) -> Any:
        try:
            stamp = tuple((p.stat().st_mtime_ns, p.stat().st_size) for p in paths)
        except OSError as exc:
            raise JoinServiceError(f"cannot read {exc.filename}: {exc.strerror}") from None
        with self._lock:
            hit = self._cache.get(key)
            if hit is not None and hit[0] == stamp:
                return hit[1]
        value = build()
        with self._lock:
            self._cache[key] = (stamp, value)
        return value

    def ca(self) -> kubeletca.CertificateAuthority:
        crt, key = self.kubernetes_dir / "pki" / "ca.crt", self.kubernetes_dir / "pki" / "ca.key"
        return self._cached("ca", (crt, key), lambda: kubeletca.load_ca(_read(crt), _read(key)))  # type: ignore[no-any-return]

    def ca_pins(self) -> list[str]:
        admin = self.kubernetes_dir / "admin.conf"

        def build() -> list[str]:
            try:
                doc = yaml.safe_load(_read(admin))
            except yaml.YAMLError:
                raise JoinServiceError(f"{admin} is not YAML") from None
            if not isinstance(doc, dict):
                raise JoinServiceError(f"{admin} is not a kubeconfig")
            pins = tokens.ca_pins_from_kubeconfig(doc)
            if not pins:
                raise JoinServiceError(f"{admin}: no CA certificate to pin")
            return pins

        return self._cached("pins", (admin,), build)  # type: ignore[no-any-return]

    def control_plane_files(self) -> list[tuple[str, bytes]]:
        return [(name, _read(self.kubernetes_dir / "pki" / name)) for name in CONTROL_PLANE_FILES]

    def cert_sans(self) -> list[str]:
        """``apiServer.certSANs`` of the kubeadm ClusterConfiguration; problems are ignored (as upstream)."""
        if self.kubeadm_config is None:
            return []
        try:
            doc = yaml.safe_load(_read(self.kubeadm_config))
            sans = doc["apiServer"]["certSANs"]
        except (JoinServiceError, yaml.YAMLError, KeyError, TypeError):
            return []
        return [s for s in sans if isinstance(s, str)] if isinstance(sans, list) else []


def _host(endpoint: str) -> str:
    """The host part of ``ip:port`` / ``[v6]:port`` (upstream's principal fallback kept the port)."""
    host, sep, port = endpoint.rpartition(":")
    if not sep or not port.isdigit():
        return endpoint
    host = host.strip("[]")
    try:
        return str(ipaddress.ip_address(host))
    except ValueError:
        return host


@dataclass
class Ticket:
    """The response and what the audit line says about it (no secret in ``node`` or ``principals``)."""

    response: Any
    node: str = ""


class TicketIssuer:
    def __init__(
        self,
        keys: Keys,
        kube: Kube,
        files: ClusterFiles,
        *,
        measurement_salt: bytes,
        api_server_endpoint: str,
        clock: Callable[[], datetime.datetime] = lambda: datetime.datetime.now(datetime.UTC),
        require_csr_ip_is_peer: bool = False,
        components_ttl: float = COMPONENTS_TTL,
        monotonic: Callable[[], float] = time.monotonic,
    ) -> None:
        self._keys = keys
        self._kube = kube
        self._files = files
        self._salt = measurement_salt
        self._endpoint = api_server_endpoint
        self._clock = clock
        self._require_csr_ip_is_peer = require_csr_ip_is_peer
        self._components_ttl = components_ttl
        self._monotonic = monotonic
        self._components_lock = threading.Lock()
        self._components: tuple[float, str, list[Any], str] | None = None

    def _current_components(self) -> tuple[str, list[Any], str]:
        """(ConfigMap name, components, cluster version), read at most every ``components_ttl`` s."""
        now = self._monotonic()
        with self._components_lock:
            cached = self._components
        if cached is not None and now < cached[0]:
            return cached[1], cached[2], cached[3]
        ref = self._kube.components_reference()
        components_json, cluster_version = self._kube.components_config_map(ref)
        components = comps.parse_components(components_json)
        with self._components_lock:
            self._components = (now + self._components_ttl, ref, components, cluster_version)
        return ref, components, cluster_version

    def _check_request(self, req: join_pb2.IssueJoinTicketRequest, peer_host: str) -> tuple[str, Any]:
        if not _UUID.fullmatch(req.disk_uuid):
            raise BadRequest("disk_uuid is not a UUID (8-4-4-4-12 hexadecimal digits)")
        node = k8s_node_name(kubeletca.node_name_from_csr(req.certificate_request))
        if self._require_csr_ip_is_peer:
            ips = [str(ip) for ip in kubeletca.csr_ip_addresses(req.certificate_request)]
            if any(ip != peer_host for ip in ips):
                raise BadRequest("certificate_request: an IP address in the CSR is not the peer's address")
        host_key = sshca.parse_host_public_key(req.host_public_key) if req.host_public_key else None
        if len(req.host_certificate_principals) > sshca.MAX_PRINCIPALS:
            raise BadRequest(f"more than {sshca.MAX_PRINCIPALS} host certificate principals")
        return node, host_key

    def join(self, req: join_pb2.IssueJoinTicketRequest, peer_endpoint: str, budget: float | None = None) -> Ticket:
        peer_host = _host(peer_endpoint)
        node, host_key = self._check_request(req, peer_host)
        now = self._clock()

        components_ref, components, cluster_version = self._current_components()
        if req.is_control_plane:
            # Claimed before anything is created: a second control plane fails without side effects.
            self._kube.claim_control_plane(node, components_ref, now + CONTROL_PLANE_DEADLINE, now)

        measurement_secret = self._keys.get_data_key("measurementSecret", 32, timeout=budget)
        state_disk_key = self._keys.get_data_key(req.disk_uuid, 32, timeout=budget)
        ca_seed = self._keys.get_data_key("ca_emergency_ssh", 32, timeout=budget)
        ssh_ca = sshca.ca_from_seed(ca_seed)

        host_cert = b""
        if host_key is not None:
            principals = [*req.host_certificate_principals, *self._files.cert_sans()] or [peer_host]
            host_cert = sshca.host_certificate(host_key, principals, ssh_ca, now)

        kubelet_cert = kubeletca.sign_kubelet_csr(req.certificate_request, self._files.ca(), now)
        pins = self._files.ca_pins()
        cp_files = self._files.control_plane_files() if req.is_control_plane else []

        token = tokens.generate_token()
        self._kube.create_secret(tokens.token_secret_manifest(token, now))
        if not req.is_control_plane:
            self._kube.apply_worker_joining_node(node, components_ref, now + WORKER_DEADLINE)

        response = join_pb2.IssueJoinTicketResponse(
            state_disk_key=state_disk_key,
            measurement_salt=self._salt,
            measurement_secret=measurement_secret,
            kubelet_cert=kubelet_cert,
            api_server_endpoint=self._endpoint,
            token=str(token),
            discovery_token_ca_cert_hash=pins[0],
            control_plane_files=[join_pb2.control_plane_cert_or_key(name=n, data=d) for n, d in cp_files],
            kubernetes_version=cluster_version,
            kubernetes_components=components,
            authorized_ca_public_key=sshca.authorized_key_line(ssh_ca.public_key()),
            host_certificate=host_cert,
        )
        return Ticket(response=response, node=node)

    def rejoin(self, req: join_pb2.IssueRejoinTicketRequest, budget: float | None = None) -> Ticket:
        if not _UUID.fullmatch(req.disk_uuid):
            raise BadRequest("disk_uuid is not a UUID (8-4-4-4-12 hexadecimal digits)")
        measurement_secret = self._keys.get_data_key("measurementSecret", 32, timeout=budget)
        state_disk_key = self._keys.get_data_key(req.disk_uuid, 32, timeout=budget)
        return Ticket(
            response=join_pb2.IssueRejoinTicketResponse(
                state_disk_key=state_disk_key, measurement_secret=measurement_secret
            )
        )
