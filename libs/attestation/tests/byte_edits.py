"""Random byte edits of well-formed structures, for the property tests that hold a parser's fast
path to its field-by-field reader: whatever the fast path reads, the reader reads alike."""

from __future__ import annotations

from collections.abc import Callable

from hypothesis import strategies as st

from starlock.attestation.errors import MalformedEvidence

#: Up to three edits: (offset, byte value, "set" | "insert" | "delete").
EDITS = st.lists(
    st.tuples(st.integers(0, 80), st.integers(0, 255), st.sampled_from(["set", "insert", "delete"])), max_size=3
)


def apply_edits(data: bytes, edits: list[tuple[int, int, str]], *, from_end: bool = False) -> bytes:
    """``data`` with each edit applied at its offset (counted from the end with ``from_end``)."""
    raw = bytearray(data)
    for at, value, op in edits:
        pos = len(raw) - 1 - at if from_end and at < len(raw) else min(at, len(raw))
        if op == "set" and pos < len(raw):
            raw[pos] = value
        elif op == "insert":
            raw.insert(pos, value)
        elif pos < len(raw):
            del raw[pos]
    return bytes(raw)


def outcome(parse: Callable[[bytes], object], data: bytes) -> object:
    """What ``parse`` returns, or the message of the MalformedEvidence it raises."""
    try:
        return parse(data)
    except MalformedEvidence as exc:
        return str(exc)
