"""A TPM 2.0 reached through tpm2-pytss: PCR banks, PCR reads and extends, the AK, quotes.

This is the only module that talks to a TPM. tpm2-pytss (the ``[tpm]`` extra) is imported when a
:class:`TpmDevice` is opened, so ``starlock.attestation`` works without it; a missing
installation raises :class:`TpmSupportMissing`.

The TCTI string selects the TPM: ``device:/dev/tpmrm0`` (the kernel's resource manager, the
default) on a node, ``swtpm:host=127.0.0.1,port=N`` for a :class:`~starlock.attestation.swtpm.Swtpm`.

The attestation key is go-tpm-tools' default RSA AK (``client.AttestationKeyRSA`` with
``AKTemplateRSA``), which Constellation's qemu-vtpm issuer uses; see :data:`AK_RSA_TEMPLATE`.
Quotes mirror go-tpm-tools' ``Attest``: one TPM2_Quote per implemented PCR bank over PCRs 0–23,
signed with the key's own scheme (RSASSA-SHA256), returned as raw TPMS_ATTEST and TPMT_SIGNATURE
bytes together with the PCR values read right after the quote (checked against its pcrDigest).
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib
import struct
from collections.abc import Iterable, Mapping, Sequence
from types import ModuleType, TracebackType
from typing import Any, Literal

import attrs

from starlock.attestation.document import HASH_ALG_NAMES, PCRs, Quote
from starlock.attestation.errors import AttestationError

__all__ = [
    "AK_RSA_ATTRIBUTES",
    "AK_RSA_TEMPLATE",
    "DEFAULT_AK_RSA_HANDLE",
    "DEFAULT_TCTI",
    "HASH_FUNCTIONS",
    "NUM_PCRS",
    "AttestationKey",
    "TpmDevice",
    "TpmError",
    "TpmSupportMissing",
    "matches_ak_template",
]

DEFAULT_TCTI = "device:/dev/tpmrm0"
#: go-tpm-tools quotes PCRs 0..23 (the PC Client minimum).
NUM_PCRS = 24
#: go-tpm-tools ``client.DefaultAKRSAHandle``, where ``AttestationKeyRSA`` caches its AK.
DEFAULT_AK_RSA_HANDLE = 0x81008F01
#: TPM_ALG_ID → hashlib name for the banks whose digests we can compute.
HASH_FUNCTIONS: Mapping[int, str] = {0x0004: "sha1", 0x000B: "sha256", 0x000C: "sha384", 0x000D: "sha512"}

# TPMA_OBJECT bits (TPM 2.0 Part 2, 8.3).
_FIXED_TPM = 0x00000002
_FIXED_PARENT = 0x00000010
_SENSITIVE_DATA_ORIGIN = 0x00000020
_USER_WITH_AUTH = 0x00000040
_RESTRICTED = 0x00010000
_SIGN_ENCRYPT = 0x00040000

#: go-tpm ``FlagSignerDefault`` = sign | restricted | fixedTPM | fixedParent | sensitiveDataOrigin
#: | userWithAuth (no noDA) = 0x00050072, the attributes of go-tpm-tools' ``AKTemplateRSA``.
AK_RSA_ATTRIBUTES = _SIGN_ENCRYPT | _RESTRICTED | _FIXED_TPM | _FIXED_PARENT | _SENSITIVE_DATA_ORIGIN | _USER_WITH_AUTH

#: go-tpm-tools ``AKTemplateRSA`` as a marshalled TPMT_PUBLIC (big-endian): type TPM_ALG_RSA,
#: nameAlg SHA-256, attributes :data:`AK_RSA_ATTRIBUTES`, empty authPolicy, TPMS_RSA_PARMS
#: {symmetric TPM_ALG_NULL, scheme TPM_ALG_RSASSA with SHA-256, keyBits 2048, exponent 0 (= 65537)},
#: unique empty (the template sets no ModulusRaw, unlike the EK template's 256 zero bytes).
AK_RSA_TEMPLATE = struct.pack(
    ">HHIHHHHHIH",
    0x0001,  # type: TPM_ALG_RSA
    0x000B,  # nameAlg: TPM_ALG_SHA256
    AK_RSA_ATTRIBUTES,  # objectAttributes
    0,  # authPolicy: empty TPM2B_DIGEST
    0x0010,  # parameters.symmetric.algorithm: TPM_ALG_NULL
    0x0014,  # parameters.scheme.scheme: TPM_ALG_RSASSA
    0x000B,  # parameters.scheme.details.hashAlg: TPM_ALG_SHA256
    2048,  # parameters.keyBits
    0,  # parameters.exponent (0 = default 65537)
    0,  # unique: empty TPM2B_PUBLIC_KEY_RSA
)

_PCR_READ_ATTEMPTS = 8
_QUOTE_ATTEMPTS = 3


class TpmError(AttestationError):
    """A TPM command failed or the TPM answered something unusable (issuer side)."""

    check = "tpm"


class TpmSupportMissing(TpmError):
    """tpm2-pytss is not installed (install ``starlock-attestation[tpm]``)."""


def _tss() -> tuple[ModuleType, ModuleType, ModuleType]:
    """(tpm2_pytss, tpm2_pytss.constants, tpm2_pytss.types), imported on first use."""
    try:
        root = importlib.import_module("tpm2_pytss")
        constants = importlib.import_module("tpm2_pytss.constants")
        types = importlib.import_module("tpm2_pytss.types")
    except ImportError as exc:
        raise TpmSupportMissing(
            f"TPM support needs tpm2-pytss and libtss2 (pip install 'starlock-attestation[tpm]'): {exc}"
        ) from None
    return root, constants, types


def _check_pcr(index: int) -> None:
    if not 0 <= index < NUM_PCRS:
        raise TpmError(f"PCR index {index} out of range 0..{NUM_PCRS - 1}")


def _alg_name(alg: int) -> str:
    return HASH_ALG_NAMES.get(alg, f"0x{alg:04x}")


@attrs.define
class AttestationKey:
    """A loaded AK: ``handle`` is the ESYS_TR, ``public_area`` the marshalled TPMT_PUBLIC."""

    handle: Any
    public_area: bytes
    persistent: bool


class TpmDevice:
    """An open ESAPI context; a context manager that closes it (and flushes what it loaded)."""

    def __init__(self, tcti: str = DEFAULT_TCTI) -> None:
        root, self._c, self._t = _tss()
        self._exc: type[Exception] = root.TSS2_Exception
        self.tcti = tcti
        self._transient: list[Any] = []
        try:
            self._esapi: Any = root.ESAPI(tcti)
        except self._exc as exc:
            raise TpmError(f"cannot open the TPM with TCTI {tcti!r}: {exc}") from None
        self._closed = False

    # --- lifecycle -------------------------------------------------------------------------

    def close(self) -> None:
        """Flush transient keys loaded through this object and close the ESAPI context."""
        if self._closed:
            return
        self._closed = True
        try:
            for handle in self._transient:
                # A handle the caller already flushed is simply gone; nothing else to do.
                with contextlib.suppress(self._exc):
                    self._esapi.flush_context(handle)
        finally:
            self._transient.clear()
            self._esapi.close()

    def __enter__(self) -> TpmDevice:
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.close()

    def _call(self, what: str, fn: Any, *args: Any) -> Any:
        if self._closed:
            raise TpmError(f"{what}: the TPM context is closed")
        try:
            return fn(*args)
        except self._exc as exc:
            raise TpmError(f"{what} failed: {exc}") from None

    # --- PCRs --------------------------------------------------------------------------------

    def pcr_banks(self) -> dict[int, tuple[int, ...]]:
        """Allocated PCR banks: TPM_ALG_ID → allocated PCR indices below 24 (empty banks left out)."""
        _more, data = self._call("TPM2_GetCapability(PCRS)", self._esapi.get_capability, self._c.TPM2_CAP.PCRS, 0, 1)
        banks: dict[int, tuple[int, ...]] = {}
        for sel in data.data.assignedPCR:
            mask = bytes(sel.pcrSelect)[: sel.sizeofSelect]
            indices = tuple(i for i in range(min(NUM_PCRS, 8 * len(mask))) if mask[i // 8] >> (i % 8) & 1)
            if indices:
                banks[int(sel.hash)] = indices
        return banks

    def _selection(self, selections: Mapping[int, Iterable[int]]) -> Any:
        t = self._t
        items = []
        for alg, indices in selections.items():
            mask = bytearray(3)
            for i in indices:
                _check_pcr(i)
                mask[i // 8] |= 1 << (i % 8)
            items.append(t.TPMS_PCR_SELECTION(hash=alg, sizeofSelect=3, pcrSelect=bytes(mask)))
        return t.TPML_PCR_SELECTION(items)

    def read_pcrs(self, alg: int, indices: Iterable[int] = range(NUM_PCRS)) -> PCRs:
        """Read PCR values of one bank (TPM2_PCR_Read returns at most 8 per call, so batch)."""
        wanted = sorted(set(indices))
        values: dict[int, bytes] = {}
        for _ in range(_PCR_READ_ATTEMPTS * NUM_PCRS):
            remaining = [i for i in wanted if i not in values]
            if not remaining:
                return PCRs(hash=alg, pcrs=dict(sorted(values.items())))
            _counter, sel_out, digests = self._call(
                f"TPM2_PCR_Read({_alg_name(alg)})", self._esapi.pcr_read, self._selection({alg: remaining})
            )
            got = [
                i
                for s in sel_out.pcrSelections
                if int(s.hash) == alg
                for i in range(8 * s.sizeofSelect)
                if bytes(s.pcrSelect)[i // 8] >> (i % 8) & 1
            ]
            if not got:
                raise TpmError(
                    f"TPM2_PCR_Read({_alg_name(alg)}) returned none of PCRs {remaining}; bank not allocated?"
                )
            if len(got) != digests.count:
                raise TpmError(f"TPM2_PCR_Read returned {digests.count} digests for {len(got)} selected PCRs")
            for i, digest in zip(got, digests, strict=True):
                values[i] = bytes(digest)
        raise TpmError(f"TPM2_PCR_Read({_alg_name(alg)}) made no progress reading PCRs {wanted}")

    def read_all_pcrs(self) -> tuple[PCRs, ...]:
        """PCRs 0–23 of every allocated bank, in the TPM's bank order."""
        return tuple(self.read_pcrs(alg, indices) for alg, indices in self.pcr_banks().items())

    def extend(self, pcr: int, digests: Mapping[int, bytes]) -> None:
        """TPM2_PCR_Extend ``pcr`` with one digest per bank (TPM_ALG_ID → digest)."""
        _check_pcr(pcr)
        t = self._t
        values = []
        for alg, digest in digests.items():
            name = HASH_FUNCTIONS.get(alg)
            if name is None:
                raise TpmError(f"cannot extend bank {_alg_name(alg)}: unsupported hash algorithm")
            size = hashlib.new(name).digest_size
            if len(digest) != size:
                raise TpmError(f"digest for bank {_alg_name(alg)} is {len(digest)} bytes, expected {size}")
            values.append(t.TPMT_HA(hashAlg=alg, digest=t.TPMU_HA(**{name: digest})))
        if not values:
            raise TpmError(f"extend of PCR {pcr}: no digests given")
        self._call(
            f"TPM2_PCR_Extend(PCR {pcr})", self._esapi.pcr_extend, self._pcr_handle(pcr), t.TPML_DIGEST_VALUES(values)
        )

    def event(self, pcr: int, data: bytes) -> dict[int, bytes]:
        """TPM2_PCR_Event: the TPM hashes ``data`` (≤ 1024 bytes) in every bank and extends ``pcr``."""
        _check_pcr(pcr)
        if len(data) > 1024:
            raise TpmError(f"PCR_Event data is {len(data)} bytes, at most 1024")
        result = self._call(f"TPM2_PCR_Event(PCR {pcr})", self._esapi.pcr_event, self._pcr_handle(pcr), data)
        return {int(v.hashAlg): bytes(getattr(v.digest, HASH_FUNCTIONS[int(v.hashAlg)])) for v in result}

    def _pcr_handle(self, pcr: int) -> Any:
        return self._c.ESYS_TR.PCR0 + pcr

    # --- attestation key -----------------------------------------------------------------------

    def attestation_key(
        self,
        *,
        hierarchy: Literal["owner", "endorsement"] = "owner",
        persistent_handle: int | None = None,
    ) -> AttestationKey:
        """Create (CreatePrimary) or load the default RSA AK.

        ``hierarchy``: go-tpm-tools' ``AttestationKeyRSA`` uses the owner (storage) hierarchy.
        ``persistent_handle``: behave like go-tpm-tools ``NewCachedKey``: use the key at that
        handle if its public area matches :data:`AK_RSA_TEMPLATE`, otherwise evict whatever is
        there and persist a new primary key there (owner authorization, empty password).
        Without it the key is a transient primary flushed on :meth:`close` (a primary key is
        derived from the hierarchy seed and the template, so it is the same key every time).
        """
        c = self._c
        parent = {"owner": c.ESYS_TR.OWNER, "endorsement": c.ESYS_TR.ENDORSEMENT}.get(hierarchy)
        if parent is None:
            raise TpmError(f"unknown hierarchy {hierarchy!r}; expected 'owner' or 'endorsement'")
        if persistent_handle is not None:
            if not 0x81000000 <= persistent_handle <= 0x81FFFFFF:
                raise TpmError(f"persistent handle 0x{persistent_handle:08x} outside 0x81000000..0x81ffffff")
            cached = self._load_persistent(persistent_handle)
            if cached is not None:
                return cached
        handle, public, *_ = self._call(
            f"TPM2_CreatePrimary(AK, {hierarchy})",
            self._esapi.create_primary,
            self._t.TPM2B_SENSITIVE_CREATE(),
            self._t.TPM2B_PUBLIC(publicArea=self._t.TPMT_PUBLIC.unmarshal(AK_RSA_TEMPLATE)[0]),
            parent,
        )
        public_area = bytes(public.publicArea.marshal())
        if persistent_handle is None:
            self._transient.append(handle)
            return AttestationKey(handle=handle, public_area=public_area, persistent=False)
        try:
            new = self._call(
                f"TPM2_EvictControl(persist AK at 0x{persistent_handle:08x})",
                self._esapi.evict_control,
                c.ESYS_TR.OWNER,
                handle,
                persistent_handle,
            )
        finally:
            self._esapi.flush_context(handle)
        return AttestationKey(handle=new, public_area=public_area, persistent=True)

    def _load_persistent(self, persistent_handle: int) -> AttestationKey | None:
        _more, data = self._call(
            "TPM2_GetCapability(HANDLES)", self._esapi.get_capability, self._c.TPM2_CAP.HANDLES, persistent_handle, 1
        )
        if persistent_handle not in [int(h) for h in data.data.handles]:
            return None  # nothing persisted there yet
        handle = self._call("Esys_TR_FromTPMPublic(AK)", self._esapi.tr_from_tpmpublic, persistent_handle)
        public, _name, _qname = self._call("TPM2_ReadPublic(AK)", self._esapi.read_public, handle)
        public_area = bytes(public.publicArea.marshal())
        if matches_ak_template(public_area):
            return AttestationKey(handle=handle, public_area=public_area, persistent=True)
        self._call(
            f"TPM2_EvictControl(evict 0x{persistent_handle:08x})",
            self._esapi.evict_control,
            self._c.ESYS_TR.OWNER,
            handle,
            persistent_handle,
        )
        return None

    # --- quotes ------------------------------------------------------------------------------

    def quote(self, ak: AttestationKey, alg: int, extra_data: bytes, indices: Sequence[int] | None = None) -> Quote:
        """TPM2_Quote of one bank; the PCR values read afterwards must match the quoted digest.

        A concurrent extend between quote and read is retried a few times, as go-tpm-tools does.
        """
        if len(extra_data) > 64:
            raise TpmError(f"quote extra data is {len(extra_data)} bytes, at most 64")
        selected = tuple(range(NUM_PCRS)) if indices is None else tuple(sorted(set(indices)))
        scheme = self._t.TPMT_SIG_SCHEME(scheme=self._c.TPM2_ALG.NULL)  # the key's own scheme
        for _ in range(_QUOTE_ATTEMPTS):
            attest, signature = self._call(
                f"TPM2_Quote({_alg_name(alg)})",
                self._esapi.quote,
                ak.handle,
                self._selection({alg: selected}),
                extra_data,
                scheme,
            )
            attest_bytes = bytes(attest)
            pcrs = self.read_pcrs(alg, selected)
            parsed, _size = self._t.TPMS_ATTEST.unmarshal(attest_bytes)
            quoted_digest = bytes(parsed.attested.quote.pcrDigest)
            if int(signature.sigAlg) != 0x0014:  # TPM_ALG_RSASSA, the AK template's scheme
                raise TpmError(f"quote signature algorithm 0x{int(signature.sigAlg):04x}, expected RSASSA")
            hash_name = HASH_FUNCTIONS.get(int(signature.signature.rsassa.hash))
            if hash_name is None:
                raise TpmError("quote signature uses an unsupported hash algorithm")
            if hashlib.new(hash_name, b"".join(pcrs.pcrs.values())).digest() == quoted_digest:
                return Quote(quote=attest_bytes, raw_sig=bytes(signature.marshal()), pcrs=pcrs)
        raise TpmError(f"PCRs of bank {_alg_name(alg)} kept changing while quoting ({_QUOTE_ATTEMPTS} attempts)")

    def quote_all_banks(self, ak: AttestationKey, extra_data: bytes) -> tuple[Quote, ...]:
        """One quote per allocated bank (SHA-1 included), PCRs 0–23, like go-tpm-tools ``Attest``."""
        banks = self.pcr_banks()
        if not banks:
            raise TpmError("the TPM reports no allocated PCR bank")
        return tuple(self.quote(ak, alg, extra_data, indices) for alg, indices in banks.items())


def matches_ak_template(public_area: bytes) -> bool:
    """Whether a TPMT_PUBLIC has the AK template's type, nameAlg, attributes, policy and parameters."""
    head = len(AK_RSA_TEMPLATE) - 2  # everything but the (empty) unique field
    return public_area[:head] == AK_RSA_TEMPLATE[:head]
