"""The AMD SEV-SNP ``ATTESTATION_REPORT`` (ABI spec 56860): parse and check its format.

Reference: spec-attestation Part B §1. Everything is little-endian. :func:`parse_report` takes
exactly ``REPORT_SIZE`` (0x4A0) bytes, checks every structural rule that go-sev-guest checks
before the signature (version, signature algorithm, reserved bytes, policy and signer-info
reserved bits) and returns a frozen :class:`AttestationReport`. It trusts nothing: the signature
is checked by :func:`starlock.attestation.snp.verify_report_signature`.

Deliberate difference: bytes 0x1F8..0x207 (the mitigation vectors of report version 5) must be
zero in versions 2..4, where the ABI has them reserved; go-sev-guest parses them in every version.
"""

from __future__ import annotations

import enum
import struct

import attrs

from starlock.attestation.errors import MalformedEvidence

__all__ = [
    "MAX_REPORT_VERSION",
    "MIN_REPORT_VERSION",
    "REPORT_SIZE",
    "SIGNED_SIZE",
    "AttestationReport",
    "GuestPolicy",
    "PlatformInfo",
    "Product",
    "SignerInfo",
    "SigningKey",
    "TcbLayout",
    "TcbParts",
    "TcbVersion",
    "parse_report",
    "product_from_cpuid",
]

REPORT_SIZE = 0x4A0
SIGNED_SIZE = 0x2A0
MIN_REPORT_VERSION = 2
MAX_REPORT_VERSION = 5
SIG_ALGO_ECDSA_P384_SHA384 = 1

# (start, end) of the bytes that must be zero, beyond the version-dependent ranges.
_RESERVED_ALWAYS = ((0x04C, 0x050), (0x1EB, 0x1EC), (0x1EF, 0x1F0), (0x208, 0x2A0), (0x330, 0x4A0))


class Product(enum.StrEnum):
    """An AMD EPYC product line; the value is the line name used in KDS URLs and certificate CNs."""

    MILAN = "Milan"
    GENOA = "Genoa"
    TURIN = "Turin"

    @property
    def tcb_layout(self) -> TcbLayout:
        return TcbLayout.TURIN if self is Product.TURIN else TcbLayout.MILAN_GENOA

    @classmethod
    def from_name(cls, name: str) -> Product:
        """``"Milan"``, ``"milan"`` or a product name with a stepping (``"Milan-B0"``)."""
        line = name.split("-", 1)[0].strip().lower()
        for product in cls:
            if product.value.lower() == line:
                return product
        raise MalformedEvidence(
            f"product name {name!r:.40} is not a known AMD product line (expected Milan, Genoa or Turin)",
            check="product",
        )


# CPUID family/model -> product line (spec §2.4; SG:abi SevProductFromCpuid1Eax).
_CPUID_PRODUCTS = {(0x19, 0x01): Product.MILAN, (0x19, 0x11): Product.GENOA, (0x1A, 0x02): Product.TURIN}


def product_from_cpuid(family: int, model: int) -> Product | None:
    """The product line for a report's CPUID_FAM_ID / CPUID_MOD_ID, None if unknown."""
    return _CPUID_PRODUCTS.get((family, model))


class TcbLayout(enum.Enum):
    """How the 8 bytes of a TCB_VERSION are assigned (spec §1.3)."""

    MILAN_GENOA = 0  # certificate structVersion 0
    TURIN = 1  # structVersion 1; from an unmerged go-sev-guest commit (spec §8 gap 1)


@attrs.frozen
class TcbParts:
    """The named security versions of a TCB_VERSION; ``fmc`` only exists on Turin."""

    bootloader: int
    tee: int
    snp: int
    microcode: int
    fmc: int | None = None

    def describe(self) -> str:
        fmc = f"fmc={self.fmc} " if self.fmc is not None else ""
        return f"{fmc}bl={self.bootloader} tee={self.tee} snp={self.snp} ucode={self.microcode}"


@attrs.frozen
class TcbVersion:
    """A TCB_VERSION (u64). Comparisons are component-wise over all 8 bytes, as go-sev-guest's."""

    raw: int

    @property
    def octets(self) -> bytes:
        return self.raw.to_bytes(8, "little")

    def parts(self, layout: TcbLayout = TcbLayout.MILAN_GENOA) -> TcbParts:
        b = self.octets
        if layout is TcbLayout.TURIN:
            return TcbParts(bootloader=b[1], tee=b[2], snp=b[3], microcode=b[7], fmc=b[0])
        return TcbParts(bootloader=b[0], tee=b[1], snp=b[6], microcode=b[7])

    def describe(self, layout: TcbLayout = TcbLayout.MILAN_GENOA) -> str:
        return f"{self.parts(layout).describe()} (0x{self.raw:016x})"

    def le(self, other: TcbVersion) -> bool:
        """True when every byte (component) of self is <= the same byte of ``other``."""
        return all(a <= b for a, b in zip(self.octets, other.octets, strict=True))

    @classmethod
    def compose(cls, parts: TcbParts, layout: TcbLayout = TcbLayout.MILAN_GENOA) -> TcbVersion:
        """Build a TCB_VERSION from its parts (reserved bytes zero)."""
        for name in ("bootloader", "tee", "snp", "microcode", "fmc"):
            value = getattr(parts, name)
            if value is not None and not 0 <= value <= 255:
                raise MalformedEvidence(f"TCB part {name}: expected 0..255, got {value}", check="tcb")
        if layout is TcbLayout.TURIN:
            b = [parts.fmc or 0, parts.bootloader, parts.tee, parts.snp, 0, 0, 0, parts.microcode]
        else:
            b = [parts.bootloader, parts.tee, 0, 0, 0, 0, parts.snp, parts.microcode]
        return cls(int.from_bytes(bytes(b), "little"))


class SigningKey(enum.IntEnum):
    """SIGNING_KEY (signer info bits 2..4): which key signed the report."""

    VCEK = 0
    VLEK = 1
    NONE = 7


@attrs.frozen
class SignerInfo:
    raw: int
    author_key_en: bool
    mask_chip_key: bool
    signing_key: SigningKey


@attrs.frozen
class GuestPolicy:
    """The guest POLICY (spec §1.4); bit 17 must be 1 and bits 26..63 zero."""

    raw: int

    @property
    def abi_minor(self) -> int:
        return self.raw & 0xFF

    @property
    def abi_major(self) -> int:
        return (self.raw >> 8) & 0xFF

    def _bit(self, n: int) -> bool:
        return bool(self.raw >> n & 1)

    @property
    def smt(self) -> bool:
        """SMT allowed."""
        return self._bit(16)

    @property
    def migrate_ma(self) -> bool:
        """Migration agent allowed."""
        return self._bit(18)

    @property
    def debug(self) -> bool:
        """Debugging allowed."""
        return self._bit(19)

    @property
    def single_socket(self) -> bool:
        """Single socket required."""
        return self._bit(20)

    @property
    def cxl_allow(self) -> bool:
        """CXL allowed."""
        return self._bit(21)

    @property
    def mem_aes_256_xts(self) -> bool:
        """AES-256-XTS required."""
        return self._bit(22)

    @property
    def rapl_dis(self) -> bool:
        """RAPL must be disabled."""
        return self._bit(23)

    @property
    def ciphertext_hiding(self) -> bool:
        """Ciphertext hiding required."""
        return self._bit(24)

    @property
    def page_swap_disable(self) -> bool:
        """Page swap disabled."""
        return self._bit(25)

    @classmethod
    def parse(cls, raw: int) -> GuestPolicy:
        if not raw >> 17 & 1:
            raise MalformedEvidence(f"guest policy 0x{raw:x}: reserved bit 17 must be 1, got 0", check="report-format")
        if raw >> 26:
            raise MalformedEvidence(
                f"guest policy 0x{raw:x}: bits 26..63 must be zero, got 0x{raw >> 26:x}", check="report-format"
            )
        return cls(raw)

    def describe(self) -> str:
        flags = [
            name
            for name in ("smt", "migrate_ma", "debug", "single_socket", "cxl_allow", "mem_aes_256_xts", "rapl_dis")
            if getattr(self, name)
        ]
        return f"0x{self.raw:x} (abi {self.abi_major}.{self.abi_minor}; {', '.join(flags) or 'no flags'})"


@attrs.frozen
class PlatformInfo:
    """PLATFORM_INFO (spec §1.5). Not checked by Constellation; exposed for callers' policies."""

    raw: int

    @property
    def smt_enabled(self) -> bool:
        return bool(self.raw & 1)

    @property
    def tsme_enabled(self) -> bool:
        return bool(self.raw >> 1 & 1)

    @property
    def ecc_enabled(self) -> bool:
        return bool(self.raw >> 2 & 1)

    @property
    def rapl_disabled(self) -> bool:
        return bool(self.raw >> 3 & 1)

    @property
    def ciphertext_hiding_enabled(self) -> bool:
        return bool(self.raw >> 4 & 1)

    @property
    def alias_check_complete(self) -> bool:
        return bool(self.raw >> 5 & 1)

    @property
    def tio_enabled(self) -> bool:
        return bool(self.raw >> 7 & 1)


@attrs.frozen
class AttestationReport:
    """A structurally valid report. ``raw`` is the exact 0x4A0 bytes; nothing here is verified yet."""

    raw: bytes = attrs.field(repr=False)
    version: int
    guest_svn: int
    policy: GuestPolicy
    family_id: bytes
    image_id: bytes
    vmpl: int
    signature_algo: int
    current_tcb: TcbVersion
    platform_info: PlatformInfo
    signer_info: SignerInfo
    report_data: bytes
    measurement: bytes
    host_data: bytes
    id_key_digest: bytes
    author_key_digest: bytes
    report_id: bytes
    report_id_ma: bytes
    reported_tcb: TcbVersion
    cpuid_fam_id: int
    cpuid_mod_id: int
    cpuid_step: int
    chip_id: bytes
    committed_tcb: TcbVersion
    current_build: int
    current_minor: int
    current_major: int
    committed_build: int
    committed_minor: int
    committed_major: int
    launch_tcb: TcbVersion
    launch_mit_vector: int
    current_mit_vector: int
    signature_r: int = attrs.field(repr=False)
    signature_s: int = attrs.field(repr=False)

    @property
    def signed_bytes(self) -> bytes:
        """The bytes the signature covers: ``raw[0x000:0x2A0]``."""
        return self.raw[:SIGNED_SIZE]

    @property
    def signing_key(self) -> SigningKey:
        return self.signer_info.signing_key

    @property
    def cpuid_product(self) -> Product | None:
        """Product line from the CPUID bytes (report version 3+), None when absent or unknown."""
        if self.version < 3 or not (self.cpuid_fam_id or self.cpuid_mod_id or self.cpuid_step):
            return None
        return product_from_cpuid(self.cpuid_fam_id, self.cpuid_mod_id)

    @property
    def chip_id_masked(self) -> bool:
        return not any(self.chip_id)

    def signature_der(self) -> bytes:
        """The (r, s) pair re-encoded as a DER ECDSA-Sig-Value."""
        from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature

        return encode_dss_signature(self.signature_r, self.signature_s)


_HEAD = struct.Struct("<IIQ16s16sIIQQI")  # 0x000..0x04C
_U64 = struct.Struct("<Q")


def _require_zero(data: bytes, start: int, end: int, what: str = "reserved") -> None:
    chunk = data[start:end]
    if any(chunk):
        first = next(i for i, b in enumerate(chunk) if b)
        raise MalformedEvidence(
            f"report bytes 0x{start:03x}..0x{end - 1:03x} ({what}) must be zero; "
            f"byte 0x{start + first:03x} is 0x{chunk[first]:02x}",
            check="report-format",
        )


def parse_report(data: bytes) -> AttestationReport:
    """Parse exactly 0x4A0 bytes of an ATTESTATION_REPORT and check its format.

    Raises :class:`MalformedEvidence` (check ``report-format``) for a wrong size, an unsupported
    version (2..5 accepted) or signature algorithm (1 = ECDSA P-384/SHA-384), reserved bits or
    bytes that are not zero, or a reserved SIGNING_KEY value. An extended report (report followed
    by a certificate table) is split with :func:`starlock.attestation.snp.split_extended_report`.
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedEvidence(f"report: expected bytes, got {type(data).__name__}", check="report-format")
    raw = bytes(data)
    if len(raw) != REPORT_SIZE:
        raise MalformedEvidence(
            f"report size: expected {REPORT_SIZE} (0x4A0) bytes, got {len(raw)}", check="report-format"
        )
    version, guest_svn, policy_raw, family_id, image_id, vmpl, algo, current, platform, signer = _HEAD.unpack_from(
        raw, 0
    )
    if not MIN_REPORT_VERSION <= version <= MAX_REPORT_VERSION:
        raise MalformedEvidence(
            f"report version: expected {MIN_REPORT_VERSION}..{MAX_REPORT_VERSION}, got {version}",
            check="report-format",
        )
    if algo != SIG_ALGO_ECDSA_P384_SHA384:
        raise MalformedEvidence(
            f"report signature algorithm: expected 1 (ECDSA P-384 with SHA-384), got {algo}", check="report-format"
        )
    policy = GuestPolicy.parse(policy_raw)
    signer_info = _parse_signer_info(signer)
    for start, end in _RESERVED_ALWAYS:
        _require_zero(raw, start, end)
    _require_zero(raw, 0x18B if version >= 3 else 0x188, 0x1A0)
    if version < 5:
        _require_zero(raw, 0x1F8, 0x208, "mitigation vectors, reserved before version 5")
    u64 = _U64.unpack_from
    return AttestationReport(
        raw=raw,
        version=version,
        guest_svn=guest_svn,
        policy=policy,
        family_id=family_id,
        image_id=image_id,
        vmpl=vmpl,
        signature_algo=algo,
        current_tcb=TcbVersion(current),
        platform_info=PlatformInfo(platform),
        signer_info=signer_info,
        report_data=raw[0x050:0x090],
        measurement=raw[0x090:0x0C0],
        host_data=raw[0x0C0:0x0E0],
        id_key_digest=raw[0x0E0:0x110],
        author_key_digest=raw[0x110:0x140],
        report_id=raw[0x140:0x160],
        report_id_ma=raw[0x160:0x180],
        reported_tcb=TcbVersion(u64(raw, 0x180)[0]),
        cpuid_fam_id=raw[0x188],
        cpuid_mod_id=raw[0x189],
        cpuid_step=raw[0x18A],
        chip_id=raw[0x1A0:0x1E0],
        committed_tcb=TcbVersion(u64(raw, 0x1E0)[0]),
        current_build=raw[0x1E8],
        current_minor=raw[0x1E9],
        current_major=raw[0x1EA],
        committed_build=raw[0x1EC],
        committed_minor=raw[0x1ED],
        committed_major=raw[0x1EE],
        launch_tcb=TcbVersion(u64(raw, 0x1F0)[0]),
        launch_mit_vector=u64(raw, 0x1F8)[0],
        current_mit_vector=u64(raw, 0x200)[0],
        signature_r=int.from_bytes(raw[0x2A0:0x2E8], "little"),
        signature_s=int.from_bytes(raw[0x2E8:0x330], "little"),
    )


def _parse_signer_info(word: int) -> SignerInfo:
    if word >> 5:
        raise MalformedEvidence(
            f"signer info 0x{word:x}: bits 5..31 must be zero, got 0x{word >> 5:x}", check="report-format"
        )
    key = (word >> 2) & 0x7
    if key not in (0, 1, 7):
        raise MalformedEvidence(
            f"signer info: SIGNING_KEY {key} is reserved (expected 0 VCEK, 1 VLEK or 7 none)", check="report-format"
        )
    return SignerInfo(word, bool(word & 1), bool(word & 2), SigningKey(key))
