"""aws-nitro-tpm: the vTPM frame with the document's own AK (reference: spec-attestation §5c).

As upstream, the AK has no hardware root on AWS ("AWS does not provide this feature"): it is taken
from the document, so only the measurements give assurance. Starlock adds AK pinning
(``acceptedAttestationKeys``).

``validate_cvm`` upstream calls EC2 ``DescribeImages`` for the identity document's ``imageId``
and requires ``TpmSupport == "v2.0"``. Here that call is the :class:`ImageTpmSupportChecker`
adapter; without one the check is recorded as WARN "not checked (no AWS API access)".

Nonce binding. Since Constellation 2024-04 the TPM qualifying data is
SHA-256(InstanceInfo ‖ extraData); before, it was extraData itself (the 2023 vector). The HEAD
binding is always accepted; the legacy one only with ``allow_legacy_nonce_binding=True``, and then
only when the quotes carry exactly extraData (recorded as a WARN: InstanceInfo is not bound).
"""

from __future__ import annotations

import datetime
import json
from typing import Protocol, runtime_checkable

import attrs

from starlock.attestation._cloudissuer import CloudVtpmIssuer
from starlock.attestation.config import AttestationConfig
from starlock.attestation.document import AttestationDocument
from starlock.attestation.errors import AttestationError, MalformedEvidence, PolicyViolation
from starlock.attestation.interfaces import CheckStatus
from starlock.attestation.tpm import TpmPublic, parse_tpms_attest
from starlock.attestation.variant import Variant
from starlock.attestation.vtpm import CheckRecorder, VtpmValidator, make_tpm_nonce, trusted_ak_from_document

__all__ = [
    "AwsNitroTpmIssuer",
    "AwsNitroTpmValidator",
    "Ec2IdentityDocument",
    "ImageTpmSupportChecker",
    "choose_tpm_nonce",
    "parse_identity_document",
]

MAX_IDENTITY_DOCUMENT = 64 * 1024


@runtime_checkable
class ImageTpmSupportChecker(Protocol):
    """EC2 ``DescribeImages``: the image's ``TpmSupport`` value (``"v2.0"``) or None when unset.

    Implementations raise an AttestationError subclass when the API cannot answer.
    """

    def tpm_support(self, region: str, image_id: str) -> str | None: ...


@attrs.frozen
class Ec2IdentityDocument:
    """The fields of the EC2 instance identity document that validation uses."""

    image_id: str
    region: str
    instance_id: str = ""
    account_id: str = ""


def parse_identity_document(data: bytes) -> Ec2IdentityDocument:
    """Parse the InstanceInfo of an aws-nitro-tpm document (EC2 identity document JSON)."""
    if len(data) > MAX_IDENTITY_DOCUMENT:
        raise MalformedEvidence(f"InstanceInfo: {len(data)} bytes, at most {MAX_IDENTITY_DOCUMENT}")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise MalformedEvidence(f"InstanceInfo: not the JSON of an EC2 identity document: {exc}") from None
    if not isinstance(obj, dict):
        raise MalformedEvidence("InstanceInfo: expected a JSON object (EC2 identity document)")

    def text(key: str, *, required: bool) -> str:
        value = obj.get(key, "")
        if not isinstance(value, str) or len(value) > 256 or (required and not value):
            raise MalformedEvidence(f"InstanceInfo.{key}: expected a non-empty string")
        return value

    return Ec2IdentityDocument(
        image_id=text("imageId", required=True),
        region=text("region", required=True),
        instance_id=text("instanceId", required=False),
        account_id=text("accountId", required=False),
    )


def choose_tpm_nonce(
    document: AttestationDocument, extra_data: bytes, rec: CheckRecorder, *, allow_legacy: bool
) -> bytes:
    """HEAD binding, or (when allowed) the pre-2024 binding if the quotes carry exactly extraData."""
    head = make_tpm_nonce(document.instance_info, extra_data)
    if allow_legacy and document.attestation.quotes:
        try:
            carried = parse_tpms_attest(document.attestation.quotes[0].quote).extra_data
        except AttestationError:
            carried = b""
        if carried == extra_data:
            rec.add(
                "nonce-binding",
                CheckStatus.WARN,
                "legacy (pre-2024) binding: TPM qualifying data = extraData; InstanceInfo is not bound by the quote",
            )
            return extra_data
    rec.add("nonce-binding", CheckStatus.PASS, "TPM qualifying data = SHA-256(InstanceInfo ‖ extraData)")
    return head


class AwsNitroTpmValidator(VtpmValidator):
    """Validator for :attr:`Variant.AWS_NITRO_TPM`."""

    variant = Variant.AWS_NITRO_TPM

    def __init__(
        self,
        config: AttestationConfig,
        *,
        at: datetime.datetime | None = None,
        image_checker: ImageTpmSupportChecker | None = None,
        allow_legacy_nonce_binding: bool = False,
    ) -> None:
        super().__init__(config)
        self.at = at  # no certificates on this variant; kept for a uniform constructor
        self.image_checker = image_checker
        self.allow_legacy_nonce_binding = allow_legacy_nonce_binding

    def trusted_key(self, document: AttestationDocument, extra_data: bytes, rec: CheckRecorder) -> TpmPublic:
        return trusted_ak_from_document(document, self.config, rec)

    def tpm_nonce(self, document: AttestationDocument, extra_data: bytes, rec: CheckRecorder) -> bytes:
        return choose_tpm_nonce(document, extra_data, rec, allow_legacy=self.allow_legacy_nonce_binding)

    def validate_cvm(self, document: AttestationDocument, rec: CheckRecorder) -> None:
        if self.image_checker is None:
            rec.add("image-tpm-support", CheckStatus.WARN, "not checked (no AWS API access)")
            return
        checker = self.image_checker
        identity = rec.run(
            "identity-document",
            lambda: parse_identity_document(document.instance_info),
            lambda d: f"image {d.image_id} in {d.region}",
        )

        def check() -> str:
            support = checker.tpm_support(identity.region, identity.image_id)
            if support != "v2.0":
                raise PolicyViolation(
                    f"image {identity.image_id} in {identity.region}: TpmSupport is {support!r}, expected 'v2.0'"
                )
            return support

        rec.run("image-tpm-support", check, lambda s: f"DescribeImages: TpmSupport {s}")


class AwsNitroTpmIssuer(CloudVtpmIssuer):
    """Issuer for :attr:`Variant.AWS_NITRO_TPM`: InstanceInfo is the EC2 identity document (IMDS).

    ``instance_info`` is the IMDS adapter returning the identity document JSON; the AK is the
    default RSA AK template of the NitroTPM.
    """

    variant_value = Variant.AWS_NITRO_TPM
    metadata_name = "the EC2 IMDS adapter (instance identity document)"
