"""SEV-SNP cases from the synthetic AMD hierarchy of ``starlock.attestation.snp.testing``: re-signed
field edits (every bit of policy, platform and signer info; versions; TCB and firmware edges),
certificate variants (validity, profile, extensions, wrong issuers) and a few Turin reports."""

from __future__ import annotations

import datetime
import functools
import random
from collections.abc import Callable, Iterator
from typing import Any

import attrs
from _common import Case
from _snp import SIGNED_FIELDS, UTC, SnpBase, der, make_case
from cryptography.hazmat.primitives import hashes

from starlock.attestation.snp import Product, SigningKey, SnpPolicy, TcbParts, TcbVersion
from starlock.attestation.snp.certs import OID_HWID, OID_PRODUCT_NAME, OID_STRUCT_VERSION, OID_UCODE_SPL
from starlock.attestation.snp.testing import CaProfile, SyntheticAmd, build_report, sign_report
from starlock.attestation.trust import load_certificates

# --- the synthetic hierarchy ------------------------------------------------------------------------

SYNTH_TCB = TcbParts(bootloader=3, tee=1, snp=8, microcode=115)
SYNTH_AT = datetime.datetime(2030, 1, 1, tzinfo=UTC)
_CPUID = {Product.MILAN: (0x19, 0x01, 0x01), Product.GENOA: (0x19, 0x11, 0x01), Product.TURIN: (0x1A, 0x02, 0x00)}


def synthetic_base(
    amd: SyntheticAmd,
    signing_key: SigningKey = SigningKey.VCEK,
    *,
    version: int = 3,
    label: str | None = None,
    issue: dict[str, Any] | None = None,
    report: dict[str, Any] | None = None,
) -> SnpBase:
    layout = amd.product.tcb_layout
    tcb = attrs.evolve(SYNTH_TCB, fmc=2) if amd.product is Product.TURIN else SYNTH_TCB
    cert, key = amd.issue(signing_key, tcb, **(issue or {}))
    hwid = bytes(range(8 if amd.product is Product.TURIN else 64))
    version_tcb = TcbVersion.compose(tcb, layout)
    current = TcbVersion.compose(attrs.evolve(tcb, microcode=tcb.microcode + 2), layout)
    fields: dict[str, Any] = {
        "version": version,
        "policy": 0x30000,
        "signing_key": signing_key,
        "current_tcb": current,
        "reported_tcb": version_tcb,
        "chip_id": (hwid + bytes(64 - len(hwid))) if signing_key is SigningKey.VCEK else bytes(64),
        "cpuid": _CPUID[amd.product] if version >= 3 else (0, 0, 0),
        "report_data": bytes(range(64)),
        "measurement": bytes(range(100, 148)),
        "firmware": (1, 55, 24),
        "guest_svn": 7,
        "platform_info": 0x1,
        **(report or {}),
    }
    raw = sign_report(build_report(**fields), key)
    ark = der(amd.ark)
    return SnpBase(
        label or f"{amd.product.value.lower()}-{signing_key.name.lower()}-v{version}",
        raw,
        der(cert),
        der(amd.asvk if signing_key is SigningKey.VLEK else amd.ask),
        ark,
        ark,
        amd.product,
        SYNTH_AT,
        SnpPolicy(report_data=bytes(range(64)), measurement=bytes(range(100, 148))),
        amd.trust_store(),
        key,
        amd,
    )


def resign(base: SnpBase, edit: Callable[[bytearray], None]) -> bytes:
    raw = bytearray(base.report)
    edit(raw)
    return sign_report(raw, base.key)


def synthetic_flips(bases: list[SnpBase], rng: random.Random) -> Iterator[Case]:
    """Endless: one bit of one signed field flipped, then the report re-signed with the right key."""
    while True:
        base = rng.choice(bases)
        start, end, name = rng.choice(SIGNED_FIELDS)
        offset = rng.randrange(start, end)
        mask = 1 << rng.randrange(8)

        def edit(raw: bytearray, offset: int = offset, mask: int = mask) -> None:
            raw[offset] ^= mask

        yield make_case(
            f"snp.synthetic.{base.label}#resigned-flip@0x{offset:03x}^{mask:02x}",
            f"snp.synthetic.resigned-flip.{name}",
            base,
            report=resign(base, edit),
        )


def _set(offset: int, value: int, size: int) -> Callable[[bytearray], None]:
    def edit(raw: bytearray) -> None:
        raw[offset : offset + size] = value.to_bytes(size, "little")

    return edit


def _xor_bit(offset: int, bit: int) -> Callable[[bytearray], None]:
    def edit(raw: bytearray) -> None:
        raw[offset + bit // 8] ^= 1 << (bit % 8)

    return edit


def _edited(
    base: SnpBase, p: str, t: str, name: str, edit: Callable[[bytearray], None], tag: str | None = None, **changes: Any
) -> Case:
    return make_case(f"{p}#{name}", f"{t}.{tag or name}", base, report=resign(base, edit), **changes)


def synthetic_structured(bases: list[SnpBase]) -> Iterator[Case]:
    """Fixed re-signed edits: every bit of policy/platform/signer info, versions, TCB edges."""
    for base in bases:
        p = f"snp.synthetic.{base.label}"
        t = "snp.synthetic"
        yield make_case(f"{p}#as-given", f"{t}.as-given", base)

        edited = functools.partial(_edited, base, p, t)

        for v in (0, 1, 2, 3, 4, 5, 6, 0xFFFFFFFF):
            yield edited(f"version={v}", _set(0x0, v, 4))
        for v in (0, 2, 0xFFFFFFFF):
            yield edited(f"signature-algo={v}", _set(0x34, v, 4))
        for v in (1, 2, 3, 4):
            yield edited(f"vmpl={v}", _set(0x30, v, 4))
            yield edited(f"vmpl={v}-unchecked", _set(0x30, v, 4), policy=attrs.evolve(base.policy, vmpl=None))
        for bit in range(64):
            yield edited(f"policy-bit{bit}", _xor_bit(0x08, bit))
            yield edited(f"platform-info-bit{bit}", _xor_bit(0x40, bit))
        for bit in range(32):
            yield edited(f"signer-info-bit{bit}", _xor_bit(0x48, bit))
        for field, offset in (("current_tcb", 0x38), ("reported_tcb", 0x180), ("committed_tcb", 0x1E0)):
            for byte in range(8):
                for delta in (1, -1):
                    value = base.report[offset + byte] + delta
                    if 0 <= value <= 255:
                        name = f"{field}-byte{byte}{delta:+d}"
                        yield edited(name, _set(offset + byte, value, 1))
        for byte in range(8):
            for delta in (1, -1):
                value = base.report[0x1F0 + byte] + delta
                if 0 <= value <= 255:
                    yield edited(f"launch_tcb-byte{byte}{delta:+d}", _set(0x1F0 + byte, value, 1))
        for name, offset in (("build", 0), ("minor", 1), ("major", 2)):
            for delta in (1, -1):
                yield edited(
                    f"committed-{name}{delta:+d}", _set(0x1EC + offset, base.report[0x1EC + offset] + delta, 1)
                )
                yield edited(
                    f"committed-{name}{delta:+d}-no-provisional",
                    _set(0x1EC + offset, base.report[0x1EC + offset] + delta, 1),
                    policy=attrs.evolve(base.policy, permit_provisional_firmware=False),
                )
        yield edited("chip-id-masked-zero", _set(0x1A0, 0, 64))
        yield edited("chip-id-last-byte", _xor_bit(0x1A0, 63 * 8))
        yield edited("chip-id-first-byte", _xor_bit(0x1A0, 0))
        yield edited("cpuid-zero", _set(0x188, 0, 3))
        yield edited("cpuid-milan", _set(0x188, 0x010119, 3))
        yield edited("cpuid-genoa", _set(0x188, 0x011119, 3))
        yield edited("cpuid-turin", _set(0x188, 0x00021A, 3))
        yield edited("cpuid-unknown", _set(0x188, 0x000117, 3))
        yield edited("cpuid-stepping-only", _set(0x18A, 5, 1))
        yield edited("cpuid-stepping-0x15", _set(0x18A, 0x15, 1), tag="resigned-flip.cpuid")
        for name, raw in (("mit-vectors-set", 1), ("mit-vectors-high", 1 << 63)):
            yield edited(f"{name}.launch", _set(0x1F8, raw, 8))
            yield edited(f"{name}.current", _set(0x200, raw, 8))
        yield from _synthetic_certificates(base, p, t)


def _synthetic_certificates(base: SnpBase, p: str, t: str) -> Iterator[Case]:
    """Certificate variants: validity edges, profile and extension edits, wrong issuers."""
    amd = base.amd
    assert amd is not None
    (signer,) = load_certificates(base.signer)
    sec = datetime.timedelta(seconds=1)
    for name, when in (
        ("signer-not-before", signer.not_valid_before_utc),
        ("signer-not-after", signer.not_valid_after_utc),
        ("signer-not-before-1s", signer.not_valid_before_utc - sec),
        ("signer-not-after+1s", signer.not_valid_after_utc + sec),
    ):
        yield make_case(f"{p}#time.{name}", f"{t}.time.{name}", base, at=when)
    signing_key = SigningKey.VLEK if b"SEV-VLEK" in base.signer else SigningKey.VCEK
    tcb = attrs.evolve(SYNTH_TCB, fmc=2) if amd.product is Product.TURIN else SYNTH_TCB
    at = base.at

    def reissued(name: str, **issue: Any) -> Case:
        cert, _ = amd.issue(signing_key, tcb, key=base.key, **issue)
        return make_case(f"{p}#signer.{name}", f"{t}.signer.{name}", base, signer=der(cert))

    yield reissued("expired", not_after=at - datetime.timedelta(days=1))
    yield reissued("not-yet-valid", not_before=at + datetime.timedelta(days=1))
    yield reissued("product-name-other-stepping", product_name=f"{amd.product.value}-B1")
    yield reissued("product-name-line-only", product_name=amd.product.value)
    yield reissued("product-name-other-line", product_name="Genoa-B0" if amd.product is Product.MILAN else "Milan-B0")
    yield reissued("product-name-missing", omit=(OID_PRODUCT_NAME,))
    yield reissued("struct-version-missing", omit=(OID_STRUCT_VERSION,))
    yield reissued("spl4-missing", omit=("1.3.6.1.4.1.3704.1.3.4",))
    yield reissued("unknown-extension", extra={"1.3.6.1.4.1.3704.1.99": b"\x02\x01\x00"})
    yield reissued("ucode-spl-other", extra={OID_UCODE_SPL: b"\x02\x01\x74"})
    if signing_key is SigningKey.VCEK:
        yield reissued("hwid-octet-string", hwid_encoding="octet")
        yield reissued("hwid-missing", omit=(OID_HWID,))
        yield reissued("hwid-other", hwid=bytes(64 if amd.product is not Product.TURIN else 8))
        vlek, _ = amd.issue(SigningKey.VLEK, tcb, key=base.key)
        yield make_case(f"{p}#signer.vlek-cert", f"{t}.signer.vlek-cert", base, signer=der(vlek))
        yield make_case(f"{p}#chain.asvk", f"{t}.chain.asvk", base, intermediate=der(amd.asvk))
    else:
        vcek, _ = amd.issue(SigningKey.VCEK, tcb, key=base.key)
        yield make_case(f"{p}#signer.vcek-cert", f"{t}.signer.vcek-cert", base, signer=der(vcek))
        yield make_case(f"{p}#chain.ask", f"{t}.chain.ask", base, intermediate=der(amd.ask))
    yield make_case(
        f"{p}#chain.ask-ark-swapped", f"{t}.chain.ask-ark-swapped", base, intermediate=base.ark, ark=base.intermediate
    )
    role = "asvk" if signing_key is SigningKey.VLEK else "ask"
    for name, profile in (
        ("expired", CaProfile(not_after=at - datetime.timedelta(days=1))),
        ("not-yet-valid", CaProfile(not_before=at + datetime.timedelta(days=1))),
        ("pkcs1", CaProfile(pss=False)),
        ("pss-sha256", CaProfile(hash=hashes.SHA256())),
        ("other-cn", CaProfile(cn=f"SEV-X-{amd.product.value}")),
        ("no-key-cert-sign", CaProfile(key_cert_sign=False)),
        ("no-key-usage", CaProfile(key_cert_sign=None)),
        ("not-ca", CaProfile(ca=False)),
        ("no-basic-constraints", CaProfile(ca=None)),
    ):
        other = SyntheticAmd.generate(amd.product, **{role: profile})
        # The same keys: the signer (issued by the usual ASK key) verifies under the variant.
        yield make_case(
            f"{p}#{role}.{name}",
            f"{t}.{role}.{name}",
            base,
            intermediate=der(other.asvk if role == "asvk" else other.ask),
        )
    for name, profile in (
        ("expired", CaProfile(not_after=at - datetime.timedelta(days=1))),
        ("pkcs1", CaProfile(pss=False)),
        ("not-ca", CaProfile(ca=False)),
    ):
        other = SyntheticAmd.generate(amd.product, ark=profile)
        store = other.trust_store()
        ark = der(other.ark)
        yield make_case(
            f"{p}#ark.{name}",
            f"{t}.ark.{name}",
            base,
            intermediate=der(other.asvk if role == "asvk" else other.ask),
            ark=ark,
            anchor=ark,
            trust=store,
        )


def turin_cases(amd: SyntheticAmd) -> Iterator[Case]:
    """A few Turin reports (Constellation's go-sev-guest has no Turin support: see the README)."""
    base = synthetic_base(amd)
    yield make_case("snp.turin#as-given", "snp.turin.as-given", base)
    vlek = synthetic_base(amd, SigningKey.VLEK)
    yield make_case("snp.turin-vlek#as-given", "snp.turin.as-given", vlek)
    yield make_case(
        "snp.turin#report-data-other",
        "snp.turin.report-data-other",
        base,
        policy=attrs.evolve(base.policy, report_data=bytes(64)),
    )
