"""Event data bound to event digests (TCG PC Client PFP §10.4.1; starlock.attestation.tpm.eventdata).

Review finding: replay checked digests only, so an event's data (a kernel command line, an action
string) could change while its digest stayed. Now EV_SEPARATOR, EV_ACTION, EV_EFI_ACTION and
EV_EFI_VARIABLE_DRIVER_CONFIG events must have digest == H(data), and the replay marks every event
whose data is verified. Real logs: gcp-vtpm/gotpmtools-gce-eventlogs (MANIFEST: every log replays
to the upstream PCRs of EXPECTED.json), aws-nitrotpm/constellation-aws-attdoc-2023-06.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

import attrs
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from test_tpm_eventlog import EV_POST_CODE, SHA1, SHA256, agile_log, event2, no_action

from starlock.attestation.document import AttestationDocument, PCRs
from starlock.attestation.errors import EventLogMismatch
from starlock.attestation.tpm import DATA_BOUND_EVENT_TYPES, parse_event_log, replay, verify_replay
from starlock.attestation.tpm.eventdata import EV_ACTION, EV_EFI_ACTION, EV_EFI_VARIABLE_DRIVER_CONFIG, EV_SEPARATOR

EV_IPL, EV_EFI_BOOT_SERVICES_APPLICATION, EV_EFI_VARIABLE_BOOT = 0xD, 0x80000003, 0x80000002
EV_EFI_VARIABLE_AUTHORITY = 0x800000E0
GCE_EVENTLOGS = Path("gcp-vtpm/gotpmtools-gce-eventlogs")
AWS_DOC = Path("aws-nitrotpm/constellation-aws-attdoc-2023-06/attdoc-aws.txt")
_H = {SHA1: hashlib.sha1, SHA256: hashlib.sha256}

CALLING = b"Calling EFI Application from Boot Option"
SECURE_BOOT_VAR = (
    bytes.fromhex("61dfe48bca93d211aa0d00e098032b8c")  # EFI_GLOBAL_VARIABLE
    + (10).to_bytes(8, "little")
    + (1).to_bytes(8, "little")
    + "SecureBoot".encode("utf-16-le")
    + b"\x01"
)
BOUND_EXAMPLES = [
    (EV_SEPARATOR, 7, b"\x00\x00\x00\x00"),
    (EV_ACTION, 4, b"Calling INT 19h"),
    (EV_EFI_ACTION, 4, CALLING),
    (EV_EFI_VARIABLE_DRIVER_CONFIG, 7, SECURE_BOOT_VAR),
]
BOUND_IDS = ["separator", "action", "efi-action", "driver-config"]


def logged(pcr: int, ev_type: int, data: bytes, measured_bytes: bytes) -> bytes:
    """An event logging ``data`` whose digests (SHA-1, SHA-256) are of ``measured_bytes``."""
    return event2(pcr, ev_type, [(a, _H[a](measured_bytes).digest()) for a in (SHA1, SHA256)], data)


def _pcrs(raw: bytes, bank: int) -> PCRs:
    """The PCR values of ``raw`` computed here, independently of the library's replay."""
    h = _H[bank]
    values: dict[int, bytes] = {}
    for ev in parse_event_log(raw).events:
        digest = ev.digest(bank)
        if ev.event_type != 0x3 and digest is not None:
            values[ev.pcr_index] = h(values.get(ev.pcr_index, bytes(h().digest_size)) + digest).digest()
    return PCRs(bank, values)


def test_the_bound_types_are_exactly_these() -> None:
    assert {EV_SEPARATOR, EV_ACTION, EV_EFI_ACTION, EV_EFI_VARIABLE_DRIVER_CONFIG} == DATA_BOUND_EVENT_TYPES


@pytest.mark.parametrize(("ev_type", "pcr", "data"), BOUND_EXAMPLES, ids=BOUND_IDS)
def test_bound_event_with_its_own_digest_is_verified(ev_type: int, pcr: int, data: bytes) -> None:
    post_code = logged(0, EV_POST_CODE, b"POST CODE", b"the firmware volume")  # digest of the volume
    raw = agile_log(post_code, logged(pcr, ev_type, data, data))
    for bank in (SHA1, SHA256):
        result = verify_replay(raw, _pcrs(raw, bank))
        assert result.data_verified == (False, True)
        assert [ev.number for ev in result.verified_events] == [2]
        assert [ev.number for ev in result.unverified_events] == [1]


@pytest.mark.parametrize(("ev_type", "pcr", "data"), BOUND_EXAMPLES, ids=BOUND_IDS)
@pytest.mark.parametrize(
    "change",
    [lambda d: b"", lambda d: d[:-1], lambda d: d[:1], lambda d: d + b"\x00", lambda d: b"\xff" + d[1:]],
    ids=["emptied", "truncated", "1-byte-prefix", "extended", "first-byte"],
)
def test_bound_event_whose_data_changed_is_refused(ev_type: int, pcr: int, data: bytes, change: object) -> None:
    """The digest stays (so the PCRs still replay); only the logged data changed."""
    forged = change(data)  # type: ignore[operator]
    raw = agile_log(logged(pcr, ev_type, forged, data))
    for bank in (SHA1, SHA256):
        pcrs = _pcrs(raw, bank)
        with pytest.raises(EventLogMismatch) as err:
            verify_replay(raw, pcrs)
        message = str(err.value)
        assert "event 1 (" in message and f"PCR {pcr}" in message
        assert f"got {_H[bank](data).hexdigest()}" in message
        assert f"hash of the event data ({_H[bank](forged).hexdigest()})" in message
        with pytest.raises(EventLogMismatch):
            replay(raw, bank)


def test_a_kernel_command_line_in_ev_ipl_is_marked_not_refused() -> None:
    """EV_IPL is not bound by the PFP (grub hashes without its prefix, shim hashes a file's content)."""
    cmdline = b"console=ttyS0 root=/dev/vda2 ro"
    bound = logged(12, EV_IPL, cmdline, cmdline)  # systemd-stub style: the digest is of the data
    forged = logged(12, EV_IPL, cmdline + b" init=/bin/sh", cmdline)  # same digest, other data
    grub = logged(8, EV_IPL, b"kernel_cmdline: " + cmdline + b"\x00", cmdline)
    raw = agile_log(bound, forged, grub)
    result = verify_replay(raw, _pcrs(raw, SHA256))
    assert result.data_verified == (True, False, False)
    assert result.verified_events[0].data == cmdline
    assert result.unverified_events[0].data == cmdline + b" init=/bin/sh"
    assert result.unverified_events[1].data.startswith(b"kernel_cmdline: ")


def test_application_and_no_action_events_are_not_verified() -> None:
    image = b"a boot loader image"
    load_event = b"\x00" * 32  # UEFI_IMAGE_LOAD_EVENT: describes the image, is not the image
    raw = agile_log(
        no_action(b"StartupLocality\x00\x03"), logged(4, EV_EFI_BOOT_SERVICES_APPLICATION, load_event, image)
    )
    pcrs = _pcrs(raw, SHA256)
    pcrs = PCRs(SHA256, {**pcrs.pcrs, 0: bytes(31) + b"\x03"})
    result = verify_replay(raw, pcrs)
    assert result.data_verified == (False, False)
    assert result.verified_events == ()


def test_marks_are_per_bank() -> None:
    """Only the replayed bank's digest counts: a SHA-1 digest that binds says nothing of SHA-256."""
    data = b"some event"
    mixed = event2(9, EV_IPL, [(SHA1, hashlib.sha1(data).digest()), (SHA256, hashlib.sha256(b"other").digest())], data)
    raw = agile_log(mixed)
    assert verify_replay(raw, _pcrs(raw, SHA1)).data_verified == (True,)
    assert verify_replay(raw, _pcrs(raw, SHA256)).data_verified == (False,)


def test_legacy_sha1_log_separators_are_bound_too() -> None:
    sep = b"\x00\x00\x00\x00"
    header = (7).to_bytes(4, "little") + EV_SEPARATOR.to_bytes(4, "little")
    good = header + hashlib.sha1(sep).digest() + len(sep).to_bytes(4, "little") + sep
    bad = header + hashlib.sha1(sep).digest() + (4).to_bytes(4, "little") + b"\xff\xff\xff\xff"
    assert parse_event_log(good).spec_id is None
    assert replay(good, SHA1) == {7: hashlib.sha1(bytes(20) + hashlib.sha1(sep).digest()).digest()}
    with pytest.raises(EventLogMismatch, match="EV_SEPARATOR"):
        replay(bad, SHA1)


# --- real logs --------------------------------------------------------------------------------


def _real_logs(vectors: Path) -> dict[str, bytes]:
    logs = {p.name: p.read_bytes() for p in sorted((vectors / GCE_EVENTLOGS).glob("*.bin"))}
    logs["aws"] = AttestationDocument.from_json((vectors / AWS_DOC).read_bytes()).attestation.event_log
    return logs


def test_real_logs_bind_every_bound_event_and_mark_the_rest(vectors: Path) -> None:
    """Every data-bound event of the real logs is verified (else they would not replay); the marks
    of the others are facts of those logs: EV_EFI_VARIABLE_BOOT (EDK2 hashes only VariableData) and
    EV_EFI_BOOT_SERVICES_APPLICATION are never verified; 4 "db" authority events of COS 85/93 are not."""
    logs = _real_logs(vectors)
    assert len(logs) == 9
    unverified_authority: list[tuple[str, int]] = []
    for name, raw in logs.items():
        log = parse_event_log(raw)
        for bank in (b for b in (SHA1, SHA256) if b in log.hash_algs):
            result = verify_replay(log, PCRs(bank, replay(log, bank)))
            assert len(result.data_verified) == len(log.events)
            for ev, ok in zip(result.events, result.data_verified, strict=True):
                expected = ev.event_type != 0x3 and _H[bank](ev.data).digest() == ev.digest(bank)
                assert ok is expected, (name, ev.number)
                if ev.event_type in DATA_BOUND_EVENT_TYPES:
                    assert ok, (name, ev.number)
                if ev.event_type in (EV_EFI_VARIABLE_BOOT, EV_EFI_BOOT_SERVICES_APPLICATION):
                    assert not ok, (name, ev.number)
                if ev.event_type == EV_EFI_VARIABLE_AUTHORITY and not ok and bank == SHA256:
                    unverified_authority.append((name, ev.number))
    assert unverified_authority == [
        ("cos-85-amd-sev.bin", 24),
        ("cos-85-amd-sev.bin", 42),
        ("cos-93-amd-sev.bin", 24),
        ("cos-93-amd-sev.bin", 42),
    ]


# --- what a validator reports ---------------------------------------------------------------------


def test_validator_reports_which_event_data_is_verified() -> None:
    from test_tpm_quote import rsa_key
    from test_variant_common import make_document

    from starlock.attestation import CheckStatus, Variant, load_attestation_config, validator_for

    nonce, sep = b"\x05" * 32, b"\x00\x00\x00\x00"
    config = load_attestation_config(
        {"measurements": {"5": {"expected": hashlib.sha256(b"\x05").hexdigest(), "warnOnly": False}}},
        Variant.QEMU_VTPM,
    )
    good_log = agile_log(logged(0, EV_POST_CODE, b"POST CODE", b"firmware volume"), logged(0, EV_SEPARATOR, sep, sep))
    report = validator_for(config).evaluate(make_document(rsa_key(), nonce=nonce, event_log=good_log), nonce)
    assert report.accepted, report.error
    row = next(c for c in report.checks if c.name == "event-log")
    assert row.status is CheckStatus.PASS
    assert "2 events replay" in row.detail and "the data of 1 of them is bound to their digest" in row.detail
    assert report.claims["event_log_data_verified"] == [2]

    # The attack: same digests (so the quoted PCRs still replay), other separator data.
    forged_log = agile_log(
        logged(0, EV_POST_CODE, b"POST CODE", b"firmware volume"), logged(0, EV_SEPARATOR, b"\xff" * 4, sep)
    )
    doc = AttestationDocument.from_json(make_document(rsa_key(), nonce=nonce, event_log=good_log))
    forged_doc = AttestationDocument(
        attrs.evolve(doc.attestation, event_log=forged_log), instance_info=doc.instance_info, user_data=doc.user_data
    ).to_json()
    forged = validator_for(config).evaluate(forged_doc, nonce)
    assert not forged.accepted and isinstance(forged.error, EventLogMismatch)
    assert "event 2 (EV_SEPARATOR, PCR 0)" in str(forged.error)


# --- property: the mark is exactly "digest == H(data)", and bound types never pass without it ----

_TYPES = st.sampled_from(
    [EV_SEPARATOR, EV_ACTION, EV_EFI_ACTION, EV_EFI_VARIABLE_DRIVER_CONFIG, EV_IPL, EV_POST_CODE, EV_EFI_VARIABLE_BOOT]
)
_EVENTS = st.lists(st.tuples(st.integers(0, 23), _TYPES, st.binary(max_size=40), st.booleans()), max_size=8)


@settings(max_examples=150, deadline=None)
@given(_EVENTS)
def test_marks_are_exactly_the_bound_events(events: list[tuple[int, int, bytes, bool]]) -> None:
    raw = agile_log(*(logged(pcr, t, data, data if same else data + b"~") for pcr, t, data, same in events))
    must_fail = any(not same and t in DATA_BOUND_EVENT_TYPES for _, t, _, same in events)
    for bank in (SHA1, SHA256):
        if must_fail:
            with pytest.raises(EventLogMismatch):
                verify_replay(raw, _pcrs(raw, bank))
            continue
        result = verify_replay(raw, _pcrs(raw, bank))
        assert result.data_verified == tuple(same for *_, same in events)
