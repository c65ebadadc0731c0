"""Property-based and unit tests of the SNP parsers of untrusted input: reports, cert tables, VCEKs.

Whatever the bytes, the parsers return a value or raise an AttestationError (never another
exception). Real inputs come from the vectors (snp/gosevguest-milan-vcek, aws-snp/...-extreport).
"""

from __future__ import annotations

import contextlib
import struct
import uuid
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from starlock.attestation.errors import AttestationError, MalformedEvidence
from starlock.attestation.snp import (
    ARK_GUID,
    REPORT_SIZE,
    VCEK_GUID,
    VLEK_GUID,
    SigningKey,
    TcbParts,
    TcbVersion,
    evaluate_report,
    parse_cert_table,
    parse_endorsement_key,
    parse_report,
    split_extended_report,
)
from starlock.attestation.snp.testing import build_report
from starlock.attestation.trust import load_certificates

SETTINGS = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
GOSEV = "snp/gosevguest-milan-vcek"
EXT = "aws-snp/constellation-aws-2023-06-extreport"


def _entry(guid: uuid.UUID | bytes, offset: int, length: int) -> bytes:
    raw = guid.bytes if isinstance(guid, uuid.UUID) else guid
    return raw + struct.pack("<II", offset, length)


TERMINATOR = bytes(24)


# --- report ------------------------------------------------------------------------------------


@SETTINGS
@given(data=st.binary(min_size=REPORT_SIZE, max_size=REPORT_SIZE))
def test_parse_report_random_bytes(data: bytes) -> None:
    try:
        parse_report(data)
    except MalformedEvidence as exc:
        assert exc.check == "report-format"


@SETTINGS
@given(size=st.integers(0, 3 * REPORT_SIZE).filter(lambda n: n != REPORT_SIZE))
def test_parse_report_wrong_sizes(size: int) -> None:
    with pytest.raises(MalformedEvidence, match=f"got {size}"):
        parse_report(bytes(size))


@SETTINGS
@given(pos=st.integers(0, REPORT_SIZE - 1), value=st.integers(0, 255))
def test_parse_report_mutated_vector(vectors: Path, pos: int, value: int) -> None:
    raw = bytearray((vectors / GOSEV / "attestation.bin").read_bytes())
    raw[pos] = value
    try:
        report = parse_report(bytes(raw))
    except MalformedEvidence:
        return
    assert report.raw == bytes(raw)


@SETTINGS
@given(data=st.binary(max_size=2 * REPORT_SIZE))
def test_evaluate_never_raises_on_junk(vectors: Path, data: bytes) -> None:
    g = vectors / GOSEV
    evaluation = evaluate_report(data, (g / "vcek.testcer").read_bytes(), (g / "milan.testcer").read_bytes())
    assert not evaluation.accepted and isinstance(evaluation.error, AttestationError)


tcb_parts = st.builds(TcbParts, *(st.integers(0, 255) for _ in range(4)))


@SETTINGS
@given(
    version=st.integers(2, 5),
    svn=st.integers(0, 2**32 - 1),
    flags=st.integers(0, 2**26 - 1),
    vmpl=st.integers(0, 3),
    key=st.sampled_from(list(SigningKey)),
    tcbs=st.lists(tcb_parts, min_size=4, max_size=4),
    report_data=st.binary(min_size=64, max_size=64),
    chip_id=st.binary(min_size=64, max_size=64),
)
def test_report_fields_round_trip(
    version: int,
    svn: int,
    flags: int,
    vmpl: int,
    key: SigningKey,
    tcbs: list[TcbParts],
    report_data: bytes,
    chip_id: bytes,
) -> None:
    current, reported, committed, launch = (TcbVersion.compose(t) for t in tcbs)
    raw = build_report(
        version=version,
        guest_svn=svn,
        policy=flags | 1 << 17,
        vmpl=vmpl,
        signing_key=key,
        current_tcb=current,
        reported_tcb=reported,
        committed_tcb=committed,
        launch_tcb=launch,
        report_data=report_data,
        chip_id=chip_id,
        cpuid=(0x19, 0x01, 0x01) if version >= 3 else (0, 0, 0),
    )
    report = parse_report(bytes(raw))
    assert (report.version, report.guest_svn, report.policy.raw, report.vmpl) == (version, svn, flags | 1 << 17, vmpl)
    assert report.signing_key is key
    assert (report.current_tcb, report.reported_tcb, report.committed_tcb, report.launch_tcb) == (
        current,
        reported,
        committed,
        launch,
    )
    assert report.current_tcb.parts() == tcbs[0]
    assert (report.report_data, report.chip_id) == (report_data, chip_id)


def test_tcb_component_wise_order() -> None:
    low = TcbVersion.compose(TcbParts(1, 0, 9, 200))
    high = TcbVersion.compose(TcbParts(2, 0, 8, 200))
    assert not low.le(high) and not high.le(low)  # snp higher in one, bl in the other
    assert low.le(low)


# --- certificate table -------------------------------------------------------------------------


def test_cert_table_of_the_aws_vector(vectors: Path) -> None:
    table_bytes = bytes.fromhex((vectors / EXT / "certs_valid.hex").read_text())
    table = parse_cert_table(table_bytes)
    vlek = table.vlek
    assert vlek is not None and len(vlek) == 1323
    (cert,) = load_certificates(vlek)
    assert parse_endorsement_key(cert).kind is SigningKey.VLEK
    report, table2 = split_extended_report(
        bytes.fromhex((vectors / EXT / "report_valid.hex").read_text()) + table_bytes
    )
    assert len(report) == REPORT_SIZE and table2 == table


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (_entry(VCEK_GUID, 48, 4), "no all-zero terminator"),
        (_entry(VCEK_GUID, 24, 4) + TERMINATOR + bytes(8), "points into the header"),
        (_entry(VCEK_GUID, 48, 100) + TERMINATOR + bytes(8), "beyond the table"),
        (_entry(VCEK_GUID, 72, 1) + _entry(VCEK_GUID, 72, 1) + TERMINATOR + bytes(8), "repeats GUID"),
        (bytes(24 * 70), None),  # an all-zero buffer: the terminator comes first: empty table
    ],
)
def test_cert_table_errors(data: bytes, message: str | None) -> None:
    if message is None:
        assert len(parse_cert_table(data)) == 0
        return
    with pytest.raises(MalformedEvidence, match=message) as info:
        parse_cert_table(data)
    assert info.value.check == "cert-table"


def test_cert_table_bounds() -> None:
    assert len(parse_cert_table(b"")) == 0
    many = b"".join(_entry(uuid.uuid4(), 0, 0) for _ in range(65)) + TERMINATOR
    with pytest.raises(MalformedEvidence, match="at most 64 entries"):
        parse_cert_table(many)
    with pytest.raises(MalformedEvidence, match="at most"):
        parse_cert_table(bytes(70 * 1024))
    with pytest.raises(MalformedEvidence):
        split_extended_report(bytes(100))


def test_cert_table_two_entries() -> None:
    header = _entry(VLEK_GUID, 72, 3) + _entry(ARK_GUID, 75, 2) + TERMINATOR
    table = parse_cert_table(header + b"abcde")
    assert (table.vlek, table.ark, table.vcek) == (b"abc", b"de", None)
    assert [e.name for e in table] == ["VLEK", "ARK"]


@SETTINGS
@given(data=st.binary(max_size=600))
def test_cert_table_random_bytes(data: bytes) -> None:
    with contextlib.suppress(MalformedEvidence):
        parse_cert_table(data)


@SETTINGS
@given(
    entries=st.lists(
        st.tuples(
            st.binary(min_size=16, max_size=16) | st.sampled_from([VCEK_GUID.bytes, VLEK_GUID.bytes]),
            st.integers(0, 2**32 - 1) | st.integers(0, 200),
            st.integers(0, 2**32 - 1) | st.integers(0, 200),
        ),
        max_size=6,
    ),
    tail=st.binary(max_size=200),
)
def test_cert_table_structured(entries: list[tuple[bytes, int, int]], tail: bytes) -> None:
    data = b"".join(_entry(g, o, n) for g, o, n in entries) + TERMINATOR + tail
    try:
        table = parse_cert_table(data)
    except MalformedEvidence:
        return
    for entry in table:
        assert entry.offset >= 24 and entry.offset + entry.length <= len(data)


@SETTINGS
@given(pos=st.integers(0, 4095), value=st.integers(0, 255))
def test_cert_table_mutated_vector(vectors: Path, pos: int, value: int) -> None:
    raw = bytearray.fromhex((vectors / EXT / "certs_valid.hex").read_text())
    raw[pos] = value
    with contextlib.suppress(MalformedEvidence):
        parse_cert_table(bytes(raw))


# --- VCEK / VLEK certificates --------------------------------------------------------------


@SETTINGS
@given(pos=st.integers(0, 1359), value=st.integers(0, 255))
def test_endorsement_key_mutated_vcek(vectors: Path, pos: int, value: int) -> None:
    der = bytearray((vectors / GOSEV / "vcek.testcer").read_bytes())
    der[pos] = value
    try:
        (cert,) = load_certificates(bytes(der))
        parse_endorsement_key(cert)
    except AttestationError:
        pass
