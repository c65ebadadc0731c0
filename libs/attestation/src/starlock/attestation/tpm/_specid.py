"""The ``Spec ID Event03`` header of a crypto-agile TCG event log (TCG PC Client PFP, TCG_EfiSpecIdEvent).

The first event of a crypto-agile log is a SHA-1-format EV_NO_ACTION event whose data is the
TCG_EfiSpecIdEvent: versions, the algorithms of the log and their digest sizes, vendor info.
Parsing is bounded (:data:`MAX_ALGORITHMS`, :data:`MAX_DIGEST_SIZE`) and raises only
:class:`MalformedEvidence`.
"""

from __future__ import annotations

import functools
import struct

import attrs

from starlock.attestation.errors import MalformedEvidence
from starlock.attestation.tpm import algorithms as alg
from starlock.attestation.tpm._reader import Reader

__all__ = ["MAX_ALGORITHMS", "MAX_DIGEST_SIZE", "SPEC_ID_SIGNATURE", "SpecIdEvent", "parse_spec_id"]

#: Algorithms in the Spec ID header (a TPM has a handful of PCR banks).
MAX_ALGORITHMS = 16
#: Digest size accepted for an algorithm unknown to Starlock, as declared by the header.
MAX_DIGEST_SIZE = 128
SPEC_ID_SIGNATURE = b"Spec ID Event03\x00"


@attrs.frozen
class SpecIdEvent:
    """TCG_EfiSpecIdEvent (``Spec ID Event03``): versions and the digest size of every algorithm."""

    platform_class: int
    spec_version_minor: int
    spec_version_major: int
    spec_errata: int
    uintn_size: int
    digest_sizes: tuple[tuple[int, int], ...]
    vendor_info: bytes


_HEAD = struct.Struct("<16sIBBBBI")  # signature, platformClass, versions, uintnSize, numberOfAlgorithms
_SIZES = [struct.Struct("<" + "HH" * n) for n in range(MAX_ALGORITHMS + 1)]


#: The longest header the fast path reads (16 algorithms, 255 bytes of vendor info); the cache
#: then holds nothing larger.
_MAX_FAST_SIZE = _HEAD.size + _SIZES[MAX_ALGORITHMS].size + 1 + 255


def parse_spec_id(data: bytes) -> SpecIdEvent:
    data = bytes(data)  # hashable, for the fast path's cache
    fast = _spec_id_fast(data) if len(data) <= _MAX_FAST_SIZE else None
    return fast or _spec_id_checked(data)


@functools.lru_cache(maxsize=32)
def _spec_id_fast(data: bytes) -> SpecIdEvent | None:
    """The well-formed header with ``struct``; None on anything else (then the field-by-field
    reader says what is wrong).

    Kept for the last few headers seen (immutable values): a verifier sees the same few
    firmware headers over and over."""
    try:
        _, platform_class, minor, major, errata, uintn_size, count = _HEAD.unpack_from(data)
        if not 1 <= count <= MAX_ALGORITHMS:
            return None
        flat = _SIZES[count].unpack_from(data, _HEAD.size)
        pos = _HEAD.size + _SIZES[count].size
        vendor_size = data[pos]
    except (struct.error, IndexError):
        return None
    sizes = tuple(zip(flat[::2], flat[1::2], strict=True))
    known = alg.HASH_DIGEST_SIZES
    if (
        len(data) != pos + 1 + vendor_size
        or len(dict(sizes)) != count
        or not all(1 <= size <= MAX_DIGEST_SIZE and known.get(a, size) == size for a, size in sizes)
    ):
        return None
    return SpecIdEvent(platform_class, minor, major, errata, uintn_size, sizes, bytes(data[pos + 1 :]))


def _spec_id_checked(data: bytes) -> SpecIdEvent:
    r = Reader(data, "event log Spec ID Event03", little_endian=True)
    r.take(len(SPEC_ID_SIGNATURE), "signature")
    platform_class = r.u32("platformClass")
    minor, major, errata, uintn_size = (
        r.u8(f) for f in ("specVersionMinor", "specVersionMajor", "specErrata", "uintnSize")
    )
    count = r.u32("numberOfAlgorithms")
    if not 1 <= count <= MAX_ALGORITHMS:
        raise MalformedEvidence(f"event log Spec ID Event03.numberOfAlgorithms: {count}, expected 1..{MAX_ALGORITHMS}")
    sizes: list[tuple[int, int]] = []
    for i in range(count):
        hash_alg = r.u16(f"digestSizes[{i}].algorithmId")
        size = r.u16(f"digestSizes[{i}].digestSize")
        known = alg.HASH_DIGEST_SIZES.get(hash_alg)
        if (known is not None and size != known) or not 1 <= size <= MAX_DIGEST_SIZE:
            raise MalformedEvidence(
                f"event log Spec ID Event03.digestSizes[{i}]: size {size} is wrong for {alg.alg_name(hash_alg)}"
            )
        if any(a == hash_alg for a, _ in sizes):
            raise MalformedEvidence(f"event log Spec ID Event03: {alg.alg_name(hash_alg)} listed twice")
        sizes.append((hash_alg, size))
    vendor_info = r.take(r.u8("vendorInfoSize"), "vendorInfo")
    r.end()
    return SpecIdEvent(platform_class, minor, major, errata, uintn_size, tuple(sizes), vendor_info)
