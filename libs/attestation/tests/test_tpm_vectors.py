"""Quote and event log verification on the real vectors (MANIFEST families aws-nitrotpm, gcp-vtpm)."""

from __future__ import annotations

import json
import struct
from pathlib import Path

import attrs
import pytest

from starlock.attestation.document import HASH_ALG_IDS, Attestation, AttestationDocument, PCRs, Quote
from starlock.attestation.errors import (
    EventLogMismatch,
    MalformedEvidence,
    NonceMismatch,
    PcrDigestMismatch,
    SignatureError,
    UntrustedKey,
)
from starlock.attestation.tpm import (
    DATA_BOUND_EVENT_TYPES,
    TcgEvent,
    parse_event_log,
    parse_tpms_attest,
    parse_tpmt_public,
    replay,
    verify_attestation,
    verify_quote,
    verify_replay,
)

SHA1, SHA256, SHA384, SHA512 = (HASH_ALG_IDS[n] for n in ("SHA1", "SHA256", "SHA384", "SHA512"))

AWS_DOC = "aws-nitrotpm/constellation-aws-attdoc-2023-06/attdoc-aws.txt"
AWS_EXTRA_DATA = bytes.fromhex("b3c5249a218214133262f5a943570890eca99f0f2cf6eca036f72a0f26189696")
AWS_AK_NAME = "000b5d50b949f465994a8aa735a967abf8b55f3581d854c9c66332d103396f4fe6d0"
AWS_LOG_PCRS = [0, 1, 2, 3, 4, 5, 6, 7, 9, 12, 14]

GCE_PB = "gcp-vtpm/gotpmtools-gce-cos85-nonce9009/gce-cos-85-nonce9009.pb"
GCE_AK_NAME = "000bf175bdb57297b2b289973f819863d6c9d09c236725676914f4248c9a2404c2a4"
GCE_NONCE = b"\x90\x09"  # the quotes' extraData is the 2 bytes 90 09

GCE_EVENTLOGS = "gcp-vtpm/gotpmtools-gce-eventlogs"
GCE_EVENTLOG_FILES = [
    "confidential-gke-debug-251000_eventlog.bin",
    "cos-101-amd-sev.bin",
    "cos-85-amd-sev.bin",
    "cos-93-amd-sev.bin",
    "eventlogwithsp800155.bin",
    "rhel8-uefi.bin",
    "ubuntu-1804-amd-sev.bin",
    "ubuntu-2404-amd-sevsnp.bin",
]


def serialize_event2(ev: TcgEvent) -> bytes:
    """The TCG_PCR_EVENT2 bytes of a parsed event, to find it in the raw log."""
    out = struct.pack("<III", ev.pcr_index, ev.event_type, len(ev.digests))
    out += b"".join(struct.pack("<H", a) + d for a, d in ev.digests)
    return out + struct.pack("<I", len(ev.data)) + ev.data


def remove_event(raw: bytes, ev: TcgEvent) -> bytes:
    record = serialize_event2(ev)
    assert raw.count(record) == 1
    return raw.replace(record, b"", 1)


def flip_digest(raw: bytes, ev: TcgEvent, bank: int) -> bytes:
    """Flip a bit of one event's digest in the raw log."""
    record = serialize_event2(ev)
    digest = ev.digest(bank)
    assert digest is not None and raw.count(record) == 1
    changed = record.replace(digest, bytes([digest[0] ^ 1]) + digest[1:], 1)
    return raw.replace(record, changed, 1)


# --- aws-nitrotpm/constellation-aws-attdoc-2023-06 -------------------------------------------------


@pytest.fixture(scope="module")
def aws(vectors: Path) -> Attestation:
    return AttestationDocument.from_json((vectors / AWS_DOC).read_bytes()).attestation


def test_aws_all_quotes_verify(aws: Attestation) -> None:
    """MANIFEST: "3 quotes (SHA-256, SHA-384 and SHA-512 banks, PCRs 0–23): every signature OK under
    akPub and every pcrDigest OK"; extraData = b3c5249a… (the nonce is not recorded, so the quotes'
    own extraData is checked to be that value and used)."""
    ak = parse_tpmt_public(aws.ak_pub)
    assert ak.name().hex() == AWS_AK_NAME
    assert sorted(q.pcrs.hash for q in aws.quotes) == [SHA256, SHA384, SHA512]
    for quote in aws.quotes:
        assert parse_tpms_attest(quote.quote).extra_data == AWS_EXTRA_DATA
        verified = verify_quote(ak, quote, AWS_EXTRA_DATA)
        assert verified.attest.pcr_select[0].indices == tuple(range(24))


def test_aws_verify_attestation(aws: Attestation) -> None:
    """MANIFEST "Expected": quote/PCR/event-log verification ACCEPTS with the AK as given."""
    result = verify_attestation(aws, AWS_EXTRA_DATA, parse_tpmt_public(aws.ak_pub))
    assert result.hash_alg == SHA512  # the most preferred bank
    assert result.ak_name.hex() == AWS_AK_NAME
    assert result.event_log is not None and sorted(result.event_log.pcrs) == AWS_LOG_PCRS
    assert len(result.event_log.events) == 37  # 38 events including the Spec ID header


def test_aws_event_log_replays_exactly(aws: Attestation) -> None:
    """MANIFEST: "The 38-event crypto-agile event log replays exactly to PCRs 0–7, 9, 12 and 14 in all
    three banks"."""
    log = parse_event_log(aws.event_log)
    assert len(log.events) + 1 == 38
    for quote in aws.quotes:
        replayed = replay(log, quote.pcrs.hash)
        assert sorted(replayed) == AWS_LOG_PCRS
        assert all(quote.pcrs.pcrs[i] == v for i, v in replayed.items())
        verify_replay(log, quote.pcrs)


def test_aws_sha256_pcr_values(aws: Attestation) -> None:
    """MANIFEST: SHA-256 bank PCR0 7b068c0c…, PCR4 9b89312b…, PCR7 fb71e5e5…, PCR8 = 0."""
    quote = aws.quote_for(SHA256)
    assert quote is not None
    pcrs = quote.pcrs.pcrs
    assert pcrs[0].hex() == "7b068c0c3ac29afe264134536b9be26f1d4ccd575b88d3c3ceabf36ac99c0278"
    assert pcrs[4].hex() == "9b89312ba9ca7ee090c186ccfb90ef41192822d1713b240c42d3edfbd6e878e6"
    assert pcrs[7].hex() == "fb71e5e55cefba9e2b396d17604de0fe6e1841a76758856a120833e3ad1c40a3"
    assert pcrs[8] == bytes(32)


def test_aws_flipped_quote_byte_fails_signature(aws: Attestation) -> None:
    """MANIFEST negative: any quote byte flipped → signature fails (every byte of every quote)."""
    ak = parse_tpmt_public(aws.ak_pub)
    for quote in aws.quotes:
        for i in range(len(quote.quote)):
            flipped = bytearray(quote.quote)
            flipped[i] ^= 0x01
            with pytest.raises(SignatureError):
                verify_quote(ak, Quote(bytes(flipped), quote.raw_sig, quote.pcrs), AWS_EXTRA_DATA)


def test_aws_flipped_signature_byte_fails(aws: Attestation) -> None:
    ak = parse_tpmt_public(aws.ak_pub)
    quote = aws.quotes[0]
    sig = bytearray(quote.raw_sig)
    sig[100] ^= 0x80
    with pytest.raises(SignatureError):
        verify_quote(ak, Quote(quote.quote, bytes(sig), quote.pcrs), AWS_EXTRA_DATA)


def test_aws_changed_pcr_value_fails_digest(aws: Attestation) -> None:
    """MANIFEST negative: a PCR value changed → pcrDigest mismatch (each bank, PCR 8 and PCR 23)."""
    ak = parse_tpmt_public(aws.ak_pub)
    for quote in aws.quotes:
        for index in (8, 23):
            values = dict(quote.pcrs.pcrs)
            values[index] = bytes([values[index][0] ^ 1]) + values[index][1:]
            changed = Quote(quote.quote, quote.raw_sig, PCRs(quote.pcrs.hash, values))
            with pytest.raises(PcrDigestMismatch, match="pcrDigest"):
                verify_quote(ak, changed, AWS_EXTRA_DATA)
        fewer = {i: v for i, v in quote.pcrs.pcrs.items() if i != 23}
        with pytest.raises(PcrDigestMismatch, match="pcrSelect"):
            verify_quote(ak, Quote(quote.quote, quote.raw_sig, PCRs(quote.pcrs.hash, fewer)), AWS_EXTRA_DATA)


def test_aws_changed_pcr_fails_attestation(aws: Attestation) -> None:
    """A PCR changed in every quote: verify_attestation fails with the SHA-512 quote's error kind."""
    quotes = tuple(
        Quote(q.quote, q.raw_sig, PCRs(q.pcrs.hash, dict(q.pcrs.pcrs) | {0: bytes(len(q.pcrs.pcrs[0]))}))
        for q in aws.quotes
    )
    with pytest.raises(PcrDigestMismatch) as err:
        verify_attestation(attrs.evolve(aws, quotes=quotes), AWS_EXTRA_DATA, parse_tpmt_public(aws.ak_pub))
    assert all(f"{bank} quote:" in str(err.value) for bank in ("SHA512", "SHA384", "SHA256"))


def test_aws_other_extra_data_rejected(aws: Attestation) -> None:
    """MANIFEST negative: an extraData other than SHA-256(UserData‖nonce) → REJECT."""
    other = bytes(32)
    ak = parse_tpmt_public(aws.ak_pub)
    with pytest.raises(NonceMismatch, match=f"expected {other.hex()}, got {AWS_EXTRA_DATA.hex()}"):
        verify_quote(ak, aws.quotes[0], other)
    with pytest.raises(NonceMismatch):
        verify_attestation(aws, other, ak)


def test_aws_event_removed_or_changed(aws: Attestation) -> None:
    """MANIFEST negative: an event removed or changed → replay mismatch (in every bank)."""
    ak = parse_tpmt_public(aws.ak_pub)
    log = parse_event_log(aws.event_log)
    pcr4_events = [ev for ev in log.events if ev.pcr_index == 4 and ev.event_type != 0x3]
    assert pcr4_events
    removed = remove_event(aws.event_log, pcr4_events[-1])
    # An event whose digest is not defined over its data (an EFI application: the digest is the
    # image's), so only the replay can notice; data-bound events are in test_tpm_eventdata.py.
    app = next(ev for ev in pcr4_events if ev.event_type not in DATA_BOUND_EVENT_TYPES)
    changed = flip_digest(aws.event_log, app, SHA256)
    for quote in aws.quotes:
        with pytest.raises(EventLogMismatch, match=r"PCRs 4:"):
            verify_replay(removed, quote.pcrs)
    sha256, sha512 = aws.quote_for(SHA256), aws.quote_for(SHA512)
    assert sha256 is not None and sha512 is not None
    with pytest.raises(EventLogMismatch, match=r"PCRs 4:"):
        verify_replay(changed, sha256.pcrs)
    verify_replay(changed, sha512.pcrs)  # only the SHA-256 digest was changed
    with pytest.raises(EventLogMismatch):
        verify_attestation(attrs.evolve(aws, event_log=removed), AWS_EXTRA_DATA, ak)
    # Changing only the SHA-256 digest: the SHA-512 quote still passes, as in go-tpm-tools.
    assert verify_attestation(attrs.evolve(aws, event_log=changed), AWS_EXTRA_DATA, ak).hash_alg == SHA512


def test_aws_truncated_event_log(aws: Attestation) -> None:
    log = parse_event_log(aws.event_log)
    last = serialize_event2(log.events[-1])
    assert aws.event_log.endswith(last)
    with pytest.raises(EventLogMismatch):
        verify_replay(aws.event_log[: -len(last)], aws.quotes[0].pcrs)
    with pytest.raises(MalformedEvidence):
        verify_replay(aws.event_log[:-1], aws.quotes[0].pcrs)


def test_aws_untrusted_ak(aws: Attestation) -> None:
    from test_tpm_quote import rsa_key

    with pytest.raises(UntrustedKey):
        verify_attestation(aws, AWS_EXTRA_DATA, rsa_key().public_key())


# --- gcp-vtpm/gotpmtools-gce-eventlogs ------------------------------------------------------------


@pytest.fixture(scope="module")
def expected_eventlog_pcrs(vectors: Path) -> dict[str, dict[int, dict[int, bytes]]]:
    """EXPECTED.json gcp_eventlog_expected_pcrs_from_upstream, keyed by the log's file name."""
    table = json.loads((vectors / "EXPECTED.json").read_text())["gcp_eventlog_expected_pcrs_from_upstream"]
    out: dict[str, dict[int, dict[int, bytes]]] = {}
    for entry in table.values():
        name = entry["file"].rsplit("/", 1)[-1]
        out[name] = {
            HASH_ALG_IDS[bank]: {int(i): bytes.fromhex(v) for i, v in values.items()}
            for bank, values in entry["banks"].items()
        }
    return out


@pytest.mark.parametrize("name", GCE_EVENTLOG_FILES)
def test_gce_eventlog_replays_to_upstream_values(
    name: str, vectors: Path, expected_eventlog_pcrs: dict[str, dict[int, dict[int, bytes]]]
) -> None:
    """MANIFEST gcp-vtpm/gotpmtools-gce-eventlogs: replaying each log yields exactly the PCR banks of
    EXPECTED.json gcp_eventlog_expected_pcrs_from_upstream (every bank listed there)."""
    log = parse_event_log((vectors / GCE_EVENTLOGS / name).read_bytes())
    banks = expected_eventlog_pcrs[name]
    assert banks
    for bank, expected in banks.items():
        assert replay(log, bank) == expected
        verify_replay(log, PCRs(bank, expected))


@pytest.mark.parametrize("name", GCE_EVENTLOG_FILES)
def test_gce_eventlog_modified_or_truncated(
    name: str, vectors: Path, expected_eventlog_pcrs: dict[str, dict[int, dict[int, bytes]]]
) -> None:
    """MANIFEST negative: truncate or modify any measured event → mismatch."""
    raw = (vectors / GCE_EVENTLOGS / name).read_bytes()
    log = parse_event_log(raw)
    measured_events = [ev for ev in log.events if ev.event_type != 0x3]
    for bank, expected in expected_eventlog_pcrs[name].items():
        pcrs = PCRs(bank, expected)
        for ev in (measured_events[0], measured_events[len(measured_events) // 2], measured_events[-1]):
            # A data-bound event (EV_EFI_ACTION...) is refused by its own digest before the PCRs are compared.
            bound = ev.event_type in DATA_BOUND_EVENT_TYPES
            with pytest.raises(EventLogMismatch, match=rf"event {ev.number} \(" if bound else rf"PCRs {ev.pcr_index}:"):
                verify_replay(flip_digest(raw, ev, bank), pcrs)
        last = serialize_event2(log.events[-1])
        assert raw.endswith(last)
        with pytest.raises(EventLogMismatch):
            verify_replay(raw[: -len(last)], pcrs)
        with pytest.raises(MalformedEvidence):
            verify_replay(raw[:-3], pcrs)


def test_gce_eventlogs_cover_expected_table(expected_eventlog_pcrs: dict[str, dict[int, dict[int, bytes]]]) -> None:
    assert set(GCE_EVENTLOG_FILES) <= set(expected_eventlog_pcrs)


# --- gcp-vtpm/gotpmtools-gce-cos85-nonce9009 ------------------------------------------------------


@pytest.fixture(scope="module")
def gce(vectors: Path) -> Attestation:
    from starlock.attestation._proto.convert import attestation_from_pb

    return attestation_from_pb((vectors / GCE_PB).read_bytes())


def test_gce_quotes_verify_with_nonce_9009(gce: Attestation) -> None:
    """MANIFEST: quotes over SHA-1, SHA-256 and SHA-384, PCRs 0–23, RSASSA-SHA256, extraData 9009
    (the 2 bytes 90 09); AK name 000bf175…."""
    ak = parse_tpmt_public(gce.ak_pub)
    assert ak.name().hex() == GCE_AK_NAME
    assert sorted(q.pcrs.hash for q in gce.quotes) == [SHA1, SHA256, SHA384]
    for quote in gce.quotes:
        verified = verify_quote(ak, quote, GCE_NONCE)
        assert verified.attest.extra_data == GCE_NONCE
        assert verified.attest.pcr_select[0].indices == tuple(range(24))
    result = verify_attestation(gce, GCE_NONCE, ak)
    assert result.hash_alg == SHA384


def test_gce_event_log_replays_pcrs_0_to_9(gce: Attestation) -> None:
    """MANIFEST: the 45-event log replays exactly to PCRs 0–9 in all banks."""
    log = parse_event_log(gce.event_log)
    assert len(log.events) + 1 == 45
    for quote in gce.quotes:
        assert sorted(verify_replay(log, quote.pcrs).pcrs) == list(range(10))


def test_gce_sha256_pcr_values(gce: Attestation) -> None:
    """MANIFEST: SHA-256 PCR0 0f35c214…, PCR4 d690bdac…, PCR7 3365d7fa…, PCR9 e01c8cf8…."""
    quote = gce.quote_for(SHA256)
    assert quote is not None
    pcrs = quote.pcrs.pcrs
    assert pcrs[0].hex() == "0f35c214608d93c7a6e68ae7359b4a8be5a0e99eea9107ece427c4dea4e439cf"
    assert pcrs[4].hex() == "d690bdac2aa8b73a1d718cb91990df07d0747b07ea57b3b2d0f0d511f0d90491"
    assert pcrs[7].hex() == "3365d7fa2b024c852913c06e04ffbfa6ea5289f743bbf1a76f7ffdf21ed84793"
    assert pcrs[9].hex() == "e01c8cf808763422c5ede2cdb34595b92bd7d06b8bbd6014b54d2e95b14b0963"


def test_gce_other_nonce_rejected(gce: Attestation) -> None:
    """MANIFEST "More negatives": nonce ≠ 9009."""
    ak = parse_tpmt_public(gce.ak_pub)
    for nonce in (b"\x90\x08", b"9009", b"\x00\x90\x09", b""):
        with pytest.raises(NonceMismatch):
            verify_attestation(gce, nonce, ak)


def test_gce_flipped_quote_byte_rejected(gce: Attestation) -> None:
    """MANIFEST "More negatives": a flipped quote byte (signature fails)."""
    ak = parse_tpmt_public(gce.ak_pub)
    for quote in gce.quotes:
        flipped = bytearray(quote.quote)
        flipped[len(flipped) // 2] ^= 0x01
        with pytest.raises(SignatureError):
            verify_quote(ak, Quote(bytes(flipped), quote.raw_sig, quote.pcrs), GCE_NONCE)


def test_gce_sha1_quote_needs_allow_sha1(gce: Attestation) -> None:
    """Upstream verify_test.go hash-selection cases: a SHA-1-only attestation needs AllowSHA1."""
    ak = parse_tpmt_public(gce.ak_pub)
    sha1_only = attrs.evolve(gce, quotes=tuple(q for q in gce.quotes if q.pcrs.hash == SHA1))
    with pytest.raises(MalformedEvidence, match="no quote over an allowed bank"):
        verify_attestation(sha1_only, GCE_NONCE, ak)
    assert verify_attestation(sha1_only, GCE_NONCE, ak, allow_sha1=True).hash_alg == SHA1
