"""The extended-report certificate table (GUID table) of SNP_GET_EXT_REPORT (spec §4.1).

Layout: 24-byte entries ``GUID (16, RFC 4122 byte order) | offset (u32 LE) | length (u32 LE)``,
terminated by an all-zero entry, followed by the blobs; offsets count from the table's start.
Parsing is bounded: at most ``MAX_ENTRIES`` entries and ``MAX_TABLE_SIZE`` bytes.
"""

from __future__ import annotations

import struct
import uuid
from collections.abc import Iterator

import attrs

from starlock.attestation.errors import MalformedEvidence
from starlock.attestation.snp.report import REPORT_SIZE

__all__ = [
    "ARK_GUID",
    "ASK_GUID",
    "EXTRA_PLATFORM_INFO_GUID",
    "MAX_ENTRIES",
    "MAX_TABLE_SIZE",
    "VCEK_GUID",
    "VLEK_GUID",
    "CertTable",
    "CertTableEntry",
    "parse_cert_table",
    "split_extended_report",
]

VCEK_GUID = uuid.UUID("63da758d-e664-4564-adc5-f4b93be8accd")
VLEK_GUID = uuid.UUID("a8074bc2-a25a-483e-aae6-39c045a0b8a1")
ASK_GUID = uuid.UUID("4ab7b379-bbac-4fe4-a02f-05aef327c782")  # also carries the ASVK
ARK_GUID = uuid.UUID("c0b406a4-a803-4952-9743-3fb6014cd0ae")
EXTRA_PLATFORM_INFO_GUID = uuid.UUID("ecae0c0f-9502-43b1-afa2-0ae2e0d565b6")  # go-sev-guest's own entry

MAX_TABLE_SIZE = 64 * 1024
MAX_ENTRIES = 64
_ENTRY = struct.Struct("<16sII")
_NAMES = {VCEK_GUID: "VCEK", VLEK_GUID: "VLEK", ASK_GUID: "ASK", ARK_GUID: "ARK", EXTRA_PLATFORM_INFO_GUID: "extra"}


@attrs.frozen
class CertTableEntry:
    guid: uuid.UUID
    offset: int
    length: int
    data: bytes = attrs.field(repr=False)

    @property
    def name(self) -> str:
        """``VCEK``, ``VLEK``, ``ASK``, ``ARK``, ``extra`` or the GUID text."""
        return _NAMES.get(self.guid, str(self.guid))


@attrs.frozen
class CertTable:
    """The entries of a certificate table, in table order (GUIDs are unique)."""

    entries: tuple[CertTableEntry, ...] = ()

    def get(self, guid: uuid.UUID) -> bytes | None:
        for entry in self.entries:
            if entry.guid == guid:
                return entry.data
        return None

    def __iter__(self) -> Iterator[CertTableEntry]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    @property
    def vcek(self) -> bytes | None:
        return self.get(VCEK_GUID)

    @property
    def vlek(self) -> bytes | None:
        return self.get(VLEK_GUID)

    @property
    def ask(self) -> bytes | None:
        return self.get(ASK_GUID)

    @property
    def ark(self) -> bytes | None:
        return self.get(ARK_GUID)


def parse_cert_table(data: bytes, *, max_size: int = MAX_TABLE_SIZE, max_entries: int = MAX_ENTRIES) -> CertTable:
    """Parse a certificate table. An empty buffer is an empty table; otherwise a terminator is required.

    Every entry's blob must lie after the header (the terminator included) and inside ``data``;
    duplicate GUIDs are refused. Errors raise :class:`MalformedEvidence` (check ``cert-table``).
    """
    if not isinstance(data, bytes | bytearray | memoryview):
        raise MalformedEvidence(f"certificate table: expected bytes, got {type(data).__name__}", check="cert-table")
    data = bytes(data)
    if len(data) > max_size:
        raise MalformedEvidence(
            f"certificate table: expected at most {max_size} bytes, got {len(data)}", check="cert-table"
        )
    if not data:
        return CertTable()
    headers: list[tuple[uuid.UUID, int, int]] = []
    pos = 0
    while True:
        if pos + _ENTRY.size > len(data):
            raise MalformedEvidence(
                f"certificate table: no all-zero terminator entry within {len(data)} bytes", check="cert-table"
            )
        guid_bytes, offset, length = _ENTRY.unpack_from(data, pos)
        pos += _ENTRY.size
        if guid_bytes == bytes(16) and offset == 0 and length == 0:
            break
        if len(headers) == max_entries:
            raise MalformedEvidence(
                f"certificate table: expected at most {max_entries} entries before the terminator", check="cert-table"
            )
        headers.append((uuid.UUID(bytes=guid_bytes), offset, length))
    entries: list[CertTableEntry] = []
    seen: set[uuid.UUID] = set()
    for index, (guid, offset, length) in enumerate(headers):
        name = _NAMES.get(guid, str(guid))
        if guid in seen:
            raise MalformedEvidence(
                f"certificate table: entry {index} repeats GUID {guid} ({name})", check="cert-table"
            )
        seen.add(guid)
        if offset < pos:
            raise MalformedEvidence(
                f"certificate table: entry {index} ({name}) offset {offset} points into the header (expected >= {pos})",
                check="cert-table",
            )
        if offset + length > len(data):
            raise MalformedEvidence(
                f"certificate table: entry {index} ({name}) spans bytes {offset}..{offset + length}, "
                f"beyond the table's {len(data)} bytes",
                check="cert-table",
            )
        entries.append(CertTableEntry(guid, offset, length, data[offset : offset + length]))
    return CertTable(tuple(entries))


def split_extended_report(data: bytes) -> tuple[bytes, CertTable]:
    """Split an extended report (report, then certificate table) and parse the table."""
    if len(data) < REPORT_SIZE:
        raise MalformedEvidence(
            f"extended report: expected at least {REPORT_SIZE} bytes, got {len(data)}", check="report-format"
        )
    return bytes(data[:REPORT_SIZE]), parse_cert_table(data[REPORT_SIZE:])
