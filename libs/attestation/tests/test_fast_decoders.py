"""The [fast] extra (pybase64) changes speed only: every input parses as without it.

Each test compares the native path with the standard library on the same input: the value when
both accept, the refusal when the standard path refuses. Where the extra is not installed these
tests skip, except in the envs that install it (``STARLOCK_EXPECT_FAST=1``), where that fails.
"""

from __future__ import annotations

import base64
import json
import math
import os
import string
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starlock.attestation import _fast, document
from starlock.attestation.document import AttestationDocument
from starlock.attestation.errors import MalformedEvidence

if "pybase64" not in _fast.ACTIVE:
    message = f"the [fast] extra is not installed (active: {_fast.ACTIVE or 'none'})"
    if os.environ.get("STARLOCK_EXPECT_FAST") == "1":
        pytest.fail(message, pytrace=False)
    pytest.skip(message, allow_module_level=True)


def _outcome(fn: Any, arg: Any) -> tuple[str, Any]:
    try:
        return "ok", fn(arg)
    except (ValueError, RecursionError, MalformedEvidence) as exc:
        return "refused", type(exc).__name__ if not isinstance(exc, MalformedEvidence) else str(exc)


def _same(a: Any, b: Any) -> bool:
    if isinstance(a, float) and isinstance(b, float):
        return (math.isnan(a) and math.isnan(b)) or (a == b and math.copysign(1, a) == math.copysign(1, b))
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return list(a) == list(b) and all(_same(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same(x, y) for x, y in zip(a, b, strict=True))
    return bool(a == b)


# --- base64 -----------------------------------------------------------------------------------


def _standard_b64(value: Any, name: str) -> bytes:
    saved = document.b64decode_large
    document.b64decode_large = lambda _value: None  # type: ignore[assignment]
    try:
        return document._b64(value, name)
    finally:
        document.b64decode_large = saved


EDGE_B64 = [
    base64.b64encode(bytes(range(256)) * 4).decode(),
    base64.b64encode(bytes(1000)).decode(),  # padded with "=="
    base64.b64encode(bytes(1001)).decode(),  # padded with "="
    base64.b64encode(bytes(1002)).decode(),  # no padding
    base64.b64encode(bytes(1000)).decode().rstrip("="),  # padding dropped
    base64.urlsafe_b64encode(b"\xfb\xff" * 600).decode(),  # URL alphabet
    base64.b64encode(bytes(1000)).decode()[:-4] + "A===",
    base64.b64encode(bytes(1000)).decode()[:-4] + "====",
    base64.b64encode(bytes(999)).decode() + "AAAA",  # data after the end
    base64.b64encode(bytes(1000)).decode() + "AAAA",  # data after padding
    base64.b64encode(bytes(1000)).decode()[:100] + "=" + base64.b64encode(bytes(1000)).decode()[101:],
    base64.b64encode(bytes(1000)).decode()[:100] + "\n" + base64.b64encode(bytes(1000)).decode()[101:],
    base64.b64encode(bytes(1000)).decode()[:100] + " " + base64.b64encode(bytes(1000)).decode()[101:],
    base64.b64encode(bytes(1000)).decode()[:100] + "é" + base64.b64encode(bytes(1000)).decode()[101:],
    base64.b64encode(bytes(1000)).decode()[:100] + "\x00" + base64.b64encode(bytes(1000)).decode()[101:],
    base64.b64encode(b"\xff" * 1002).decode()[:-1] + "/",  # non-zero bits after the end
    "=" + base64.b64encode(bytes(1002)).decode()[1:],
]


@pytest.mark.parametrize("value", EDGE_B64, ids=range(len(EDGE_B64)))
def test_base64_edge_cases_decode_as_the_standard_path(value: str) -> None:
    assert len(value) >= _fast.LARGE_BASE64
    fast, std = _outcome(lambda v: document._b64(v, "f"), value), _outcome(lambda v: _standard_b64(v, "f"), value)
    assert fast == std


_B64_ALPHABET = string.ascii_letters + string.digits + "+/=-_ \n\x00é"


@settings(max_examples=300, deadline=None)
@given(st.binary(min_size=768, max_size=900), st.lists(st.tuples(st.integers(0, 1300), st.sampled_from(_B64_ALPHABET)),
       max_size=3))  # fmt: skip
def test_base64_mutations_decode_as_the_standard_path(data: bytes, edits: list[tuple[int, str]]) -> None:
    text = base64.b64encode(data).decode()
    for at, char in edits:
        pos = min(at, len(text))
        text = text[:pos] + char + text[pos + 1 :]
    fast, std = _outcome(lambda v: document._b64(v, "f"), text), _outcome(lambda v: _standard_b64(v, "f"), text)
    assert fast == std, text


def test_the_large_fields_of_a_real_document_take_the_native_path(vectors: Path) -> None:
    raw = (vectors / "aws-nitrotpm/constellation-aws-attdoc-2023-06/attdoc-aws.txt").read_bytes()
    event_log = json.loads(raw)["Attestation"]["eventLog"]
    assert _fast.b64decode_large(event_log) == base64.b64decode(event_log)
    fast = AttestationDocument.from_json(raw)
    saved = document.b64decode_large
    document.b64decode_large = lambda _value: None  # type: ignore[assignment]
    try:
        std = AttestationDocument.from_json(raw)
    finally:
        document.b64decode_large = saved
    assert fast == std
