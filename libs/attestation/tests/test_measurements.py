"""Measurements (reference: spec-attestation §A4)."""

from __future__ import annotations

import contextlib
import json

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

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


@pytest.mark.parametrize("mismatch", [False, True])
def test_compare_names_every_index_it_checked(mismatch: bool) -> None:
    m = Measurements.from_obj({"9": A, "4": {"expected": A, "warnOnly": True}, "1": A})
    actual = {1: bytes.fromhex(A), 4: bytes.fromhex(B if mismatch else A), 9: bytes.fromhex(A), 12: b"x"}
    result = m.compare(actual)
    assert result.checked == (1, 4, 9)
    assert result.errors == ()
    assert len(result.warnings) == int(mismatch)


def test_compare_passes_with_only_warn_only_mismatches() -> None:
    m = Measurements.from_obj({"15": {"expected": "00" * 32, "warnOnly": True}})
    result = m.compare({15: b"\x01" * 32})
    result.raise_for_errors()
    assert len(result.warnings) == 1


# --- an index given twice: refused, never "the later entry wins" ----------------------------------


@pytest.mark.parametrize(
    "obj",
    [
        {"4": {"expected": A, "warnOnly": False}, "04": {"expected": B, "warnOnly": True}},
        {"04": {"expected": B, "warnOnly": True}, "4": {"expected": A, "warnOnly": False}},
        {"4": A, "0004": B},
        {4: A, "4": B},  # a YAML int key and a string key
        {"0": A, "00": A},
    ],
    ids=["4-then-04", "04-then-4", "legacy-form", "int-and-str", "same-value"],
)
def test_index_given_twice_after_normalisation_is_refused(obj: dict[object, object]) -> None:
    with pytest.raises(ConfigError, match=r"index (4|0) given twice"):
        Measurements.from_obj(obj)


def test_same_key_twice_in_json_text_is_refused() -> None:
    text = '{"4": {"expected": "' + A + '", "warnOnly": false}, "4": {"expected": "' + B + '", "warnOnly": true}}'
    assert json.loads(text) == {"4": {"expected": B, "warnOnly": True}}  # what plain json would make of it
    with pytest.raises(ConfigError, match="'4' appears twice"):
        Measurements.from_json(text)


def test_same_key_twice_in_yaml_text_is_refused() -> None:
    with pytest.raises(ConfigError, match="'4' appears twice"):
        Measurements.from_yaml(f"4: {A}\n4: {{expected: {B}, warnOnly: true}}\n")
    with pytest.raises(ConfigError, match="index 4 given twice"):
        Measurements.from_yaml(f"4: {A}\n'04': {B}\n")


@pytest.mark.parametrize("key", ["٤", "²", "4 ", " 4", "+4", "0x4", "", "12345678901"])
def test_index_must_be_ascii_digits(key: str) -> None:
    """str.isdigit() accepts "٤" (read as 4) and "²" (int() fails): neither is an index."""
    with pytest.raises(ConfigError, match="not a non-negative integer"):
        Measurements.from_obj({key: A})


def test_enforced_indices() -> None:
    m = Measurements.from_obj({"9": A, "4": {"expected": A, "warnOnly": True}, "1": {"expected": B}})
    assert m.enforced == (1, 9)
    assert Measurements.from_obj({"4": {"expected": A, "warnOnly": True}}).enforced == ()
    assert Measurements.from_obj({}).enforced == ()
    assert Measurements.from_obj(None).enforced == ()


def test_text_is_bounded() -> None:
    with pytest.raises(ConfigError, match="at most"):
        Measurements.from_json(" " * (64 * 1024 + 1))
    with pytest.raises(ConfigError, match="at most"):
        Measurements.from_yaml(" " * (64 * 1024 + 1))


# --- property: bad text only ever raises ConfigError ---------------------------------------------

_INDEX_KEYS = st.sampled_from(["4", "04", "004", "9", "15", "٤", "²", "x", ""])
_ENTRIES = st.one_of(st.just(A), st.builds(lambda w: {"expected": A, "warnOnly": w}, st.booleans()), st.integers())


@settings(max_examples=200, deadline=None)
@given(st.text(max_size=300))
def test_random_text_raises_only_config_error(text: str) -> None:
    for parse in (Measurements.from_json, Measurements.from_yaml):
        with contextlib.suppress(ConfigError):
            parse(text)


@settings(max_examples=200, deadline=None)
@given(st.lists(st.tuples(_INDEX_KEYS, _ENTRIES), max_size=6))
def test_json_with_repeated_keys_is_refused_or_parsed_whole(pairs: list[tuple[str, object]]) -> None:
    """Whatever the keys, the result is never "the later entry won": either every key is a
    distinct index and every entry is kept, or the text is refused."""
    text = "{" + ", ".join(f"{json.dumps(k)}: {json.dumps(v)}" for k, v in pairs) + "}"
    try:
        m = Measurements.from_json(text)
    except ConfigError:
        return
    assert len(m) == len(pairs)
