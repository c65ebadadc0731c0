"""Expected measurements: PCR (or TDX register) index → expected digest + warn-only flag.

Compatible with Constellation's ``measurements.M`` (reference: spec-attestation §A4):

* JSON/YAML form ``{"<index>": {"expected": "<hex>", "warnOnly": <bool>}}``; the legacy form
  (a bare hex string per index, enforced) is accepted when reading;
* every value is 32 bytes (SHA-256 PCR) or 48 bytes (SHA-384 register), all of one length;
* :meth:`Measurements.compare` reports every mismatch at once, in ascending index order, with
  upstream's wording; warn-only mismatches become warnings, enforced ones one error.

Stricter than upstream: an index given twice, also after normalisation (``"4"`` and ``"04"``, or
the same key twice in the JSON/YAML text), is refused instead of the later entry winning; an
index is ASCII digits only. Whether a set of measurements enforces anything at all is
:attr:`Measurements.enforced`; the attestation config refuses one that enforces nothing unless
the caller opts in (see :mod:`starlock.attestation.config`).
"""

from __future__ import annotations

import binascii
import hmac
import json
import re
from collections.abc import Iterator, Mapping
from typing import Any

import attrs
import yaml

from starlock.attestation._strictload import load_json, load_yaml
from starlock.attestation.errors import ConfigError, MeasurementMismatch

__all__ = ["Measurement", "MeasurementComparison", "Measurements"]

_VALID_LENGTHS = (32, 48)
_MAX_INDEX = 0xFFFFFFFF
_MAX_ENTRIES = 64
#: Largest JSON/YAML text :meth:`Measurements.from_json` / ``from_yaml`` read (64 entries fit in 10 KiB).
MAX_TEXT_SIZE = 64 * 1024
_INDEX_TEXT = re.compile(r"[0-9]{1,10}")


@attrs.frozen
class Measurement:
    expected: bytes
    warn_only: bool = False


@attrs.frozen
class MeasurementComparison:
    """Outcome of a comparison: the warnings (warn-only mismatches) and the enforced errors."""

    warnings: tuple[str, ...]
    errors: tuple[str, ...]
    checked: tuple[int, ...]

    def raise_for_errors(self) -> None:
        if self.errors:
            raise MeasurementMismatch("; ".join(self.errors))


def _sorted_entries(entries: Mapping[int, Measurement]) -> dict[int, Measurement]:
    return dict(sorted(entries.items()))


@attrs.frozen
class Measurements(Mapping[int, Measurement]):
    """An immutable map of index → :class:`Measurement`."""

    _entries: Mapping[int, Measurement] = attrs.field(converter=_sorted_entries)

    def __attrs_post_init__(self) -> None:
        lengths = {len(m.expected) for m in self._entries.values()}
        for index, m in self._entries.items():
            if not 0 <= index <= _MAX_INDEX:
                raise ConfigError(f"measurement index {index} out of range")
            if len(m.expected) not in _VALID_LENGTHS:
                raise ConfigError(
                    f"measurement at index {index}: expected value is {len(m.expected)} bytes, must be 32 or 48"
                )
        if len(lengths) > 1:
            raise ConfigError(f"measurements mix value lengths {sorted(lengths)}; all must have the same length")

    # Mapping protocol
    def __getitem__(self, index: int) -> Measurement:
        return self._entries[index]

    def __iter__(self) -> Iterator[int]:
        return iter(self._entries)

    def __len__(self) -> int:
        return len(self._entries)

    @property
    def enforced(self) -> tuple[int, ...]:
        """The indices whose mismatch rejects (``warnOnly: false``), ascending; empty = nothing enforced."""
        return tuple(i for i, m in self._entries.items() if not m.warn_only)

    # --- reading and writing -----------------------------------------------------------

    @classmethod
    def from_obj(cls, obj: Any) -> Measurements:
        """Build from the decoded JSON/YAML object (a mapping of index → entry)."""
        if obj is None:
            return cls({})
        if not isinstance(obj, Mapping):
            raise ConfigError("measurements: expected a mapping of index to {expected, warnOnly}")
        if len(obj) > _MAX_ENTRIES:
            raise ConfigError(f"measurements: {len(obj)} entries, at most {_MAX_ENTRIES}")
        entries: dict[int, Measurement] = {}
        for key, value in obj.items():
            index = _parse_index(key)
            if index in entries:
                # e.g. "4" and "04": both are index 4; refuse rather than let one silently win.
                raise ConfigError(
                    f"measurements: index {index} given twice (key {str(key)[:20]!r} repeats an earlier key); "
                    "expected each index once"
                )
            entries[index] = _parse_entry(index, value)
        return cls(entries)

    @classmethod
    def from_json(cls, data: bytes | str) -> Measurements:
        _check_text_size(data)
        try:
            obj = load_json(data, "measurements")
        except ValueError as exc:
            raise ConfigError(f"measurements: invalid JSON: {exc}") from None
        return cls.from_obj(obj)

    @classmethod
    def from_yaml(cls, data: bytes | str) -> Measurements:
        _check_text_size(data)
        try:
            obj = load_yaml(data, "measurements")
        except yaml.YAMLError as exc:
            raise ConfigError(f"measurements: invalid YAML: {exc}") from None
        return cls.from_obj(obj)

    def to_obj(self) -> dict[str, dict[str, Any]]:
        # Go's encoding/json sorts map keys by their string form; keep the same order.
        return {
            str(i): {"expected": m.expected.hex(), "warnOnly": m.warn_only}
            for i, m in sorted(self._entries.items(), key=lambda kv: str(kv[0]))
        }

    def to_json(self) -> str:
        return json.dumps(self.to_obj(), separators=(",", ":"))

    def to_yaml(self) -> str:
        obj = {i: {"expected": m.expected.hex(), "warnOnly": m.warn_only} for i, m in self._entries.items()}
        return yaml.safe_dump(obj, sort_keys=True)

    # --- comparison ---------------------------------------------------------------------

    def compare(self, actual: Mapping[int, bytes]) -> MeasurementComparison:
        """Compare against actual values; collects every mismatch (upstream ``Compare``)."""
        entries = self._entries
        # Expected and actual values are public: one list comparison decides the common case (all
        # match); the loop below compares each in constant time anyway and words every mismatch.
        if list(map(actual.get, entries)) == [m.expected for m in entries.values()]:
            return MeasurementComparison((), (), tuple(entries))
        warnings: list[str] = []
        errors: list[str] = []
        for index, m in entries.items():
            value = actual.get(index)
            if value is None:
                message = f"missing measurement value for index {index}"
            elif hmac.compare_digest(value, m.expected):  # public values, but constant time costs nothing
                continue
            else:
                message = f"untrusted measurement value {value.hex()} at index {index} (expected {m.expected.hex()})"
            if m.warn_only:
                warnings.append(f"Encountered {message}")
            else:
                errors.append(message)
        return MeasurementComparison(tuple(warnings), tuple(errors), tuple(entries))


def _check_text_size(data: bytes | str) -> None:
    if len(data) > MAX_TEXT_SIZE:
        raise ConfigError(f"measurements: text is {len(data)} bytes, at most {MAX_TEXT_SIZE}")


def _parse_index(key: Any) -> int:
    if isinstance(key, bool):
        raise ConfigError(f"measurements: index {key!r} is not a number")
    if isinstance(key, int):
        index = key
    elif isinstance(key, str) and _INDEX_TEXT.fullmatch(key):
        # ASCII digits only: str.isdigit() also accepts "٤" (int() reads it as 4) and "²" (int() fails).
        index = int(key)
    else:
        raise ConfigError(f"measurements: index {str(key)[:20]!r} is not a non-negative integer")
    if index > _MAX_INDEX:
        raise ConfigError(f"measurements: index {index} out of range")
    return index


def _parse_hex(index: int, value: Any) -> bytes:
    if not isinstance(value, str) or len(value) > 256:
        raise ConfigError(f"measurement at index {index}: expected value must be a hex string")
    try:
        return binascii.unhexlify(value)
    except (binascii.Error, ValueError):
        raise ConfigError(f"measurement at index {index}: expected value is not valid hex") from None


def _parse_entry(index: int, value: Any) -> Measurement:
    if isinstance(value, str):  # legacy form: bare hex, enforced
        return Measurement(_parse_hex(index, value), warn_only=False)
    if not isinstance(value, Mapping):
        raise ConfigError(f"measurement at index {index}: expected an object with 'expected' and 'warnOnly'")
    unknown = set(value) - {"expected", "warnOnly"}
    if unknown:
        raise ConfigError(f"measurement at index {index}: unknown keys {sorted(map(str, unknown))}")
    if "expected" not in value:
        raise ConfigError(f"measurement at index {index}: missing 'expected'")
    warn_only = value.get("warnOnly", False)
    if not isinstance(warn_only, bool):
        raise ConfigError(f"measurement at index {index}: 'warnOnly' must be true or false")
    return Measurement(_parse_hex(index, value["expected"]), warn_only=warn_only)
