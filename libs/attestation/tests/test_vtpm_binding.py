"""The vTPM frame's binding of a document to its nonce and InstanceInfo, and its report rows.

Spec-attestation §5.0 steps 2 and 4: extraData = SHA-256(UserData ‖ nonce), and the TPM qualifying
data = SHA-256(InstanceInfo ‖ extraData). The expected bytes are computed here with hashlib from
that formula (and pinned as hex), never with the library's own ``make_tpm_nonce``, so a change of
the library's formula cannot go unnoticed by changing builder and validator together.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import pytest
from cryptography.hazmat.primitives.asymmetric import rsa
from test_tpm_quote import RSASSA, SHA256, SHA384, SHA512, ak_for, make_quote, pcr_values, rsa_key
from test_variant_common import make_document

from starlock.attestation import (
    CheckStatus,
    MalformedEvidence,
    NonceMismatch,
    Variant,
    load_attestation_config,
    validator_for,
)
from starlock.attestation.document import Attestation, AttestationDocument
from starlock.attestation.vtpm import VtpmValidator, make_extra_data, make_tpm_nonce

NONCE = bytes(range(32))
USER_DATA = b"\x42" * 32
INSTANCE_INFO = b'{"instance": "synthetic", "zone": "test-1"}'


def _validator() -> VtpmValidator:
    """qemu-vtpm, enforcing PCR 0 of the synthetic quotes (pcr_values: PCR i = SHA-256(bytes([i])))."""
    pcr0 = hashlib.sha256(b"\x00").hexdigest()
    config = load_attestation_config({"measurements": {"0": {"expected": pcr0, "warnOnly": False}}}, Variant.QEMU_VTPM)
    return validator_for(config)


def _spec_tpm_nonce(instance_info: bytes, user_data: bytes, nonce: bytes) -> bytes:
    """§5.0: SHA-256(InstanceInfo ‖ SHA-256(UserData ‖ nonce)), written out with hashlib."""
    extra_data = hashlib.sha256(user_data + nonce).digest()
    return hashlib.sha256(instance_info + extra_data).digest()


def _document(key: rsa.RSAPrivateKey, *, instance_info: bytes = INSTANCE_INFO, nonce: bytes = NONCE) -> bytes:
    tpm_nonce = _spec_tpm_nonce(instance_info, USER_DATA, nonce)
    return make_document(key, nonce=nonce, user_data=USER_DATA, instance_info=instance_info, tpm_nonce=tpm_nonce)


def _with_instance_info(document: bytes, instance_info: bytes) -> bytes:
    doc = AttestationDocument.from_json(document)
    return AttestationDocument(doc.attestation, instance_info=instance_info, user_data=doc.user_data).to_json()


def _rows(report: Any, name: str) -> list[CheckStatus]:
    return [c.status for c in report.checks if c.name == name]


# --- known answers ------------------------------------------------------------------------------


def test_tpm_nonce_known_answer() -> None:
    extra_data = bytes.fromhex("00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff")
    expected = hashlib.sha256(INSTANCE_INFO + extra_data).digest()
    assert make_tpm_nonce(INSTANCE_INFO, extra_data) == expected
    # Pinned too, so that the formula in this test cannot drift with the library's either.
    assert expected.hex() == "82e788b3245629f208531b2fbd022001dbe91113a26f5b10cca79536b445b1ca"
    assert make_tpm_nonce(b"", extra_data) == hashlib.sha256(extra_data).digest()
    assert make_tpm_nonce(INSTANCE_INFO, extra_data) != make_tpm_nonce(b"", extra_data)


def test_extra_data_known_answer() -> None:
    assert make_extra_data(USER_DATA, NONCE) == hashlib.sha256(USER_DATA + NONCE).digest()
    assert make_extra_data(USER_DATA, NONCE).hex() == "7725306294e8338620ee3c11d848e50109216574c28ff140f603df24afd82366"


# --- documents built from the spec's formula ------------------------------------------------------


def test_document_quoted_over_instance_info_is_accepted() -> None:
    result = _validator().validate(_document(rsa_key()), NONCE)
    assert result.user_data == USER_DATA


def test_instance_info_changed_after_quoting_is_refused() -> None:
    """InstanceInfo is bound by the quote: replacing it (or emptying it, or cutting it) must fail."""
    genuine = _document(rsa_key())
    for other in (b"", INSTANCE_INFO[:-1], INSTANCE_INFO + b" ", b'{"instance": "forged"}'):
        report = _validator().evaluate(_with_instance_info(genuine, other), NONCE)
        assert not report.accepted, other
        assert isinstance(report.error, NonceMismatch), report.error
        assert _rows(report, "nonce") == [CheckStatus.FAIL]


def test_quote_over_extra_data_alone_is_refused() -> None:
    """The pre-2024 binding (qualifying data = extraData) is not the qemu-vtpm binding."""
    legacy = make_document(rsa_key(), nonce=NONCE, user_data=USER_DATA, instance_info=INSTANCE_INFO, legacy=True)
    report = _validator().evaluate(legacy, NONCE)
    assert isinstance(report.error, NonceMismatch)


# --- the nonce row ------------------------------------------------------------------------------


def test_nonce_row_passes_only_after_the_quotes_proved_it() -> None:
    report = _validator().evaluate(_document(rsa_key()), NONCE)
    names = [c.name for c in report.checks]
    assert report.accepted
    assert _rows(report, "nonce") == [CheckStatus.PASS]
    assert names.index("nonce") > names.index("tpm-quotes")
    detail = next(c.detail for c in report.checks if c.name == "nonce")
    assert _spec_tpm_nonce(INSTANCE_INFO, USER_DATA, NONCE).hex() in detail


@pytest.mark.parametrize(
    "nonce",
    [NONCE[:-1], NONCE + b"\x00", NONCE[:1], bytes(32), b"\x01" + NONCE[1:]],
    ids=["truncated", "extended", "prefix-1-byte", "zeros", "first-byte-changed"],
)
def test_wrong_nonce_is_a_failed_nonce_row_never_a_pass(nonce: bytes) -> None:
    report = _validator().evaluate(_document(rsa_key()), nonce)
    assert not report.accepted
    assert isinstance(report.error, NonceMismatch)
    assert _rows(report, "nonce") == [CheckStatus.FAIL]
    assert report.checks[-1].status is CheckStatus.FAIL


def test_empty_nonce_is_refused() -> None:
    report = _validator().evaluate(_document(rsa_key(), nonce=NONCE), b"")
    assert isinstance(report.error, NonceMismatch) and _rows(report, "nonce") == [CheckStatus.FAIL]


# --- no SHA-256 quote ---------------------------------------------------------------------------


def _document_with_banks(banks: tuple[int, ...]) -> bytes:
    key = rsa_key()
    tpm_nonce = _spec_tpm_nonce(b"", USER_DATA, NONCE)
    quotes = tuple(make_quote(key, bank, extra_data=tpm_nonce, pcrs=pcr_values(bank)) for bank in banks)
    att = Attestation(ak_pub=ak_for(key, RSASSA).raw, quotes=quotes)
    return AttestationDocument(attestation=att, instance_info=b"", user_data=USER_DATA).to_json()


@pytest.mark.parametrize("banks", [(SHA384,), (SHA512,), (SHA512, SHA384)], ids=["sha384", "sha512", "both"])
@pytest.mark.parametrize("nonce", [NONCE, None], ids=["nonce", "no-nonce"])
def test_no_sha256_quote_is_a_typed_rejection(banks: tuple[int, ...], nonce: bytes | None) -> None:
    """The measurements are SHA-256 values: a document without a SHA-256 quote is rejected, typed."""
    document = _document_with_banks(banks)
    report = _validator().evaluate(document, nonce)
    assert not report.accepted
    assert isinstance(report.error, MalformedEvidence)
    assert "expected a SHA256 quote" in str(report.error)
    assert (report.checks[-1].name, report.checks[-1].status) == ("sha256-quote", CheckStatus.FAIL)
    if nonce is not None:
        with pytest.raises(MalformedEvidence, match="expected a SHA256 quote"):
            _validator().validate(document, nonce)


def test_sha256_quote_present_is_accepted_for_comparison() -> None:
    """Control for the test above: the same builder with a SHA-256 quote is accepted."""
    assert _validator().evaluate(_document_with_banks((SHA384, SHA256)), NONCE).accepted


def test_document_without_quotes_is_a_rejected_report_ending_in_a_failed_row() -> None:
    key = rsa_key()
    att = Attestation(ak_pub=ak_for(key, RSASSA).raw, quotes=())
    document = AttestationDocument(attestation=att, instance_info=b"", user_data=USER_DATA).to_json()
    for nonce in (NONCE, None):
        report = _validator().evaluate(document, nonce)
        assert not report.accepted and isinstance(report.error, MalformedEvidence)
        assert report.checks[-1].status is CheckStatus.FAIL


def test_report_json_round_trip_of_the_rows() -> None:
    """Rows are plain values a CLI can print (names stable, one nonce row)."""
    report = _validator().evaluate(_document(rsa_key()), NONCE)
    rows = json.loads(json.dumps([(c.name, c.status.value) for c in report.checks]))
    assert ["nonce", "pass"] in rows
