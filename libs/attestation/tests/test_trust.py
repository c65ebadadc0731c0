"""Tests for starlock.attestation.trust: pins, loading, the trust store, sources, chain links.

Vectors are read in place (``vectors`` fixture); each test names the file and the MANIFEST
expectation it checks. Only fingerprints (hex strings quoted from the MANIFEST) appear here.
"""

from __future__ import annotations

import contextlib
import datetime
import hashlib
import http.server
import threading
import urllib.request
import warnings
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec, ed25519, padding, rsa
from cryptography.utils import CryptographyDeprecationWarning
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from starlock.attestation.errors import (
    AttestationError,
    CertificateChainError,
    ConfigError,
    MalformedEvidence,
    SignatureError,
)
from starlock.attestation.trust import (
    AMEROOT_SHA256,
    PINNED_ANCHORS,
    TPM_EK_ROOT_1_SHA256,
    BundleFile,
    CachedFetcher,
    CertificateSource,
    EvidenceCertificates,
    Family,
    Role,
    TrustStore,
    check_anchor_validity,
    check_validity,
    fingerprint,
    is_expired,
    load_certificates,
    pinned_anchor,
    subject_cn,
    verify_certificate_signature,
    verify_signed_by,
)

UTC = datetime.UTC

# MANIFEST "Trust anchors (other/)": bundle file, sha256 prefix of the file, (ASK|ASVK fp, ARK fp).
AMD_BUNDLES = {
    "ask_ark_milan.pem": ("22e62f8d2c21a156", Family.AMD_MILAN, "SEV-Milan", "ARK-Milan"),
    "ask_ark_milan_vlek.pem": ("3098f7e90ee7049b", Family.AMD_MILAN, "SEV-VLEK-Milan", "ARK-Milan"),
    "ask_ark_genoa.pem": ("e6ecc853fa56d317", Family.AMD_GENOA, "SEV-Genoa", "ARK-Genoa"),
    "ask_ark_genoa_vlek.pem": ("95f8b0deab936fe5", Family.AMD_GENOA, "SEV-VLEK-Genoa", "ARK-Genoa"),
    "ask_ark_turin_vcek.pem": ("cc9a52fbed3fbc6e", Family.AMD_TURIN, "SEV-Turin", "ARK-Turin"),
    "ask_ark_turin_vlek.pem": ("5928f39615a10790", Family.AMD_TURIN, "SEV-VLEK-Turin", "ARK-Turin"),
}
# MANIFEST "SHA-256 certificate fingerprints" (the nine AMD values), by subject CN.
AMD_FINGERPRINTS = {
    "ARK-Milan": "69d063b45344d26a2e94e1f4210de49ef555308287d4c174445c95639a540bcd",
    "SEV-Milan": "67d303bd3905fd38db8b20e0793699870e7fa612eaad5dec358293fd8c0bac1b",
    "SEV-VLEK-Milan": "c5e081f59b7efab1fe2f8b505e159704e72f29cab7ef7cf628a05a42439082f5",
    "ARK-Genoa": "4c6598d19c18719c5dfd4a7d335f674e5bfe1d8f800cea2cf270c10d103db2f1",
    "SEV-Genoa": "5464738c1546aed5f2cecf1dc98c5c960a92e8913238a61711bc90ec6e828521",
    "SEV-VLEK-Genoa": "197e610743a917d6b9bb982a5a9226ccc0a15b611be0619e626aca9151457372",
    "ARK-Turin": "1f084161a44bb6d93778a904877d4819cafa5d05ef4193b2ded9dd9c73dd3f6a",
    "SEV-Turin": "5b77ef5fe7a7a004fd9032668fba9d0fda22f88c4442069a479636a6ae3b3185",
    "SEV-VLEK-Turin": "104e10a8bd060a3c20a434261a57d0588fd65a88915b4f65b08bdecaf8df1a3c",
}
# MANIFEST other/gce-ek-ak-roots: file -> (file sha256 prefix, family, role).
GCE_FILES = {
    "tpm_ek_root_1.cer": ("9bd5285f8fb18502", Family.GCE_EK, Role.ROOT),
    "tpm_ek_intermediate_2.crt": ("5d8dbcf8c8053dd8", Family.GCE_EK, Role.INTERMEDIATE),
    "tpm_ek_intermediate_3.crt": ("7132b6ea71101f6c", Family.GCE_EK, Role.INTERMEDIATE),
    "gcp_ek_ak_ca_root.crt": ("594759594b9b6152", Family.GCE_CAS, Role.ROOT),
    "gcp_ek_ak_ca_intermediate_v3.crt": ("c84de8116dfaf5a9", Family.GCE_CAS, Role.INTERMEDIATE),
}
FAR_PAST = datetime.datetime(2000, 1, 1, tzinfo=UTC)


def amd_bundle(vectors: Path, name: str) -> bytes:
    return (vectors / "other" / "amd-kds-roots" / name).read_bytes()


def gce_file(vectors: Path, name: str) -> bytes:
    return (vectors / "other" / "gce-ek-ak-roots" / name).read_bytes()


def make_cert(
    cn: str,
    *,
    key: rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey | None = None,
    issuer: tuple[x509.Name, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey] | None = None,
    not_before: datetime.datetime = datetime.datetime(2020, 1, 1, tzinfo=UTC),
    not_after: datetime.datetime = datetime.datetime(2040, 1, 1, tzinfo=UTC),
    digest: hashes.SHA256 | hashes.SHA384 | hashes.SHA512 | None = None,
    rsa_padding: padding.PSS | padding.PKCS1v15 | None = None,
) -> tuple[x509.Certificate, rsa.RSAPrivateKey | ec.EllipticCurvePrivateKey]:
    """A test certificate (self-signed unless ``issuer`` is given) and its private key."""
    key = key or ec.generate_private_key(ec.SECP256R1())
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)])
    issuer_name, signer = issuer if issuer is not None else (name, key)
    builder = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(issuer_name)
        .public_key(key.public_key())
        .serial_number(x509.random_serial_number())
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=True, path_length=None), critical=True)
    )
    cert = builder.sign(signer, digest or hashes.SHA256(), rsa_padding=rsa_padding)
    return cert, key


def pem(*certs: x509.Certificate) -> bytes:
    return b"".join(c.public_bytes(serialization.Encoding.PEM) for c in certs)


@pytest.fixture(scope="module")
def rsa_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


# --- pins ----------------------------------------------------------------------------------------


def test_pin_table_is_consistent() -> None:
    fps = [a.fingerprint for a in PINNED_ANCHORS]
    assert len(fps) == len(set(fps)) == 15
    assert {a.family for a in PINNED_ANCHORS} == set(Family)
    for anchor in PINNED_ANCHORS:
        assert pinned_anchor(anchor.fingerprint.upper()) is anchor
        assert anchor.provenance


def test_amd_pins_are_the_manifest_fingerprints() -> None:
    # MANIFEST "SHA-256 certificate fingerprints": nine AMD values, ARK = root, ASK/ASVK = intermediate.
    for cn, fp in AMD_FINGERPRINTS.items():
        anchor = pinned_anchor(fp)
        assert anchor is not None, cn
        assert anchor.subject_cn == cn
        assert anchor.role is (Role.ROOT if cn.startswith("ARK-") else Role.INTERMEDIATE)
        assert anchor.family.value == "amd-" + cn.rsplit("-", 1)[1].lower()


def test_microsoft_and_google_root_pins() -> None:
    # spec-attestation §5e: ameroot fp ea76599d…; MANIFEST: tpm_ek_root_1 fp 9bd5285f….
    ame = pinned_anchor(AMEROOT_SHA256)
    assert ame is not None
    assert (ame.name, ame.role, ame.family, ame.subject_cn) == ("ameroot", Role.ROOT, Family.MICROSOFT_AME, "ameroot")
    assert AMEROOT_SHA256 == "ea76599d86897382aa519ff2bc0fa6b9c15d60da2ebe53e72139cd317b0797ed"
    assert TPM_EK_ROOT_1_SHA256 == "9bd5285f8fb18502a7947e621ffd470266f49fcd3b73e19a190f690ad32a7caf"


# --- AMD KDS bundles (vectors/other/amd-kds-roots) ---------------------------------------------


@pytest.mark.parametrize("bundle", sorted(AMD_BUNDLES))
def test_amd_bundle_loads_pins_and_verifies(vectors: Path, bundle: str) -> None:
    file_prefix, family, intermediate_cn, root_cn = AMD_BUNDLES[bundle]
    data = amd_bundle(vectors, bundle)
    assert hashlib.sha256(data).hexdigest().startswith(file_prefix)  # MANIFEST file sha256
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # spec §2.5: ARK/ASK/ASVK must load without any warning
        certs = load_certificates(data)
        intermediate, root = certs  # MANIFEST: "ASK or ASVK followed by ARK"
        store = TrustStore()
        entries = [store.add(c) for c in certs]
        # ASK/ASVK <- ARK and ARK <- ARK, RSASSA-PSS SHA-384 salt 48 (MANIFEST "VERIFIED HERE").
        verify_signed_by(intermediate, root)
        verify_signed_by(root, root)
    assert [subject_cn(c) for c in certs] == [intermediate_cn, root_cn]
    assert [fingerprint(c) for c in certs] == [AMD_FINGERPRINTS[intermediate_cn], AMD_FINGERPRINTS[root_cn]]
    assert [(e.family, e.role, e.pinned) for e in entries] == [
        (family, Role.INTERMEDIATE, True),
        (family, Role.ROOT, True),
    ]
    assert intermediate.signature_algorithm_oid == x509.SignatureAlgorithmOID.RSASSA_PSS
    assert [e.name for e in store.find(family=family, role=Role.ROOT)] == [root_cn]
    assert [e.name for e in store.issuers_of(intermediate)] == [root_cn]
    assert store.find(subject_cn=intermediate_cn)[0].certificate == intermediate


def test_amd_cross_product_fails(vectors: Path) -> None:
    # MANIFEST universal SNP negatives: "use the ASK of the wrong product … or swap ASK and ARK".
    milan_ask, milan_ark = load_certificates(amd_bundle(vectors, "ask_ark_milan.pem"))
    genoa_ask, genoa_ark = load_certificates(amd_bundle(vectors, "ask_ark_genoa.pem"))
    with pytest.raises(CertificateChainError, match="ARK-Genoa"):
        verify_signed_by(milan_ask, genoa_ark)
    with pytest.raises(SignatureError, match="SEV-Milan"):  # same test, names aside: the signature
        verify_certificate_signature(milan_ask, genoa_ark.public_key())
    with pytest.raises(SignatureError):
        verify_certificate_signature(genoa_ask, milan_ark.public_key())
    with pytest.raises(CertificateChainError):  # swapped: ARK "issued by" ASK
        verify_signed_by(milan_ark, milan_ask)


def test_amd_serial_zero_vcek(vectors: Path) -> None:
    # snp/gosevguest-milan-vcek/vcek.testcer: "CN=SEV-VCEK issued by CN=SEV-Milan"; serial 0 (§2.5).
    data = (vectors / "snp" / "gosevguest-milan-vcek" / "vcek.testcer").read_bytes()
    with pytest.warns(CryptographyDeprecationWarning, match="serial number"):
        x509.load_der_x509_certificate(data)  # what cryptography 50 does on its own
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        (vcek,) = load_certificates(data)
        ask, _ = load_certificates(amd_bundle(vectors, "ask_ark_milan.pem"))
        verify_signed_by(vcek, ask)  # ECDSA P-384 key, RSA-PSS signature by the ASK
        assert not TrustStore().is_pinned(vcek)
        check_validity(vcek, datetime.datetime(2026, 11, 24, tzinfo=UTC))  # valid 2022-09-24 .. 2029-09-24


def test_amd_tampered_signature_fails(vectors: Path) -> None:
    # MANIFEST universal negative: "corrupt a byte of the VCEK/ASK TBS or signature".
    data = bytearray(amd_bundle(vectors, "ask_ark_turin_vcek.pem"))
    ask, ark = load_certificates(bytes(data))
    der = bytearray(ask.public_bytes(serialization.Encoding.DER))
    der[-10] ^= 0x01
    (bad,) = load_certificates(bytes(der))
    with pytest.raises(SignatureError, match="SEV-Turin"):
        verify_signed_by(bad, ark)


def test_signature_bit_string_padding_is_refused(vectors: Path) -> None:
    # Found by fuzzing ARK-Genoa: "unused bits" 0 -> 1 in the outer signatureValue gives a new
    # fingerprint that cryptography still parses with the same signature bytes.
    _, ark = load_certificates(amd_bundle(vectors, "ask_ark_genoa.pem"))
    der = ark.public_bytes(serialization.Encoding.DER)
    sig_header = der.rindex(b"\x03\x82\x02\x01\x00")  # BIT STRING, 513 octets, 0 unused bits
    (reencoded,) = load_certificates(der[: sig_header + 4] + b"\x01" + der[sig_header + 5 :])
    assert fingerprint(reencoded) != fingerprint(ark)
    assert not TrustStore().is_pinned(reencoded)
    with pytest.raises(CertificateChainError, match="1 unused bits"):
        verify_signed_by(reencoded, ark)


# --- Google EK/AK CAs (vectors/other/gce-ek-ak-roots) -------------------------------------------


@pytest.mark.parametrize("name", sorted(GCE_FILES))
def test_google_anchor_pinned_with_file_provenance(vectors: Path, name: str) -> None:
    file_prefix, family, role = GCE_FILES[name]
    data = gce_file(vectors, name)
    assert hashlib.sha256(data).hexdigest().startswith(file_prefix)  # MANIFEST file sha256 prefix
    with warnings.catch_warnings():
        warnings.simplefilter("error")  # CNs longer than 64 characters must not warn through our API
        (cert,) = load_certificates(data)
        entry = TrustStore().add(cert)
    # The files are DER, so the pinned certificate fingerprint is also the file hash: the pin's
    # provenance is the MANIFEST's file hash.
    assert fingerprint(cert) == hashlib.sha256(data).hexdigest()
    assert (entry.family, entry.role, entry.name) == (family, role, name.rsplit(".", 1)[0])


def test_google_chains_verify(vectors: Path) -> None:
    # MANIFEST: AK cert -> tpm_ek_intermediate_2.crt -> tpm_ek_root_1.cer (RSA PKCS#1 v1.5).
    def load(name: str) -> x509.Certificate:
        return load_certificates(gce_file(vectors, name))[0]

    root1, cas_root = load("tpm_ek_root_1.cer"), load("gcp_ek_ak_ca_root.crt")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        for child, issuer in [
            (load("tpm_ek_intermediate_2.crt"), root1),
            (load("tpm_ek_intermediate_3.crt"), root1),
            (root1, root1),
            (load("gcp_ek_ak_ca_intermediate_v3.crt"), cas_root),
            (cas_root, cas_root),
        ]:
            verify_signed_by(child, issuer)
    with pytest.raises(CertificateChainError):
        verify_signed_by(load("tpm_ek_intermediate_2.crt"), cas_root)


# --- trust store ---------------------------------------------------------------------------------


def test_unpinned_certificate_refused_unless_explicit() -> None:
    cert, _ = make_cert("Starlock Test Root")
    store = TrustStore()
    with pytest.raises(CertificateChainError) as info:
        store.add(cert)
    assert "CN=Starlock Test Root" in str(info.value)
    assert fingerprint(cert) in str(info.value)
    assert cert not in store and not store.is_pinned(cert)
    with pytest.raises(CertificateChainError):
        store.require_pinned([cert])

    entry = store.add(cert, explicitly_trusted=True)
    assert (entry.pinned, entry.family, entry.role) == (False, None, Role.ROOT)
    assert cert in store and not store.is_pinned(cert)

    opted_in = TrustStore(trust_unpinned=True, certificates=[cert])
    assert [e.certificate for e in opted_in] == [cert]


def test_store_with_restricted_pins(vectors: Path) -> None:
    milan_pins = [a for a in PINNED_ANCHORS if a.family is Family.AMD_MILAN]
    store = TrustStore(milan_pins)
    store.add_all(load_certificates(amd_bundle(vectors, "ask_ark_milan.pem")))
    assert len(store) == 2
    _, genoa_ark = load_certificates(amd_bundle(vectors, "ask_ark_genoa.pem"))
    with pytest.raises(CertificateChainError, match="ARK-Genoa"):
        store.add(genoa_ark)
    store.add_all(load_certificates(amd_bundle(vectors, "ask_ark_milan_vlek.pem")))  # ARK again: idempotent
    assert sorted(e.name for e in store) == ["ARK-Milan", "ASK-Milan", "ASVK-Milan"]
    assert store.get(AMD_FINGERPRINTS["ARK-Milan"]) is not None


# --- validity and expired roots ------------------------------------------------------------------


def test_expired_root_is_refused_with_dates() -> None:
    # Like the Microsoft AME root (spec §5e): not-after 2026-05-24 22:57:03, checked on 2026-11-25.
    not_after = datetime.datetime(2026, 5, 24, 22, 57, 3, tzinfo=UTC)
    cert, _ = make_cert("ameroot-like", not_before=datetime.datetime(2016, 5, 24, tzinfo=UTC), not_after=not_after)
    at = datetime.datetime(2026, 11, 25, tzinfo=UTC)
    assert is_expired(cert, at)
    with pytest.raises(CertificateChainError) as info:
        check_anchor_validity(cert, at)
    message = str(info.value)
    assert "expired on 2026-05-24T22:57:03Z" in message
    assert "verification time is 2026-11-25T00:00:00Z" in message
    with pytest.raises(CertificateChainError, match="has expired: not-after 2026-05-24T22:57:03Z"):
        check_validity(cert, at)

    store = TrustStore(trust_unpinned=True, certificates=[cert])
    with pytest.raises(CertificateChainError, match="ameroot-like"):
        store.check_anchor_validity(cert, at)
    before = datetime.datetime(2026, 5, 1, tzinfo=UTC)
    assert not is_expired(cert, before)
    store.check_anchor_validity(cert, before)
    with pytest.raises(CertificateChainError, match="not yet valid"):
        check_anchor_validity(cert, FAR_PAST)
    with pytest.raises(ConfigError, match="timezone-aware"):
        check_validity(cert, datetime.datetime(2026, 11, 25))  # naive on purpose


# --- one chain link, generated certificates ------------------------------------------------------


def test_verify_signed_by_algorithms(rsa_key: rsa.RSAPrivateKey) -> None:
    root_ec, root_ec_key = make_cert("EC Root")
    child_ec, _ = make_cert("EC Leaf", issuer=(root_ec.subject, root_ec_key), digest=hashes.SHA384())
    verify_signed_by(child_ec, root_ec)

    root_rsa, _ = make_cert("RSA Root", key=rsa_key)
    child_pkcs1, _ = make_cert("PKCS1 Leaf", issuer=(root_rsa.subject, rsa_key))
    verify_signed_by(child_pkcs1, root_rsa)

    pss48 = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
    child_pss, _ = make_cert("PSS Leaf", issuer=(root_rsa.subject, rsa_key), digest=hashes.SHA384(), rsa_padding=pss48)
    verify_signed_by(child_pss, root_rsa)

    # Salt other than the digest length is outside the profile Go (and so Constellation) accepts.
    pss32 = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=32)
    odd_salt, _ = make_cert("PSS Salt", issuer=(root_rsa.subject, rsa_key), digest=hashes.SHA384(), rsa_padding=pss32)
    with pytest.raises(CertificateChainError, match="salt length 32, expected 48"):
        verify_signed_by(odd_salt, root_rsa)

    # Signed by an RSA key but checked against an EC issuer with the same name.
    impostor, _ = make_cert("RSA Root")
    with pytest.raises(CertificateChainError, match="RSA key"):
        verify_signed_by(child_pkcs1, impostor)
    with pytest.raises(SignatureError, match="EC Leaf"):
        verify_signed_by(child_ec, make_cert("EC Root")[0])

    # Ed25519 is outside what the AMD/Google/Microsoft chains use, so it is refused by name.
    ed_key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, "Ed Root")])
    ed_cert = (
        x509.CertificateBuilder()
        .subject_name(name)
        .issuer_name(name)
        .public_key(ed_key.public_key())
        .serial_number(1)
        .not_valid_before(datetime.datetime(2020, 1, 1, tzinfo=UTC))
        .not_valid_after(datetime.datetime(2040, 1, 1, tzinfo=UTC))
        .sign(ed_key, None)
    )
    with pytest.raises(CertificateChainError, match=r"ed25519.*not accepted"):
        verify_signed_by(ed_cert, ed_cert)


# --- load_certificates bounds -------------------------------------------------------------------


def test_load_certificates_bounds(vectors: Path) -> None:
    data = amd_bundle(vectors, "ask_ark_milan.pem")
    assert len(load_certificates(data + data)) == 4  # two bundles concatenated
    with pytest.raises(MalformedEvidence, match="at most 3 certificates"):
        load_certificates(data + data, max_certs=3)
    with pytest.raises(MalformedEvidence, match="at most 100 bytes"):
        load_certificates(data, max_size=100)
    with pytest.raises(MalformedEvidence, match="0 bytes"):
        load_certificates(b"")
    key_block = b"-----BEGIN PRIVATE KEY-----\nAAAA\n-----END PRIVATE KEY-----\n"
    with pytest.raises(MalformedEvidence, match="PRIVATE KEY"):
        load_certificates(data + key_block)
    der = load_certificates(data)[0].public_bytes(serialization.Encoding.DER)
    assert load_certificates(der)[0].public_bytes(serialization.Encoding.DER) == der
    with pytest.raises(MalformedEvidence, match="DER"):
        load_certificates(der + b"\x00")
    with pytest.raises(MalformedEvidence, match="PEM"):
        load_certificates(data.replace(b"-----END CERTIFICATE-----", b"", 1))
    # X.509 version 76 (found by fuzzing: cryptography raises InvalidVersion, not ValueError).
    version_at = der.index(b"\xa0\x03\x02\x01\x02") + 4
    with pytest.raises(MalformedEvidence, match="version"):
        load_certificates(der[:version_at] + b"\x4b" + der[version_at + 1 :])
    with pytest.raises(MalformedEvidence):
        load_certificates("text")  # type: ignore[arg-type]  # wrong type on purpose


@settings(max_examples=300, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(st.binary(max_size=2048))
def test_load_certificates_random_bytes(data: bytes) -> None:
    with contextlib.suppress(MalformedEvidence):
        load_certificates(data)


@settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(which=st.sampled_from(sorted(AMD_BUNDLES)), der=st.booleans(), data=st.data())
def test_load_certificates_mutated_vectors(vectors: Path, which: str, der: bool, data: st.DataObject) -> None:
    original = amd_bundle(vectors, which)
    if der:
        original = load_certificates(original)[0].public_bytes(serialization.Encoding.DER)
    mutated = bytearray(original)
    for _ in range(data.draw(st.integers(1, 4))):
        pos = data.draw(st.integers(0, len(mutated) - 1))
        mutated[pos] = data.draw(st.integers(0, 255))
    mutated = mutated[: data.draw(st.integers(1, len(mutated)))]
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        try:
            certs = load_certificates(bytes(mutated))
        except MalformedEvidence:
            return
        # Whatever still parses must not verify once changed (only typed errors, never a crash).
        ark = load_certificates(amd_bundle(vectors, which))[1]
        for cert in certs:
            if fingerprint(cert) in AMD_FINGERPRINTS.values():
                continue
            with pytest.raises(AttestationError):
                verify_signed_by(cert, ark)


# --- certificate sources -------------------------------------------------------------------------


def test_evidence_and_bundle_sources(vectors: Path, tmp_path: Path) -> None:
    data = amd_bundle(vectors, "ask_ark_genoa_vlek.pem")
    path = vectors / "other" / "amd-kds-roots" / "ask_ark_genoa_vlek.pem"
    sources: list[CertificateSource] = [EvidenceCertificates(data), BundleFile(path)]
    for source in sources:
        assert isinstance(source, CertificateSource)
        assert [subject_cn(c) for c in source.certificates()] == ["SEV-VLEK-Genoa", "ARK-Genoa"]
    with pytest.raises(ConfigError, match="cannot read"):
        BundleFile(tmp_path / "missing.pem").certificates()
    (tmp_path / "garbage.pem").write_bytes(b"not a certificate")
    with pytest.raises(ConfigError, match=r"garbage\.pem"):
        BundleFile(tmp_path / "garbage.pem").certificates()
    with pytest.raises(MalformedEvidence):
        EvidenceCertificates(b"\x30\x03\x02\x01\x00").certificates()


def counting(content: dict[str, bytes]) -> tuple[Callable[[str], bytes], list[str]]:
    calls: list[str] = []

    def fetch(url: str) -> bytes:
        calls.append(url)
        return content[url]

    return fetch, calls


URL = "https://kdsintf.amd.com/vcek/v1/Milan/cert_chain"  # a cache key only; never contacted


def test_cached_fetcher_hits_cache(vectors: Path, tmp_path: Path) -> None:
    fetch, calls = counting({URL: amd_bundle(vectors, "ask_ark_milan.pem")})
    fetcher = CachedFetcher(fetch, tmp_path / "cache")
    first = fetcher.get(URL)
    assert fetcher.source(URL).certificates() == first
    assert CachedFetcher(fetch, tmp_path / "cache").get(URL) == first  # from disk, new instance
    assert calls == [URL]
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [hashlib.sha256(URL.encode()).hexdigest() + ".cert"]


def test_cached_fetcher_refuses_unpinned(tmp_path: Path) -> None:
    cert, _ = make_cert("Not An ARK")
    fetch, calls = counting({URL: pem(cert)})
    fetcher = CachedFetcher(fetch, tmp_path)
    with pytest.raises(CertificateChainError, match="Not An ARK"):
        fetcher.get(URL)
    assert not fetcher.cache_path(URL).exists()
    with pytest.raises(MalformedEvidence, match="fetched"):
        CachedFetcher(counting({URL: b"<html>rate limited</html>"})[0], tmp_path).get(URL)
    assert list(tmp_path.iterdir()) == []
    # A caller-supplied check (e.g. chain verification for an unpinned VCEK) replaces the default.
    assert CachedFetcher(fetch, tmp_path, check=lambda certs: None).get(URL) == [cert]
    assert len(calls) == 2


@pytest.mark.parametrize("corruption", ["garbage", "truncated", "unpinned", "empty"])
def test_cached_fetcher_recovers_from_corrupt_cache(vectors: Path, tmp_path: Path, corruption: str) -> None:
    data = amd_bundle(vectors, "ask_ark_turin_vlek.pem")
    fetch, calls = counting({URL: data})
    fetcher = CachedFetcher(fetch, tmp_path)
    fetcher.get(URL)
    path = fetcher.cache_path(URL)
    replacement = {
        "garbage": b"\x00garbage",
        "truncated": data[: len(data) // 2],
        "unpinned": pem(make_cert("Planted")[0]),
        "empty": b"",
    }[corruption]
    path.write_bytes(replacement)
    assert [subject_cn(c) for c in fetcher.get(URL)] == ["SEV-VLEK-Turin", "ARK-Turin"]
    assert len(calls) == 2
    assert path.read_bytes() == data
    assert [p.name for p in tmp_path.iterdir()] == [path.name]  # no temp files left


@pytest.fixture
def local_kds(vectors: Path) -> Iterator[str]:
    """A plain HTTP server on 127.0.0.1 serving one AMD bundle; yields its base URL."""
    body = amd_bundle(vectors, "ask_ark_genoa.pem")

    class Handler(http.server.BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status = 200 if self.path == "/vcek/v1/Genoa/cert_chain" else 404
            self.send_response(status)
            self.send_header("Content-Length", str(len(body) if status == 200 else 0))
            self.end_headers()
            if status == 200:
                self.wfile.write(body)

        def log_message(self, format: str, *args: object) -> None:
            pass

    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def test_cached_fetcher_over_local_http(local_kds: str, tmp_path: Path) -> None:
    requests: list[str] = []

    def fetch(url: str) -> bytes:
        requests.append(url)
        with urllib.request.urlopen(url, timeout=5) as response:
            body: bytes = response.read()
        return body

    fetcher = CachedFetcher(fetch, tmp_path)
    url = local_kds + "/vcek/v1/Genoa/cert_chain"
    assert [subject_cn(c) for c in fetcher.get(url)] == ["SEV-Genoa", "ARK-Genoa"]
    assert [subject_cn(c) for c in fetcher.get(url)] == ["SEV-Genoa", "ARK-Genoa"]
    assert requests == [url]
