"""Measurements (reference: spec-attestation §A4)."""

from __future__ import annotations

import json

import pytest

from starlock.attestation import ConfigError, MeasurementMismatch, Measurements

A = "aa" * 32
B = "bb" * 32


def test_json_both_forms_and_go_order() -> None:
    m = Measurements.from_json(json.dumps({"4": {"expected": A, "warnOnly": True}, "11": B, "2": {"expected": B}}))
    assert [(i, e.warn_only) for i, e in m.items()] == [(2, False), (4, True), (11, False)]
    # Written like Go's encoding/json: keys sorted as strings, lower-case hex, both fields present.
    assert m.to_json() == (
        '{"11":{"expected":"' + B + '","warnOnly":false},"2":{"expected":"' + B + '","warnOnly":false},'
        '"4":{"expected":"' + A + '","warnOnly":true}}'
    )
    assert Measurements.from_json(m.to_json()) == m
    assert Measurements.from_yaml(m.to_yaml()) == m


def test_upper_case_hex_is_read_and_written_lower() -> None:
    m = Measurements.from_obj({"0": A.upper()})
    assert m[0].expected == bytes.fromhex(A)
    assert A in m.to_json()


@pytest.mark.parametrize(
    ("obj", "message"),
    [
        ({"0": "aa" * 31}, "31 bytes, must be 32 or 48"),
        ({"0": A, "1": "cc" * 48}, "mix value lengths"),
        ({"0": "zz" * 32}, "not valid hex"),
        ({"x": A}, "not a non-negative integer"),
        ({"-1": A}, "not a non-negative integer"),
        ({"0": {"warnOnly": True}}, "missing 'expected'"),
        ({"0": {"expected": A, "warnOnly": "yes"}}, "'warnOnly' must be true or false"),
        ({"0": {"expected": A, "warn": True}}, "unknown keys"),
        ([A], "expected a mapping"),
    ],
)
def test_bad_input_is_refused(obj: object, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        Measurements.from_obj(obj)


def test_compare_reports_every_mismatch_in_order() -> None:
    m = Measurements.from_obj({"9": A, "4": {"expected": A, "warnOnly": True}, "7": A, "1": A})
    actual = {1: bytes.fromhex(A), 4: bytes.fromhex(B), 9: bytes.fromhex(B)}
    result = m.compare(actual)
    assert result.warnings == (f"Encountered untrusted measurement value {B} at index 4 (expected {A})",)
    assert result.errors == (
        "missing measurement value for index 7",
        f"untrusted measurement value {B} at index 9 (expected {A})",
    )
    with pytest.raises(MeasurementMismatch) as excinfo:
        result.raise_for_errors()
    assert "index 7" in str(excinfo.value)
    assert "index 9" in str(excinfo.value)


def test_compare_passes_with_only_warn_only_mismatches() -> None:
    m = Measurements.from_obj({"15": {"expected": "00" * 32, "warnOnly": True}})
    result = m.compare({15: b"\x01" * 32})
    result.raise_for_errors()
    assert len(result.warnings) == 1
