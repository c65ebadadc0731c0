"""Measurements: comparisons that must be exact (mutation-testing survivors, issue 15).

Each test names the weakened check it catches: a prefix comparison of the actual and expected
values, an expected value of the wrong size, a range or size bound moved by one.
"""

from __future__ import annotations

import pytest

from starlock.attestation import ConfigError, Measurements
from starlock.attestation.measurements import Measurement

EXPECTED_32 = bytes(range(32))
EXPECTED_48 = bytes(range(100, 148))


@pytest.mark.parametrize(
    ("expected", "actual"),
    [
        (EXPECTED_32, b""),
        (EXPECTED_32, EXPECTED_32[:1]),
        (EXPECTED_32, EXPECTED_32[:31]),
        (EXPECTED_32, EXPECTED_32 + bytes(16)),  # a SHA-384 value that starts like the SHA-256 one
        (EXPECTED_48, EXPECTED_48[:32]),  # a SHA-256 value that is the SHA-384 one's prefix
        (EXPECTED_48, EXPECTED_48 + b"\x00"),
    ],
    ids=["empty", "1-byte-prefix", "truncated", "extended", "48-vs-32-prefix", "48-extended"],
)
def test_actual_value_must_equal_expected_not_share_a_prefix(expected: bytes, actual: bytes) -> None:
    m = Measurements({4: Measurement(expected)})
    result = m.compare({4: actual})
    assert result.errors == (f"untrusted measurement value {actual.hex()} at index 4 (expected {expected.hex()})",)
    assert result.warnings == ()
    assert m.compare({4: expected}).errors == ()  # control: the exact value passes


def test_warn_only_prefix_is_a_warning_not_a_pass() -> None:
    m = Measurements({9: Measurement(EXPECTED_32, warn_only=True)})
    result = m.compare({9: EXPECTED_32[:16]})
    assert result.warnings == (
        f"Encountered untrusted measurement value {EXPECTED_32[:16].hex()} at index 9 (expected {EXPECTED_32.hex()})",
    )
    assert result.errors == ()


@pytest.mark.parametrize("size", [0, 1, 16, 31, 33, 47, 49, 64])
def test_expected_value_of_another_size_is_refused_also_when_built_directly(size: int) -> None:
    """Only 32- and 48-byte values: a short expected value could never be a measurement."""
    with pytest.raises(ConfigError, match=f"{size} bytes, must be 32 or 48"):
        Measurements({4: Measurement(bytes(size))})
    with pytest.raises(ConfigError, match=f"{size} bytes, must be 32 or 48"):
        Measurements.from_obj({"4": bytes(size).hex()})


# --- bounds: the last allowed value passes, the next one is refused -------------------------------

A = "aa" * 32


def test_at_most_64_entries() -> None:
    assert len(Measurements.from_obj({str(i): A for i in range(64)})) == 64
    with pytest.raises(ConfigError, match="65 entries, at most 64"):
        Measurements.from_obj({str(i): A for i in range(65)})


def test_largest_index_is_2_to_the_32_minus_1() -> None:
    assert list(Measurements.from_obj({"4294967295": A})) == [0xFFFFFFFF]
    assert list(Measurements.from_obj({0xFFFFFFFF: A})) == [0xFFFFFFFF]
    with pytest.raises(ConfigError, match="index 4294967296 out of range"):
        Measurements.from_obj({"4294967296": A})
    with pytest.raises(ConfigError, match="index 4294967296 out of range"):
        Measurements({0x100000000: Measurement(bytes(32))})
    with pytest.raises(ConfigError, match="index -1 out of range"):
        Measurements({-1: Measurement(bytes(32))})


@pytest.mark.parametrize("key", [4.0, None, b"4", (4,)], ids=repr)
def test_index_of_another_type_is_refused(key: object) -> None:
    """YAML reads ``4.0:`` as a float and ``null:`` / ``~:`` as None: neither is an index."""
    with pytest.raises(ConfigError, match="is not a non-negative integer"):
        Measurements.from_obj({key: A})


@pytest.mark.parametrize("value", [4, 4.5, None, ["aa" * 32], b"\xaa" * 32], ids=repr)
def test_expected_value_must_be_a_string(value: object) -> None:
    with pytest.raises(ConfigError, match="expected value must be a hex string"):
        Measurements.from_obj({"4": {"expected": value, "warnOnly": False}})


def test_expected_hex_text_is_bounded_at_256_characters() -> None:
    """256 hex characters still reach the size check (128 bytes: refused for its size), 257 do not."""
    with pytest.raises(ConfigError, match="128 bytes, must be 32 or 48"):
        Measurements.from_obj({"4": "aa" * 128})
    with pytest.raises(ConfigError, match="expected value must be a hex string"):
        Measurements.from_obj({"4": "a" * 257})
