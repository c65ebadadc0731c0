"""Evidence in the formats third parties hold, mapped onto Starlock's verification layers.

* :mod:`.amd`: AMD bundles (VCEK + ASK + ARK in one PEM) split into signer and chain; the raw Azure
  HCL report (``HCLA``) read as a report file.
* :mod:`.quote`: a bare TPM2_Quote (TPMS_ATTEST, TPMT_SIGNATURE, AK public key, nonce).
* :mod:`.gotpm`: go-tpm-tools' binary ``attest.Attestation`` (``gotpm attest`` output).
* :mod:`.trustee`: Trustee's ``az-snp-vtpm`` evidence JSON, checked on the azure-sev-snp path.
* :mod:`.sniff`: what an unrecognised input looks like, for precise refusals.
"""

from __future__ import annotations

from starlock.attestation.formats._report import FormatReport
from starlock.attestation.formats.amd import AmdBundle, is_hcl_report, read_hcl_report, split_amd_bundle
from starlock.attestation.formats.gotpm import evaluate_gotpm_attestation, parse_gotpm_attestation
from starlock.attestation.formats.quote import VerifiedBareQuote, parse_ak_public, verify_bare_quote
from starlock.attestation.formats.sniff import describe_input
from starlock.attestation.formats.trustee import (
    TrusteeAzSnpVtpmEvidence,
    evaluate_trustee_az_snp_vtpm,
    is_trustee_az_snp_vtpm,
    parse_trustee_az_snp_vtpm,
)

__all__ = [
    "AmdBundle",
    "FormatReport",
    "TrusteeAzSnpVtpmEvidence",
    "VerifiedBareQuote",
    "describe_input",
    "evaluate_gotpm_attestation",
    "evaluate_trustee_az_snp_vtpm",
    "is_hcl_report",
    "is_trustee_az_snp_vtpm",
    "parse_ak_public",
    "parse_gotpm_attestation",
    "parse_trustee_az_snp_vtpm",
    "read_hcl_report",
    "split_amd_bundle",
    "verify_bare_quote",
]
