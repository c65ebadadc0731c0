"""Shared shape of the cloud issuers: instance info from a metadata adapter, quotes from the vTPM.

The cloud issuers (aws-nitro-tpm, gcp-sev-es, azure-trustedlaunch, ...) run only on their cloud's
confidential VMs. Each takes the adapters it needs in its constructor; without them, or when an
adapter cannot reach its service, :meth:`CloudVtpmIssuer.issue` raises
:class:`~starlock.attestation.errors.UnsupportedError` naming what is missing.
"""

from __future__ import annotations

import hashlib
import threading
from collections.abc import Callable
from pathlib import Path
from typing import TypeVar

from starlock.attestation.document import Attestation, AttestationDocument
from starlock.attestation.errors import UnsupportedError
from starlock.attestation.variant import Variant

__all__ = ["CloudVtpmIssuer", "InstanceInfoSource", "require_adapter"]

#: Returns the InstanceInfo bytes of the document (JSON of the variant's instance metadata).
InstanceInfoSource = Callable[[], bytes]

T = TypeVar("T")

_EVENT_LOG = Path("/sys/kernel/security/tpm0/binary_bios_measurements")
_MAX_EVENT_LOG = 1024 * 1024


def require_adapter(adapter: T | None, variant: Variant, what: str) -> T:
    if adapter is None:
        raise UnsupportedError(
            f"{variant.value} issuer: {what} is not configured; this issuer runs only on a {variant.value} "
            "confidential VM with its metadata service and vTPM"
        )
    return adapter


class CloudVtpmIssuer:
    """A vTPM issuer whose InstanceInfo comes from a cloud metadata adapter."""

    variant_value: Variant = Variant.QEMU_VTPM
    metadata_name: str = "the instance metadata adapter"

    def __init__(
        self,
        instance_info: InstanceInfoSource | None = None,
        *,
        tcti: str = "device:/dev/tpmrm0",
        ak_persistent_handle: int | None = None,
    ) -> None:
        self._instance_info = instance_info
        self._tcti = tcti
        self._ak_persistent_handle = ak_persistent_handle
        self._lock = threading.Lock()

    @property
    def variant(self) -> Variant:
        return self.variant_value

    def issue(self, user_data: bytes, nonce: bytes) -> bytes:
        source = require_adapter(self._instance_info, self.variant_value, self.metadata_name)
        instance_info = source()
        extra_data = hashlib.sha256(user_data + nonce).digest()
        tpm_nonce = hashlib.sha256(instance_info + extra_data).digest()
        try:
            from starlock.attestation.tpm_device import TpmDevice, TpmError
        except ImportError as exc:  # pragma: no cover - depends on the [tpm] extra
            raise UnsupportedError(f"{self.variant_value.value} issuer needs tpm2-pytss: {exc}") from None
        try:
            with self._lock, TpmDevice(self._tcti) as tpm:
                ak = tpm.attestation_key(persistent_handle=self._ak_persistent_handle)
                quotes = tpm.quote_all_banks(ak, tpm_nonce)
        except TpmError as exc:
            raise UnsupportedError(f"{self.variant_value.value} issuer: vTPM {self._tcti} unavailable: {exc}") from None
        attestation = Attestation(ak_pub=ak.public_area, quotes=quotes, event_log=_read_event_log())
        return AttestationDocument(attestation=attestation, instance_info=instance_info, user_data=user_data).to_json()


def _read_event_log() -> bytes:
    try:
        with _EVENT_LOG.open("rb") as handle:
            data = handle.read(_MAX_EVENT_LOG + 1)
    except OSError:
        return b""
    return data if len(data) <= _MAX_EVENT_LOG else b""
