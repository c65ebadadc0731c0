"""qemu-vtpm: a QEMU VM with a virtual TPM, no confidential-computing hardware (spec §A3).

The issuer quotes the vTPM with go-tpm-tools' default RSA AK and empty instance info; the
validator (trusting any AK, protected only by the measurements) lives beside it.
"""

from __future__ import annotations

from starlock.attestation.qemu.issuer import DEFAULT_EVENT_LOG_PATH, QemuVtpmIssuer
from starlock.attestation.qemu.validator import QemuVtpmValidator

__all__ = ["DEFAULT_EVENT_LOG_PATH", "QemuVtpmIssuer", "QemuVtpmValidator"]
