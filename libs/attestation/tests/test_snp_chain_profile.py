"""The AMD chain beyond the signer: ASK/ASVK and ARK validity, their certificate profile, and the
SnpVerifier chain cache (spec-attestation §2.1, §2.2 step 8).

Review findings (mutation survivors): only the first certificate's validity was ever tested; the
CA profile rules (v3, RSASSA-PSS/SHA-384, CN, keyCertSign, CA basicConstraints) had no test; the
product could be dropped from the chain-cache key unnoticed. Each rule is broken alone on the ASK
and on the ARK with ``snp.testing.CaProfile``; the synthetic roots are trusted explicitly.
"""

from __future__ import annotations

import datetime
from typing import Any

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from starlock.attestation.errors import CertificateChainError
from starlock.attestation.snp import Product, SigningKey, SnpVerifier, TcbParts, TcbVersion, verify_report
from starlock.attestation.snp.certs import OID_PRODUCT_NAME, verify_chain
from starlock.attestation.snp.testing import CaProfile, SyntheticAmd, build_report, sign_report

UTC = datetime.UTC
AT = datetime.datetime(2026, 11, 25, tzinfo=UTC)
DAY = datetime.timedelta(days=1)
TCB = TcbParts(bootloader=3, tee=1, snp=8, microcode=115)
HWID = bytes(range(100, 164))
CPUID = {Product.MILAN: (0x19, 0x01, 0x01), Product.GENOA: (0x19, 0x11, 0x01)}


def _signed(
    hierarchy: SyntheticAmd,
    signing_key: SigningKey = SigningKey.VCEK,
    *,
    cpuid: tuple[int, int, int] | None = None,
    signer: tuple[x509.Certificate, ec.EllipticCurvePrivateKey] | None = None,
    omit: tuple[str, ...] = (),
) -> tuple[bytes, x509.Certificate]:
    """A good report (v2, or v3 with ``cpuid``) and its signer, issued by ``hierarchy``."""
    cert, key = signer or hierarchy.issue(signing_key, TCB, hwid=HWID, omit=omit)
    tcb = TcbVersion.compose(TCB)
    vcek = signing_key is SigningKey.VCEK
    fields: dict[str, Any] = {
        "signing_key": signing_key,
        "current_tcb": tcb,
        "reported_tcb": tcb,
        "chip_id": HWID if vcek else bytes(64),
        "mask_chip_key": not vcek,
    }
    if cpuid is not None:
        fields.update(version=3, cpuid=cpuid)
    return sign_report(build_report(**fields), key), cert


def _verify(hierarchy: SyntheticAmd, signing_key: SigningKey = SigningKey.VCEK, at: datetime.datetime = AT) -> Any:
    report, signer = _signed(hierarchy, signing_key)
    chain = hierarchy.chain(signing_key)
    return verify_report(report, signer, chain, at=at, trust_store=hierarchy.trust_store())


# --- validity of the ASK/ASVK and the ARK ------------------------------------------------------


@pytest.mark.parametrize(
    ("role", "signing_key", "cn"),
    [
        ("ask", SigningKey.VCEK, "SEV-Milan"),
        ("asvk", SigningKey.VLEK, "SEV-VLEK-Milan"),
        ("ark", SigningKey.VCEK, "ARK-Milan"),
    ],
    ids=["ask", "asvk", "ark"],
)
def test_intermediate_and_root_validity_are_checked(role: str, signing_key: SigningKey, cn: str) -> None:
    expired = SyntheticAmd.generate(Product.MILAN, **{role: CaProfile(not_after=AT - DAY)})
    _verify(expired, signing_key, at=AT - 2 * DAY)  # control: inside its validity
    with pytest.raises(CertificateChainError) as err:
        _verify(expired, signing_key)
    assert err.value.check == "certificate-validity"
    assert f"CN={cn}" in str(err.value) and "has expired" in str(err.value)

    future = SyntheticAmd.generate(Product.MILAN, **{role: CaProfile(not_before=AT + DAY)})
    _verify(future, signing_key, at=AT + 2 * DAY)
    with pytest.raises(CertificateChainError) as err:
        _verify(future, signing_key)
    assert err.value.check == "certificate-validity"
    assert f"CN={cn}" in str(err.value) and "is not yet valid" in str(err.value)


@pytest.mark.parametrize("role", ["ask", "ark"])
def test_cached_chain_rechecks_intermediate_and_root_validity(role: str) -> None:
    hierarchy = SyntheticAmd.generate(Product.MILAN, **{role: CaProfile(not_after=AT - DAY)})
    report, signer = _signed(hierarchy)
    verifier = SnpVerifier(trust_store=hierarchy.trust_store())
    chain = hierarchy.chain()
    verifier.verify(report, signer, chain, at=AT - 2 * DAY)
    with pytest.raises(CertificateChainError) as err:
        verifier.verify(report, signer, chain, at=AT)
    assert err.value.check == "certificate-validity"


# --- AMD's CA profile, one rule at a time ------------------------------------------------------

RULES = [
    (CaProfile(version_1=True), "X.509 version: expected v3, got v1"),
    (CaProfile(pss=False), "signature algorithm: expected RSASSA-PSS, got sha384WithRSAEncryption"),
    (
        CaProfile(pss=False, hash=hashes.SHA256()),
        "signature algorithm: expected RSASSA-PSS, got sha256WithRSAEncryption",
    ),
    (CaProfile(hash=hashes.SHA256()), "signature hash: expected sha384, got sha256"),
    (CaProfile(hash=hashes.SHA512()), "signature hash: expected sha384, got sha512"),
    (CaProfile(ca=None), "basicConstraints: expected CA (it signs certificates), got no basicConstraints"),
    (CaProfile(ca=False), "basicConstraints: expected CA (it signs certificates), got basicConstraints without CA"),
    (CaProfile(key_cert_sign=None), "keyUsage: expected keyCertSign (it signs certificates), got no keyUsage"),
    (
        CaProfile(key_cert_sign=False),
        "keyUsage: expected keyCertSign (it signs certificates), got keyUsage without keyCertSign",
    ),
]
RULE_IDS = ["v1", "pkcs1", "pkcs1-sha256", "pss-sha256", "pss-sha512", "no-basic", "not-ca", "no-ku", "no-certsign"]


@pytest.mark.parametrize(("profile", "message"), RULES, ids=RULE_IDS)
@pytest.mark.parametrize(("role", "cn"), [("ask", "SEV-Milan"), ("ark", "ARK-Milan")])
def test_ca_profile_rule_on_ask_and_ark(role: str, cn: str, profile: CaProfile, message: str) -> None:
    hierarchy = SyntheticAmd.generate(Product.MILAN, **{role: profile})
    with pytest.raises(CertificateChainError) as err:
        _verify(hierarchy)
    assert err.value.check == "certificate-chain"
    assert f"CN={cn}" in str(err.value) and message in str(err.value)


def test_ca_profile_rule_on_asvk() -> None:
    hierarchy = SyntheticAmd.generate(Product.MILAN, asvk=CaProfile(key_cert_sign=False))
    _verify(hierarchy, SigningKey.VCEK)  # the ASK is fine
    with pytest.raises(CertificateChainError, match=r"CN=SEV-VLEK-Milan.*keyUsage: expected keyCertSign"):
        _verify(hierarchy, SigningKey.VLEK)


def test_amd_profile_itself_is_accepted() -> None:
    """Control: every default (v3, RSASSA-PSS SHA-384 salt 48, CA, keyCertSign) passes."""
    for signing_key in SigningKey.VCEK, SigningKey.VLEK:
        assert _verify(SyntheticAmd.generate(Product.MILAN), signing_key).chain.ark.version is x509.Version.v3


@pytest.mark.parametrize("bad_cn", ["", "SEV-Mila", "SEV-MilanX", "SEV-Genoa", "SEV-VLEK-Milan"], ids=repr)
def test_ca_profile_subject_cn_of_the_ask(bad_cn: str) -> None:
    """verify_chain called with an ASK whose only fault is its CN (same key, the signer's issuer
    name is the right one): the profile names the CN, expected and actual."""
    good = SyntheticAmd.generate(Product.MILAN)
    bad = SyntheticAmd.generate(Product.MILAN, ask=CaProfile(cn=bad_cn))
    signer, _ = good.issue(SigningKey.VCEK, TCB, hwid=HWID)
    with pytest.raises(CertificateChainError) as err:
        verify_chain(
            signer,
            bad.ask,
            good.ark,
            product=Product.MILAN,
            signing_key=SigningKey.VCEK,
            trust_store=good.trust_store(),
        )
    assert f"subject CN: expected 'SEV-Milan', got {bad_cn or None!r}" in str(err.value)
    verify_chain(  # control
        signer, good.ask, good.ark, product=Product.MILAN, signing_key=SigningKey.VCEK, trust_store=good.trust_store()
    )


@pytest.mark.parametrize("bad_cn", ["", "ARK-Mila", "ARK-MilanX", "ARK-Genoa"], ids=repr)
def test_ca_profile_subject_cn_of_the_ark(bad_cn: str) -> None:
    good = SyntheticAmd.generate(Product.MILAN)
    bad = SyntheticAmd.generate(Product.MILAN, ark=CaProfile(cn=bad_cn))
    signer, _ = good.issue(SigningKey.VCEK, TCB, hwid=HWID)
    with pytest.raises(CertificateChainError) as err:
        verify_chain(
            signer, good.ask, bad.ark, product=Product.MILAN, signing_key=SigningKey.VCEK, trust_store=bad.trust_store()
        )
    assert f"subject CN: expected 'ARK-Milan', got {bad_cn or None!r}" in str(err.value)


# --- the chain cache key includes the product ------------------------------------------------------


def test_chain_cache_is_per_product() -> None:
    """Report A (Milan CPUID) caches the Milan chain; report B (Genoa CPUID) with the same signer
    and chain must not reuse it. The signer has no productName, so only the CPUID names the product."""
    milan, genoa = SyntheticAmd.generate(Product.MILAN), SyntheticAmd.generate(Product.GENOA)
    signer = milan.issue(SigningKey.VCEK, TCB, hwid=HWID, omit=(OID_PRODUCT_NAME,))
    report_a, cert = _signed(milan, cpuid=CPUID[Product.MILAN], signer=signer)
    report_b, _ = _signed(milan, cpuid=CPUID[Product.GENOA], signer=signer)
    store = milan.trust_store()
    store.add(genoa.ark, explicitly_trusted=True)
    for chain in (milan.chain(), milan.chain() + genoa.chain()):
        fresh_error = _error(SnpVerifier(trust_store=store), report_b, cert, chain)
        assert fresh_error is not None  # a Milan VCEK cannot sign a Genoa report
        verifier = SnpVerifier(trust_store=store)
        assert verifier.verify(report_a, cert, chain, at=AT).product is Product.MILAN
        cached_error = _error(verifier, report_b, cert, chain)
        assert cached_error is not None, "report B was accepted with report A's cached Milan chain"
        assert str(cached_error) == str(fresh_error)


def _error(verifier: SnpVerifier, report: bytes, signer: x509.Certificate, chain: list[x509.Certificate]) -> Any:
    evaluation = verifier.evaluate(report, signer, chain, at=AT)
    return None if evaluation.accepted else evaluation.error
