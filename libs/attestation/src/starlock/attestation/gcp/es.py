"""gcp-sev-es (reference: spec-attestation §5d) and the GCE platform state of the event log (§5.0 step 5).

AK trust: see :mod:`starlock.attestation.gcp.ak` (GCE API as upstream, or the AK certificate
offline). ``validate_cvm``: the (replayed) event log must show GCE firmware version ≥ 1
(EV_S_CRTM_VERSION "GCE Virtual Firmware v<N>") and confidential technology AMD_SEV
(EV_NONHOST_INFO "GCE NonHostInfo\\0" + technology byte), both from PCR 0 before its separator.

Beyond go-tpm-tools: each of those two events' SHA-256 digest must be the hash of its data, so
the data read is the data measured.
"""

from __future__ import annotations

import datetime
import enum
import hashlib

import attrs

from starlock.attestation._certpath import utc_now
from starlock.attestation._cloudissuer import CloudVtpmIssuer
from starlock.attestation.config import AttestationConfig
from starlock.attestation.document import AttestationDocument
from starlock.attestation.errors import EventLogMismatch, PolicyViolation
from starlock.attestation.gcp.ak import ShieldedInstanceIdentityClient, gce_trusted_ak, parse_gce_instance_info
from starlock.attestation.tpm import EventLog, TpmPublic, parse_event_log
from starlock.attestation.tpm import algorithms as alg
from starlock.attestation.trust import TrustStore
from starlock.attestation.variant import Variant
from starlock.attestation.vtpm import CheckRecorder, VtpmValidator

__all__ = [
    "GceConfidentialTechnology",
    "GcePlatformState",
    "GcpSevEsIssuer",
    "GcpSevEsValidator",
    "gce_platform_state",
]

EV_SEPARATOR = 0x00000004
EV_S_CRTM_VERSION = 0x00000008
EV_NONHOST_INFO = 0x00000011
_CRTM_PREFIX = "GCE Virtual Firmware v"
_NONHOST_PREFIX = b"GCE NonHostInfo\x00"


class GceConfidentialTechnology(enum.IntEnum):
    NONE = 0
    AMD_SEV = 1
    AMD_SEV_ES = 2
    INTEL_TDX = 3
    AMD_SEV_SNP = 4


@attrs.frozen
class GcePlatformState:
    """``gce_version`` is None when the log has no GCE S-CRTM version; ``technology`` likewise."""

    gce_version: int | None
    technology: GceConfidentialTechnology | None


def _check_measured(event_data: bytes, digest: bytes | None, what: str, number: int) -> None:
    if digest is not None and digest != hashlib.sha256(event_data).digest():
        raise EventLogMismatch(f"event {number} ({what}): its SHA-256 digest is not the hash of its data")


def gce_platform_state(log: EventLog | bytes) -> GcePlatformState:
    """The GCE firmware version and confidential technology from PCR 0 events before its separator."""
    parsed = parse_event_log(log) if isinstance(log, bytes) else log
    version: int | None = None
    technology: GceConfidentialTechnology | None = None
    for event in parsed.events:
        if event.pcr_index != 0:
            continue
        if event.event_type == EV_SEPARATOR:
            break
        if event.event_type == EV_S_CRTM_VERSION:
            try:
                text = event.data.decode("utf-16-le").rstrip("\x00")
            except UnicodeDecodeError:
                continue
            if text.startswith(_CRTM_PREFIX) and text[len(_CRTM_PREFIX) :].isdigit():
                _check_measured(event.data, event.digest(alg.TPM_ALG_SHA256), "EV_S_CRTM_VERSION", event.number)
                version = int(text[len(_CRTM_PREFIX) :][:9])
        elif (
            event.event_type == EV_NONHOST_INFO
            and event.data.startswith(_NONHOST_PREFIX)
            and len(event.data) > len(_NONHOST_PREFIX)
        ):
            _check_measured(event.data, event.digest(alg.TPM_ALG_SHA256), "EV_NONHOST_INFO", event.number)
            value = event.data[len(_NONHOST_PREFIX)]
            try:
                technology = GceConfidentialTechnology(value)
            except ValueError:
                raise PolicyViolation(f"EV_NONHOST_INFO: unknown confidential technology {value}") from None
    return GcePlatformState(version, technology)


class GcpSevEsValidator(VtpmValidator):
    """Validator for :attr:`Variant.GCP_SEV_ES`."""

    variant = Variant.GCP_SEV_ES

    def __init__(
        self,
        config: AttestationConfig,
        *,
        at: datetime.datetime | None = None,
        identity_client: ShieldedInstanceIdentityClient | None = None,
        ak_trust: TrustStore | None = None,
    ) -> None:
        super().__init__(config)
        self.at = at
        self.identity_client = identity_client
        self.ak_trust = ak_trust

    def trusted_key(self, document: AttestationDocument, extra_data: bytes, rec: CheckRecorder) -> TpmPublic:
        instance = rec.run(
            "instance-info",
            lambda: parse_gce_instance_info(document.instance_info),
            lambda i: f"{i.project_id}/{i.zone}/{i.instance_name}",
        )
        return gce_trusted_ak(
            document,
            self.config,
            rec,
            instance=instance,
            trust=self.ak_trust,
            identity=self.identity_client,
            at=self.at or utc_now(),
        )

    def validate_cvm(self, document: AttestationDocument, rec: CheckRecorder) -> None:
        def check() -> GcePlatformState:
            if not document.attestation.event_log:
                raise PolicyViolation("no event log: the GCE firmware version and technology are unknown")
            state = gce_platform_state(document.attestation.event_log)
            if state.gce_version is None or state.gce_version < 1:
                raise PolicyViolation(f"GCE firmware version is {state.gce_version}, expected at least 1")
            if state.technology is not GceConfidentialTechnology.AMD_SEV:
                name = state.technology.name if state.technology is not None else "absent"
                raise PolicyViolation(f"GCE confidential technology is {name}, expected AMD_SEV")
            return state

        rec.run(
            "gce-platform",
            check,
            lambda s: f"GCE firmware v{s.gce_version}, technology {s.technology.name if s.technology else '?'}",
        )


class GcpSevEsIssuer(CloudVtpmIssuer):
    """Issuer for :attr:`Variant.GCP_SEV_ES`: InstanceInfo {zone, project_id, instance_name} from the
    GCE metadata server (the adapter); AK = the GCE pre-provisioned RSA AK
    (``ak_persistent_handle``, go-tpm-tools ``GceAttestationKeyRSA``)."""

    variant_value = Variant.GCP_SEV_ES
    metadata_name = "the GCE metadata server adapter (zone, project_id, instance_name)"
