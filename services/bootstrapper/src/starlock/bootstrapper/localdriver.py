"""The ``local`` Kubernetes driver: for the demo and the tests, where no kubelet can run.

``init_cluster`` uses a control plane running as local processes (``starlock.kubecluster``, test
tooling; the production ``kubeadm`` driver runs ``kubeadm init`` instead) and does what the
first node's bootstrapper does after ``kubeadm init`` (spec §5.4 steps 7-10): the components
ConfigMap, the Node annotated with it, ``internal-config``. The Node is registered and marked
Ready by the driver itself, as its kubelet would.

``join_cluster`` does the kubelet's part of ``kubeadm join`` for real against the API server:
bootstrap-token discovery (the ``cluster-info`` JWS and the CA pin, as kubeadm), TLS bootstrap
with the ticket's bootstrap token (a kubelet-client CSR, approved and signed by the real
controller manager), then, as ``system:node:<name>`` with that certificate, the Node object
registered and its Ready condition set.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import hmac
import http.client
import json
import os
import ssl
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client, config, watch

from starlock.bootstrapper.initserver import InitParams
from starlock.bootstrapper.kubeobjects import (
    COMPONENTS_ANNOTATION,
    components_config_map_name,
    create_components_config_map,
    create_internal_config,
)

__all__ = ["COMPONENTS_ANNOTATION", "DiscoveryError", "LocalDriver", "components_config_map_name", "discover_ca"]

CSR_TIMEOUT = 60.0
DISCOVERY_TIMEOUT = 60.0  # kubeadm waits up to 5 min for the token's cluster-info signature


class DiscoveryError(Exception):
    """Token discovery failed: cluster-info unsigned for this token, a bad signature, or a CA
    whose public key does not match the pin."""


def _write_private(path: Path, data: bytes) -> None:
    """0600 in a 0700 directory; replaced atomically (a re-join after a reset rewrites it)."""
    path.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
    tmp.replace(path)


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _cluster_info(host: str, port: int, timeout: float) -> dict[str, str]:
    context = ssl._create_unverified_context()  # noqa: S323 - trust comes from the JWS and the pin (discover_ca)
    conn = http.client.HTTPSConnection(host.strip("[]"), port, context=context, timeout=timeout)
    try:
        conn.request("GET", "/api/v1/namespaces/kube-public/configmaps/cluster-info")
        response = conn.getresponse()
        body = response.read(1024 * 1024)
    finally:
        conn.close()
    if response.status != 200:
        raise DiscoveryError(f"cluster-info: HTTP {response.status}")
    data = json.loads(body).get("data") or {}
    return data if isinstance(data, dict) else {}


def discover_ca(
    api_server_endpoint: str, token: str, ca_pin: str, timeout: float = 10.0, *, wait_for_signature: float = 0.0
) -> bytes:
    """kubeadm's bootstrap-token discovery: read ``kube-public/cluster-info`` without trusting
    the server yet, check its JWS for this token (HMAC-SHA256 keyed with the token secret), and
    accept the CA only if its public key matches ``ca_pin`` (``sha256:<hex>``).

    A token created moments ago may not be signed yet (the controller manager's bootstrap signer
    adds the JWS): like kubeadm, wait up to ``wait_for_signature`` seconds for a signature for
    this token ID to appear. A signature that does not verify fails at once."""
    token_id, _, token_secret = token.partition(".")
    host, _, port = api_server_endpoint.rpartition(":")
    deadline = time.monotonic() + wait_for_signature
    while True:
        data = _cluster_info(host, int(port), timeout)
        if f"jws-kubeconfig-{token_id}" in data or time.monotonic() >= deadline:
            break
        time.sleep(0.5)
    kubeconfig, jws = data.get("kubeconfig", ""), data.get(f"jws-kubeconfig-{token_id}", "")
    header_b64, _, signature = jws.partition("..")
    expected = hmac.new(token_secret.encode(), f"{header_b64}.{_b64url(kubeconfig.encode())}".encode(), hashlib.sha256)
    if not jws or not hmac.compare_digest(_b64url(expected.digest()), signature):
        raise DiscoveryError("cluster-info is not signed for this bootstrap token")
    import yaml

    cluster = yaml.safe_load(kubeconfig)["clusters"][0]["cluster"]
    ca_pem = base64.b64decode(cluster["certificate-authority-data"])
    for cert in x509.load_pem_x509_certificates(ca_pem):
        spki = cert.public_key().public_bytes(
            serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
        )
        if hmac.compare_digest("sha256:" + hashlib.sha256(spki).hexdigest(), ca_pin):
            return ca_pem
    raise DiscoveryError("the cluster CA does not match the pinned public key")


class LocalDriver:
    def __init__(
        self, node_name: str, node_ip: str, admin_kubeconfig: Callable[[], Path] | None, kubelet_dir: Path
    ) -> None:
        """``admin_kubeconfig()``: the admin kubeconfig of the running control plane (for
        ``init_cluster``; a ``starlock.kubecluster.ControlPlane`` has one). ``kubelet_dir``:
        where the kubelet's kubeconfig, CA and client certificate are kept (on the state disk),
        so :meth:`start_kubelet` works after a reboot."""
        self.node_name = node_name
        self.node_ip = node_ip
        self._admin_kubeconfig = admin_kubeconfig
        self.kubelet_dir = kubelet_dir

    @property
    def kubelet_kubeconfig(self) -> Path:
        return self.kubelet_dir / "kubelet.conf"

    def start_kubelet(self) -> None:
        """What (re)starting the kubelet does for the API server: the Node reported Ready, with
        the credentials kept at init or join."""
        if not self.kubelet_kubeconfig.exists():
            raise FileNotFoundError(f"{self.kubelet_kubeconfig}: the node was never initialized or joined here")
        api = config.new_client_from_config(config_file=str(self.kubelet_kubeconfig))  # type: ignore[no-untyped-call]
        self._register_node(client.CoreV1Api(api), {}, control_plane=False)

    # --- init ------------------------------------------------------------------------------

    def init_cluster(self, params: InitParams) -> bytes:
        if self._admin_kubeconfig is None:
            raise RuntimeError("the local driver was given no control plane to initialize")
        admin_kubeconfig = self._admin_kubeconfig()
        admin = config.new_client_from_config(config_file=str(admin_kubeconfig))  # type: ignore[no-untyped-call]
        core = client.CoreV1Api(admin)
        name = create_components_config_map(core, params)
        self._register_node(core, {COMPONENTS_ANNOTATION: name}, control_plane=True)
        create_internal_config(core)
        kubeconfig = admin_kubeconfig.read_bytes()
        _write_private(self.kubelet_kubeconfig, kubeconfig)  # kubeadm init leaves the node its credentials too
        return kubeconfig

    # --- join ------------------------------------------------------------------------------

    def join_cluster(
        self, api_server_endpoint: str, ca_pin: str, token: str, *, control_plane: bool, components: Sequence[Any] = ()
    ) -> None:
        """Discovery as ``kubeadm join`` does it, then TLS bootstrap and node registration.
        ``components`` are not installed: the demo machine runs no kubelet."""
        api_server = f"https://{api_server_endpoint}"
        ca_pem = discover_ca(api_server_endpoint, token, ca_pin, wait_for_signature=DISCOVERY_TIMEOUT)
        with tempfile.TemporaryDirectory(prefix="starlock-kubelet-") as tmp:
            ca_file = Path(tmp) / "ca.crt"
            ca_file.write_bytes(ca_pem)
            bootstrap = client.Configuration()
            bootstrap.host = api_server
            bootstrap.ssl_ca_cert = str(ca_file)
            bootstrap.api_key = {"authorization": token}
            bootstrap.api_key_prefix = {"authorization": "Bearer"}
            key = ec.generate_private_key(ec.SECP256R1())
            cert_pem = self._tls_bootstrap(client.ApiClient(bootstrap), key)
        key_pem = key.private_bytes(
            serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
        )
        # As the kubelet after its TLS bootstrap: the CA, the rotated client certificate and a
        # kubeconfig that uses them, kept for restarts.
        ca_path, pair_path = self.kubelet_dir / "ca.crt", self.kubelet_dir / "kubelet-client-current.pem"
        _write_private(ca_path, ca_pem)
        _write_private(pair_path, cert_pem + key_pem)
        _write_private(
            self.kubelet_kubeconfig,
            json.dumps(
                {
                    "apiVersion": "v1",
                    "kind": "Config",
                    "clusters": [
                        {"name": "default", "cluster": {"server": api_server, "certificate-authority": str(ca_path)}}
                    ],
                    "users": [
                        {
                            "name": "kubelet",
                            "user": {"client-certificate": str(pair_path), "client-key": str(pair_path)},
                        }
                    ],
                    "contexts": [{"name": "default", "context": {"cluster": "default", "user": "kubelet"}}],
                    "current-context": "default",
                }
            ).encode(),
        )
        # NodeRestriction: a node may not label itself node-role.*; kubeadm's mark-control-plane
        # phase does that with admin credentials, which the local driver does not have here.
        self.start_kubelet()

    def _tls_bootstrap(self, api: client.ApiClient, key: ec.EllipticCurvePrivateKey) -> bytes:
        subject = x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{self.node_name}"),
            ]
        )
        csr = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
        certs = client.CertificatesV1Api(api)
        name = f"node-csr-{self.node_name}-{int(time.time() * 1000)}"
        certs.create_certificate_signing_request(
            client.V1CertificateSigningRequest(
                metadata=client.V1ObjectMeta(name=name),
                spec=client.V1CertificateSigningRequestSpec(
                    request=base64.b64encode(csr.public_bytes(serialization.Encoding.PEM)).decode(),
                    signer_name="kubernetes.io/kube-apiserver-client-kubelet",
                    usages=["digital signature", "client auth"],
                ),
            )
        )
        # Wait as the kubelet does (client-go's WaitForCertificate): a watch on this one CSR, so the
        # certificate arrives the moment the controller manager signs it, and a join storm's
        # hundred nodes hold one quiet connection each instead of polling. A watch without a
        # resourceVersion starts with the CSR's current state: a signature before it is not missed.
        deadline = time.monotonic() + CSR_TIMEOUT
        while (left := deadline - time.monotonic()) > 0:
            stream = watch.Watch()  # type: ignore[no-untyped-call]
            try:
                for event in stream.stream(  # type: ignore[no-untyped-call]
                    certs.list_certificate_signing_request,
                    field_selector=f"metadata.name={name}",
                    timeout_seconds=max(1, int(left)),
                ):
                    status = getattr(event["object"], "status", None)
                    if status is not None and status.certificate:
                        return base64.b64decode(status.certificate)
            finally:
                stream.stop()  # type: ignore[no-untyped-call]
        raise TimeoutError(f"the kubelet client CSR {name} was not signed within {CSR_TIMEOUT:.0f} s")

    def _register_node(self, core: client.CoreV1Api, annotations: dict[str, str], *, control_plane: bool) -> None:
        labels = {"kubernetes.io/hostname": self.node_name}
        if control_plane:
            labels["node-role.kubernetes.io/control-plane"] = ""
        node = client.V1Node(
            metadata=client.V1ObjectMeta(name=self.node_name, labels=labels, annotations=annotations or None),
        )
        try:
            core.create_node(node)
        except client.ApiException as exc:
            if exc.status != 409:
                raise
        now = datetime.datetime.now(datetime.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")
        status = {
            "status": {
                "conditions": [
                    {
                        "type": "Ready",
                        "status": "True",
                        "reason": "KubeletReady",
                        "message": "registered by the starlock local driver",
                        "lastHeartbeatTime": now,
                        "lastTransitionTime": now,
                    }
                ],
                "addresses": [{"type": "InternalIP", "address": self.node_ip}],
            }
        }
        core.patch_node_status(self.node_name, status)
