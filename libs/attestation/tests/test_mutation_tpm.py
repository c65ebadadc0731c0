"""TPM quotes and the vTPM validator: checks that must be exact (mutation-testing survivors, issue 15).

Synthetic quotes are built with the helpers of test_tpm_quote.py / test_tpm_structures.py and
signed by a software AK, so the only fault of each quote is the field under test.
"""

from __future__ import annotations

import hashlib
import struct
from pathlib import Path
from typing import Any

import pytest
from test_tpm_eventlog import (
    EV_NO_ACTION,
    EV_POST_CODE,
    SHA1,
    SHA384,
    SHA512,
    agile_log,
    event2,
    extend,
    measured,
    spec_id_header,
)
from test_tpm_quote import NONCE, RSASSA, SHA256, ak_for, pcr_values, rsa_key, sign
from test_tpm_structures import attest_bytes

from starlock.attestation import (
    AttestationConfig,
    CheckStatus,
    Measurements,
    Variant,
    load_attestation_config,
    validator_for,
)
from starlock.attestation.document import PCRs, Quote
from starlock.attestation.errors import MalformedEvidence, PcrDigestMismatch
from starlock.attestation.qemu import QemuVtpmIssuer, QemuVtpmValidator
from starlock.attestation.swtpm import booted_swtpm
from starlock.attestation.tpm import parse_event_log, replay, verify_quote

_GOOD_DIGEST = hashlib.sha256(b"".join(pcr_values(SHA256).values())).digest()


def _quote_with_pcr_digest(pcr_digest: bytes) -> Quote:
    """A correctly signed quote over all 24 SHA-256 PCRs whose TPMS_ATTEST carries ``pcr_digest``."""
    key = rsa_key()
    attest = attest_bytes(NONCE, [(SHA256, list(range(24)))], pcr_digest)
    return Quote(quote=attest, raw_sig=sign(key, attest, RSASSA, SHA256), pcrs=PCRs(SHA256, pcr_values(SHA256)))


@pytest.mark.parametrize(
    "pcr_digest",
    [b"", _GOOD_DIGEST[:1], _GOOD_DIGEST[:31], _GOOD_DIGEST + b"\x00", _GOOD_DIGEST + bytes(32)],
    ids=["empty", "1-byte-prefix", "truncated", "extended-1", "extended-32"],
)
def test_quoted_pcr_digest_must_equal_the_digest_of_the_pcrs(pcr_digest: bytes) -> None:
    """A signed pcrDigest that is only a prefix (or an extension) of the PCRs' digest binds nothing."""
    ak = ak_for(rsa_key(), RSASSA)
    with pytest.raises(PcrDigestMismatch) as err:
        verify_quote(ak, _quote_with_pcr_digest(pcr_digest), NONCE)
    assert f"quoted {pcr_digest.hex()}, the supplied SHA256 PCRs hash to {_GOOD_DIGEST.hex()}" in str(err.value)
    assert verify_quote(ak, _quote_with_pcr_digest(_GOOD_DIGEST), NONCE).pcrs.hash == SHA256  # control


@pytest.mark.parametrize("other", [Variant.GCP_SEV_ES, Variant.AWS_NITRO_TPM, Variant.AZURE_TRUSTED_LAUNCH])
def test_validator_refuses_a_config_of_another_variant(other: Variant) -> None:
    """A qemu-vtpm validator built from another variant's config would apply the wrong AK trust."""
    measurements = Measurements.from_obj({"4": "aa" * 32})
    with pytest.raises(ValueError, match=f"config is for {other.value}, validator is {Variant.QEMU_VTPM.value}"):
        QemuVtpmValidator(AttestationConfig(other, measurements))
    assert QemuVtpmValidator(AttestationConfig(Variant.QEMU_VTPM, measurements)).variant is Variant.QEMU_VTPM


# --- event logs: only an EV_NO_ACTION event with the Spec ID signature makes a log crypto-agile ---


def _sha1_event(pcr: int, event_type: int, data: bytes) -> bytes:
    return struct.pack("<II", pcr, event_type) + hashlib.sha1(data).digest() + struct.pack("<I", len(data)) + data


@pytest.mark.parametrize(
    ("event_type", "data"),
    [
        (EV_POST_CODE, spec_id_header([(SHA1, 20)])[32:]),  # the Spec ID text in a measured event
        (EV_NO_ACTION, b"not a Spec ID event"),  # an EV_NO_ACTION without the signature
    ],
    ids=["spec-id-data-not-no-action", "no-action-without-signature"],
)
def test_legacy_log_whose_first_event_only_half_looks_like_a_spec_id_event(event_type: int, data: bytes) -> None:
    raw = _sha1_event(0, event_type, data) + _sha1_event(0, EV_POST_CODE, b"b")
    log = parse_event_log(raw)
    assert log.spec_id is None and log.hash_algs == (SHA1,)
    assert [(e.event_type, e.data) for e in log.events] == [(event_type, data), (EV_POST_CODE, b"b")]
    first = bytes(20) if event_type == EV_NO_ACTION else extend(bytes(20), data, SHA1)
    assert replay(log, SHA1) == {0: extend(first, b"b", SHA1)}


@pytest.mark.parametrize("agile", [False, True], ids=["sha1-log", "agile-log"])
def test_pcr_31_is_the_last_pcr_index_of_an_event(agile: bool) -> None:
    def log(pcr: int) -> bytes:
        return agile_log(measured(pcr, b"a")) if agile else _sha1_event(pcr, EV_POST_CODE, b"a")

    assert replay(parse_event_log(log(31)), SHA1) == {31: extend(bytes(20), b"a", SHA1)}
    with pytest.raises(MalformedEvidence, match=r"PCR index 32 out of range 0\.\.31"):
        parse_event_log(log(32))


def test_log_with_five_digest_algorithms() -> None:
    """Four SHA banks plus SM3-256 (0x0012): every digest of every event is kept, in header order."""
    sm3 = 0x0012
    algs = [(SHA1, 20), (SHA256, 32), (SHA384, 48), (SHA512, 64), (sm3, 32)]
    hashers = {SHA1: hashlib.sha1, SHA256: hashlib.sha256, SHA384: hashlib.sha384, SHA512: hashlib.sha512}

    def event(pcr: int, data: bytes) -> bytes:
        digests = [(a, hashers[a](data).digest()) for a, _ in algs[:4]] + [(sm3, b"\x05" * 32)]
        return event2(pcr, EV_POST_CODE, digests, data)

    log = parse_event_log(spec_id_header(algs) + event(2, b"a") + event(2, b"b"))
    assert [[a for a, _ in ev.digests] for ev in log.events] == [[a for a, _ in algs]] * 2
    assert all(ev.digest(sm3) == b"\x05" * 32 for ev in log.events)
    for bank in (SHA1, SHA256, SHA384, SHA512):
        assert replay(log, bank) == {2: extend(extend(bytes(len(hashers[bank]().digest())), b"a", bank), b"b", bank)}


# --- the "no enforced measurement" row: only for configs that enforce nothing ----------------------


@pytest.fixture(scope="module")
def booted_document(
    swtpm_binary: Path, tpm2_pytss: Any, tmp_path_factory: pytest.TempPathFactory
) -> tuple[bytes, dict[str, dict[str, object]]]:
    """A document of a synthetically booted swtpm and its golden (enforced) measurements."""
    with booted_swtpm(tmp_path_factory.mktemp("mutation-tpm"), binary=swtpm_binary) as booted:
        document = QemuVtpmIssuer(booted.tcti, event_log_path=booted.event_log).issue(b"user data", NONCE)
        return document, booted.measurements()


def test_unenforced_warn_row_only_when_nothing_is_enforced(
    booted_document: tuple[bytes, dict[str, dict[str, object]]],
) -> None:
    document, golden = booted_document
    enforced = validator_for(load_attestation_config({"measurements": golden}, Variant.QEMU_VTPM))
    result = enforced.validate(document, NONCE)
    rows = [(c.name, c.status, c.detail) for c in result.checks if c.name == "measurements"]
    assert [status for _, status, _ in rows] == [CheckStatus.PASS], rows
    assert not [w for w in result.warnings if w.startswith("measurements")]

    warn_only = {index: {**entry, "warnOnly": True} for index, entry in golden.items()}
    config = load_attestation_config({"measurements": warn_only}, Variant.QEMU_VTPM, allow_unenforced=True)
    report = validator_for(config).evaluate(document, NONCE)
    assert report.accepted
    warn = [c.detail for c in report.checks if c.name == "measurements" and c.status is CheckStatus.WARN]
    assert len(warn) == 1 and warn[0].startswith("no enforced measurement (")
