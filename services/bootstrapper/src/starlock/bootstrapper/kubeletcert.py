"""The kubelet's serving key and certificate (spec §2.7, §5.4 step 4).

Every node makes a fresh ECDSA P-256 key and a CSR (``O=system:nodes``,
``CN=system:node:<name>``, its VPC IP as IP SAN). A joining node sends the CSR in its ticket
request and gets the certificate from the join service. The first node has no join service to
ask: after ``kubeadm init phase certs`` it signs the CSR itself with the cluster CA kubeadm just
wrote, with the same profile the join service uses (:mod:`starlock.joinservice.kubeletca`), so
the KubeletConfiguration's ``tlsCertFile`` / ``tlsPrivateKeyFile`` exist before the kubelet
starts.
"""

from __future__ import annotations

import datetime
import ipaddress
from pathlib import Path

from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from starlock.bootstrapper.ssh import write_private

__all__ = ["KUBELET_CERT_FILE", "KUBELET_KEY_FILE", "key_pem", "kubelet_csr", "write_first_node_certificate"]

KUBELET_CERT_FILE = "kubelet-client-crt.pem"
KUBELET_KEY_FILE = "kubelet-client-key.pem"


def kubelet_csr(node_name: str, node_ip: str) -> tuple[ec.EllipticCurvePrivateKey, bytes]:
    """A fresh P-256 key and the DER CSR for it (spec §2.7, node side)."""
    key = ec.generate_private_key(ec.SECP256R1())
    builder = x509.CertificateSigningRequestBuilder().subject_name(
        x509.Name(
            [
                x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
                x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node_name}"),
            ]
        )
    )
    if node_ip:
        builder = builder.add_extension(
            x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address(node_ip))]), critical=False
        )
    return key, builder.sign(key, hashes.SHA256()).public_bytes(serialization.Encoding.DER)


def key_pem(key: ec.EllipticCurvePrivateKey) -> bytes:
    """PEM ``EC PRIVATE KEY`` (SEC1), as upstream writes it."""
    return key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.TraditionalOpenSSL, serialization.NoEncryption()
    )


def write_first_node_certificate(
    pki_dir: Path, out_dir: Path, node_name: str, node_ip: str, now: datetime.datetime
) -> None:
    """Sign the first node's kubelet CSR with ``pki_dir``'s ca.crt/ca.key; write key and cert (0600)."""
    from starlock.joinservice.kubeletca import load_ca, sign_kubelet_csr

    ca = load_ca((pki_dir / "ca.crt").read_bytes(), (pki_dir / "ca.key").read_bytes())
    key, csr = kubelet_csr(node_name, node_ip)
    write_private(out_dir / KUBELET_CERT_FILE, sign_kubelet_csr(csr, ca, now))
    write_private(out_dir / KUBELET_KEY_FILE, key_pem(key))
