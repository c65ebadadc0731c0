"""A kubelet-client CSR sent with a bootstrap token is approved and signed by the controller manager."""

from __future__ import annotations

import base64
import time
from collections.abc import Callable
from datetime import UTC, datetime

import pytest
from conftest import token_client
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID
from kubernetes import client

from starlock.kubecluster import ControlPlane


def _csr(node: str) -> bytes:
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "system:nodes"),
            x509.NameAttribute(NameOID.COMMON_NAME, f"system:node:{node}"),
        ]
    )
    request = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    return request.public_bytes(serialization.Encoding.PEM)


def _wait_for_certificate(
    certs: client.CertificatesV1Api, name: str, timeout: float = 60
) -> client.V1CertificateSigningRequest:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        csr = certs.read_certificate_signing_request(name)
        if csr.status and csr.status.certificate:
            return csr
        time.sleep(0.5)
    pytest.fail(f"CSR {name} was not approved and signed within {timeout:.0f} s")


def test_kubelet_client_csr_is_approved_and_signed(
    kube_control_plane: ControlPlane, make_token: Callable[..., tuple[str, str]], admin_api: client.ApiClient
) -> None:
    token_id, token_secret = make_token()
    as_node = client.CertificatesV1Api(token_client(kube_control_plane, f"{token_id}.{token_secret}"))
    name = f"node-csr-{token_id}"
    body = client.V1CertificateSigningRequest(
        metadata=client.V1ObjectMeta(name=name),
        spec=client.V1CertificateSigningRequestSpec(
            request=base64.b64encode(_csr(f"worker-{token_id}")).decode(),
            signer_name="kubernetes.io/kube-apiserver-client-kubelet",
            usages=["digital signature", "client auth"],
        ),
    )
    created = as_node.create_certificate_signing_request(body)
    # the API server recorded who asked: the bootstrap token's user
    assert created.spec.username == f"system:bootstrap:{token_id}"

    csr = _wait_for_certificate(client.CertificatesV1Api(admin_api), name)
    conditions = {c.type: c.status for c in csr.status.conditions}
    assert conditions.get("Approved") == "True"
    leaf = x509.load_pem_x509_certificate(base64.b64decode(csr.status.certificate))
    ca = x509.load_pem_x509_certificate(kube_control_plane.ca_cert.read_bytes())
    # chains to the PKI's CA: issuer name and signature
    assert leaf.issuer == ca.subject
    leaf.verify_directly_issued_by(ca)
    assert leaf.subject.get_attributes_for_oid(NameOID.COMMON_NAME)[0].value == f"system:node:worker-{token_id}"
    assert leaf.not_valid_after_utc > datetime.now(UTC)
    usages = leaf.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    assert x509.ExtendedKeyUsageOID.CLIENT_AUTH in usages


def test_csr_for_another_identity_is_not_auto_approved(
    kube_control_plane: ControlPlane, make_token: Callable[..., tuple[str, str]], admin_api: client.ApiClient
) -> None:
    """The approver only signs kubelet client CSRs: O=system:nodes and CN system:node:<name>."""
    token_id, token_secret = make_token()
    as_node = client.CertificatesV1Api(token_client(kube_control_plane, f"{token_id}.{token_secret}"))
    key = ec.generate_private_key(ec.SECP256R1())
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "cluster-admin-please")])
    request = x509.CertificateSigningRequestBuilder().subject_name(subject).sign(key, hashes.SHA256())
    name = f"rogue-{token_id}"
    as_node.create_certificate_signing_request(
        client.V1CertificateSigningRequest(
            metadata=client.V1ObjectMeta(name=name),
            spec=client.V1CertificateSigningRequestSpec(
                request=base64.b64encode(request.public_bytes(serialization.Encoding.PEM)).decode(),
                signer_name="kubernetes.io/kube-apiserver-client-kubelet",
                usages=["digital signature", "client auth"],
            ),
        )
    )
    certs = client.CertificatesV1Api(admin_api)
    # a valid kubelet CSR sent afterwards is signed; by then the rogue one has been looked at too
    good = f"node-csr-after-{token_id}"
    as_node.create_certificate_signing_request(
        client.V1CertificateSigningRequest(
            metadata=client.V1ObjectMeta(name=good),
            spec=client.V1CertificateSigningRequestSpec(
                request=base64.b64encode(_csr(f"after-{token_id}")).decode(),
                signer_name="kubernetes.io/kube-apiserver-client-kubelet",
                usages=["digital signature", "client auth"],
            ),
        )
    )
    _wait_for_certificate(certs, good)
    time.sleep(2)
    rogue = certs.read_certificate_signing_request(name)
    assert not (rogue.status and rogue.status.certificate)
    conditions = {c.type for c in (rogue.status.conditions or [])} if rogue.status else set()
    assert "Approved" not in conditions
