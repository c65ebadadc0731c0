"""The qemu-vtpm issuer: a Constellation-compatible vTPM attestation document from a local TPM.

Document construction (reference: spec-attestation §A3, §4.3, §5.0)::

    extraData   = SHA-256(user_data ‖ nonce)
    instance    = b""                              (qemu-vtpm has no instance info)
    tpmNonce    = SHA-256(instance ‖ extraData)    (HEAD rule, §5.0 step 4)
    quotes      = TPM2_Quote(AK, PCRs 0..23, tpmNonce) for every allocated bank
    document    = {"Attestation": {ak_pub, quotes, event_log}, "InstanceInfo": null, "UserData": b64}

The TPM is opened for each :meth:`QemuVtpmIssuer.issue` call (as Constellation opens /dev/tpmrm0
per issue) and calls are serialised within the process, so one issuer can serve many threads.
"""

from __future__ import annotations

import hashlib
import logging
import os
import threading
from pathlib import Path
from typing import Literal

from starlock.attestation.document import Attestation, AttestationDocument
from starlock.attestation.tpm_device import DEFAULT_TCTI, TpmDevice, TpmError
from starlock.attestation.variant import Variant

__all__ = ["DEFAULT_EVENT_LOG_PATH", "MAX_EVENT_LOG_SIZE", "QemuVtpmIssuer"]

_log = logging.getLogger(__name__)

#: Where Linux exposes the firmware's TCG event log (what go-tpm-tools ``GetEventLog`` reads).
DEFAULT_EVENT_LOG_PATH = Path("/sys/kernel/security/tpm0/binary_bios_measurements")
#: Larger logs are refused: real ones are 5–60 KiB and the whole document is bounded at 2 MiB.
MAX_EVENT_LOG_SIZE = 1024 * 1024


class QemuVtpmIssuer:
    """Issuer for :attr:`Variant.QEMU_VTPM` (implements the ``Issuer`` protocol).

    ``tcti``: the TPM (``device:/dev/tpmrm0`` on a node, a swtpm TCTI in tests).
    ``event_log_path``: the TCG event log embedded in the document; ``None`` means the kernel's
    log at :data:`DEFAULT_EVENT_LOG_PATH` when it exists and is readable, else no log. Pass
    ``include_event_log=False`` to never embed one.
    ``ak_hierarchy`` / ``ak_persistent_handle``: see :meth:`TpmDevice.attestation_key`
    (go-tpm-tools caches the AK at ``DEFAULT_AK_RSA_HANDLE`` in the owner hierarchy; the default
    here is a transient primary, the same key, without writing to the TPM's NV memory).
    """

    def __init__(
        self,
        tcti: str = DEFAULT_TCTI,
        event_log_path: str | os.PathLike[str] | None = None,
        *,
        include_event_log: bool = True,
        ak_hierarchy: Literal["owner", "endorsement"] = "owner",
        ak_persistent_handle: int | None = None,
    ) -> None:
        self._tcti = tcti
        self._event_log_path = Path(event_log_path) if event_log_path is not None else None
        self._include_event_log = include_event_log
        self._ak_hierarchy: Literal["owner", "endorsement"] = ak_hierarchy
        self._ak_persistent_handle = ak_persistent_handle
        self._lock = threading.Lock()

    @property
    def variant(self) -> Variant:
        return Variant.QEMU_VTPM

    def issue(self, user_data: bytes, nonce: bytes) -> bytes:
        """Return the JSON attestation document binding ``user_data`` to ``nonce``."""
        extra_data = hashlib.sha256(user_data + nonce).digest()
        instance_info = b""
        tpm_nonce = hashlib.sha256(instance_info + extra_data).digest()
        with self._lock, TpmDevice(self._tcti) as tpm:
            ak = tpm.attestation_key(hierarchy=self._ak_hierarchy, persistent_handle=self._ak_persistent_handle)
            quotes = tpm.quote_all_banks(ak, tpm_nonce)
            # Read after quoting, as go-tpm-tools does: the log then covers every quoted extend.
            event_log = self._read_event_log()
        _log.debug("issued qemu-vtpm attestation: %d quotes, event log %d bytes", len(quotes), len(event_log))
        attestation = Attestation(ak_pub=ak.public_area, quotes=quotes, event_log=event_log)
        return AttestationDocument(attestation=attestation, instance_info=instance_info, user_data=user_data).to_json()

    def _read_event_log(self) -> bytes:
        if not self._include_event_log:
            return b""
        path = self._event_log_path
        if path is None:
            if not os.access(DEFAULT_EVENT_LOG_PATH, os.R_OK):
                return b""
            path = DEFAULT_EVENT_LOG_PATH
        try:
            with path.open("rb") as handle:
                data = handle.read(MAX_EVENT_LOG_SIZE + 1)
        except OSError as exc:
            raise TpmError(f"cannot read the TCG event log {path}: {exc.strerror or exc}") from None
        if len(data) > MAX_EVENT_LOG_SIZE:
            raise TpmError(f"TCG event log {path} is larger than {MAX_EVENT_LOG_SIZE} bytes")
        return data
