"""AWS variants: aws-nitro-tpm (:mod:`.nitrotpm`) and aws-sev-snp (:mod:`.snp`)."""

from __future__ import annotations

from starlock.attestation.aws.nitrotpm import (
    AwsNitroTpmIssuer,
    AwsNitroTpmValidator,
    Ec2IdentityDocument,
    ImageTpmSupportChecker,
    choose_tpm_nonce,
    parse_identity_document,
)
from starlock.attestation.aws.snp import AwsSevSnpIssuer, AwsSevSnpValidator, ak_digest, verify_aws_snp_evidence

__all__ = [
    "AwsNitroTpmIssuer",
    "AwsNitroTpmValidator",
    "AwsSevSnpIssuer",
    "AwsSevSnpValidator",
    "Ec2IdentityDocument",
    "ImageTpmSupportChecker",
    "ak_digest",
    "choose_tpm_nonce",
    "parse_identity_document",
    "verify_aws_snp_evidence",
]
