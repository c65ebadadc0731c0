"""aws-nitro-tpm validator (spec-attestation §5c).

Vector: aws-nitrotpm/constellation-aws-attdoc-2023-06/attdoc-aws.txt. MANIFEST: "Quote/PCR/event-log
verification ACCEPTS with the AK as given"; the nonce is not recorded, so the frame is checked with
``evaluate(doc, None)`` and the binding with the recorded extraData b3c5249a…; negatives: a flipped
quote byte, a changed PCR value, an event removed or changed, another extraData.
Synthetic documents (generated AK) cover the nonce bindings and the DescribeImages adapter.
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from test_tpm_quote import rsa_key
from test_tpm_structures import AWS_AK_NAME, AWS_DOC
from test_tpm_structures import AWS_EXTRA_DATA as AWS_EXTRA_DATA_HEX
from test_tpm_vectors import flip_digest, remove_event
from test_variant_common import config_for, make_document

from starlock.attestation import CheckStatus, Variant
from starlock.attestation.aws import AwsNitroTpmIssuer, AwsNitroTpmValidator, choose_tpm_nonce
from starlock.attestation.document import AttestationDocument
from starlock.attestation.errors import (
    EventLogMismatch,
    MalformedEvidence,
    NonceMismatch,
    PcrDigestMismatch,
    PolicyViolation,
    SignatureError,
    UnsupportedError,
    UntrustedKey,
)
from starlock.attestation.tpm import parse_event_log, parse_tpmt_public, verify_attestation
from starlock.attestation.validators import ValidatorAdapters, validator_for
from starlock.attestation.vtpm import CheckRecorder

AWS_EXTRA_DATA = bytes.fromhex(AWS_EXTRA_DATA_HEX)
NONCE = b"nitro-nonce"
IDENTITY = json.dumps({"imageId": "ami-0123", "region": "eu-west-1", "instanceId": "i-1"}).encode()


def _validator(**kwargs: Any) -> AwsNitroTpmValidator:
    extra = kwargs.pop("config", {})
    return AwsNitroTpmValidator(config_for(Variant.AWS_NITRO_TPM, **extra), **kwargs)


def _edit(raw: bytes, change: Any) -> bytes:
    obj = json.loads(raw)
    change(obj)
    return json.dumps(obj).encode()


@pytest.fixture(scope="module")
def aws_doc(vectors: Path) -> bytes:
    return (vectors / AWS_DOC).read_bytes()


class FakeImages:
    def __init__(self, answer: str | None) -> None:
        self.answer = answer
        self.calls: list[tuple[str, str]] = []

    def tpm_support(self, region: str, image_id: str) -> str | None:
        self.calls.append((region, image_id))
        return self.answer


# --- the 2023 vector ------------------------------------------------------------------------------------


def test_vector_frame_accepted_without_nonce(aws_doc: bytes) -> None:
    report = _validator().evaluate(aws_doc, None)
    assert report.accepted, report.error
    assert report.claims["ak_name"] == AWS_AK_NAME
    assert report.user_data is not None
    status = {c.name: c.status for c in report.checks}
    assert status["nonce"] is CheckStatus.WARN
    assert status["attestation-key"] is CheckStatus.WARN  # unpinned AK, as upstream
    assert status["tpm-quotes"] is CheckStatus.PASS and status["event-log"] is CheckStatus.PASS
    assert status["image-tpm-support"] is CheckStatus.WARN
    assert any("not checked (no AWS API access)" in w for w in report.warnings)


def test_vector_pinned_ak(aws_doc: bytes) -> None:
    assert _validator(config={"acceptedAttestationKeys": [AWS_AK_NAME]}).evaluate(aws_doc, None).accepted
    report = _validator(config={"acceptedAttestationKeys": ["000b" + "11" * 32]}).evaluate(aws_doc, None)
    assert isinstance(report.error, UntrustedKey)


def test_vector_legacy_binding_detected(aws_doc: bytes) -> None:
    """The quotes carry extraData = SHA-256(UserData‖nonce) (pre-2024 rule)."""
    doc = AttestationDocument.from_json(aws_doc)
    rec = CheckRecorder()
    chosen = choose_tpm_nonce(doc, AWS_EXTRA_DATA, rec, allow_legacy=True)
    assert chosen == AWS_EXTRA_DATA
    assert rec.checks[-1].status is CheckStatus.WARN
    ak = parse_tpmt_public(doc.attestation.ak_pub)
    verify_attestation(doc.attestation, chosen, ak)
    head = choose_tpm_nonce(doc, AWS_EXTRA_DATA, CheckRecorder(), allow_legacy=False)
    assert head != AWS_EXTRA_DATA
    with pytest.raises(NonceMismatch):
        verify_attestation(doc.attestation, head, ak)


def test_vector_any_nonce_rejected(aws_doc: bytes) -> None:
    """MANIFEST negative: extraData ≠ SHA-256(UserData‖nonce) → REJECT, under both bindings."""
    for allow in (False, True):
        report = _validator(allow_legacy_nonce_binding=allow).evaluate(aws_doc, b"not the nonce")
        assert isinstance(report.error, NonceMismatch)


def test_vector_flipped_quote_byte(aws_doc: bytes) -> None:
    def flip(obj: dict[str, Any]) -> None:
        for q in obj["Attestation"]["quotes"]:
            raw = bytearray(base64.b64decode(q["quote"]))
            raw[40] ^= 1
            q["quote"] = base64.b64encode(raw).decode()

    assert isinstance(_validator().evaluate(_edit(aws_doc, flip), None).error, SignatureError)


def test_vector_changed_pcr(aws_doc: bytes) -> None:
    def change(obj: dict[str, Any]) -> None:
        for q in obj["Attestation"]["quotes"]:
            pcr = bytearray(base64.b64decode(q["pcrs"]["pcrs"]["8"]))
            pcr[0] ^= 1
            q["pcrs"]["pcrs"]["8"] = base64.b64encode(pcr).decode()

    assert isinstance(_validator().evaluate(_edit(aws_doc, change), None).error, PcrDigestMismatch)


@pytest.mark.parametrize("how", ["removed", "changed"])
def test_vector_event_log_tampered(aws_doc: bytes, how: str) -> None:
    doc = AttestationDocument.from_json(aws_doc)
    log = parse_event_log(doc.attestation.event_log)
    event = [e for e in log.events if e.pcr_index == 4 and e.event_type != 0x3][-1]
    from starlock.attestation.tpm import algorithms as alg

    raw = doc.attestation.event_log
    # Changing the SHA-256 digest only: the SHA-512 quote still verifies, but the SHA-256 bank whose
    # PCRs the measurements are compared with must replay too.
    tampered = remove_event(raw, event) if how == "removed" else flip_digest(raw, event, alg.TPM_ALG_SHA256)

    def put(obj: dict[str, Any]) -> None:
        obj["Attestation"]["eventLog"] = base64.b64encode(tampered).decode()

    assert isinstance(_validator().evaluate(_edit(aws_doc, put), None).error, EventLogMismatch)


# --- synthetic documents: bindings ---------------------------------------------------------------------


def test_head_binding_accepted() -> None:
    raw = make_document(rsa_key(), nonce=NONCE, instance_info=IDENTITY)
    result = _validator().validate(raw, NONCE)
    assert result.user_data == b"\x42" * 32
    assert _validator(allow_legacy_nonce_binding=True).validate(raw, NONCE).user_data == b"\x42" * 32


def test_legacy_binding_only_when_allowed() -> None:
    raw = make_document(rsa_key(), nonce=NONCE, instance_info=IDENTITY, legacy=True)
    with pytest.raises(NonceMismatch):
        _validator().validate(raw, NONCE)
    result = _validator(allow_legacy_nonce_binding=True).validate(raw, NONCE)
    assert any("legacy" in w for w in result.warnings)
    with pytest.raises(NonceMismatch):
        _validator(allow_legacy_nonce_binding=True).validate(raw, b"other nonce")


def test_registry_builds_with_adapters() -> None:
    images = FakeImages("v2.0")
    adapters = ValidatorAdapters(aws_image_checker=images, allow_legacy_nonce_binding=True)
    validator = validator_for(config_for(Variant.AWS_NITRO_TPM), adapters=adapters)
    raw = make_document(rsa_key(), nonce=NONCE, instance_info=IDENTITY, legacy=True)
    validator.validate(raw, NONCE)
    assert images.calls == [("eu-west-1", "ami-0123")]


# --- DescribeImages adapter ----------------------------------------------------------------------------


def test_image_tpm_support_checked() -> None:
    raw = make_document(rsa_key(), nonce=NONCE, instance_info=IDENTITY)
    images = FakeImages("v2.0")
    result = _validator(image_checker=images).validate(raw, NONCE)
    assert images.calls == [("eu-west-1", "ami-0123")]
    assert any(c.name == "image-tpm-support" and c.status is CheckStatus.PASS for c in result.checks)
    for answer in (None, "v1.0"):
        with pytest.raises(PolicyViolation, match="TpmSupport"):
            _validator(image_checker=FakeImages(answer)).validate(raw, NONCE)


def test_identity_document_malformed() -> None:
    for info in (b"", b"[]", b'{"imageId": "ami-1"}', b'{"imageId": 1, "region": "x"}'):
        raw = make_document(rsa_key(), nonce=NONCE, instance_info=info)
        with pytest.raises(MalformedEvidence, match="InstanceInfo"):
            _validator(image_checker=FakeImages("v2.0")).validate(raw, NONCE)


def test_issuer_needs_the_cloud() -> None:
    issuer = AwsNitroTpmIssuer()
    assert issuer.variant is Variant.AWS_NITRO_TPM
    with pytest.raises(UnsupportedError, match="IMDS"):
        issuer.issue(b"u", b"n")
