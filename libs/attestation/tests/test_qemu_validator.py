"""qemu-vtpm end to end: documents issued by a live swtpm, checked by the validator and the CLI.

Each rejection test changes one thing in a genuine document and expects the typed error of the
check that must catch it.
"""

from __future__ import annotations

import base64
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from starlock.attestation import (
    AttestationDocument,
    CheckStatus,
    EventLogMismatch,
    MalformedEvidence,
    MeasurementMismatch,
    NonceMismatch,
    PcrDigestMismatch,
    SignatureError,
    UntrustedKey,
    Variant,
    load_attestation_config,
    validator_for,
)
from starlock.attestation.cli import main
from starlock.attestation.document import HASH_ALG_IDS
from starlock.attestation.measured_boot import replay, run_synthetic_boot
from starlock.attestation.qemu import QemuVtpmIssuer, QemuVtpmValidator
from starlock.attestation.swtpm import Swtpm

SHA256 = HASH_ALG_IDS["SHA256"]
NONCE = bytes(range(32))
USER_DATA = b"\x42" * 32


@attrs.frozen
class Issued:
    document: bytes
    measurements: dict[str, Any]
    log_path: Path
    other_ak_pub: bytes


@pytest.fixture(scope="module")
def issued(swtpm_binary: Path, tpm2_pytss: Any, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Issued]:
    """One booted node attesting, plus the AK of a second node (for key-swap tests)."""
    tmp = tmp_path_factory.mktemp("qemu-validator")
    with Swtpm(tmp / "node", binary=swtpm_binary) as tpm, Swtpm(tmp / "other", binary=swtpm_binary) as other:
        log_path = tmp / "eventlog.bin"
        events = run_synthetic_boot(tpm.tcti, log_path)
        golden = replay(events, SHA256, sorted({e.pcr for e in events}))
        measurements = {str(i): {"expected": v.hex(), "warnOnly": False} for i, v in golden.items()}
        document = QemuVtpmIssuer(tpm.tcti, event_log_path=log_path).issue(USER_DATA, NONCE)
        other_doc = QemuVtpmIssuer(other.tcti, include_event_log=False).issue(USER_DATA, NONCE)
        yield Issued(document, measurements, log_path, AttestationDocument.from_json(other_doc).attestation.ak_pub)


def _validator(measurements: dict[str, Any], **extra: Any) -> QemuVtpmValidator:
    config = load_attestation_config({"measurements": measurements, **extra}, Variant.QEMU_VTPM)
    validator = validator_for(config)
    assert isinstance(validator, QemuVtpmValidator)
    return validator


def _edit(document: bytes, change: Any) -> bytes:
    obj = json.loads(document)
    change(obj)
    return json.dumps(obj).encode()


def test_genuine_document_is_accepted(issued: Issued) -> None:
    result = _validator(issued.measurements).validate(issued.document, NONCE)
    assert result.variant is Variant.QEMU_VTPM
    assert result.user_data == USER_DATA
    statuses = {c.name: c.status for c in result.checks}
    assert statuses["tpm-quotes"] is CheckStatus.PASS
    assert statuses["measurements"] is CheckStatus.PASS
    assert statuses["attestation-key"] is CheckStatus.WARN  # unpinned AK, as upstream
    assert set(result.claims["pcrs"]) == {str(i) for i in range(24)}
    assert result.claims["event_log_events"] > 0


def test_wrong_nonce_is_rejected(issued: Issued) -> None:
    with pytest.raises(NonceMismatch):
        _validator(issued.measurements).validate(issued.document, b"\x00" * 32)


def test_empty_nonce_is_rejected(issued: Issued) -> None:
    """Upstream accepts an empty nonce; it proves no freshness, so Starlock refuses it."""
    with pytest.raises(NonceMismatch, match="empty"):
        _validator(issued.measurements).validate(issued.document, b"")


def test_swapped_user_data_is_rejected(issued: Issued) -> None:
    doc = _edit(issued.document, lambda o: o.update(UserData=base64.b64encode(b"\x43" * 32).decode()))
    with pytest.raises(NonceMismatch):
        _validator(issued.measurements).validate(doc, NONCE)


def test_other_nodes_ak_is_rejected(issued: Issued) -> None:
    other = base64.b64encode(issued.other_ak_pub).decode()
    doc = _edit(issued.document, lambda o: o["Attestation"].update(ak_pub=other))
    with pytest.raises(SignatureError):
        _validator(issued.measurements).validate(doc, NONCE)


def test_pinned_ak_accepted_and_other_pins_refuse(issued: Issued) -> None:
    report = _validator(issued.measurements).evaluate(issued.document, NONCE)
    ak_name = report.claims["ak_name"]
    pinned = _validator(issued.measurements, acceptedAttestationKeys=[ak_name]).validate(issued.document, NONCE)
    assert {c.name: c.status for c in pinned.checks}["attestation-key"] is CheckStatus.PASS
    with pytest.raises(UntrustedKey, match=ak_name):
        _validator(issued.measurements, acceptedAttestationKeys=["000b" + "00" * 32]).validate(issued.document, NONCE)


def test_measurement_mismatches_are_all_reported(issued: Issued) -> None:
    measurements = dict(issued.measurements)
    measurements["4"] = {"expected": "ab" * 32, "warnOnly": False}
    measurements["7"] = {"expected": "cd" * 32, "warnOnly": False}
    measurements["9"] = {"expected": "ef" * 32, "warnOnly": True}
    validator = _validator(measurements)
    with pytest.raises(MeasurementMismatch) as excinfo:
        validator.validate(issued.document, NONCE)
    assert "at index 4" in str(excinfo.value)
    assert "at index 7" in str(excinfo.value)
    assert "index 9" not in str(excinfo.value)  # warn-only: a warning, not an error
    del measurements["4"], measurements["7"]
    result = _validator(measurements).validate(issued.document, NONCE)
    assert any("at index 9" in w for w in result.warnings)


def test_event_removed_from_log_is_rejected(issued: Issued) -> None:
    from starlock.attestation.measured_boot import default_boot_events, encode_event_log

    events = default_boot_events()
    doc = AttestationDocument.from_json(issued.document)
    banks = [q.pcrs.hash for q in doc.attestation.quotes]
    shorter = encode_event_log(events[:-1], banks)
    new_log = base64.b64encode(shorter).decode()
    tampered = _edit(issued.document, lambda o: o["Attestation"].update(event_log=new_log))
    with pytest.raises(EventLogMismatch):
        _validator(issued.measurements).validate(tampered, NONCE)


def test_unverified_sha256_values_are_not_trusted(issued: Issued) -> None:
    """Upstream quirk fixed: a good SHA-512 quote must not vouch for edited SHA-256 values."""

    def forge(obj: dict[str, Any]) -> None:
        for quote in obj["Attestation"]["quotes"]:
            if quote["pcrs"]["hash"] == SHA256:
                quote["pcrs"]["pcrs"]["4"] = base64.b64encode(b"\xab" * 32).decode()

    forged = _edit(issued.document, forge)
    measurements = dict(issued.measurements)
    measurements["4"] = {"expected": "ab" * 32, "warnOnly": False}
    report = _validator(measurements).evaluate(forged, NONCE)
    assert not report.accepted
    assert isinstance(report.error, PcrDigestMismatch)
    assert report.checks[-1].name == "sha256-quote"


def test_without_nonce_everything_but_freshness_is_checked(issued: Issued) -> None:
    report = _validator(issued.measurements).evaluate(issued.document, None)
    assert report.accepted
    assert {c.name: c.status for c in report.checks}["nonce"] is CheckStatus.WARN


def test_cli_accepts_and_rejects(issued: Issued, tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    doc = tmp_path / "doc.json"
    doc.write_bytes(issued.document)
    good = tmp_path / "good.json"
    good.write_text(json.dumps({"measurements": issued.measurements}))
    args = ["document", str(doc), "--variant", "qemu-vtpm", "--nonce", NONCE.hex(), "--json"]

    assert main([*args, "--config", str(good)]) == 0
    out = json.loads(capsys.readouterr().out)
    assert out["accepted"] is True
    assert out["variant"] == "qemu-vtpm"
    assert {"name", "status", "detail"} <= set(out["checks"][0])
    assert out["claims"]["user_data"] == USER_DATA.hex()

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"measurements": {**issued.measurements, "4": "ab" * 32}}))
    assert main([*args, "--config", str(bad)]) == 1
    captured = capsys.readouterr()
    last = json.loads(captured.out)["checks"][-1]
    assert (last["name"], last["status"]) == ("measurements", "fail")
    assert "at index 4" in last["detail"]
    assert captured.err.startswith("starlock-verify: rejected: untrusted measurement value")

    assert main(["document", str(doc), "--variant", "qemu-vtpm", "--config", str(good)]) == 0
    table = capsys.readouterr().out
    assert "Result:    ACCEPTED" in table
    assert "measurements     PASS" in table


def test_second_sha256_quote_cannot_smuggle_pcr_values(issued: Issued) -> None:
    """Security review finding: a forged SHA-256 quote placed before the genuine one.

    The genuine quote verifies; the forged one carries the PCR values a modified image would
    want compared. Documents with two quotes over one bank are refused outright.
    """

    def smuggle(obj: dict[str, Any]) -> None:
        quotes = obj["Attestation"]["quotes"]
        genuine = next(q for q in quotes if q["pcrs"]["hash"] == SHA256)
        forged = json.loads(json.dumps(genuine))
        forged["pcrs"]["pcrs"]["4"] = base64.b64encode(b"\xab" * 32).decode()
        obj["Attestation"]["quotes"] = [forged, genuine]

    forged_doc = _edit(issued.document, smuggle)
    measurements = dict(issued.measurements)
    measurements["4"] = {"expected": "ab" * 32, "warnOnly": False}
    report = _validator(measurements).evaluate(forged_doc, NONCE)
    assert not report.accepted
    assert isinstance(report.error, MalformedEvidence)
    assert "more than one quote over the SHA256 bank" in str(report.error)


def test_only_a_sha256_quote_is_enough_and_its_values_are_the_verified_ones(issued: Issued) -> None:
    def only_sha256(obj: dict[str, Any]) -> None:
        obj["Attestation"]["quotes"] = [q for q in obj["Attestation"]["quotes"] if q["pcrs"]["hash"] == SHA256]

    doc = _edit(issued.document, only_sha256)
    result = _validator(issued.measurements).validate(doc, NONCE)
    assert "sha256-quote" not in {c.name for c in result.checks}  # the winning quote is the SHA-256 one
    measurements = dict(issued.measurements)
    measurements["4"] = {"expected": "ab" * 32, "warnOnly": False}
    with pytest.raises(MeasurementMismatch):
        _validator(measurements).validate(doc, NONCE)


def test_validate_requires_a_nonce(issued: Issued) -> None:
    with pytest.raises(NonceMismatch, match="needs the nonce"):
        _validator(issued.measurements).validate(issued.document, None)  # type: ignore[arg-type]
