"""SEV-SNP report verification over the real vectors (families snp, azure-snp, aws-snp).

Each case names its vector folder; expectations come from vectors/MANIFEST.md ("Expected") and the
field values from vectors/EXPECTED.json (``results[<label>]``), both read in place. The second half
runs the MANIFEST's "Universal SNP negatives" over every SNP vector.
"""

from __future__ import annotations

import base64
import datetime
import hashlib
import json
import warnings
from collections.abc import Callable
from pathlib import Path
from typing import Any

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from starlock.attestation.errors import (
    AttestationError,
    CertificateChainError,
    MalformedEvidence,
    MeasurementMismatch,
    NonceMismatch,
    PolicyViolation,
    SignatureError,
)
from starlock.attestation.snp import (
    VLEK_GUID,
    Product,
    SigningKey,
    SnpPolicy,
    SnpVerifier,
    TcbLayout,
    evaluate_report,
    parse_cert_table,
    parse_endorsement_key,
    parse_report,
    select_chain,
    split_extended_report,
    verify_chain,
    verify_report,
    verify_report_signature,
)
from starlock.attestation.trust import load_certificates

UTC = datetime.UTC
TODAY = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=UTC)  # the MANIFEST's "real time" for EXPIRED
CONSTELLATION_DEFAULT_DIGEST = bytes.fromhex(
    "0356215882a825279a85b300b0b742931d113bf7e32dde2e50ffde7ec743ca491ecdd7f336dc28a6e0b2bb57af7a44a3"
)
ROOTS = "other/amd-kds-roots"


@attrs.frozen
class Case:
    """One SNP vector: report, signer, chain, a verification time inside the signer's window."""

    label: str  # key in EXPECTED.json results
    report: bytes
    signer: bytes
    chain: bytes
    at: datetime.datetime
    policy: SnpPolicy  # the policy under which the MANIFEST expects ACCEPT


def _hcl_report(blob: bytes) -> bytes:
    # Azure HCL report (spec §5a): 32-byte header "HCLA"..., then the SNP report at 0x20..0x4C0.
    assert blob[:4] == b"HCLA"
    return blob[0x20:0x4C0]


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _load_cases(v: Path) -> dict[str, Case]:
    mid = datetime.datetime(2026, 1, 1, tzinfo=UTC)
    g, t = v / "snp/gosevguest-milan-vcek", v / "snp/trustee-milan-vcek"
    a, tz = v / "azure-snp/constellation-azure-snp-2023", v / "azure-snp/trustee-az-snp-vtpm-2025-milan"
    w, x = v / "aws-snp/constellation-aws-vlek-2025-05", v / "aws-snp/constellation-aws-2023-06-extreport"
    milan = (v / ROOTS / "ask_ark_milan.pem").read_bytes()
    ev0 = json.loads((tz / "evidence-v0.json").read_text())
    ev1 = json.loads((tz / "evidence-v1.json").read_text())
    x_report, x_table = split_extended_report(
        bytes.fromhex((x / "report_valid.hex").read_text()) + bytes.fromhex((x / "certs_valid.hex").read_text())
    )
    vlek_2023 = x_table.get(VLEK_GUID)
    assert vlek_2023 is not None
    # ask.pem is the ASVK alone; the ARK comes from the pinned-fingerprint KDS bundle.
    x_chain = (x / "ask.pem").read_bytes() + (v / ROOTS / "ask_ark_milan_vlek.pem").read_bytes()
    azure_digest = bytes.fromhex(
        "57e229e0ffe5fa92d0faddff6cae0e61c926fc9ef9afd20a8b8cfcf7129db9338cbe5bf3f6987733a2bf65d06dc38fc1"
    )
    trustee_az_digest = bytes.fromhex(
        "942fd93ebde6ea7a96efadeafc60f1c6b3d10e703b1dafd7555b92f7f3d32d0e006767648cba5b102af3d65756af4177"
    )
    aws25_rd = bytes.fromhex(
        "87ab7caf510e1b3520dc3cceb64ee44128e10976fb0d3fc5e274699d8aaf5061"
        "54af4c1de0a026b49fdf861e9ac75551551b3534d1c61369a3b08f5baed0db2f"
    )
    cases = [
        # MANIFEST: ACCEPT cryptographically; policy 0xb0000 has DEBUG, so only with allow_debug.
        Case(
            "snp/gosevguest-milan-vcek",
            (g / "attestation.bin").read_bytes(),
            (g / "vcek.testcer").read_bytes(),
            (g / "milan.testcer").read_bytes(),
            mid,
            SnpPolicy(allow_debug=True),
        ),
        Case(
            "snp/trustee-milan-vcek",
            (t / "test-report.bin").read_bytes(),
            (t / "test-vcek.der").read_bytes(),
            milan,
            mid,
            SnpPolicy(accepted_id_key_digests=[CONSTELLATION_DEFAULT_DIGEST]),
        ),
        # attestation.bin is 1204 bytes: the report and the 20-byte IGVM header; first 0x4A0 only.
        Case(
            "azure-snp/constellation-azure-snp-2023",
            (a / "attestation.bin").read_bytes()[:0x4A0],
            (a / "vcek.pem").read_bytes(),
            (a / "certchain.pem").read_bytes(),
            mid,
            SnpPolicy(accepted_id_key_digests=[azure_digest]),
        ),
        Case(
            "azure-snp/constellation-azure-snp-2023#der",
            (a / "attestation.bin").read_bytes()[:0x4A0],
            (a / "vcek.cert").read_bytes(),
            (a / "certchain.pem").read_bytes(),
            mid,
            SnpPolicy(accepted_id_key_digests=[azure_digest]),
        ),
        Case(
            "azure-snp/trustee-az-snp-vtpm-2025-milan/evidence-v0.json",
            _hcl_report(bytes(ev0["report"])),
            ev0["vcek"].encode(),
            milan,
            mid,
            SnpPolicy(accepted_id_key_digests=[trustee_az_digest]),
        ),
        Case(
            "azure-snp/trustee-az-snp-vtpm-2025-milan/evidence-v1.json",
            _hcl_report(_b64url(ev1["hcl_report"])),
            _b64url(ev1["vcek"]),
            milan,
            mid,
            SnpPolicy(accepted_id_key_digests=[trustee_az_digest]),
        ),
        # EXPIRED VLEKs: accepted only at a time inside the VLEK window.
        Case(
            "aws-snp/constellation-aws-vlek-2025-05",
            base64.b64decode((w / "report.txt").read_text()),
            (w / "vlek.pem").read_bytes(),
            (w / "certchain.pem").read_bytes(),
            datetime.datetime(2025, 6, 1, tzinfo=UTC),
            SnpPolicy(report_data=aws25_rd),
        ),
        Case(
            "aws-snp/constellation-aws-2023-06-extreport",
            x_report,
            vlek_2023,
            x_chain,
            datetime.datetime(2023, 10, 1, tzinfo=UTC),
            SnpPolicy(),
        ),
    ]
    return {c.label: c for c in cases}


@pytest.fixture(scope="session")
def cases(vectors: Path) -> dict[str, Case]:
    return _load_cases(vectors)


@pytest.fixture(scope="session")
def expected(vectors: Path) -> dict[str, Any]:
    results: dict[str, Any] = json.loads((vectors / "EXPECTED.json").read_text())["results"]
    return results


LABELS = [
    "snp/gosevguest-milan-vcek",
    "snp/trustee-milan-vcek",
    "azure-snp/constellation-azure-snp-2023",
    "azure-snp/constellation-azure-snp-2023#der",
    "azure-snp/trustee-az-snp-vtpm-2025-milan/evidence-v0.json",
    "azure-snp/trustee-az-snp-vtpm-2025-milan/evidence-v1.json",
    "aws-snp/constellation-aws-vlek-2025-05",
    "aws-snp/constellation-aws-2023-06-extreport",
]
# One case per distinct report, for the expensive loops.
REPORTS = [label for label in LABELS if not label.endswith("#der") and not label.endswith("v0.json")]


# --- positive: every vector, its MANIFEST expectation and EXPECTED.json field values ----------


@pytest.mark.parametrize("label", LABELS)
def test_vector_accepted(cases: dict[str, Case], expected: dict[str, Any], label: str) -> None:
    case = cases[label]
    result = verify_report(case.report, case.signer, case.chain, case.policy, at=case.at)
    exp = expected[label.split("#", maxsplit=1)[0]]
    fields = exp["fields"]
    r = result.report
    assert result.product is Product.MILAN and result.chain.root_pinned
    assert result.signing_key is SigningKey(fields["signing_key"])
    simple = {
        "version": r.version,
        "guest_svn": r.guest_svn,
        "policy": r.policy.raw,
        "vmpl": r.vmpl,
        "sig_algo": r.signature_algo,
        "platform_info": r.platform_info.raw,
        "author_key_en": int(r.signer_info.author_key_en),
        "mask_chip_key": int(r.signer_info.mask_chip_key),
        "cpuid_fam": r.cpuid_fam_id,
        "cpuid_mod": r.cpuid_mod_id,
        "cpuid_step": r.cpuid_step,
        "current_tcb": r.current_tcb.raw,
        "reported_tcb": r.reported_tcb.raw,
        "committed_tcb": r.committed_tcb.raw,
        "launch_tcb": r.launch_tcb.raw,
        "current_build": r.current_build,
        "current_minor": r.current_minor,
        "current_major": r.current_major,
        "committed_build": r.committed_build,
        "committed_minor": r.committed_minor,
        "committed_major": r.committed_major,
    }
    for name, value in simple.items():
        assert value == fields[name], name
    for name in ("report_data", "measurement", "host_data", "id_key_digest", "author_key_digest", "chip_id",
                 "family_id", "image_id", "report_id", "report_id_ma"):  # fmt: skip
        assert getattr(r, name).hex() == fields[name], name
    for which, parts in exp["tcb"].items():
        got = getattr(r, which).parts(TcbLayout.MILAN_GENOA)
        assert (got.bootloader, got.tee, got.snp, got.microcode) == (
            parts["bl"],
            parts["tee"],
            parts["snp"],
            parts["ucode"],
        ), which
    ext, info = exp["signer_ext"], result.endorsement
    assert (info.product_name, info.bootloader, info.tee, info.snp, info.microcode, info.struct_version) == (
        ext["productName"],
        ext["blSPL"],
        ext["teeSPL"],
        ext["snpSPL"],
        ext["ucodeSPL"],
        ext["structVersion"],
    )
    assert (info.hwid.hex() if info.hwid else None) == ext.get("hwID")
    assert info.csp_id == ext.get("cspID")
    names = [c.name for c in result.checks]
    for required in ("report-signature", "certificate-chain", "certificate-validity", "reported-tcb", "chip-id"):
        assert required in names
    json.dumps(result.claims())


def test_gosevguest_debug_policy_rejected_by_default(cases: dict[str, Case]) -> None:
    """MANIFEST policy note: policy 0xb0000 allows DEBUG; a Constellation-style policy rejects it."""
    case = cases["snp/gosevguest-milan-vcek"]
    with pytest.raises(PolicyViolation, match=r"expected DEBUG \(bit 19\) clear") as info:
        verify_report(case.report, case.signer, case.chain, at=case.at)
    assert info.value.check == "guest-policy.debug"


@pytest.mark.parametrize(
    ("label", "digest"),
    [
        ("azure-snp/constellation-azure-snp-2023", "57e229e0"),
        ("azure-snp/trustee-az-snp-vtpm-2025-milan/evidence-v1.json", "942fd93e"),
    ],
)
def test_azure_id_key_digest_not_in_default_list(cases: dict[str, Case], label: str, digest: str) -> None:
    """MANIFEST: the ID-key digest is not Constellation's default; Equal rejects, warnOnly warns."""
    case = cases[label]
    policy = SnpPolicy(accepted_id_key_digests=[CONSTELLATION_DEFAULT_DIGEST])
    with pytest.raises(PolicyViolation, match=f"got {digest}") as info:
        verify_report(case.report, case.signer, case.chain, policy, at=case.at)
    assert info.value.check == "id-key-digest"
    assert "0356215882a8" in str(info.value)  # names the accepted list
    warn = attrs.evolve(policy, id_key_digest_warn_only=True)
    result = verify_report(case.report, case.signer, case.chain, warn, at=case.at)
    assert not result.id_key_accepted and len(result.warnings) == 1


def test_azure_runtime_data_bound_to_report_data(vectors: Path, cases: dict[str, Case]) -> None:
    """MANIFEST: SHA-256(runtimedata.bin) == report_data[0:32] (the HCL AK binding's input)."""
    runtime = (vectors / "azure-snp/constellation-azure-snp-2023/runtimedata.bin").read_bytes()
    report = parse_report(cases["azure-snp/constellation-azure-snp-2023"].report)
    assert hashlib.sha256(runtime).digest() == report.report_data[:32]


@pytest.mark.parametrize(
    "label", ["aws-snp/constellation-aws-vlek-2025-05", "aws-snp/constellation-aws-2023-06-extreport"]
)
def test_expired_vlek_rejected_today(cases: dict[str, Case], label: str) -> None:
    """MANIFEST: every AWS VLEK had expired by 2026-11-24: REJECT at real time."""
    case = cases[label]
    with pytest.raises(CertificateChainError, match="has expired") as info:
        verify_report(case.report, case.signer, case.chain, case.policy, at=TODAY)
    assert info.value.check == "certificate-validity"


def test_aws_2023_cert_table_and_invalid_report(vectors: Path, cases: dict[str, Case]) -> None:
    """MANIFEST: the GUID table holds one VLEK entry (offset 48, 1323 bytes); report_invalid fails."""
    x = vectors / "aws-snp/constellation-aws-2023-06-extreport"
    table = parse_cert_table(bytes.fromhex((x / "certs_valid.hex").read_text()))
    assert [(e.name, e.offset, e.length) for e in table] == [("VLEK", 48, 1323)]
    assert table.vcek is None and table.ask is None and table.ark is None
    case = cases["aws-snp/constellation-aws-2023-06-extreport"]
    invalid = bytes.fromhex((x / "report_invalid.hex").read_text())
    assert [i for i in range(len(invalid)) if invalid[i] != case.report[i]] == [336]
    with pytest.raises(SignatureError) as info:
        verify_report(invalid, case.signer, case.chain, case.policy, at=case.at)
    assert info.value.check == "report-signature"


@pytest.mark.parametrize("which", ["test-vcek-invalid-legacy.der", "test-vcek-invalid-new.der"])
def test_trustee_synthetic_vceks(vectors: Path, cases: dict[str, Case], expected: dict[str, Any], which: str) -> None:
    """MANIFEST: both hwID encodings (raw, OCTET STRING) parse; neither is signed by the Milan ASK."""
    der = (vectors / "snp/trustee-milan-vcek" / which).read_bytes()
    (cert,) = load_certificates(der)
    info = parse_endorsement_key(cert, expected=SigningKey.VCEK)
    assert info.hwid is not None and info.hwid.hex() == expected[f"snp/trustee-milan-vcek/{which}"]["ext"]["hwID"]
    case = cases["snp/trustee-milan-vcek"]
    evaluation = evaluate_report(case.report, der, case.chain, case.policy, at=case.at)
    assert not evaluation.accepted
    assert isinstance(evaluation.error, CertificateChainError | SignatureError)
    assert evaluation.error.check in ("certificate-chain", "reported-tcb")


@pytest.mark.filterwarnings("error")
def test_amd_certificates_load_with_warnings_as_errors(cases: dict[str, Case]) -> None:
    """Serial-0 VCEK/VLEKs load and verify with every warning an error (spec §2.5)."""
    for label in ("snp/trustee-milan-vcek", "aws-snp/constellation-aws-vlek-2025-05"):
        case = cases[label]
        with warnings.catch_warnings():
            warnings.simplefilter("error")
            (signer,) = load_certificates(case.signer)
            verify_report(case.report, signer, case.chain, case.policy, at=case.at)


def test_cached_verifier_rechecks_validity(cases: dict[str, Case]) -> None:
    case = cases["aws-snp/constellation-aws-vlek-2025-05"]
    verifier = SnpVerifier(case.policy)
    (signer,) = load_certificates(case.signer)
    chain = load_certificates(case.chain)
    assert verifier.verify(case.report, signer, chain, at=case.at).product is Product.MILAN
    with pytest.raises(CertificateChainError):
        verifier.verify(case.report, signer, chain, at=TODAY)


# --- Universal SNP negatives (MANIFEST, top): over every SNP vector ---------------------------


def _flip(data: bytes, pos: int, mask: int = 0xFF) -> bytes:
    out = bytearray(data)
    out[pos] ^= mask
    return bytes(out)


@pytest.mark.parametrize("label", REPORTS)
def test_every_signed_byte_flip_breaks_the_signature(cases: dict[str, Case], label: str) -> None:
    case = cases[label]
    (signer,) = load_certificates(case.signer)
    key = signer.public_key()
    verify_report_signature(case.report, key)  # type: ignore[arg-type] # P-384 checked inside
    for pos in range(0x2A0):
        with pytest.raises(SignatureError):
            verify_report_signature(_flip(case.report, pos), key)  # type: ignore[arg-type]


def test_every_signed_byte_flip_rejects_the_report(cases: dict[str, Case]) -> None:
    """The full pipeline (cached chain) rejects each of the 672 single-byte mutations."""
    case = cases["azure-snp/trustee-az-snp-vtpm-2025-milan/evidence-v1.json"]
    verifier = SnpVerifier(case.policy)
    (signer,) = load_certificates(case.signer)
    chain = load_certificates(case.chain)
    verifier.verify(case.report, signer, chain, at=case.at)
    for pos in range(0x2A0):
        evaluation = verifier.evaluate(_flip(case.report, pos, 0x01), signer, chain, at=case.at)
        assert not evaluation.accepted, hex(pos)
        assert isinstance(evaluation.error, AttestationError)


@pytest.mark.parametrize("label", REPORTS)
@pytest.mark.parametrize("pos", [0x2A0, 0x2C0, 0x2E8, 0x310, 0x2D0, 0x330])
def test_signature_byte_flip(cases: dict[str, Case], label: str, pos: int) -> None:
    case = cases[label]
    with pytest.raises((SignatureError, MalformedEvidence)):
        verify_report(_flip(case.report, pos, 0x01), case.signer, case.chain, case.policy, at=case.at)


def _der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


def _corruptions(der: bytes, cert: x509.Certificate) -> list[bytes]:
    tbs = cert.tbs_certificate_bytes
    start = der.index(tbs)
    # a byte of the validity / subject area, a byte of the key, and one of the signature value
    return [_flip(der, start + len(tbs) // 3, 0x01), _flip(der, start + len(tbs) - 40, 0x01), _flip(der, len(der) - 5)]


@pytest.mark.parametrize("label", REPORTS)
def test_corrupted_signer_or_intermediate_rejected(cases: dict[str, Case], label: str) -> None:
    case = cases[label]
    (signer,) = load_certificates(case.signer)
    chain = list({_der(c): c for c in load_certificates(case.chain)}.values())  # the 2023 case repeats the ASVK
    for bad in _corruptions(_der(signer), signer):
        evaluation = evaluate_report(case.report, bad, chain, case.policy, at=case.at)
        assert not evaluation.accepted and isinstance(evaluation.error, AttestationError)
    for index, cert in enumerate(chain):
        for bad in _corruptions(_der(cert), cert):
            try:
                replaced = load_certificates(bad)[0]
            except MalformedEvidence:
                continue
            mutated = [replaced if i == index else c for i, c in enumerate(chain)]
            evaluation = evaluate_report(case.report, signer, mutated, case.policy, at=case.at)
            assert not evaluation.accepted, (index, evaluation.checks)
            assert isinstance(evaluation.error, AttestationError)


@pytest.mark.parametrize("label", REPORTS)
@pytest.mark.parametrize("other", ["genoa", "turin"])
def test_wrong_product_chain_rejected(vectors: Path, cases: dict[str, Case], label: str, other: str) -> None:
    case = cases[label]
    (signer,) = load_certificates(case.signer)
    kind = parse_report(case.report).signing_key
    bundle = f"ask_ark_{other}{'_vlek' if kind is SigningKey.VLEK else ''}.pem"
    if other == "turin":
        bundle = f"ask_ark_turin_{'vlek' if kind is SigningKey.VLEK else 'vcek'}.pem"
    certs = load_certificates((vectors / ROOTS / bundle).read_bytes())
    with pytest.raises(CertificateChainError):
        verify_report(case.report, signer, certs, case.policy, at=case.at)
    # Even when told the product is the other line, the Milan signer does not verify under it.
    product = Product.GENOA if other == "genoa" else Product.TURIN
    intermediate, ark = select_chain(certs, product, kind)
    with pytest.raises((CertificateChainError, SignatureError)):
        verify_chain(signer, intermediate, ark, product=product, signing_key=kind)


@pytest.mark.parametrize("label", REPORTS)
def test_swapped_ask_and_ark_rejected(cases: dict[str, Case], label: str) -> None:
    case = cases[label]
    (signer,) = load_certificates(case.signer)
    kind = parse_report(case.report).signing_key
    intermediate, ark = select_chain(load_certificates(case.chain), Product.MILAN, kind)
    with pytest.raises(CertificateChainError):
        verify_chain(signer, ark, intermediate, product=Product.MILAN, signing_key=kind)


@pytest.mark.parametrize("label", REPORTS)
def test_vlek_vcek_chain_mixups_rejected(vectors: Path, cases: dict[str, Case], label: str) -> None:
    """A VLEK with the VCEK ASK, or a VCEK with the ASVK; and a signer of the other kind."""
    case = cases[label]
    kind = parse_report(case.report).signing_key
    other_bundle = "ask_ark_milan.pem" if kind is SigningKey.VLEK else "ask_ark_milan_vlek.pem"
    other = (vectors / ROOTS / other_bundle).read_bytes()
    with pytest.raises(CertificateChainError) as info:
        verify_report(case.report, case.signer, other, case.policy, at=case.at)
    assert info.value.check == "certificate-chain"
    # The ASK/ASVK forced into the chain by hand (issuer name mismatch or signature failure).
    (signer,) = load_certificates(case.signer)
    wrong_int = load_certificates(other)[0]
    ark = load_certificates(other)[1]
    with pytest.raises((CertificateChainError, SignatureError)):
        verify_chain(signer, wrong_int, ark, product=Product.MILAN, signing_key=kind)
    # The signing-key field says one kind, the certificate is the other kind.
    other_label = "aws-snp/constellation-aws-vlek-2025-05" if kind is SigningKey.VCEK else "snp/trustee-milan-vcek"
    other_signer = cases[other_label].signer
    with pytest.raises(CertificateChainError) as info:
        verify_report(case.report, other_signer, case.chain + other, case.policy, at=case.at)
    assert info.value.check == "signer-profile"


@pytest.mark.parametrize("label", REPORTS)
def test_verification_time_outside_signer_validity(cases: dict[str, Case], label: str) -> None:
    case = cases[label]
    (signer,) = load_certificates(case.signer)
    before = signer.not_valid_before_utc - datetime.timedelta(seconds=1)
    after = signer.not_valid_after_utc + datetime.timedelta(seconds=1)
    for at in (before, after):
        with pytest.raises(CertificateChainError) as info:
            verify_report(case.report, case.signer, case.chain, case.policy, at=at)
        assert info.value.check == "certificate-validity"
    verify_report(case.report, case.signer, case.chain, case.policy, at=signer.not_valid_after_utc)


Mutation = Callable[[SnpPolicy], SnpPolicy]


@pytest.mark.parametrize("label", REPORTS)
@pytest.mark.parametrize(
    ("mutation", "error", "check"),
    [
        (lambda p: attrs.evolve(p, report_data=bytes(63) + b"\x01"), NonceMismatch, "report-data"),
        (lambda p: attrs.evolve(p, measurement=bytes(47) + b"\x01"), MeasurementMismatch, "measurement"),
        (lambda p: attrs.evolve(p, vmpl=1), PolicyViolation, "vmpl"),
        (lambda p: attrs.evolve(p, host_data=b"\x01" * 32), MeasurementMismatch, "host-data"),
    ],
    ids=["report-data", "measurement", "vmpl", "host-data"],
)
def test_other_expected_values_rejected(
    cases: dict[str, Case], label: str, mutation: Mutation, error: type[AttestationError], check: str
) -> None:
    case = cases[label]
    with pytest.raises(error) as info:
        verify_report(case.report, case.signer, case.chain, mutation(case.policy), at=case.at)
    assert info.value.check == check
    assert "expected" in str(info.value) and "got" in str(info.value)


@pytest.mark.parametrize("label", REPORTS)
def test_listed_values_accepted(cases: dict[str, Case], expected: dict[str, Any], label: str) -> None:
    case = cases[label]
    fields = expected[label]["fields"]
    policy = attrs.evolve(
        case.policy,
        report_data=bytes.fromhex(fields["report_data"]),
        measurement=bytes.fromhex(fields["measurement"]),
        host_data=bytes.fromhex(fields["host_data"]),
        vmpl=0,
    )
    verify_report(case.report, case.signer, case.chain, policy, at=case.at)


def test_unpinned_root_refused(cases: dict[str, Case]) -> None:
    """A chain whose ARK is not pinned is refused even if it verifies (TrustStore without pins)."""
    from starlock.attestation.trust import TrustStore

    case = cases["snp/trustee-milan-vcek"]
    with pytest.raises(CertificateChainError) as info:
        verify_report(case.report, case.signer, case.chain, case.policy, at=case.at, trust_store=TrustStore(pins=()))
    assert info.value.check == "root-pinned"
