"""``check_replay``: the second bank's replay without the per-event data marks (a speed-up of the
vTPM frame's SHA-256 check) makes every check that :func:`verify_replay` makes.

Synthetic two-bank logs (SHA-256 and SHA-512, as the AWS vector); the builders are those of
test_tpm_eventlog.py.
"""

from __future__ import annotations

import pytest
from test_tpm_eventlog import _HASHLIB, SHA256, SHA512, agile_log, event2, measured

from starlock.attestation.document import PCRs
from starlock.attestation.errors import EventLogMismatch
from starlock.attestation.tpm import parse_event_log, replay, verify_replay
from starlock.attestation.tpm.eventdata import EV_SEPARATOR
from starlock.attestation.tpm.eventlog import _replay, check_replay

BANKS = (SHA256, SHA512)
EV_IPL = 0x0D


def _extend(old: bytes, digest: bytes, bank: int) -> bytes:
    return _HASHLIB[bank](old + digest).digest()


def _forged(ev_type: int) -> tuple[bytes, dict[int, bytes]]:
    """A log whose SHA-256 digest of one ``ev_type`` event is not the hash of its data (the
    SHA-512 one is), and the SHA-256 PCR values that its digests replay to."""
    wrong = _HASHLIB[SHA256](b"something else").digest()
    forged = event2(4, ev_type, [(SHA256, wrong), (SHA512, _HASHLIB[SHA512](b"\0\0\0\0").digest())], b"\0\0\0\0")
    raw = agile_log(measured(0, b"crtm", BANKS), forged, measured(7, b"sb", BANKS), algs=BANKS)
    zero = bytes(32)
    pcrs = {
        0: _extend(zero, _HASHLIB[SHA256](b"crtm").digest(), SHA256),
        4: _extend(zero, wrong, SHA256),
        7: _extend(zero, _HASHLIB[SHA256](b"sb").digest(), SHA256),
    }
    return raw, pcrs


def test_a_data_bound_event_is_still_checked_in_the_unmarked_bank() -> None:
    raw, pcrs = _forged(EV_SEPARATOR)
    log = parse_event_log(raw)
    replay(log, SHA512)  # the other bank is consistent
    for check in (verify_replay, check_replay):
        with pytest.raises(EventLogMismatch, match=r"event 2 \(EV_SEPARATOR, PCR 4\): expected the SHA256 digest"):
            check(log, PCRs(SHA256, pcrs))


def test_an_unbound_event_passes_in_both_and_is_unmarked() -> None:
    raw, pcrs = _forged(EV_IPL)  # an EV_IPL digest may be over something else than its data
    log = parse_event_log(raw)
    check_replay(log, PCRs(SHA256, pcrs))
    assert verify_replay(log, PCRs(SHA256, pcrs)).data_verified == (True, False, True)


@pytest.mark.parametrize("index", [0, 4, 7])
def test_a_pcr_mismatch_is_refused_by_check_replay(index: int) -> None:
    raw, pcrs = _forged(EV_IPL)
    pcrs[index] = bytes(32)
    with pytest.raises(EventLogMismatch, match=rf"differs from the quoted PCRs {index}: PCR {index}: replayed"):
        check_replay(parse_event_log(raw), PCRs(SHA256, pcrs))


def test_a_pcr_missing_from_the_quote_is_refused_by_check_replay() -> None:
    raw, pcrs = _forged(EV_IPL)
    del pcrs[7]
    with pytest.raises(EventLogMismatch, match="PCR 7: in the event log but not in the quote"):
        check_replay(parse_event_log(raw), PCRs(SHA256, pcrs))


def test_unmarked_replay_has_the_same_pcrs_and_no_marks() -> None:
    raw, _ = _forged(EV_IPL)
    log = parse_event_log(raw)
    for bank in BANKS:
        marked, marks = _replay(log, bank)
        unmarked, none = _replay(log, bank, marks=False)
        assert unmarked == marked
        assert none == (False,) * len(log.events)
        assert any(marks)
