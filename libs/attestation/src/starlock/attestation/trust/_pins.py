"""The trust anchors Starlock pins: SHA-256 fingerprints of certificate DER, never the certificates.

Architecture principle 6: the certificate bytes come from the evidence, a user-supplied bundle or
a fetch adapter; only these fingerprints are in the code. Each value below says where it was
taken from and how it was checked (the tests re-check every one against the vectors, in place).
"""

from __future__ import annotations

import enum
import re

import attrs

__all__ = [
    "AMEROOT_SHA256",
    "ARK_GENOA_SHA256",
    "ARK_MILAN_SHA256",
    "ARK_TURIN_SHA256",
    "ASK_GENOA_SHA256",
    "ASK_MILAN_SHA256",
    "ASK_TURIN_SHA256",
    "ASVK_GENOA_SHA256",
    "ASVK_MILAN_SHA256",
    "ASVK_TURIN_SHA256",
    "GCP_EK_AK_CA_INTERMEDIATE_V3_SHA256",
    "GCP_EK_AK_CA_ROOT_SHA256",
    "PINNED_ANCHORS",
    "TPM_EK_INTERMEDIATE_2_SHA256",
    "TPM_EK_INTERMEDIATE_3_SHA256",
    "TPM_EK_ROOT_1_SHA256",
    "Family",
    "PinnedAnchor",
    "Role",
    "pinned_anchor",
]


class Family(enum.StrEnum):
    """Which PKI an anchor belongs to; a validator asks only for its own family."""

    AMD_MILAN = "amd-milan"
    AMD_GENOA = "amd-genoa"
    AMD_TURIN = "amd-turin"
    GCE_EK = "gce-ek"
    GCE_CAS = "gce-cas"
    MICROSOFT_AME = "microsoft-ame"


class Role(enum.StrEnum):
    ROOT = "root"
    INTERMEDIATE = "intermediate"


_HEX64 = re.compile(r"[0-9a-f]{64}")


def _check_fingerprint(_: object, attribute: attrs.Attribute[str], value: str) -> None:
    if not _HEX64.fullmatch(value):
        raise ValueError(f"{attribute.name}: expected 64 lowercase hex digits, got {value!r}")


@attrs.frozen
class PinnedAnchor:
    """One pinned certificate: its SHA-256 DER fingerprint and what it is."""

    name: str
    role: Role
    family: Family
    fingerprint: str = attrs.field(validator=_check_fingerprint)
    subject_cn: str | None = None
    provenance: str = ""


# --- AMD (ARK signs ASK and ASVK of its product line; RSA-4096, RSASSA-PSS SHA-384) -------------
# Source: vectors/MANIFEST.md "Trust anchors (other/)", fingerprints of the certificates in
# other/amd-kds-roots/ask_ark_*.pem <- google/go-sev-guest:verify/trust/ask_ark_*.pem@af1c107a,
# which are AMD KDS https://kdsintf.amd.com/{vcek,vlek}/v1/<Line>/cert_chain (ASK|ASVK, then ARK).
_AMD_SOURCE = "AMD KDS cert_chain; go-sev-guest verify/trust/ask_ark_{line}.pem@af1c107a; MANIFEST other/amd-kds-roots"
# ARK-Milan also equals Constellation's embedded arkPEM (spec-attestation §6).
ARK_MILAN_SHA256 = "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd"
ASK_MILAN_SHA256 = "67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b"  # CN=SEV-Milan
ASVK_MILAN_SHA256 = "c5e081f59b7efab1fe2f8b505e159704e72f29cab7ef7cf628a05a42439082f5"  # CN=SEV-VLEK-Milan
ARK_GENOA_SHA256 = "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1"
ASK_GENOA_SHA256 = "5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521"  # CN=SEV-Genoa
ASVK_GENOA_SHA256 = "197e610743a917d6b9bb982a5a9226ccc0a15b611be0619e626aca9151457372"  # CN=SEV-VLEK-Genoa
ARK_TURIN_SHA256 = "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a"
ASK_TURIN_SHA256 = "5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185"  # CN=SEV-Turin
ASVK_TURIN_SHA256 = "104e10a8bd060a3c20a434261a57d0588fd65a88915b4f65b08bdecaf8df1a3c"  # CN=SEV-VLEK-Turin

# --- Google vTPM EK/AK CAs (go-tpm-tools server/ca-certs@67670e5c; not used by Constellation) ----
# tpm_ek_root_1: fingerprint stated in MANIFEST (valid 2018-2118). The other four were computed
# here as SHA-256 of the DER in other/gce-ek-ak-roots/; those files are DER, so the value is also
# the file hash, whose prefix the MANIFEST lists (test_trust.py checks both).
_GCE_SOURCE = "go-tpm-tools server/ca-certs/{file}@67670e5c; MANIFEST other/gce-ek-ak-roots"
TPM_EK_ROOT_1_SHA256 = "9bd5285f8fb18502a7947e621ffd470266f49fcd3b73e19a190f690ad32a7caf"
TPM_EK_INTERMEDIATE_2_SHA256 = "5d8dbcf8c8053dd8ffad711b6219355032b7122c34cac0f90ccb49def69ec504"
TPM_EK_INTERMEDIATE_3_SHA256 = "7132b6ea71101f6c51bb58f98c3798c19b65be510eca0344318900510b593178"
GCP_EK_AK_CA_ROOT_SHA256 = "594759594b9b61524f6c8ef668f7177f7b9066bc0674f2f49fe9e052be78beb2"
GCP_EK_AK_CA_INTERMEDIATE_V3_SHA256 = "c84de8116dfaf5a908f21e810487791f5437e206d00ad8025050cca6bd2ff627"

# --- Microsoft AME root (azure-trustedlaunch) -----------------------------------------------------
# Constellation internal/attestation/azure/trustedlaunch/validator.go `ameRoot`, from
# http://crl.microsoft.com/pkiinfra/certs/AMERoot_ameroot.crt; fingerprint per spec-attestation §5e.
# Valid 2016-05-24 22:52:54 -> 2026-05-24 22:57:03 UTC: EXPIRED for verification times after that;
# see TrustStore.check_anchor_validity.
AMEROOT_SHA256 = "ea76599d86897382aa519ff2bc0fa6b9c15d60da2ebe53e72139cd317b0797ed"


def _amd(line: str, family: Family, ark: str, ask: str, asvk: str) -> list[PinnedAnchor]:
    source = _AMD_SOURCE.format(line=line.lower())
    return [
        PinnedAnchor(f"ARK-{line}", Role.ROOT, family, ark, f"ARK-{line}", source),
        PinnedAnchor(f"ASK-{line}", Role.INTERMEDIATE, family, ask, f"SEV-{line}", source),
        PinnedAnchor(f"ASVK-{line}", Role.INTERMEDIATE, family, asvk, f"SEV-VLEK-{line}", source),
    ]


def _gce(file: str, role: Role, family: Family, fp: str, cn: str) -> PinnedAnchor:
    return PinnedAnchor(file.rsplit(".", 1)[0], role, family, fp, cn, _GCE_SOURCE.format(file=file))


PINNED_ANCHORS: tuple[PinnedAnchor, ...] = (
    *_amd("Milan", Family.AMD_MILAN, ARK_MILAN_SHA256, ASK_MILAN_SHA256, ASVK_MILAN_SHA256),
    *_amd("Genoa", Family.AMD_GENOA, ARK_GENOA_SHA256, ASK_GENOA_SHA256, ASVK_GENOA_SHA256),
    *_amd("Turin", Family.AMD_TURIN, ARK_TURIN_SHA256, ASK_TURIN_SHA256, ASVK_TURIN_SHA256),
    _gce(
        "tpm_ek_root_1.cer",
        Role.ROOT,
        Family.GCE_EK,
        TPM_EK_ROOT_1_SHA256,
        "tpm_ek_v1_cloud_host_root-signer-0-2018-04-06T10:58:26-07:00 K:1, 1:Pw003HsFYO4:0:18",
    ),
    _gce(
        "tpm_ek_intermediate_2.crt",
        Role.INTERMEDIATE,
        Family.GCE_EK,
        TPM_EK_INTERMEDIATE_2_SHA256,
        "tpm_ek_v1_cloud_host-signer-0-2020-10-22T14:02:08-07:00 K:1, 2:HBNpA3TPAbM:0:18",
    ),
    _gce(
        "tpm_ek_intermediate_3.crt",
        Role.INTERMEDIATE,
        Family.GCE_EK,
        TPM_EK_INTERMEDIATE_3_SHA256,
        "tpm_ek_v1_cloud_host-signer-0-2021-10-12T04:22:11-07:00 K:1, 3:nbvaGZFLcuc:0:18",
    ),
    _gce("gcp_ek_ak_ca_root.crt", Role.ROOT, Family.GCE_CAS, GCP_EK_AK_CA_ROOT_SHA256, "EK/AK CA Root"),
    _gce(
        "gcp_ek_ak_ca_intermediate_v3.crt",
        Role.INTERMEDIATE,
        Family.GCE_CAS,
        GCP_EK_AK_CA_INTERMEDIATE_V3_SHA256,
        "EK/AK CA Intermediate",
    ),
    PinnedAnchor(
        "ameroot",
        Role.ROOT,
        Family.MICROSOFT_AME,
        AMEROOT_SHA256,
        "ameroot",
        "Constellation azure/trustedlaunch/validator.go ameRoot (AMERoot_ameroot.crt); spec-attestation §5e",
    ),
)

_BY_FINGERPRINT = {anchor.fingerprint: anchor for anchor in PINNED_ANCHORS}


def pinned_anchor(fingerprint: str) -> PinnedAnchor | None:
    """The built-in pin with this SHA-256 fingerprint (hex, any case), or None."""
    return _BY_FINGERPRINT.get(fingerprint.lower())
