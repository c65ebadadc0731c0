"""Crashes the fuzzer found in starlock-attestation, as minimal reproducers.

Each test fails until the fix its docstring names is made (the file is outside this harness).
"""

from __future__ import annotations

import datetime

import pytest

#: Minimal documents with a JSON ``\\ud800`` escape: a lone surrogate, which is not Unicode text.
LONE_SURROGATE_DOCUMENTS = [
    b'{"Attestation": {"instance_info": {"zone": "\\ud800"}}}',
    b'{"Attestation": {"TeeAttestation": {"SevSnpAttestation": {"x": "\\udfff"}}}}',
]


def _vcek_with_unparsable_subject() -> bytes:
    """A VCEK-shaped certificate (v3, RSASSA-PSS/SHA-384 signature, P-384 key) whose subject O is a
    UTF8String holding bytes that are not UTF-8 (as in the fuzzer's input, a mutated AWS VLEK):
    DER that loads, with a subject that raises ``ValueError`` when read."""
    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
    from cryptography.x509.oid import NameOID

    signer = rsa.generate_private_key(public_exponent=65537, key_size=2048)
    subject = x509.Name(
        [
            x509.NameAttribute(NameOID.ORGANIZATION_NAME, "Advanced Micro Devices"),
            x509.NameAttribute(NameOID.COMMON_NAME, "SEV-VCEK"),
        ]
    )
    when = datetime.datetime(2026, 1, 1, tzinfo=datetime.UTC)
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "SEV-Milan")]))
        .public_key(ec.generate_private_key(ec.SECP384R1()).public_key())
        .serial_number(1)
        .not_valid_before(when)
        .not_valid_after(when + datetime.timedelta(days=1))
        .sign(
            signer,
            hashes.SHA384(),
            rsa_padding=padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48),
        )
    )
    der = cert.public_bytes(serialization.Encoding.DER)
    assert der.count(b"Advanced Micro Devices") == 1
    return der.replace(b"Advanced Micro Devices", b"Advanced \xb3\x96\x9c\x8d\x90 Devices")


def test_parse_endorsement_key_unparsable_subject_is_a_typed_error() -> None:
    """Found by target snp_cert_table (2026-xx): ``parse_endorsement_key`` on a certificate whose
    subject cannot be decoded raised ``ValueError`` from ``trust/_certs.py:subject_of`` (via
    ``snp/endorsement.py:_subject_kind``), and ``profile_error``/``describe`` read the subject again.

    Fix (libs/attestation/src/starlock/attestation/snp/endorsement.py, ``parse_endorsement_key``):
    read the subject and issuer first and map ``ValueError`` to
    ``CertificateChainError(..., check="signer-profile")`` without calling ``describe`` (which
    reads the subject); e.g. ``f"signer (sha256 {fingerprint(cert)}): unparsable subject or issuer"``.
    """
    from cryptography import x509

    from starlock.attestation.errors import AttestationError
    from starlock.attestation.snp import parse_endorsement_key

    cert = x509.load_der_x509_certificate(_vcek_with_unparsable_subject())
    with pytest.raises(ValueError):
        _ = cert.subject  # the reproducer is what it claims: the subject itself is unreadable
    with pytest.raises(AttestationError) as info:
        parse_endorsement_key(cert)
    assert info.value.check == "signer-profile"


def test_library_loader_refuses_the_same_certificate() -> None:
    """The library's own loader (what the SNP verifier uses for evidence bytes) already refuses it."""
    from starlock.attestation.errors import MalformedEvidence
    from starlock.attestation.trust import load_certificates

    with pytest.raises(MalformedEvidence):
        load_certificates(_vcek_with_unparsable_subject())


@pytest.mark.parametrize("raw", LONE_SURROGATE_DOCUMENTS)
def test_document_with_a_lone_surrogate_is_refused_or_reencodes(raw: bytes) -> None:
    """Found by target attdoc_json (its round-trip invariant; input minimized by hand):
    ``AttestationDocument.from_json`` accepts a JSON string escape that is a lone UTF-16
    surrogate (``"\\ud800"``; Go's encoding/json replaces it with U+FFFD), and ``to_json`` of the
    parsed document then raises ``UnicodeEncodeError`` at ``.encode()``
    (libs/attestation/src/starlock/attestation/document.py, ``to_json``, the ``json.dumps(...).encode()``
    line), an untyped error for any caller that re-encodes or prints a received document.

    Fix (document.py): refuse such strings while parsing. In ``_str`` add
    ``value.encode("utf-8")`` under ``try`` and map ``UnicodeEncodeError`` to
    ``MalformedEvidence(f"field {name}: not valid Unicode (lone surrogate)")``; in ``_parse_tee``
    apply the same check to every string (keys and values) of the TeeAttestation subtree (e.g. one
    ``json.dumps(tee, ensure_ascii=False).encode()`` in a ``try``). Mapping them to U+FFFD as Go
    does is the alternative, but would let two different inputs parse to one document.
    """
    from starlock.attestation.document import AttestationDocument
    from starlock.attestation.errors import MalformedEvidence

    try:
        doc = AttestationDocument.from_json(raw)
    except MalformedEvidence:
        return  # refused while parsing: the behaviour the fix gives
    assert AttestationDocument.from_json(doc.to_json()) == doc
