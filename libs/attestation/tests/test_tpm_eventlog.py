"""TCG event log parsing and replay on synthetic logs (TCG PC Client Platform Firmware Profile §10).

The real-vector replays (gcp-vtpm/gotpmtools-gce-eventlogs, aws-nitrotpm) are in test_tpm_vectors.py.
The builders here write logs for the tests only; they are not the library's event log writer.
"""

from __future__ import annotations

import hashlib
import struct

import attrs
import pytest
from byte_edits import EDITS, apply_edits, outcome
from hypothesis import given, settings
from hypothesis import strategies as st

from starlock.attestation.document import PCRs
from starlock.attestation.errors import EventLogMismatch, MalformedEvidence
from starlock.attestation.tpm import EventLog, _specid, eventlog, parse_event_log, replay, verify_replay
from starlock.attestation.tpm import algorithms as alg
from starlock.attestation.tpm._reader import Reader
from starlock.attestation.tpm.eventlog import MAX_EVENT_DATA_SIZE, MAX_EVENT_LOG_SIZE

SHA1, SHA256, SHA384, SHA512 = alg.TPM_ALG_SHA1, alg.TPM_ALG_SHA256, alg.TPM_ALG_SHA384, alg.TPM_ALG_SHA512
EV_NO_ACTION, EV_POST_CODE, EV_SEPARATOR = 0x3, 0x1, 0x4
_HASHLIB = {SHA1: hashlib.sha1, SHA256: hashlib.sha256, SHA384: hashlib.sha384, SHA512: hashlib.sha512}
_SIZES = {SHA1: 20, SHA256: 32, SHA384: 48, SHA512: 64}


def spec_id_header(algs: list[tuple[int, int]], vendor: bytes = b"") -> bytes:
    data = b"Spec ID Event03\x00" + struct.pack("<IBBBBI", 0, 0, 2, 0, 2, len(algs))
    data += b"".join(struct.pack("<HH", a, s) for a, s in algs)
    data += struct.pack("<B", len(vendor)) + vendor
    return struct.pack("<II", 0, EV_NO_ACTION) + bytes(20) + struct.pack("<I", len(data)) + data


def event2(pcr: int, ev_type: int, digests: list[tuple[int, bytes]], data: bytes) -> bytes:
    out = struct.pack("<III", pcr, ev_type, len(digests))
    out += b"".join(struct.pack("<H", a) + d for a, d in digests)
    return out + struct.pack("<I", len(data)) + data


def measured(pcr: int, data: bytes, algs: tuple[int, ...] = (SHA1, SHA256), ev_type: int = EV_POST_CODE) -> bytes:
    return event2(pcr, ev_type, [(a, _HASHLIB[a](data).digest()) for a in algs], data)


def no_action(data: bytes, algs: tuple[int, ...] = (SHA1, SHA256), pcr: int = 0) -> bytes:
    return event2(pcr, EV_NO_ACTION, [(a, bytes(_SIZES[a])) for a in algs], data)


def extend(old: bytes, data: bytes, hash_alg: int) -> bytes:
    h = _HASHLIB[hash_alg]
    return h(old + h(data).digest()).digest()


def agile_log(*events: bytes, algs: tuple[int, ...] = (SHA1, SHA256)) -> bytes:
    return spec_id_header([(a, _SIZES[a]) for a in algs]) + b"".join(events)


def test_replay_two_banks() -> None:
    raw = agile_log(measured(0, b"crtm"), measured(0, b"firmware"), measured(7, b"sb"), measured(4, b"boot"))
    log = parse_event_log(raw)
    assert log.spec_id is not None and log.hash_algs == (SHA1, SHA256)
    assert [e.number for e in log.events] == [1, 2, 3, 4]
    for bank in (SHA1, SHA256):
        size = _SIZES[bank]
        pcr0 = extend(extend(bytes(size), b"crtm", bank), b"firmware", bank)
        expected = {0: pcr0, 4: extend(bytes(size), b"boot", bank), 7: extend(bytes(size), b"sb", bank)}
        assert replay(log, bank) == expected
        assert replay(raw, bank) == expected  # bytes are parsed on the fly


def test_startup_locality_sets_pcr0_initial_value() -> None:
    raw = agile_log(no_action(b"StartupLocality\x00\x03"), measured(0, b"crtm"))
    pcrs = replay(parse_event_log(raw), SHA256)
    assert pcrs[0] == extend(bytes(31) + b"\x03", b"crtm", SHA256)


def test_startup_locality_alone_and_after_extension() -> None:
    assert replay(agile_log(no_action(b"StartupLocality\x00\x04")), SHA1) == {0: bytes(19) + b"\x04"}
    late = agile_log(measured(0, b"crtm"), no_action(b"StartupLocality\x00\x03"))
    with pytest.raises(MalformedEvidence, match="StartupLocality after PCR 0"):
        replay(late, SHA256)
    with pytest.raises(MalformedEvidence, match="locality byte"):
        replay(agile_log(no_action(b"StartupLocality\x00")), SHA256)


def test_no_action_events_are_not_extended() -> None:
    raw = agile_log(no_action(b"SP800-155 Event\x00", pcr=0), no_action(b"other", pcr=5), measured(1, b"x"))
    assert replay(raw, SHA256) == {1: extend(bytes(32), b"x", SHA256)}


def test_legacy_sha1_log() -> None:
    def sha1_event(pcr: int, data: bytes) -> bytes:
        return struct.pack("<II", pcr, EV_POST_CODE) + hashlib.sha1(data).digest() + struct.pack("<I", len(data)) + data

    raw = sha1_event(0, b"a") + sha1_event(0, b"b") + sha1_event(2, b"c")
    log = parse_event_log(raw)
    assert log.spec_id is None and log.hash_algs == (SHA1,)
    assert [e.number for e in log.events] == [0, 1, 2]
    assert replay(log, SHA1) == {0: extend(extend(bytes(20), b"a", SHA1), b"b", SHA1), 2: extend(bytes(20), b"c", SHA1)}
    with pytest.raises(EventLogMismatch, match="no SHA256 digests"):
        replay(log, SHA256)


def test_empty_log() -> None:
    log = parse_event_log(b"")
    assert log.events == () and replay(log, SHA1) == {}


def _pcrs(bank: int, values: dict[int, bytes]) -> PCRs:
    return PCRs(hash=bank, pcrs=values)


def test_verify_replay_names_every_mismatching_pcr() -> None:
    raw = agile_log(measured(0, b"a"), measured(4, b"b"), measured(7, b"c"))
    good = replay(raw, SHA256)
    quoted = dict(good) | {8: bytes(32), 23: bytes(32)}  # PCRs the log does not touch are not compared
    result = verify_replay(raw, _pcrs(SHA256, quoted))
    assert result.pcrs == good and result.hash_alg == SHA256 and len(result.events) == 3

    wrong = dict(quoted) | {0: bytes(32), 7: b"\x01" * 32}
    with pytest.raises(EventLogMismatch) as err:
        verify_replay(raw, _pcrs(SHA256, wrong))
    message = str(err.value)
    assert "differs from the quoted PCRs 0, 7:" in message
    assert f"PCR 0: replayed {good[0].hex()}, quoted {bytes(32).hex()}" in message
    assert "PCR 4" not in message

    missing = {k: v for k, v in quoted.items() if k != 4}
    with pytest.raises(EventLogMismatch, match="PCR 4: in the event log but not in the quote"):
        verify_replay(raw, _pcrs(SHA256, missing))


def test_removed_or_changed_event_is_a_mismatch() -> None:
    raw = agile_log(measured(0, b"a"), measured(4, b"b"), measured(4, b"c"))
    quoted = _pcrs(SHA256, replay(raw, SHA256))
    log = parse_event_log(raw)
    removed = attrs.evolve(log, events=log.events[:1] + log.events[2:])
    with pytest.raises(EventLogMismatch, match="PCR 4"):
        verify_replay(removed, quoted)
    changed = agile_log(measured(0, b"a"), measured(4, b"B"), measured(4, b"c"))
    with pytest.raises(EventLogMismatch, match="PCR 4"):
        verify_replay(changed, quoted)


def test_event_without_the_bank_digest() -> None:
    raw = agile_log(measured(0, b"a"), measured(1, b"b", algs=(SHA1,)))
    assert 1 in replay(raw, SHA1)
    with pytest.raises(EventLogMismatch, match=r"event 2 \(PCR 1\) has no SHA256 digest"):
        replay(raw, SHA256)


def test_unknown_algorithm_uses_header_size() -> None:
    header = spec_id_header([(SHA256, 32), (0x0027, 48)])  # SHA3-256-like id with a declared size
    raw = header + event2(3, EV_POST_CODE, [(SHA256, hashlib.sha256(b"x").digest()), (0x0027, b"\x07" * 48)], b"x")
    log = parse_event_log(raw)
    assert log.events[0].digest(0x0027) == b"\x07" * 48
    assert replay(log, SHA256) == {3: extend(bytes(32), b"x", SHA256)}
    with pytest.raises(MalformedEvidence, match="not a supported hash"):
        replay(log, 0x0027)


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (agile_log(measured(0, b"a"))[:-1], "truncated event data"),
        (agile_log(event2(0, 1, [(SHA1, bytes(20))] * 3, b"")), "3 digests"),
        (agile_log(event2(0, 1, [(SHA384, bytes(48))], b"")), "not in the Spec ID header"),
        (agile_log(event2(0, 1, [(SHA1, bytes(20)), (SHA1, bytes(20))], b"")), "two SHA1 digests"),
        (agile_log(event2(32, 1, [], b"")), "PCR index 32"),
        (agile_log(struct.pack("<IIII", 0, 1, 0, MAX_EVENT_DATA_SIZE + 1)), "eventSize"),
        (spec_id_header([(SHA256, 31)]), "size 31 is wrong for SHA256"),
        (spec_id_header([(SHA256, 32), (SHA256, 32)]), "listed twice"),
        (spec_id_header([]), "numberOfAlgorithms"),
        (spec_id_header([(SHA256, 32)])[:-1] + b"\x01", "needs 1 bytes"),
        (bytes(MAX_EVENT_LOG_SIZE + 1), "more than the limit"),
    ],
    ids=[
        "truncated",
        "count>algs",
        "alg not in header",
        "duplicate alg",
        "pcr index",
        "event size",
        "header size",
        "header duplicate",
        "no algorithms",
        "vendor info",
        "log size",
    ],
)
def test_malformed_logs(raw: bytes, message: str) -> None:
    with pytest.raises(MalformedEvidence, match=message):
        parse_event_log(raw)


def test_spec_id_header_trailing_bytes_rejected() -> None:
    header = bytearray(spec_id_header([(SHA256, 32)]))
    # Grow the header event's data by one byte (eventSize is at offset 28).
    size = struct.unpack_from("<I", header, 28)[0]
    struct.pack_into("<I", header, 28, size + 1)
    with pytest.raises(MalformedEvidence, match="trailing"):
        parse_event_log(bytes(header) + b"\x00")


def test_event_log_is_a_value() -> None:
    raw = agile_log(measured(0, b"a"))
    assert parse_event_log(raw) == parse_event_log(raw)
    assert isinstance(parse_event_log(raw), EventLog)


# --- the Spec ID header: the struct fast path answers only as the field-by-field reader does ---


_SPEC_DATA = [
    spec_id_header(algs, vendor)[32:]  # the event data, past the SHA-1 event header
    for algs, vendor in (
        ([(SHA1, 20), (SHA256, 32), (SHA384, 48), (SHA512, 64)], b""),
        ([(SHA256, 32)], b"vendor"),
        ([(SHA256, 32), (0x0027, 48)], b"\x00"),
    )
]


@pytest.mark.parametrize("data", _SPEC_DATA, ids=range(len(_SPEC_DATA)))
def test_spec_id_well_formed_headers_take_the_fast_path(data: bytes) -> None:
    fast = _specid._spec_id_fast(data)
    assert fast is not None
    assert fast == _specid._spec_id_checked(data)


@settings(max_examples=500, deadline=None)
@given(st.sampled_from(_SPEC_DATA), EDITS, st.integers(0, 80))
def test_spec_id_fast_path_agrees_with_the_reader(data: bytes, edits: list[tuple[int, int, str]], cut: int) -> None:
    edited = apply_edits(data, edits)
    if cut % 5 == 0:
        edited = edited[: len(edited) - cut % 4]
    checked = outcome(_specid._spec_id_checked, edited)
    fast = _specid._spec_id_fast(edited)
    if fast is not None:
        assert fast == checked
    assert outcome(_specid.parse_spec_id, edited) == checked


# --- a TCG_PCR_EVENT (SHA-1 format): the struct fast path reads what the checked reader reads ---


def _sha1_outcome(read: object, data: bytes) -> object:
    r = Reader(data, "event log", little_endian=True)
    try:
        return read(r, 5), r.pos  # type: ignore[operator]
    except MalformedEvidence as exc:
        return str(exc)


_SHA1_RECORDS = [
    struct.pack("<II", 7, EV_SEPARATOR) + bytes(range(20)) + struct.pack("<I", 4) + b"\x00" * 4,
    struct.pack("<II", 0, EV_NO_ACTION) + bytes(20) + struct.pack("<I", 0),
    struct.pack("<II", 31, 0x80000001) + b"\xff" * 20 + struct.pack("<I", 3) + b"abc" + b"next",
]


@settings(max_examples=400, deadline=None)
@given(
    st.sampled_from(_SHA1_RECORDS),
    st.lists(st.tuples(st.integers(0, 40), st.integers(0, 255)), max_size=3),
    st.integers(0, 40),
)
def test_sha1_record_fast_path_agrees_with_the_reader(record: bytes, edits: list[tuple[int, int]], cut: int) -> None:
    raw = bytearray(record)
    for at, value in edits:
        if at < len(raw):
            raw[at] = value
    edited = bytes(raw[: max(0, len(raw) - cut)]) if cut % 3 == 0 else bytes(raw)
    assert _sha1_outcome(eventlog._read_sha1_event, edited) == _sha1_outcome(eventlog._read_sha1_event_checked, edited)


def test_sha1_record_larger_than_the_data_bound_is_refused() -> None:
    big = MAX_EVENT_DATA_SIZE + 1
    record = struct.pack("<II", 0, EV_SEPARATOR) + bytes(20) + struct.pack("<I", big) + bytes(big)
    outcome = _sha1_outcome(eventlog._read_sha1_event, record)
    assert outcome == _sha1_outcome(eventlog._read_sha1_event_checked, record)
    assert isinstance(outcome, str) and f"more than {MAX_EVENT_DATA_SIZE}" in outcome
