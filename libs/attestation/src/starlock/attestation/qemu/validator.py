"""qemu-vtpm validator: the generic vTPM frame with the document's own AK.

Upstream trusts any AK for this variant (only the measurements protect it). Starlock adds AK
pinning: with ``acceptedAttestationKeys`` in the config, only those AKs (by TPM name) pass.
"""

from __future__ import annotations

from starlock.attestation.document import AttestationDocument
from starlock.attestation.tpm import TpmPublic
from starlock.attestation.variant import Variant
from starlock.attestation.vtpm import CheckRecorder, VtpmValidator, trusted_ak_from_document

__all__ = ["QemuVtpmValidator"]


class QemuVtpmValidator(VtpmValidator):
    variant = Variant.QEMU_VTPM

    def trusted_key(self, document: AttestationDocument, extra_data: bytes, rec: CheckRecorder) -> TpmPublic:
        return trusted_ak_from_document(document, self.config, rec)
