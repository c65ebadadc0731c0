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
from collections.abc import Callable
from pathlib import Path
from typing import Any

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client, config

from starlock.bootstrapper.initserver import InitParams

__all__ = ["COMPONENTS_ANNOTATION", "DiscoveryError", "LocalDriver", "components_config_map_name", "discover_ca"]

COMPONENTS_ANNOTATION = "constellation.edgeless.systems/kubernetes-components"
CSR_TIMEOUT = 60.0


class DiscoveryError(Exception):
    """Token discovery failed: cluster-info unsigned for this token, a bad signature, or a CA
    whose public key does not match the pin."""


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def discover_ca(api_server_endpoint: str, token: str, ca_pin: str, timeout: float = 10.0) -> bytes:
    """kubeadm's bootstrap-token discovery: read ``kube-public/cluster-info`` without trusting
    the server yet, check its JWS for this token (HMAC-SHA256 keyed with the token secret), and
    accept the CA only if its public key matches ``ca_pin`` (``sha256:<hex>``)."""
    token_id, _, token_secret = token.partition(".")
    host, _, port = api_server_endpoint.rpartition(":")
    context = ssl._create_unverified_context()  # noqa: S323 - trust comes from the JWS and the pin below
    conn = http.client.HTTPSConnection(host.strip("[]"), int(port), context=context, timeout=timeout)
    try:
        conn.request("GET", "/api/v1/namespaces/kube-public/configmaps/cluster-info")
        response = conn.getresponse()
        body = response.read(1024 * 1024)
    finally:
        conn.close()
    if response.status != 200:
        raise DiscoveryError(f"cluster-info: HTTP {response.status}")
    data = json.loads(body).get("data") or {}
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


def components_config_map_name(components: list[Any]) -> str:
    digest = hashlib.sha256("".join(c.hash for c in components).encode()).hexdigest()
    return f"k8s-components-sha256-{digest}"


def _components_json(components: list[Any]) -> str:
    items = []
    for c in components:
        item: dict[str, Any] = {}
        for name in ("url", "hash", "install_path", "extract"):
            value = getattr(c, name)
            if value:
                item[name] = value
        items.append(item)
    return json.dumps(items, separators=(",", ":"))


class LocalDriver:
    def __init__(self, node_name: str, node_ip: str, plane: Callable[[], Any]) -> None:
        """``plane()`` returns the running control plane (a ``starlock.kubecluster.ControlPlane``)."""
        self.node_name = node_name
        self.node_ip = node_ip
        self._plane = plane

    # --- init ------------------------------------------------------------------------------

    def init_cluster(self, params: InitParams) -> bytes:
        plane = self._plane()
        admin = config.new_client_from_config(config_file=str(plane.admin_kubeconfig))  # type: ignore[no-untyped-call]
        core = client.CoreV1Api(admin)
        name = components_config_map_name(params.components)
        try:
            core.create_namespaced_config_map(
                "kube-system",
                client.V1ConfigMap(
                    metadata=client.V1ObjectMeta(name=name),
                    data={
                        "components": _components_json(params.components),
                        "cluster-version": params.kubernetes_version,
                    },
                    immutable=True,
                ),
            )
        except client.ApiException as exc:
            if exc.status != 409:
                raise
        self._register_node(core, {COMPONENTS_ANNOTATION: name}, control_plane=True)
        try:
            core.create_namespaced_config_map(
                "kube-system", client.V1ConfigMap(metadata=client.V1ObjectMeta(name="internal-config"))
            )
        except client.ApiException as exc:
            if exc.status != 409:
                raise
        return bytes(plane.admin_kubeconfig.read_bytes())

    # --- join ------------------------------------------------------------------------------

    def join_cluster(self, api_server_endpoint: str, ca_pin: str, token: str, *, control_plane: bool) -> None:
        """Discovery as ``kubeadm join`` does it, then TLS bootstrap and node registration."""
        api_server = f"https://{api_server_endpoint}"
        ca_pem = discover_ca(api_server_endpoint, token, ca_pin)
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
            cert_file, key_file = Path(tmp) / "kubelet.crt", Path(tmp) / "kubelet.key"
            cert_file.write_bytes(cert_pem)
            fd = os.open(key_file, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
            with os.fdopen(fd, "wb") as out:
                out.write(
                    key.private_bytes(
                        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
                    )
                )
            as_node = client.Configuration()
            as_node.host = api_server
            as_node.ssl_ca_cert = str(ca_file)
            as_node.cert_file = str(cert_file)
            as_node.key_file = str(key_file)
            # NodeRestriction: a node may not label itself node-role.*; kubeadm's mark-control-plane
            # phase does that with admin credentials, which the local driver does not have here.
            self._register_node(client.CoreV1Api(client.ApiClient(as_node)), {}, control_plane=False)

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
        deadline = time.monotonic() + CSR_TIMEOUT
        while time.monotonic() < deadline:
            status = certs.read_certificate_signing_request(name).status
            if status is not None and status.certificate:
                return base64.b64decode(status.certificate)
            time.sleep(0.2)
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
