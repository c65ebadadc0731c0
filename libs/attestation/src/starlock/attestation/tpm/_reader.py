"""Bounded readers for TPM 2.0 wire structures (big-endian) and TCG event logs (little-endian).

Every read checks the remaining length first, so a short or oversized input raises
:class:`MalformedEvidence` naming the structure and field, never ``IndexError``/``struct.error``.
"""

from __future__ import annotations

import struct
from typing import Literal

from starlock.attestation.errors import MalformedEvidence

_BIG = (struct.Struct(">B").unpack_from, struct.Struct(">H").unpack_from, struct.Struct(">I").unpack_from)
_LITTLE = (struct.Struct("<B").unpack_from, struct.Struct("<H").unpack_from, struct.Struct("<I").unpack_from)


class Reader:
    """A cursor over ``data``; ``what`` names the structure in error messages."""

    __slots__ = ("_data", "_order", "_pos", "_u8", "_u16", "_u32", "what")

    def __init__(self, data: bytes, what: str, *, little_endian: bool = False) -> None:
        self._data = bytes(data)
        self._pos = 0
        self._order: Literal["little", "big"] = "little" if little_endian else "big"
        self._u8, self._u16, self._u32 = _LITTLE if little_endian else _BIG
        self.what = what

    @property
    def pos(self) -> int:
        return self._pos

    @property
    def data(self) -> bytes:
        return self._data

    def seek(self, pos: int) -> None:
        """Move the cursor (for hot loops that unpack with ``struct`` and check bounds themselves)."""
        if not 0 <= pos <= len(self._data):
            raise MalformedEvidence(f"{self.what}: offset {pos} outside the {len(self._data)}-byte input")
        self._pos = pos

    @property
    def remaining(self) -> int:
        return len(self._data) - self._pos

    def take(self, size: int, field: str) -> bytes:
        pos = self._pos
        if size < 0 or size > len(self._data) - pos:
            raise self._short(size, field)
        self._pos = pos + size
        return self._data[pos : pos + size]

    def _short(self, size: int, field: str) -> MalformedEvidence:
        return MalformedEvidence(
            f"{self.what}.{field}: needs {size} bytes at offset {self._pos}, only {self.remaining} left"
        )

    def uint(self, size: int, field: str) -> int:
        return int.from_bytes(self.take(size, field), self._order)

    # The fixed sizes unpack in place with struct (the hot path of every structure parser).
    def u8(self, field: str) -> int:
        pos = self._pos
        if pos >= len(self._data):
            raise self._short(1, field)
        self._pos = pos + 1
        return self._u8(self._data, pos)[0]  # type: ignore[no-any-return]

    def u16(self, field: str) -> int:
        pos = self._pos
        if len(self._data) - pos < 2:
            raise self._short(2, field)
        self._pos = pos + 2
        return self._u16(self._data, pos)[0]  # type: ignore[no-any-return]

    def u32(self, field: str) -> int:
        pos = self._pos
        if len(self._data) - pos < 4:
            raise self._short(4, field)
        self._pos = pos + 4
        return self._u32(self._data, pos)[0]  # type: ignore[no-any-return]

    def u64(self, field: str) -> int:
        return self.uint(8, field)

    def tpm2b(self, field: str, max_size: int) -> bytes:
        """A TPM2B_*: a UINT16 size, then that many bytes, at most ``max_size``."""
        pos = self._pos
        if len(self._data) - pos < 2:
            raise self._short(2, f"{field}.size")
        self._pos = pos + 2
        size: int = self._u16(self._data, pos)[0]
        if size > max_size:
            raise MalformedEvidence(f"{self.what}.{field}: size {size} exceeds the maximum {max_size}")
        return self.take(size, field)

    def end(self) -> None:
        """Reject trailing bytes."""
        if self.remaining:
            raise MalformedEvidence(f"{self.what}: {self.remaining} trailing bytes after offset {self._pos}")


_BYTES_LIKE = (bytes, bytearray, memoryview)


def check_size(data: bytes, what: str, max_size: int) -> None:
    if not isinstance(data, _BYTES_LIKE):
        raise MalformedEvidence(f"{what}: expected bytes, got {type(data).__name__}")
    if len(data) > max_size:
        raise MalformedEvidence(f"{what}: {len(data)} bytes, more than the limit {max_size}")
