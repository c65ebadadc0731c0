"""A replay without the per-event data marks (``verify_replay(..., marks=False)``, for a bank
whose marks nobody reads) makes every check that :func:`verify_replay` makes; the vTPM frame reads the
marks in the SHA-256 bank.

Synthetic two-bank logs (SHA-256 and SHA-512, as the AWS vector); the builders are those of
test_tpm_eventlog.py.
"""

from __future__ import annotations

import pytest
from test_tpm_eventlog import _HASHLIB, SHA256, SHA512, agile_log, event2, measured
from test_tpm_quote import RSASSA, ak_for, make_quote, pcr_values, rsa_key

from starlock.attestation import Variant, load_attestation_config
from starlock.attestation.document import Attestation, AttestationDocument, PCRs
from starlock.attestation.errors import EventLogMismatch
from starlock.attestation.qemu import QemuVtpmValidator
from starlock.attestation.tpm import parse_event_log, replay, verify_replay
from starlock.attestation.tpm.eventdata import EV_SEPARATOR
from starlock.attestation.tpm.eventlog import _replay
from starlock.attestation.vtpm import make_extra_data, make_tpm_nonce

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
    for marks in (True, False):
        with pytest.raises(EventLogMismatch, match=r"event 2 \(EV_SEPARATOR, PCR 4\): expected the SHA256 digest"):
            verify_replay(log, PCRs(SHA256, pcrs), marks=marks)


def test_an_unbound_event_passes_in_both_and_is_unmarked() -> None:
    raw, pcrs = _forged(EV_IPL)  # an EV_IPL digest may be over something else than its data
    log = parse_event_log(raw)
    verify_replay(log, PCRs(SHA256, pcrs), marks=False)
    assert verify_replay(log, PCRs(SHA256, pcrs)).data_verified == (True, False, True)


@pytest.mark.parametrize("index", [0, 4, 7])
def test_a_pcr_mismatch_is_refused_without_marks(index: int) -> None:
    raw, pcrs = _forged(EV_IPL)
    pcrs[index] = bytes(32)
    with pytest.raises(EventLogMismatch, match=rf"differs from the quoted PCRs {index}: PCR {index}: replayed"):
        verify_replay(parse_event_log(raw), PCRs(SHA256, pcrs), marks=False)


def test_a_pcr_missing_from_the_quote_is_refused_without_marks() -> None:
    raw, pcrs = _forged(EV_IPL)
    del pcrs[7]
    with pytest.raises(EventLogMismatch, match="PCR 7: in the event log but not in the quote"):
        verify_replay(parse_event_log(raw), PCRs(SHA256, pcrs), marks=False)


def test_unmarked_replay_has_the_same_pcrs_and_no_marks() -> None:
    raw, _ = _forged(EV_IPL)
    log = parse_event_log(raw)
    for bank in BANKS:
        marked, marks = _replay(log, bank)
        unmarked, none = _replay(log, bank, marks=False)
        assert unmarked == marked
        assert none == (False,) * len(log.events)
        assert any(marks)


# --- the vTPM frame reads the data marks in the SHA-256 bank ------------------------------------


def _two_bank_document(*, sha512_nonce_ok: bool = True) -> tuple[bytes, bytes, dict[int, bytes]]:
    """A signed SHA-512 + SHA-256 document whose EV_IPL event 2 is bound to its data only in the
    SHA-256 bank (its SHA-512 digest is over something else, as an EV_IPL digest may be)."""
    digests = [(SHA256, _HASHLIB[SHA256](b"kernel").digest()), (SHA512, _HASHLIB[SHA512](b"image").digest())]
    ipl = event2(4, EV_IPL, digests, b"kernel")
    raw_log = agile_log(measured(0, b"crtm", BANKS), ipl, measured(7, b"sb", BANKS), algs=BANKS)
    key, nonce, user_data = rsa_key(), b"fresh nonce", b"\x42" * 32
    tpm_nonce = make_tpm_nonce(b"", make_extra_data(user_data, nonce))
    quotes = []
    for bank in (SHA512, SHA256):
        values = pcr_values(bank) | replay(raw_log, bank)
        ok = sha512_nonce_ok or bank == SHA256
        quotes.append(make_quote(key, bank, extra_data=tpm_nonce if ok else b"\0" * 32, pcrs=values))
    att = Attestation(ak_pub=ak_for(key, RSASSA).raw, quotes=tuple(quotes), event_log=raw_log)
    doc = AttestationDocument(attestation=att, instance_info=b"", user_data=user_data).to_json()
    return doc, nonce, quotes[1].pcrs.pcrs


@pytest.mark.parametrize("sha512_wins", [True, False], ids=["sha512-quote-wins", "sha512-quote-fails"])
def test_the_frame_marks_event_data_in_the_sha256_bank(sha512_wins: bool) -> None:
    doc, nonce, sha256_pcrs = _two_bank_document(sha512_nonce_ok=sha512_wins)
    measurements = {str(i): {"expected": v.hex(), "warnOnly": False} for i, v in sha256_pcrs.items()}
    validator = QemuVtpmValidator(load_attestation_config({"measurements": measurements}, Variant.QEMU_VTPM))
    report = validator.evaluate(doc, nonce)
    assert report.accepted, report.error
    assert [c.detail.split(" quote:")[0] for c in report.checks if c.name == "tpm-quotes"] == [
        "SHA512" if sha512_wins else "SHA256"
    ]
    # Event 2's data ("kernel") is the preimage of its SHA-256 digest, not of its SHA-512 one.
    assert report.claims["event_log_data_verified"] == [1, 2, 3]
    assert report.claims["event_log_events"] == 3
    event_log_row = next(c for c in report.checks if c.name == "event-log")
    assert "the data of 3 of them is bound" in event_log_row.detail
