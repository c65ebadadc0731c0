"""Each SNP check rejects on its own: synthetic reports whose only fault is one field.

The reports are signed by a synthetic AMD-like hierarchy (``starlock.attestation.snp.testing``:
ARK RSA-4096 RSA-PSS -> ASK/ASVK -> VCEK/VLEK P-384, AMD profile and KDS extensions). Its root
is not pinned, so every verification here trusts it explicitly; one test shows it is refused
without that opt-in.
"""

from __future__ import annotations

import datetime
from typing import Any

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec

from starlock.attestation.config import (
    AttestationConfig,
    EnforcementPolicy,
    FirmwareSignerConfig,
    SnpVersions,
)
from starlock.attestation.errors import (
    AttestationError,
    CertificateChainError,
    ConfigError,
    MalformedEvidence,
    MeasurementMismatch,
    NonceMismatch,
    PolicyViolation,
    SignatureError,
    UnsupportedError,
)
from starlock.attestation.measurements import Measurements
from starlock.attestation.snp import (
    Product,
    SigningKey,
    SnpPolicy,
    TcbLayout,
    TcbParts,
    TcbVersion,
    evaluate_report,
    verify_report,
)
from starlock.attestation.snp.certs import OID_CSP_ID, OID_HWID
from starlock.attestation.snp.testing import SyntheticAmd, build_report, sign_report
from starlock.attestation.variant import Variant

UTC = datetime.UTC
AT = datetime.datetime(2026, 11, 25, tzinfo=UTC)
TCB = TcbParts(bootloader=3, tee=1, snp=8, microcode=115)
TURIN_TCB = TcbParts(bootloader=2, tee=1, snp=3, microcode=70, fmc=4)
HWID = bytes(range(100, 164))
CPUID = {Product.MILAN: (0x19, 0x01, 0x01), Product.GENOA: (0x19, 0x11, 0x01), Product.TURIN: (0x1A, 0x02, 0x00)}


@pytest.fixture(scope="module")
def amd() -> dict[Product, SyntheticAmd]:
    return {p: SyntheticAmd.generate(p) for p in Product}


@attrs.frozen
class Built:
    report: bytes
    signer: x509.Certificate
    chain: list[x509.Certificate]
    hierarchy: SyntheticAmd

    def verify(self, policy: SnpPolicy | None = None, **kwargs: Any) -> Any:
        kwargs.setdefault("at", AT)
        kwargs.setdefault("trust_store", self.hierarchy.trust_store())
        return verify_report(self.report, self.signer, self.chain, policy, **kwargs)


def make(
    amd: dict[Product, SyntheticAmd],
    *,
    product: Product = Product.MILAN,
    signing_key: SigningKey = SigningKey.VCEK,
    cert_tcb: TcbParts | None = None,
    cert_kwargs: dict[str, Any] | None = None,
    sign_with: ec.EllipticCurvePrivateKey | None = None,
    **fields: Any,
) -> Built:
    """A good report for ``product``/``signing_key`` with ``fields`` overriding build_report's."""
    hierarchy = amd[product]
    layout = product.tcb_layout
    tcb_parts = TURIN_TCB if product is Product.TURIN else TCB
    tcb = TcbVersion.compose(tcb_parts, layout)
    hwid = HWID[:8] if product is Product.TURIN else HWID
    cert, key = hierarchy.issue(signing_key, cert_tcb or tcb_parts, hwid=hwid, **(cert_kwargs or {}))
    values: dict[str, Any] = {
        "version": 2 if product is Product.MILAN else 3,
        "signing_key": signing_key,
        "current_tcb": tcb,
        "reported_tcb": tcb,
        "chip_id": (hwid + bytes(64 - len(hwid))) if signing_key is SigningKey.VCEK else bytes(64),
        "mask_chip_key": signing_key is SigningKey.VLEK,
    }
    if product is not Product.MILAN:
        values["cpuid"] = CPUID[product]
    values.update(fields)
    raw = sign_report(build_report(**values), sign_with or key)
    return Built(raw, cert, hierarchy.chain(signing_key), hierarchy)


def rejects(built: Built, policy: SnpPolicy | None, error: type[AttestationError], check: str) -> AttestationError:
    with pytest.raises(error) as info:
        built.verify(policy)
    assert info.value.check == check, (info.value.check, str(info.value))
    return info.value


# --- good reports ---------------------------------------------------------------------------


@pytest.mark.parametrize("product", list(Product))
@pytest.mark.parametrize("signing_key", [SigningKey.VCEK, SigningKey.VLEK])
def test_good_synthetic_reports_accepted(
    amd: dict[Product, SyntheticAmd], product: Product, signing_key: SigningKey
) -> None:
    built = make(amd, product=product, signing_key=signing_key)
    result = built.verify(SnpPolicy(minimum_launch_tcb=SnpVersions(1, 0, 1, 1)))
    assert result.product is product and result.signing_key is signing_key
    assert not result.chain.root_pinned
    assert result.checks[-1].name == "committed-tcb"


def test_report_versions_3_4_5_and_cpuid_product(amd: dict[Product, SyntheticAmd]) -> None:
    for version in (3, 4, 5):
        built = make(amd, product=Product.GENOA, version=version, mit_vectors=(7, 9) if version == 5 else (0, 0))
        assert built.verify().report.version == version
    result = make(amd, version=3, cpuid=CPUID[Product.MILAN]).verify()
    assert [c.detail for c in result.checks if c.name == "product"] == ["Milan (from report CPUID)"]


def test_turin_layout_and_short_hwid(amd: dict[Product, SyntheticAmd]) -> None:
    built = make(amd, product=Product.TURIN)
    result = built.verify()
    parts = result.report.reported_tcb.parts(TcbLayout.TURIN)
    assert parts == TURIN_TCB
    assert result.endorsement.hwid == HWID[:8] and result.endorsement.fmc == 4
    # chip ID: first 8 bytes must equal hwID, the rest zero
    rejects(
        make(amd, product=Product.TURIN, chip_id=HWID[:8] + b"\x01" + bytes(55)), None, CertificateChainError, "chip-id"
    )
    rejects(make(amd, product=Product.TURIN, chip_id=HWID[1:9] + bytes(56)), None, CertificateChainError, "chip-id")
    # fmc is part of the Turin TCB
    bad_fmc = attrs.evolve(TURIN_TCB, fmc=5)
    rejects(make(amd, product=Product.TURIN, cert_tcb=bad_fmc), None, CertificateChainError, "reported-tcb")


def test_hwid_octet_string_encoding(amd: dict[Product, SyntheticAmd]) -> None:
    built = make(amd, cert_kwargs={"hwid_encoding": "octet"})
    assert built.verify().endorsement.hwid == HWID


def test_masked_chip_id_is_not_compared(amd: dict[Product, SyntheticAmd]) -> None:
    result = make(amd, chip_id=bytes(64), mask_chip_key=True).verify()
    assert [c.detail for c in result.checks if c.name == "chip-id"] == ["CHIP_ID masked (all zero): not compared"]


# --- one fault each -------------------------------------------------------------------------

LOW = TcbVersion.compose(attrs.evolve(TCB, microcode=100))


@pytest.mark.parametrize(
    ("fields", "policy", "error", "check"),
    [
        (
            {"launch_tcb": LOW},
            SnpPolicy(minimum_launch_tcb=SnpVersions(3, 1, 8, 115)),
            PolicyViolation,
            "launch-tcb-minimum",
        ),
        ({}, SnpPolicy(minimum_launch_tcb=SnpVersions(3, 1, 9, 0)), PolicyViolation, "launch-tcb-minimum"),
        ({}, SnpPolicy(minimum_reported_tcb=SnpVersions(4, 0, 0, 0)), PolicyViolation, "reported-tcb-minimum"),
        ({"policy": 0xB0000}, None, PolicyViolation, "guest-policy.debug"),
        ({"policy": 0x70000}, None, PolicyViolation, "guest-policy.migrate-ma"),
        ({"policy": 0x230000}, None, PolicyViolation, "guest-policy.cxl"),
        ({}, SnpPolicy(allow_smt=False), PolicyViolation, "guest-policy.smt"),
        ({"policy": 0x3001F}, SnpPolicy(minimum_abi=(1, 0)), PolicyViolation, "guest-policy.abi"),
        ({"vmpl": 1}, None, PolicyViolation, "vmpl"),
        ({"vmpl": 0}, SnpPolicy(vmpl=2), PolicyViolation, "vmpl"),
        (
            {"id_key_digest": b"\x11" * 48},
            SnpPolicy(accepted_id_key_digests=[b"\x22" * 48]),
            PolicyViolation,
            "id-key-digest",
        ),
        (
            {"author_key_digest": b"\x11" * 48},
            SnpPolicy(accepted_author_key_digests=[b"\x11" * 48]),
            PolicyViolation,
            "author-key-digest",
        ),
        ({"chip_id": HWID[:-1] + b"\x00"}, None, CertificateChainError, "chip-id"),
        ({"reported_tcb": LOW, "launch_tcb": TcbVersion.compose(TCB)}, None, CertificateChainError, "reported-tcb"),
        ({"current_tcb": LOW, "committed_tcb": LOW}, None, CertificateChainError, "current-tcb"),
        ({"committed_tcb": TcbVersion.compose(attrs.evolve(TCB, snp=9))}, None, PolicyViolation, "committed-tcb"),
        ({"committed_firmware": (1, 56, 0)}, None, PolicyViolation, "committed-tcb"),
        ({"report_data": b"\x01" * 64}, SnpPolicy(report_data=b"\x02" * 64), NonceMismatch, "report-data"),
        ({"measurement": b"\x01" * 48}, SnpPolicy(measurement=b"\x02" * 48), MeasurementMismatch, "measurement"),
        ({"host_data": b"\x01" * 32}, SnpPolicy(host_data=b"\x02" * 32), MeasurementMismatch, "host-data"),
        ({"guest_svn": 3}, SnpPolicy(minimum_guest_svn=4), PolicyViolation, "guest-svn"),
        ({"version": 1}, None, MalformedEvidence, "report-format"),
        ({"version": 6}, None, MalformedEvidence, "report-format"),
        ({"policy": 0x10000}, None, MalformedEvidence, "report-format"),
        ({"policy": 0x4030000}, None, MalformedEvidence, "report-format"),
        ({"patches": {0x048: b"\x20"}}, None, MalformedEvidence, "report-format"),
        ({"patches": {0x048: b"\x0c"}}, None, MalformedEvidence, "report-format"),
        ({"patches": {0x034: b"\x02"}}, None, MalformedEvidence, "report-format"),
        ({"signing_key": SigningKey.NONE}, None, SignatureError, "signing-key"),
        ({"version": 3, "cpuid": CPUID[Product.GENOA]}, None, CertificateChainError, "product"),
        ({"version": 3, "cpuid": (0x17, 0x31, 0)}, None, UnsupportedError, "product"),
        ({}, SnpPolicy(product=Product.GENOA), PolicyViolation, "product"),
        ({}, SnpPolicy(allowed_products=(Product.GENOA,)), PolicyViolation, "product"),
    ],
    ids=lambda v: None if isinstance(v, dict | SnpPolicy | type) or v is None else str(v),
)
def test_single_fault_rejected(
    amd: dict[Product, SyntheticAmd],
    fields: dict[str, Any],
    policy: SnpPolicy | None,
    error: type[AttestationError],
    check: str,
) -> None:
    good = make(amd)
    good.verify(attrs.evolve(policy, **_neutral(policy)) if policy else None)  # the same policy passes a good one
    err = rejects(make(amd, **fields), policy, error, check)
    if error is not MalformedEvidence:
        assert "expected" in str(err) or "SIGNING_KEY" in str(err), str(err)


def _neutral(policy: SnpPolicy) -> dict[str, Any]:
    """Expectations that the good report (zero data, launch TCB = TCB) satisfies."""
    out: dict[str, Any] = {}
    if policy.report_data is not None:
        out["report_data"] = bytes(64)
    if policy.measurement is not None:
        out["measurement"] = bytes(48)
    if policy.host_data is not None:
        out["host_data"] = bytes(32)
    if policy.accepted_id_key_digests is not None:
        out["accepted_id_key_digests"] = [bytes(48)]
    if policy.accepted_author_key_digests is not None:
        out["accepted_author_key_digests"] = None
    if policy.minimum_launch_tcb is not None:
        out["minimum_launch_tcb"] = SnpVersions(3, 1, 8, 115)
    if policy.minimum_reported_tcb is not None:
        out["minimum_reported_tcb"] = SnpVersions(3, 1, 8, 115)
    if policy.minimum_abi != (0, 0):
        out["minimum_abi"] = (0, 0)
    out["vmpl"] = 0
    out["allow_smt"] = True
    out["product"] = None
    out["allowed_products"] = tuple(Product)
    out["minimum_guest_svn"] = 0
    return out


def test_author_key_accepted_when_enabled(amd: dict[Product, SyntheticAmd]) -> None:
    built = make(amd, author_key_en=True, author_key_digest=b"\x11" * 48)
    built.verify(SnpPolicy(accepted_author_key_digests=[b"\x11" * 48]))


@pytest.mark.parametrize(
    ("start", "end"),
    [(0x04C, 0x050), (0x188, 0x1A0), (0x1EB, 0x1EC), (0x1EF, 0x1F0), (0x1F8, 0x208), (0x208, 0x2A0), (0x330, 0x4A0)],
)
def test_reserved_bytes_must_be_zero(amd: dict[Product, SyntheticAmd], start: int, end: int) -> None:
    for pos in sorted({start, end - 1}):
        raw = bytearray(make(amd).report)
        raw[pos] = 0x01
        built = make(amd)
        # re-sign so the reserved byte is the only fault (except in the signature area itself)
        built = make(amd, patches={pos: b"\x01"}) if pos < 0x2A0 else attrs.evolve(built, report=bytes(raw))
        err = rejects(built, None, MalformedEvidence, "report-format")
        assert f"0x{pos:03x}" in str(err)


def test_version_3_reserved_after_cpuid(amd: dict[Product, SyntheticAmd]) -> None:
    rejects(
        make(amd, version=3, cpuid=CPUID[Product.MILAN], patches={0x18B: b"\x01"}),
        None,
        MalformedEvidence,
        "report-format",
    )
    rejects(make(amd, version=2, patches={0x188: b"\x19"}), None, MalformedEvidence, "report-format")


def test_id_key_digest_warn_only(amd: dict[Product, SyntheticAmd]) -> None:
    built = make(amd, id_key_digest=b"\x11" * 48)
    result = built.verify(SnpPolicy(accepted_id_key_digests=[b"\x22" * 48], id_key_digest_warn_only=True))
    assert not result.id_key_accepted and "1111" in result.warnings[0]


def test_provisional_firmware_not_permitted(amd: dict[Product, SyntheticAmd]) -> None:
    built = make(amd, current_tcb=TcbVersion.compose(attrs.evolve(TCB, microcode=120)))
    built.verify()
    rejects(built, SnpPolicy(permit_provisional_firmware=False), PolicyViolation, "committed-tcb")


def test_report_signed_by_another_key(amd: dict[Product, SyntheticAmd]) -> None:
    rejects(make(amd, sign_with=ec.generate_private_key(ec.SECP384R1())), None, SignatureError, "report-signature")


# --- trust, validity, certificate profile ------------------------------------------------------


def test_synthetic_root_refused_without_explicit_trust(amd: dict[Product, SyntheticAmd]) -> None:
    built = make(amd)
    for kwargs in ({"trust_store": None}, {}):
        with pytest.raises(CertificateChainError) as info:
            verify_report(built.report, built.signer, built.chain, at=AT, **kwargs)
        assert info.value.check == "root-pinned"
        assert "not a pinned AMD root" in str(info.value)


def test_synthetic_certificate_validity(amd: dict[Product, SyntheticAmd]) -> None:
    start = datetime.datetime(2024, 1, 1, tzinfo=UTC)
    end = datetime.datetime(2025, 1, 1, tzinfo=UTC)
    built = make(amd, cert_kwargs={"not_before": start, "not_after": end})
    built.verify(at=datetime.datetime(2024, 6, 1, tzinfo=UTC))
    for at in (start - datetime.timedelta(days=1), end + datetime.timedelta(days=1)):
        with pytest.raises(CertificateChainError) as info:
            built.verify(at=at)
        assert info.value.check == "certificate-validity"


@pytest.mark.parametrize(
    ("signing_key", "cert_kwargs", "message"),
    [
        (SigningKey.VCEK, {"extra": {"1.2.3.4": b"\x05\x00"}}, "not an AMD KDS extension"),
        (SigningKey.VCEK, {"omit": (OID_HWID,)}, "must carry hwID"),
        (SigningKey.VCEK, {"extra": {OID_CSP_ID: b"\x16\x01a"}}, "must carry hwID"),
        (SigningKey.VLEK, {"extra": {OID_HWID: bytes(64)}}, "must carry CSP_ID"),
        (SigningKey.VCEK, {"omit": ("1.3.6.1.4.1.3704.1.3.1",)}, "blSPL"),
        (SigningKey.VCEK, {"extra": {"1.3.6.1.4.1.3704.1.3.2": b"\x02\x01\x80"}}, "teeSPL"),
        (SigningKey.VCEK, {"extra": {"1.3.6.1.4.1.3704.1.3.8": b"\x04\x01\x01"}}, "ucodeSPL"),
        (SigningKey.VCEK, {"extra": {OID_HWID: bytes(63)}}, "hwID"),
        (SigningKey.VCEK, {"product_name": "Rome-B0"}, "Rome"),
        (SigningKey.VCEK, {"key": ec.generate_private_key(ec.SECP256R1())}, "P-384"),
    ],
)
def test_signer_profile_violations(
    amd: dict[Product, SyntheticAmd], signing_key: SigningKey, cert_kwargs: dict[str, Any], message: str
) -> None:
    with pytest.raises(CertificateChainError, match=message) as info:
        make(amd, signing_key=signing_key, cert_kwargs=cert_kwargs).verify()
    assert info.value.check == "signer-profile"


def test_evaluation_lists_checks_up_to_the_failure(amd: dict[Product, SyntheticAmd]) -> None:
    built = make(amd, vmpl=1)
    evaluation = evaluate_report(
        built.report, built.signer, built.chain, at=AT, trust_store=built.hierarchy.trust_store()
    )
    assert not evaluation.accepted and evaluation.checks[-1].name == "vmpl"
    assert evaluation.checks[-1].detail == "report VMPL: expected 0, got 1"
    assert evaluation.claims()["vmpl"] == 1


# --- the policy from the attestation config ----------------------------------------------------


def test_policy_from_config() -> None:
    digest = b"\x33" * 48
    config = AttestationConfig(
        variant=Variant.AZURE_SEV_SNP,
        measurements=Measurements({}),
        snp_versions=SnpVersions(3, 0, 8, 115),
        firmware_signer=FirmwareSignerConfig((digest,), EnforcementPolicy.EQUAL, ""),
    )
    policy = SnpPolicy.from_config(config)
    assert policy.minimum_launch_tcb == SnpVersions(3, 0, 8, 115)
    assert policy.accepted_id_key_digests == (digest,) and not policy.id_key_digest_warn_only
    assert policy.vmpl == 0 and not policy.allow_debug and policy.allow_smt
    warn = attrs.evolve(config, firmware_signer=FirmwareSignerConfig((digest,), EnforcementPolicy.WARN_ONLY, ""))
    assert SnpPolicy.from_config(warn).id_key_digest_warn_only
    assert SnpPolicy.from_config(config, vmpl=None).vmpl is None


@pytest.mark.parametrize(
    "kwargs",
    [
        {"report_data": bytes(32)},
        {"measurement": bytes(32)},
        {"host_data": bytes(48)},
        {"accepted_id_key_digests": [bytes(32)]},
        {"minimum_launch_tcb": SnpVersions(256, 0, 0, 0)},
    ],
)
def test_policy_refuses_bad_values(kwargs: dict[str, Any]) -> None:
    with pytest.raises(ConfigError):
        SnpPolicy(**kwargs)
