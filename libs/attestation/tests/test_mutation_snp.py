"""SEV-SNP: checks that must be exact (mutation-testing survivors, issue 15).

Synthetic AMD hierarchies (starlock.attestation.snp.testing) and signed synthetic reports: each
test breaks one binding and checks the verifier names it, also after a cache was warmed.
"""

from __future__ import annotations

import datetime
from typing import Any

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.serialization import Encoding

from starlock.attestation.errors import CertificateChainError, MalformedEvidence, SignatureError
from starlock.attestation.snp import Product, SigningKey, SnpVerifier, TcbParts, TcbVersion
from starlock.attestation.snp.caprofile import check_amd_ca_profile
from starlock.attestation.snp.certs import AMD_LOCATION, OID_PRODUCT_NAME, verify_chain
from starlock.attestation.snp.endorsement import parse_endorsement_key
from starlock.attestation.snp.testing import SyntheticAmd, build_report, sign_report
from starlock.attestation.snp.verify import verify_report_signature
from starlock.attestation.trust import Family, PinnedAnchor, Role, TrustStore, fingerprint

AT = datetime.datetime(2026, 11, 25, tzinfo=datetime.UTC)
TCB = TcbParts(bootloader=3, tee=1, snp=8, microcode=115)
HWID = bytes(range(100, 164))


def _report(key: ec.EllipticCurvePrivateKey) -> bytes:
    tcb = TcbVersion.compose(TCB)
    return sign_report(build_report(current_tcb=tcb, reported_tcb=tcb, chip_id=HWID), key)


# --- the report signer's key type ------------------------------------------------------------------


@pytest.mark.parametrize("curve", [ec.SECP256R1(), ec.SECP521R1()], ids=["P-256", "P-521"])
def test_report_signature_needs_a_p384_key(curve: ec.EllipticCurve) -> None:
    good = ec.generate_private_key(ec.SECP384R1())
    report = _report(good)
    other = ec.generate_private_key(curve).public_key()
    with pytest.raises(SignatureError, match="report signer key: expected ECDSA P-384, got"):
        verify_report_signature(report, other)
    verify_report_signature(report, good.public_key())  # control


def test_report_signature_refuses_an_rsa_signer() -> None:
    """An RSA key (here the synthetic ASK's certificate) is refused by type, not by a crash."""
    hierarchy = SyntheticAmd.generate(Product.MILAN)
    report = _report(ec.generate_private_key(ec.SECP384R1()))
    with pytest.raises(SignatureError, match=r"report signer key: expected ECDSA P-384, got .*RSAPublicKey"):
        verify_report_signature(report, hierarchy.ask)


@pytest.mark.parametrize("offset", [0x2E7, 0x32F], ids=["r", "s"])
def test_report_signature_high_bytes_of_r_and_s_count(offset: int) -> None:
    """r and s are 72-byte little-endian fields holding 48-byte values: a non-zero top byte makes
    the value too large for P-384, so the signature must not verify (all 72 bytes are read)."""
    key = ec.generate_private_key(ec.SECP384R1())
    report = bytearray(_report(key))
    verify_report_signature(bytes(report), key.public_key())  # control
    report[offset] = 0x01
    with pytest.raises(SignatureError, match="does not verify"):
        verify_report_signature(bytes(report), key.public_key())


def test_unsigned_report_is_refused_by_its_signing_key_field() -> None:
    hierarchy = SyntheticAmd.generate(Product.MILAN)
    signer, key = hierarchy.issue(SigningKey.VCEK, TCB, hwid=HWID)
    tcb = TcbVersion.compose(TCB)
    raw = build_report(signing_key=SigningKey.NONE, current_tcb=tcb, reported_tcb=tcb, chip_id=HWID)
    evaluation = SnpVerifier(trust_store=hierarchy.trust_store()).evaluate(
        sign_report(raw, key), signer, hierarchy.chain(), at=AT
    )
    assert not evaluation.accepted and evaluation.error is not None
    assert evaluation.error.check == "signing-key"
    assert "SIGNING_KEY is 7 (none)" in str(evaluation.error)


# --- the product from the report's CPUID -----------------------------------------------------------


@pytest.mark.parametrize(
    ("cpuid", "product"),
    [((0x19, 0x11, 0x00), Product.GENOA), ((0x19, 0x00, 0x00), None), ((0x00, 0x11, 0x00), None)],
    ids=["genoa-stepping-0", "family-only", "model-only"],
)
def test_any_non_zero_cpuid_byte_names_the_product(cpuid: tuple[int, int, int], product: Product | None) -> None:
    """A v3 report's CPUID decides the product as soon as one byte is non-zero: a Milan VCEK
    cannot vouch for a report whose CPUID says Genoa (stepping 0) or names no known product."""
    hierarchy = SyntheticAmd.generate(Product.MILAN)
    signer, key = hierarchy.issue(SigningKey.VCEK, TCB, hwid=HWID)
    tcb = TcbVersion.compose(TCB)
    raw = build_report(version=3, cpuid=cpuid, current_tcb=tcb, reported_tcb=tcb, chip_id=HWID)
    evaluation = SnpVerifier(trust_store=hierarchy.trust_store()).evaluate(
        sign_report(raw, key), signer, hierarchy.chain(), at=AT
    )
    assert not evaluation.accepted and evaluation.error is not None
    assert evaluation.error.check == "product"
    if product is None:
        assert "is not a known SEV-SNP product" in str(evaluation.error)
    else:
        assert f"productName to name {product.value}" in str(evaluation.error)


# --- the chain cache is keyed by the signer too ----------------------------------------------------


def test_chain_cache_does_not_vouch_for_another_signer_with_the_same_key() -> None:
    """A VCEK verified once must not make a forged certificate for the same key (issued by an
    untrusted ASK, presented with the same chain) pass: the signer is part of the cache key."""
    trusted = SyntheticAmd.generate(Product.MILAN)
    forger = SyntheticAmd.generate(Product.MILAN, key_size=2048)  # other CA keys, same names
    genuine, key = trusted.issue(SigningKey.VCEK, TCB, hwid=HWID)
    forged, _ = forger.issue(SigningKey.VCEK, TCB, hwid=HWID, key=key)
    report, chain, store = _report(key), trusted.chain(), trusted.trust_store()

    fresh = SnpVerifier(trust_store=store).evaluate(report, forged, chain, at=AT)
    assert not fresh.accepted and fresh.error is not None
    assert fresh.error.check == "certificate-chain" and "does not verify under CN=SEV-Milan" in str(fresh.error)

    warmed = SnpVerifier(trust_store=store)
    assert warmed.verify(report, genuine, chain, at=AT).chain.signer == genuine
    cached = warmed.evaluate(report, forged, chain, at=AT)
    assert not cached.accepted, "a forged signer was accepted with the genuine signer's cached chain"
    assert str(cached.error) == str(fresh.error)


# --- product names ---------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["MilanX", "Milan2-B0", "Mila", "M", "", "GenoaTurin", "Turi-B0"])
def test_product_name_must_be_a_whole_line_name(name: str) -> None:
    with pytest.raises(MalformedEvidence, match="is not a known AMD product line"):
        Product.from_name(name)


@pytest.mark.parametrize(
    ("name", "product"),
    [("Milan", Product.MILAN), ("genoa-B1", Product.GENOA), (" Turin -B0", Product.TURIN)],
)
def test_product_name_control(name: str, product: Product) -> None:
    assert Product.from_name(name) is product


def test_signer_product_name_with_a_suffix_is_refused() -> None:
    hierarchy = SyntheticAmd.generate(Product.MILAN)
    signer, key = hierarchy.issue(SigningKey.VCEK, TCB, hwid=HWID, product_name="MilanX-B0")
    evaluation = SnpVerifier(trust_store=hierarchy.trust_store()).evaluate(
        _report(key), signer, hierarchy.chain(), at=AT
    )
    assert not evaluation.accepted
    assert "MilanX-B0" in str(evaluation.error)


# --- verify_chain: the signer's issuer name and the caller's endorsement ---------------------------


def _template(subject: x509.Name) -> x509.Certificate:
    """Any certificate with ``subject``: SyntheticAmd.issue takes the issuer name from it."""
    key = ec.generate_private_key(ec.SECP384R1())
    return (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(key.public_key())
        .serial_number(1)
        .not_valid_before(AT - datetime.timedelta(days=1))
        .not_valid_after(AT + datetime.timedelta(days=1))
        .sign(key, hashes.SHA384())
    )


def _amd_name(cn: str, location: tuple[tuple[x509.ObjectIdentifier, str], ...] = AMD_LOCATION) -> x509.Name:
    return x509.Name(
        [x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)] + [x509.NameAttribute(o, v) for o, v in location]
    )


def _milan_chain(
    h: SyntheticAmd,
    signer: x509.Certificate,
    *,
    intermediate: x509.Certificate | None = None,
    key: SigningKey = SigningKey.VCEK,
    trust_store: TrustStore | None = None,
    **extra: Any,
) -> Any:
    """verify_chain for a Milan signer of ``h``: its ASK (or ``intermediate``), ARK and trust store."""
    return verify_chain(
        signer,
        h.ask if intermediate is None else intermediate,
        h.ark,
        product=Product.MILAN,
        signing_key=key,
        trust_store=h.trust_store() if trust_store is None else trust_store,
        **extra,
    )


@pytest.mark.parametrize(
    "issuer",
    [
        _amd_name("SEV-Genoa"),
        _amd_name("SEV-VLEK-Milan"),
        _amd_name("SEV-Milan", tuple((o, "Elsewhere" if len(v) > 2 else v) for o, v in AMD_LOCATION)),
    ],
    ids=["genoa-ask", "asvk", "other-location"],
)
def test_signer_issuer_name_must_be_the_intermediate(issuer: x509.Name) -> None:
    """Signed by the right ASK key but naming another issuer: refused by name, not only by key."""
    good = SyntheticAmd.generate(Product.MILAN)
    misnamed = attrs.evolve(good, ask=_template(issuer))  # same ASK key, another issuer name
    signer, _ = misnamed.issue(SigningKey.VCEK, TCB, hwid=HWID)
    with pytest.raises(CertificateChainError, match=r"issuer CN .*expected \['SEV-Milan'\]") as err:
        _milan_chain(good, signer)
    assert err.value.check == "certificate-chain"
    control, _ = good.issue(SigningKey.VCEK, TCB, hwid=HWID)
    _milan_chain(good, control)


def test_verify_chain_refuses_an_endorsement_of_the_other_kind() -> None:
    """A caller passing a parsed endorsement must not make a VLEK pass as the report's VCEK."""
    hierarchy = SyntheticAmd.generate(Product.MILAN)
    vlek, _ = hierarchy.issue(SigningKey.VLEK, TCB)
    info = parse_endorsement_key(vlek)
    with pytest.raises(CertificateChainError, match="is a VLEK, the report's SIGNING_KEY is VCEK"):
        _milan_chain(hierarchy, vlek, endorsement=info)
    chain = _milan_chain(hierarchy, vlek, intermediate=hierarchy.asvk, key=SigningKey.VLEK, endorsement=info)
    assert chain.signing_key is SigningKey.VLEK


@pytest.mark.parametrize(
    ("role", "family"),
    [(Role.INTERMEDIATE, Family.AMD_MILAN), (Role.ROOT, Family.AMD_GENOA), (Role.INTERMEDIATE, Family.AMD_GENOA)],
    ids=["pinned-as-intermediate", "pinned-as-genoa-root", "both"],
)
def test_root_pinned_for_another_role_or_family_is_refused(role: Role, family: Family) -> None:
    """A pinned certificate is a root only for the role and product family it is pinned as."""
    hierarchy = SyntheticAmd.generate(Product.MILAN)
    signer, _ = hierarchy.issue(SigningKey.VCEK, TCB, hwid=HWID)
    pins = [PinnedAnchor("synthetic ARK", role, family, fingerprint(hierarchy.ark))]
    with pytest.raises(CertificateChainError, match="is pinned as synthetic ARK") as err:
        _milan_chain(hierarchy, signer, trust_store=TrustStore(pins))
    assert err.value.check == "root-pinned"
    pins = [PinnedAnchor("synthetic ARK", Role.ROOT, Family.AMD_MILAN, fingerprint(hierarchy.ark))]
    chain = _milan_chain(hierarchy, signer, trust_store=TrustStore(pins))
    assert chain.root_pinned  # control


# --- certificate profiles: unparsable keys, signature hashes, DER lengths -------------------------


def test_ca_with_an_unparsable_public_key_is_refused_by_profile() -> None:
    hierarchy = SyntheticAmd.generate(Product.MILAN)
    rsa_encryption = bytes.fromhex("06092a864886f70d010101")  # the SPKI's algorithm OID
    der = hierarchy.ask.public_bytes(Encoding.DER)
    assert der.count(rsa_encryption) == 1
    unknown = x509.load_der_x509_certificate(der.replace(rsa_encryption, bytes.fromhex("06092a864886f70d010163")))
    with pytest.raises(CertificateChainError, match="public key: expected RSA, got unparsable"):
        check_amd_ca_profile(unknown, "SEV-Milan")
    check_amd_ca_profile(hierarchy.ask, "SEV-Milan")  # control


def _resigned(
    cert: x509.Certificate,
    key: rsa.RSAPrivateKey,
    hash_: hashes.HashAlgorithm,
    subject: x509.Name | None = None,
) -> x509.Certificate:
    """``cert`` signed again by ``key`` with RSASSA-PSS over ``hash_`` (and ``subject``, if given)."""
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject or cert.subject)
        .issuer_name(cert.issuer)
        .public_key(cert.public_key())
        .serial_number(cert.serial_number)
        .not_valid_before(cert.not_valid_before_utc)
        .not_valid_after(cert.not_valid_after_utc)
    )
    for ext in cert.extensions:
        builder = builder.add_extension(ext.value, ext.critical)
    pss = padding.PSS(mgf=padding.MGF1(hash_), salt_length=hash_.digest_size)
    return builder.sign(key, hash_, rsa_padding=pss)


@pytest.mark.parametrize("hash_", [hashes.SHA256(), hashes.SHA512()], ids=["sha256", "sha512"])
def test_signer_signed_with_another_hash_is_refused(hash_: hashes.HashAlgorithm) -> None:
    hierarchy = SyntheticAmd.generate(Product.MILAN)
    signer, _ = hierarchy.issue(SigningKey.VCEK, TCB, hwid=HWID)
    assert parse_endorsement_key(_resigned(signer, hierarchy.ask_key, hashes.SHA384())).hwid == HWID  # control
    with pytest.raises(CertificateChainError, match=f"signature hash {hash_.name}, expected sha384"):
        parse_endorsement_key(_resigned(signer, hierarchy.ask_key, hash_))


def test_non_minimal_der_length_in_an_extension_is_refused() -> None:
    """``81 08`` (long form for a length below 128) is not DER: the extension is refused."""
    hierarchy = SyntheticAmd.generate(Product.MILAN)
    long_form = b"\x16\x81\x08Milan-B0"
    signer, _ = hierarchy.issue(SigningKey.VCEK, TCB, hwid=HWID, extra={OID_PRODUCT_NAME: long_form})
    with pytest.raises(CertificateChainError, match="bad DER length"):
        parse_endorsement_key(signer)
    short_form = b"\x16\x08Milan-B0"
    signer, _ = hierarchy.issue(SigningKey.VCEK, TCB, hwid=HWID, extra={OID_PRODUCT_NAME: short_form})
    assert parse_endorsement_key(signer).product_name == "Milan-B0"  # control


@pytest.mark.parametrize("cn", ["SEV-VCEK-Milan", "SEV-VCEKX", "SEV-VCE", "SEV-", "SEV-VLEKS"])
def test_signer_subject_cn_must_be_exactly_sev_vcek_or_sev_vlek(cn: str) -> None:
    hierarchy = SyntheticAmd.generate(Product.MILAN)
    signer, _ = hierarchy.issue(SigningKey.VCEK, TCB, hwid=HWID)
    renamed = _resigned(signer, hierarchy.ask_key, hashes.SHA384(), _amd_name(cn))
    with pytest.raises(CertificateChainError, match=f"subject CN '{cn}', expected 'SEV-VCEK' or 'SEV-VLEK'"):
        parse_endorsement_key(renamed)
    control = _resigned(signer, hierarchy.ask_key, hashes.SHA384(), _amd_name("SEV-VCEK"))
    assert parse_endorsement_key(control).kind is SigningKey.VCEK


def test_endorsement_claims_name_the_hwid_or_the_csp_id() -> None:
    hierarchy = SyntheticAmd.generate(Product.MILAN)
    vcek = parse_endorsement_key(hierarchy.issue(SigningKey.VCEK, TCB, hwid=HWID)[0]).claims()
    vlek = parse_endorsement_key(hierarchy.issue(SigningKey.VLEK, TCB, csp_id="CN=cc.example")[0]).claims()
    assert vcek["kind"] == "VCEK" and vcek["hwid"] == HWID.hex() and "csp_id" not in vcek
    assert vlek["kind"] == "VLEK" and vlek["csp_id"] == "CN=cc.example" and "hwid" not in vlek
    assert "fmc_spl" not in vcek and "fmc_spl" not in vlek  # Milan: no fmcSPL extension
    turin = SyntheticAmd.generate(Product.TURIN)
    fmc = TcbParts(bootloader=3, tee=1, snp=8, microcode=115, fmc=5)
    claims = parse_endorsement_key(turin.issue(SigningKey.VCEK, fmc, hwid=HWID[:8])[0]).claims()
    assert claims["fmc_spl"] == 5 and claims["hwid"] == HWID[:8].hex()
