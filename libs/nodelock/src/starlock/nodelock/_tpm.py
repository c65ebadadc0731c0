"""Minimal TPM 2.0 access for marking: read PCR 15 (SHA-256 bank) and ``TPM2_PCR_Event`` on it.

tpm2-pytss is imported on first use, so importing ``starlock.nodelock`` works without it; a
missing installation raises :class:`TpmSupportMissing`. The TCTI string picks the TPM:
``device:/dev/tpmrm0`` on a node, ``swtpm:host=127.0.0.1,port=N`` for a software TPM.
"""

from __future__ import annotations

import importlib
from types import ModuleType, TracebackType
from typing import Any

from starlock.nodelock._errors import InvalidClusterId, TpmError, TpmSupportMissing

__all__ = [
    "CLUSTER_ID_PCR",
    "CLUSTER_ID_PCR_SIZE",
    "CLUSTER_ID_SIZE",
    "DEFAULT_TCTI",
    "MAX_EVENT_SIZE",
    "Tpm",
    "check_cluster_id",
    "is_node_bootstrapped",
    "mark_node_as_bootstrapped",
    "read_cluster_id_pcr",
]

DEFAULT_TCTI = "device:/dev/tpmrm0"
#: ``PCRIndexClusterID`` of Constellation's measurements package.
CLUSTER_ID_PCR = 15
#: Size of a SHA-256 PCR value.
CLUSTER_ID_PCR_SIZE = 32
#: TPM2_PCR_Event accepts at most 1024 bytes of event data (TPM2B_EVENT).
MAX_EVENT_SIZE = 1024
#: ``DeriveClusterID`` yields 32 bytes (HKDF-SHA256, info ``key-clusterID``).
CLUSTER_ID_SIZE = 32
_TPM_ALG_SHA256 = 0x000B


def check_cluster_id(cluster_id: object) -> bytes:
    """The cluster ID as ``bytes``; :class:`InvalidClusterId` unless it is 32 bytes.

    Constellation extends whatever it is given; we refuse anything but a derived cluster ID, so a
    hex string or an empty value never ends up in PCR 15 (which cannot be undone until reboot).
    """
    if not isinstance(cluster_id, bytes | bytearray | memoryview):
        raise InvalidClusterId(f"cluster ID must be bytes, got {type(cluster_id).__name__}")
    data = bytes(cluster_id)
    if len(data) != CLUSTER_ID_SIZE:
        raise InvalidClusterId(f"cluster ID is {len(data)} bytes, expected {CLUSTER_ID_SIZE}")
    return data


def _tss() -> tuple[ModuleType, ModuleType, ModuleType]:
    """(tpm2_pytss, tpm2_pytss.constants, tpm2_pytss.types), imported on first use."""
    try:
        root = importlib.import_module("tpm2_pytss")
        constants = importlib.import_module("tpm2_pytss.constants")
        types = importlib.import_module("tpm2_pytss.types")
    except ImportError as exc:
        raise TpmSupportMissing(
            f"starlock.nodelock needs tpm2-pytss and the libtss2 libraries (pip install tpm2-pytss): {exc}"
        ) from None
    return root, constants, types


class Tpm:
    """One open ESAPI connection to the TPM; a context manager that closes it."""

    def __init__(self, tcti: str = DEFAULT_TCTI) -> None:
        root, self._c, self._t = _tss()
        self._exc: type[Exception] = root.TSS2_Exception
        self.tcti = tcti
        try:
            self._esapi: Any = root.ESAPI(tcti)
        except self._exc as exc:
            raise TpmError(f"cannot open the TPM with TCTI {tcti!r}: {exc}") from None
        self._closed = False

    def close(self) -> None:
        if not self._closed:
            self._closed = True
            self._esapi.close()

    def __enter__(self) -> Tpm:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def read_cluster_id_pcr(self) -> bytes:
        """PCR 15 of the SHA-256 bank; :class:`TpmError` if the bank holds no PCR 15."""
        mask = bytearray(3)
        mask[CLUSTER_ID_PCR // 8] |= 1 << (CLUSTER_ID_PCR % 8)
        selection = self._t.TPML_PCR_SELECTION(
            [self._t.TPMS_PCR_SELECTION(hash=_TPM_ALG_SHA256, sizeofSelect=3, pcrSelect=bytes(mask))]
        )
        try:
            _counter, _selected, digests = self._esapi.pcr_read(selection)
        except self._exc as exc:
            raise TpmError(f"TPM2_PCR_Read(sha256, PCR {CLUSTER_ID_PCR}) failed: {exc}") from None
        if digests.count == 0:
            # Constellation's wording: the SHA-256 bank is not allocated (or lacks PCR 15).
            raise TpmError(f"cluster ID PCR does not exist (sha256 bank, PCR {CLUSTER_ID_PCR})")
        value = bytes(digests[0])
        if len(value) != CLUSTER_ID_PCR_SIZE:
            raise TpmError(f"PCR {CLUSTER_ID_PCR} (sha256) is {len(value)} bytes, expected {CLUSTER_ID_PCR_SIZE}")
        return value

    def extend_cluster_id_pcr(self, event_data: bytes) -> None:
        """``TPM2_PCR_Event`` on PCR 15: the TPM hashes the data in every active bank and extends."""
        if not 0 < len(event_data) <= MAX_EVENT_SIZE:
            raise TpmError(f"PCR_Event data is {len(event_data)} bytes, expected 1..{MAX_EVENT_SIZE}")
        handle = self._c.ESYS_TR.PCR0 + CLUSTER_ID_PCR
        try:
            self._esapi.pcr_event(handle, bytes(event_data))
        except self._exc as exc:
            raise TpmError(f"TPM2_PCR_Event(PCR {CLUSTER_ID_PCR}) failed: {exc}") from None


def read_cluster_id_pcr(tcti: str = DEFAULT_TCTI) -> bytes:
    """The SHA-256 value of PCR 15 (32 zero bytes on a node that is not marked)."""
    with Tpm(tcti) as tpm:
        return tpm.read_cluster_id_pcr()


def is_node_bootstrapped(tcti: str = DEFAULT_TCTI) -> bool:
    """Constellation's ``IsNodeBootstrapped`` for TPM nodes: PCR 15 (SHA-256) is not all zero."""
    return any(read_cluster_id_pcr(tcti))


def mark_node_as_bootstrapped(cluster_id: bytes, tcti: str = DEFAULT_TCTI) -> None:
    """Constellation's ``MarkNodeAsBootstrapped`` for TPM nodes, without any locking.

    Extends PCR 15 unconditionally; use :class:`~starlock.nodelock.NodeLock` to do it once.
    """
    data = check_cluster_id(cluster_id)
    with Tpm(tcti) as tpm:
        tpm.extend_cluster_id_pcr(data)
