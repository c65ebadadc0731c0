"""azure-trustedlaunch (reference: spec-attestation §5e).

InstanceInfo is ``{"AkCert": base64(DER AK certificate), "CA": base64(DER issuing CA)}``. The AK
certificate must chain through that CA to a trusted Microsoft root at the verification time, and
the document's ``ak_pub`` must be an RSA key equal to the AK certificate's key.

Roots: upstream pins the Microsoft AME root (``CN=ameroot``), which **expired on 2026-05-24**.
Starlock ships its fingerprint (:data:`~starlock.attestation.trust.AMEROOT_SHA256`) but not its
bytes; the caller supplies roots in a :class:`~starlock.attestation.trust.TrustStore` (the pinned
AME root, or a newer root added with ``explicitly_trusted=True``). An expired root is reported
with its name, its not-after and the verification time.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json

import attrs
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import rsa

from starlock.attestation._certpath import VerifiedPath, utc_now, verify_path
from starlock.attestation._cloudissuer import CloudVtpmIssuer, InstanceInfoSource
from starlock.attestation.config import AttestationConfig
from starlock.attestation.document import AttestationDocument
from starlock.attestation.errors import CertificateChainError, MalformedEvidence, UntrustedKey
from starlock.attestation.interfaces import CheckStatus
from starlock.attestation.tpm import TpmPublic, parse_tpmt_public, public_keys_equal
from starlock.attestation.tpm import algorithms as alg
from starlock.attestation.trust import Role, TrustStore, fingerprint, load_certificates
from starlock.attestation.variant import Variant
from starlock.attestation.vtpm import CheckRecorder, VtpmValidator

__all__ = [
    "AK_CERT_NV_INDEX",
    "AzureTrustedLaunchIssuer",
    "AzureTrustedLaunchValidator",
    "TrustedLaunchInstanceInfo",
    "parse_trustedlaunch_instance_info",
    "verify_azure_ak_certificate",
]

#: TPM NV index of the AK certificate on Azure trusted-launch VMs; the AK is at 0x81000003.
AK_CERT_NV_INDEX = 0x01C101D0
AK_PERSISTENT_HANDLE = 0x81000003
MAX_INSTANCE_INFO = 64 * 1024


@attrs.frozen
class TrustedLaunchInstanceInfo:
    ak_cert: x509.Certificate
    ca: x509.Certificate


def parse_trustedlaunch_instance_info(data: bytes) -> TrustedLaunchInstanceInfo:
    if len(data) > MAX_INSTANCE_INFO:
        raise MalformedEvidence(f"InstanceInfo: {len(data)} bytes, at most {MAX_INSTANCE_INFO}")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise MalformedEvidence(f"InstanceInfo: not JSON {{AkCert, CA}}: {exc}") from None
    if not isinstance(obj, dict):
        raise MalformedEvidence("InstanceInfo: expected a JSON object {AkCert, CA}")
    certs = []
    for key in ("AkCert", "CA"):
        value = obj.get(key)
        if not isinstance(value, str) or not value:
            raise MalformedEvidence(f"InstanceInfo.{key}: missing or not a base64 string")
        try:
            der = base64.b64decode(value, validate=True)
        except (binascii.Error, ValueError):
            raise MalformedEvidence(f"InstanceInfo.{key}: not valid base64") from None
        certs.append(load_certificates(der, max_certs=1)[0])
    return TrustedLaunchInstanceInfo(certs[0], certs[1])


def verify_azure_ak_certificate(
    info: TrustedLaunchInstanceInfo, trust: TrustStore, at: datetime.datetime
) -> VerifiedPath:
    """AkCert ← CA ← a root of ``trust`` at ``at`` (all validity periods, CA constraints, signatures)."""
    roots = [e for e in trust if e.role is Role.ROOT]
    if not roots:
        raise CertificateChainError(
            "no Microsoft root configured for azure-trustedlaunch: add the AME root (pinned) or a current "
            "Microsoft root (explicitly trusted) to the AK trust store"
        )
    return verify_path(
        info.ak_cert,
        [info.ca],
        [e.certificate for e in roots],
        at,
        root_names=[e.name for e in roots],
    )


class AzureTrustedLaunchValidator(VtpmValidator):
    """Validator for :attr:`Variant.AZURE_TRUSTED_LAUNCH`. ``ak_trust`` holds the Microsoft root(s)."""

    variant = Variant.AZURE_TRUSTED_LAUNCH

    def __init__(
        self,
        config: AttestationConfig,
        *,
        at: datetime.datetime | None = None,
        ak_trust: TrustStore | None = None,
    ) -> None:
        super().__init__(config)
        self.at = at
        self.ak_trust = ak_trust if ak_trust is not None else TrustStore()

    def trusted_key(self, document: AttestationDocument, extra_data: bytes, rec: CheckRecorder) -> TpmPublic:
        ak = rec.run(
            "ak-parse", lambda: parse_tpmt_public(document.attestation.ak_pub), lambda k: f"AK {k.name().hex()}"
        )
        info = rec.run(
            "instance-info",
            lambda: parse_trustedlaunch_instance_info(document.instance_info),
            lambda _: "AkCert and CA (DER)",
        )
        at = self.at or utc_now()
        path = rec.run(
            "ak-certificate",
            lambda: verify_azure_ak_certificate(info, self.ak_trust, at),
            lambda p: f"chain {p.describe()} valid at {at.astimezone(datetime.UTC).isoformat()}",
        )
        entry = self.ak_trust.get(fingerprint(path.root))
        if entry is not None and not entry.pinned:
            rec.add("ak-root", CheckStatus.WARN, f"root {entry.name} is explicitly trusted, not a built-in pin")
        cert_key = info.ak_cert.public_key()
        if ak.type != alg.TPM_ALG_RSA or not isinstance(cert_key, rsa.RSAPublicKey):
            rec.fail("attestation-key", UntrustedKey("the AK and the AK certificate's key must be RSA"))
        if not public_keys_equal(ak, cert_key):
            rec.fail("attestation-key", UntrustedKey("ak_pub is not the key of the AK certificate"))
        rec.add("attestation-key", CheckStatus.PASS, "ak_pub is the certified AK (RSA)")
        if self.config.accepted_ak_names and ak.name() not in self.config.accepted_ak_names:
            rec.fail("attestation-key-pin", UntrustedKey(f"AK {ak.name().hex()} is not among the accepted AKs"))
        return ak


class AzureTrustedLaunchIssuer(CloudVtpmIssuer):
    """Issuer for :attr:`Variant.AZURE_TRUSTED_LAUNCH`: AK at 0x81000003, AK certificate from NV
    0x01C101D0 and its CA (AIA download) as InstanceInfo JSON, provided by the ``instance_info``
    adapter."""

    variant_value = Variant.AZURE_TRUSTED_LAUNCH
    metadata_name = "the AK certificate adapter (TPM NV 0x01C101D0 + issuing CA)"

    def __init__(self, instance_info: InstanceInfoSource | None = None, *, tcti: str = "device:/dev/tpmrm0") -> None:
        super().__init__(instance_info, tcti=tcti, ak_persistent_handle=AK_PERSISTENT_HANDLE)
