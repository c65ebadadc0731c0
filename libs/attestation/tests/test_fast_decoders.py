"""The [fast] extra (pybase64, msgspec) changes speed only: every input parses as without it.

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
from starlock.attestation.document import MAX_QUOTES, Attestation, AttestationDocument, PCRs, Quote
from starlock.attestation.errors import MalformedEvidence

if set(_fast.ACTIVE) != {"pybase64", "msgspec"}:
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


def test_short_fields_msgspec_reads_decode_as_the_standard_path() -> None:
    """msgspec's own base64 (the small fields of a typed decode) accepts a subset of what the
    general path reads, to the same bytes: random edits of short base64 strings."""
    import random

    import msgspec

    decode = msgspec.json.Decoder(bytes).decode
    rng = random.Random(7)
    alphabet = string.ascii_letters + string.digits + "+/=-_ \n\té\x00"
    accepted = 0
    for _ in range(20000):
        text = base64.b64encode(rng.randbytes(rng.randint(0, 70))).decode()
        for _ in range(rng.randint(0, 3)):
            pos, char = rng.randint(0, len(text)), rng.choice(alphabet)
            op = rng.random()
            text = (
                text[:pos] + char + text[pos + 1 :]
                if op < 0.4
                else text[:pos] + char + text[pos:]
                if op < 0.7
                else (text[:pos] + text[pos + 1 :])
            )
        try:
            native = decode(json.dumps(text).encode())
        except msgspec.DecodeError:
            continue
        accepted += 1
        assert native == _standard_b64(text, "f"), text
    assert accepted > 5000  # the comparison ran on many inputs, valid and edited


# --- the typed one-pass decode of a whole document --------------------------------------------


def _general(raw: bytes) -> tuple[str, Any]:
    """from_json without the extra: the general parser with the standard json and base64."""
    saved = document.decode_document, document.b64decode_large
    document.decode_document = lambda _raw: _fast.UNDECIDED  # type: ignore[assignment]
    document.b64decode_large = lambda _value: None  # type: ignore[assignment]
    try:
        return _outcome(AttestationDocument.from_json, raw)
    finally:
        document.decode_document, document.b64decode_large = saved


def _default(raw: bytes) -> tuple[str, Any]:
    """from_json as installed, called at the same stack depth as :func:`_general` (json.loads's
    nesting limit is counted from the current depth)."""
    return _outcome(AttestationDocument.from_json, raw)


def _typed(raw: bytes) -> tuple[str, Any]:
    """Only the typed decode: its document, or "left" when it leaves the document to the general parser."""
    typed = _fast.decode_document(raw)
    if typed is _fast.UNDECIDED:
        return "left", None
    try:
        return "ok", document._from_typed(typed)
    except MalformedEvidence:
        return "left", None


def _assert_same_outcome(raw: bytes) -> str:
    """from_json with the extra gives what the general parser gives; returns what the typed path did."""
    general = _general(raw)
    assert _default(raw) == general
    typed = _typed(raw)
    if typed[0] == "ok":
        assert general == typed, "the typed decode accepted what the general parser reads otherwise"
        assert _pcr_orders(typed[1]) == _pcr_orders(general[1])  # dict equality ignores the order
    return typed[0]


def _pcr_orders(doc: AttestationDocument) -> list[list[int]]:
    return [list(q.pcrs.pcrs) for q in doc.attestation.quotes]


def _sample_document() -> AttestationDocument:
    banks = {4: 20, 11: 32, 12: 48, 13: 64}
    quotes = tuple(
        Quote(
            quote=bytes([alg]) * 145,
            raw_sig=bytes([alg, 1]) * 130,
            pcrs=PCRs(hash=alg, pcrs={i: bytes([i, alg]) * (size // 2) for i in range(24)}),
        )
        for alg, size in banks.items()
    )
    return AttestationDocument(
        attestation=Attestation(
            ak_pub=bytes(range(256)) + b"ak",
            quotes=quotes,
            event_log=bytes(range(256)) * 40,
            tee_attestation={"SevSnpAttestation": {"report": {"version": 2, "policy": "196608", "id": "AAAA"}}},
        ),
        instance_info=b'{"Report": "x"}' * 100,
        user_data=bytes(32),
    )


def _protojson(go: dict[str, Any]) -> dict[str, Any]:
    """The protojson shape of a Go-form document: camelCase keys, hash names, a flattened oneof."""
    att = dict(go["Attestation"])
    names = {4: "SHA1", 11: "SHA256", 12: "SHA384", 13: "SHA512"}
    out: dict[str, Any] = {"akPub": att["ak_pub"], "eventLog": att["event_log"]}
    out["quotes"] = [
        {
            "quote": q["quote"],
            "rawSig": q["raw_sig"],
            "pcrs": {"hash": names[q["pcrs"]["hash"]], "pcrs": q["pcrs"]["pcrs"]},
        }
        for q in att["quotes"]
    ]
    out["sevSnpAttestation"] = att["TeeAttestation"]["SevSnpAttestation"]
    return {"Attestation": out, "InstanceInfo": go["InstanceInfo"], "UserData": go["UserData"]}


@pytest.fixture(scope="module")
def shapes() -> dict[str, dict[str, Any]]:
    go = json.loads(_sample_document().to_json())
    return {"go": go, "protojson": _protojson(go)}


def test_typed_decode_reads_both_shapes_as_the_general_parser(shapes: dict[str, dict[str, Any]]) -> None:
    expected = _sample_document()
    for shape in shapes.values():
        raw = json.dumps(shape).encode()
        assert _assert_same_outcome(raw) == "ok"
        assert _typed(raw) == ("ok", expected)


def test_typed_decode_of_the_real_document(vectors: Path) -> None:
    raw = (vectors / "aws-nitrotpm/constellation-aws-attdoc-2023-06/attdoc-aws.txt").read_bytes()
    assert _assert_same_outcome(raw) == "ok"


def _set(doc: dict[str, Any], path: tuple[Any, ...], value: Any) -> dict[str, Any]:
    out = json.loads(json.dumps(doc))
    node = out
    for key in path[:-1]:
        node = node[key]
    if value is _DELETE:
        del node[path[-1]]
    else:
        node[path[-1]] = value
    return out


_DELETE = object()
_B64_32 = base64.b64encode(bytes(32)).decode()
# (shape, path, value): edits the typed decode must leave to the general parser or read alike.
EDITS: list[tuple[str, tuple[Any, ...], Any]] = [
    ("go", ("Attestation", "ak_pub"), None),
    ("go", ("Attestation", "ak_pub"), _DELETE),
    ("go", ("Attestation", "ak_pub"), 5),
    ("go", ("Attestation", "ak_pub"), "-_8"),  # URL alphabet, unpadded: the general parser reads it
    ("go", ("Attestation", "ak_pub"), "AAE"),
    ("go", ("Attestation", "ak_pub"), "!!!"),
    ("go", ("Attestation", "akPub"), "AAE="),  # both shapes' keys: the snake_case one wins
    ("protojson", ("Attestation", "ak_pub"), None),  # ...even when null
    ("protojson", ("Attestation", "ak_pub"), "AAE="),
    ("go", ("Attestation", "quotes"), None),
    ("go", ("Attestation", "quotes"), "x"),
    ("go", ("Attestation", "quotes"), [{}] * (MAX_QUOTES + 1)),
    ("go", ("Attestation", "quotes", 0), "x"),
    ("go", ("Attestation", "quotes", 0, "pcrs"), None),
    ("go", ("Attestation", "quotes", 0, "pcrs"), _DELETE),
    ("go", ("Attestation", "quotes", 0, "pcrs", "hash"), "SHA256"),
    ("go", ("Attestation", "quotes", 0, "pcrs", "hash"), "11"),
    ("go", ("Attestation", "quotes", 0, "pcrs", "hash"), 7),
    ("go", ("Attestation", "quotes", 0, "pcrs", "hash"), True),
    ("go", ("Attestation", "quotes", 0, "pcrs", "hash"), _DELETE),
    ("go", ("Attestation", "quotes", 1, "pcrs", "pcrs"), None),
    ("go", ("Attestation", "quotes", 1, "pcrs", "pcrs"), {}),
    ("go", ("Attestation", "quotes", 1, "pcrs", "pcrs", "01"), _B64_32),  # "1" and "01": the later wins
    ("go", ("Attestation", "quotes", 1, "pcrs", "pcrs", "32"), _B64_32),
    ("go", ("Attestation", "quotes", 1, "pcrs", "pcrs", "٤"), _B64_32),
    ("go", ("Attestation", "quotes", 1, "pcrs", "pcrs", "0"), _B64_32[:-4]),
    ("go", ("Attestation", "quotes", 1, "pcrs", "pcrs", "0"), _B64_32.rstrip("=")),
    ("go", ("Attestation", "quotes", 1, "pcrs", "pcrs", "0"), _B64_32.replace("A", "-", 1)),
    ("go", ("Attestation", "quotes", 1, "pcrs", "pcrs", "0"), None),
    ("go", ("Attestation", "quotes", 1, "pcrs", "pcrs", "0"), base64.b64encode(bytes(48)).decode()),
    ("go", ("Attestation", "quotes", 1, "quote"), None),
    ("go", ("Attestation", "quotes", 1, "rawSig"), "AAE="),
    ("protojson", ("Attestation", "quotes", 1, "raw_sig"), "AAE="),
    ("go", ("Attestation", "event_log"), "not base64 at all, and long" * 50),
    ("go", ("Attestation", "event_log"), base64.urlsafe_b64encode(b"\xfb\xff" * 700).decode()),
    ("go", ("Attestation", "instance_info"), {"zone": "z", "project_number": "12", "instance_id": 7}),
    ("go", ("Attestation", "instanceInfo"), {"zone": "z", "projectId": "p"}),
    ("go", ("Attestation", "instance_info"), {"project_number": -1}),
    ("go", ("Attestation", "instance_info"), "x"),
    ("go", ("Attestation", "canonical_event_log"), "AAE="),
    ("go", ("Attestation", "canonicalEventLog"), "AAE="),
    ("go", ("Attestation", "ak_cert"), "AAE="),
    ("go", ("Attestation", "akCert"), 5),
    ("go", ("Attestation", "intermediate_certs"), ["AAE=", "AAI="]),
    ("go", ("Attestation", "intermediateCerts"), ["AAE="] * 9),
    ("go", ("Attestation", "intermediate_certs"), "AAE="),
    ("go", ("Attestation", "TeeAttestation"), None),
    ("go", ("Attestation", "TeeAttestation"), []),
    ("go", ("Attestation", "TeeAttestation"), {"TdxAttestation": {"q": 1}}),
    ("go", ("Attestation", "tdx_attestation"), {"q": 1}),  # TeeAttestation wins over the oneof keys
    ("protojson", ("Attestation", "sevSnpAttestation"), None),
    ("protojson", ("Attestation", "sevSnpAttestation"), "x"),
    ("protojson", ("Attestation", "sevSnpAttestation"), _DELETE),
    ("protojson", ("Attestation", "tdx_attestation"), {"q": [1, 2.5, None]}),
    ("protojson", ("Attestation", "sev_snp_attestation"), {"report": {}}),  # camelCase first
    ("protojson", ("Attestation", "sevSnpAttestation", "deep"), json.loads("[" * 31 + "1" + "]" * 31)),
    ("protojson", ("Attestation", "sevSnpAttestation", "deep"), json.loads("[" * 32 + "1" + "]" * 32)),
    ("protojson", ("Attestation", "sevSnpAttestation", "deep"), json.loads("[" * 32 + "]" * 32)),
    ("protojson", ("Attestation", "sevSnpAttestation", "big"), 2**70),
    ("go", ("Attestation", "TeeAttestation", "SevSnpAttestation", "deep"), json.loads("[" * 30 + "1" + "]" * 30)),
    ("go", ("Attestation", "TeeAttestation", "SevSnpAttestation", "deep"), json.loads("[" * 31 + "1" + "]" * 31)),
    ("go", ("Attestation", "unknown"), {"x": 1}),
    ("go", ("InstanceInfo",), None),
    ("go", ("InstanceInfo",), "AAE"),
    ("go", ("InstanceInfo",), 5),
    ("go", ("UserData",), _DELETE),
    ("go", ("UserData",), "!!"),
    ("go", ("Attestation",), None),
    ("go", ("Attestation",), []),
]


@pytest.mark.parametrize(("shape", "path", "value"), EDITS, ids=range(len(EDITS)))
def test_typed_decode_of_edited_documents(
    shapes: dict[str, dict[str, Any]], shape: str, path: tuple[Any, ...], value: Any
) -> None:
    _assert_same_outcome(json.dumps(_set(shapes[shape], path, value)).encode())


def test_typed_decode_duplicate_keys_keep_the_last(shapes: dict[str, dict[str, Any]]) -> None:
    text = json.dumps(shapes["go"])
    raw = text.replace('"ak_pub": ', '"ak_pub": "AAE=", "ak_pub": ', 1).encode()
    assert _assert_same_outcome(raw) == "ok"
    raw = text.replace('"UserData": ', '"UserData": "AAE=", "UserData": ', 1).encode()
    assert _assert_same_outcome(raw) == "ok"


@pytest.mark.parametrize("text", ["\\ud800", "\\udfff x", "ok \\u00e9"])
def test_typed_decode_and_unicode_in_the_tee(shapes: dict[str, dict[str, Any]], text: str) -> None:
    raw = json.dumps(shapes["protojson"]).replace('"196608"', f'"{text}"', 1).encode()
    assert ("\\ud" in text) == (_typed(raw)[0] == "left")  # lone surrogates go to the general parser
    _assert_same_outcome(raw)


_EDIT_VALUES = st.one_of(
    st.none(),
    st.booleans(),
    st.integers(min_value=-(2**70), max_value=2**70),
    st.text(alphabet=_B64_ALPHABET, max_size=90),
    st.binary(max_size=70).map(lambda b: base64.b64encode(b).decode()),
    st.lists(st.binary(max_size=8).map(lambda b: base64.b64encode(b).decode()), max_size=3),
    st.dictionaries(st.sampled_from(["0", "1", "01", "23", "hash", "pcrs", "quote"]), st.integers(0, 20), max_size=3),
)


def _paths(node: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    found = [prefix] if prefix else []
    if isinstance(node, dict):
        for key, value in node.items():
            found += _paths(value, (*prefix, key))
    elif isinstance(node, list):
        for i, value in enumerate(node):
            found += _paths(value, (*prefix, i))
    return found


@settings(max_examples=300, deadline=None)
@given(st.sampled_from(["go", "protojson"]), st.data())
def test_random_edits_read_as_with_the_general_parser(shape: str, data: st.DataObject) -> None:
    doc = (
        _protojson(json.loads(_sample_document().to_json()))
        if shape == "protojson"
        else json.loads(_sample_document().to_json())
    )
    for _ in range(data.draw(st.integers(1, 3))):
        path = data.draw(st.sampled_from(_paths(doc)))
        doc = _set(doc, path, data.draw(_EDIT_VALUES))
    _assert_same_outcome(json.dumps(doc).encode())


# Raw bytes json.dumps never writes: the typed decode must not accept what json.loads refuses.
RAW_EDITS = [
    (b',"x":"\xff"}', "invalid UTF-8 in an unknown field"),
    (b',"z\xff":1}', "invalid UTF-8 in an unknown key"),
    (b',"x":"\xc0\x80"}', "an overlong UTF-8 sequence"),
    (b',"x":"\xf4\x90\x80\x80"}', "a code point above U+10FFFF"),
    (b',"x":' + b"1" * 4301 + b"}", "an integer beyond int()'s 4300 digits"),
    (b',"x":' + b"[" * 995 + b"]" * 995 + b"}", "nesting near json's limit"),
    (b',"x":1}', "an unknown key, well formed"),
]


@pytest.mark.parametrize(("tail", "what"), RAW_EDITS, ids=[w for _, w in RAW_EDITS])
def test_raw_bytes_in_a_document_read_as_with_the_general_parser(tail: bytes, what: str) -> None:
    raw = json.dumps(json.loads(_sample_document().to_json())).encode()
    edited = raw[:-1] + tail
    assert _typed(edited)[0] == "left", what  # an unknown key: never the typed decode's to judge
    _assert_same_outcome(edited)
    # The same bytes inside the TEE tree, which the typed decode reads as generic JSON.
    inner = raw.replace(b'"TeeAttestation": {', b'"TeeAttestation": {"y": 1' + tail[:-1] + b", ", 1)
    assert inner != raw
    _assert_same_outcome(inner)


def test_deep_instance_info_reads_as_with_the_general_parser() -> None:
    """Near the interpreter's nesting limit json.loads and msgspec part ways by a few levels,
    where exactly depends on the call stack: every depth around it must read alike."""
    go = json.loads(_sample_document().to_json())
    go["Attestation"]["instance_info"] = {"zone": "z", "extra": "DEEP"}
    text = json.dumps(go)
    outcomes = set()
    for depth in (30, 33, *range(940, 1001)):
        raw = text.replace('"DEEP"', "[" * depth + "]" * depth).encode()
        _assert_same_outcome(raw)
        outcomes.add(_general(raw)[0])
    assert outcomes == {"ok", "refused"}  # the range crosses the limit


def test_a_memoryview_is_refused_as_without_the_extra() -> None:
    raw = _sample_document().to_json()
    with pytest.raises(TypeError):
        AttestationDocument.from_json(memoryview(raw))  # type: ignore[arg-type]
    assert AttestationDocument.from_json(bytearray(raw)) == AttestationDocument.from_json(raw)
