"""The vTPM attestation document (reference: spec-attestation §4.3).

Vector: aws-nitrotpm/constellation-aws-attdoc-2023-06/attdoc-aws.txt, the protojson-era form
(MANIFEST: 3 quotes SHA-256/384/512 over PCRs 0-23, a 38-event log, UserData 0569936b...).
"""

from __future__ import annotations

import base64
import json
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from starlock.attestation import AttestationDocument, MalformedEvidence, document
from starlock.attestation.document import MAX_DOCUMENT_SIZE, MAX_QUOTES, Attestation, PCRs, Quote

AWS_DOC = "aws-nitrotpm/constellation-aws-attdoc-2023-06/attdoc-aws.txt"


@pytest.fixture(scope="module")
def aws_raw(vectors: Path) -> bytes:
    return (vectors / AWS_DOC).read_bytes()


def test_aws_protojson_document_parses(aws_raw: bytes) -> None:
    doc = AttestationDocument.from_json(aws_raw)
    att = doc.attestation
    assert doc.user_data.hex() == "0569936bccedfba6359db975b705adf2d469333f534249948d43d3abca0e5b7d"
    assert [q.pcrs.hash_name for q in att.quotes] == ["SHA256", "SHA384", "SHA512"]
    for quote in att.quotes:
        assert sorted(quote.pcrs.pcrs) == list(range(24))
    sha256 = att.quote_for(0x000B)
    assert sha256 is not None
    assert sha256.pcrs.pcrs[0].hex() == "7b068c0c3ac29afe264134536b9be26f1d4ccd575b88d3c3ceabf36ac99c0278"
    assert sha256.pcrs.pcrs[8] == bytes(32)
    assert att.event_log[:4] == b"\x00\x00\x00\x00"  # PCR 0, then EV_NO_ACTION: the Spec ID event
    # The TEE oneof is carried untouched under its Go field name.
    assert att.tee_attestation is not None
    assert "report" in att.tee_attestation["SevSnpAttestation"]
    info = json.loads(doc.instance_info)
    assert set(info) == {"Report", "Certs"}


def test_go_form_round_trip_of_real_document(aws_raw: bytes) -> None:
    doc = AttestationDocument.from_json(aws_raw)
    go = doc.to_json()
    again = AttestationDocument.from_json(go)
    assert again == doc
    assert again.to_json() == go
    assert b'"ak_pub":' in go
    assert b'"akPub"' not in go


def test_go_encoding_json_form_is_exact() -> None:
    """Hand-written expectation of Go's json.Marshal for a small document."""
    pcrs = {i: bytes([i]) * 32 for i in (0, 2, 10)}
    doc = AttestationDocument(
        attestation=Attestation(
            ak_pub=b"\x00\x01",
            quotes=(Quote(quote=b"q", raw_sig=b"s", pcrs=PCRs(hash=11, pcrs=pcrs)),),
        ),
        instance_info=b"",
        user_data=b"u",
    )
    expected = (
        '{"Attestation":{"ak_pub":"AAE=","quotes":[{"quote":"cQ==","raw_sig":"cw==","pcrs":{"hash":11,'
        f'"pcrs":{{"0":"{_b64(pcrs[0])}","10":"{_b64(pcrs[10])}","2":"{_b64(pcrs[2])}"}}}}}}],'
        '"TeeAttestation":null},"InstanceInfo":null,"UserData":"dQ=="}'
    )
    assert doc.to_json().decode() == expected


def _b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def _doc(**att: object) -> bytes:
    base: dict[str, object] = {"ak_pub": "AAE=", "quotes": []}
    base.update(att)
    return json.dumps({"Attestation": base, "InstanceInfo": None, "UserData": "dQ=="}).encode()


@pytest.mark.parametrize(
    ("raw", "message"),
    [
        (b"not json", "not valid JSON"),
        (b"[]", "must be a JSON object"),
        (b'{"UserData": ""}', "Attestation missing"),
        (_doc(ak_pub="!!!"), "ak_pub: not valid base64"),
        (_doc(ak_pub=5), "ak_pub: expected a base64 string"),
        (_doc(quotes="x"), "quotes: not a list"),
        (_doc(quotes=[{}] * (MAX_QUOTES + 1)), "at most"),
        (_doc(quotes=[{"quote": "", "raw_sig": "", "pcrs": {"hash": 11, "pcrs": {"0": "AAE="}}}]), "expected 32"),
        (_doc(quotes=[{"quote": "", "raw_sig": "", "pcrs": {"hash": 11, "pcrs": {"99": "AA=="}}}]), "out of range"),
        (_doc(quotes=[{"quote": "", "raw_sig": "", "pcrs": {"hash": 7}}]), "unknown hash algorithm id"),
        (_doc(quotes=[{"quote": "", "raw_sig": "", "pcrs": {"hash": "MD5"}}]), "unknown hash algorithm"),
        (_doc(quotes=[{"quote": ""}]), "pcrs: missing"),
        (_doc(instance_info={"project_number": -1}), "unsigned 64-bit"),
        (b" " * (MAX_DOCUMENT_SIZE + 1), "more than the limit"),
    ],
)
def test_malformed_documents_raise_typed_errors(raw: bytes, message: str) -> None:
    with pytest.raises(MalformedEvidence, match=message):
        AttestationDocument.from_json(raw)


def test_url_safe_and_unpadded_base64_is_read() -> None:
    doc = AttestationDocument.from_json(_doc(ak_pub="-_8"))
    assert doc.attestation.ak_pub == b"\xfb\xff"


@pytest.mark.parametrize("key", ["٤", "３", "²"])
def test_non_ascii_digit_pcr_indices_are_refused(key: str) -> None:
    """Go's ParseUint refuses them; Python's isdigit()/int() would read some as PCR numbers."""
    raw = _doc(quotes=[{"quote": "", "raw_sig": "", "pcrs": {"hash": 11, "pcrs": {key: _b64(bytes(32))}}}])
    with pytest.raises(MalformedEvidence, match="out of range"):
        AttestationDocument.from_json(raw)


# --- the TEE tree's bounds: the quick walk refuses exactly what the naming walk refuses ---------


def _tree_outcome(check: Any, tree: Any) -> str:
    try:
        check(tree)
    except MalformedEvidence as exc:
        return str(exc)
    return "ok"


def _nested(depth: int, leaf: Any) -> Any:
    tree = leaf
    for i in range(depth):
        tree = [tree] if i % 2 else {"k": tree}
    return tree


@pytest.mark.parametrize(
    ("tree", "accepted"),
    [
        (_nested(32, 1), True),  # the leaf at depth 32
        (_nested(33, 1), False),  # ...at depth 33
        (_nested(32, []), True),  # an empty container at depth 32 has no child too deep
        (_nested(33, []), False),
        (_nested(32, {}), True),
        (_nested(5, "\ud800"), False),  # a lone surrogate in a value
        ({"a": [{"\udfff": 1}]}, False),  # ...in a key
        ({"a": ["é", 2**70, 1.5, None, True]}, True),
    ],
)
def test_tee_tree_bounds(tree: Any, accepted: bool) -> None:
    quick = _tree_outcome(lambda t: document._check_tree(t, "tee", text_checked=False), tree)
    naming = _tree_outcome(lambda t: document._require_text_tree(t, "tee"), tree)
    assert quick == naming
    assert (quick == "ok") == accepted


_TREES = st.recursive(
    st.none() | st.integers() | st.text(alphabet=st.sampled_from(["a", "é", "\ud800", "\udc00"]), max_size=3),
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=2), inner, max_size=3),
    max_leaves=12,
)


@settings(max_examples=300, deadline=None)
@given(_TREES, st.integers(0, 33))
def test_tee_tree_quick_walk_agrees_with_the_naming_walk(tree: Any, depth: int) -> None:
    tree = _nested(depth, tree)
    quick = _tree_outcome(lambda t: document._check_tree(t, "tee", text_checked=False), tree)
    assert quick == _tree_outcome(lambda t: document._require_text_tree(t, "tee"), tree)


@pytest.mark.parametrize("key", ["TeeAttestation", "sevSnpAttestation", "tdx_attestation"])
@pytest.mark.parametrize(
    ("tree", "message"), [(_nested(33, 1), "nested too deeply"), ({"a": "\ud800"}, "lone surrogate")]
)
def test_a_tee_tree_out_of_bounds_is_refused(key: str, tree: Any, message: str) -> None:
    value = {"SevSnpAttestation": tree} if key == "TeeAttestation" else tree
    raw = _doc(**{key: value}).decode().encode("utf-8", "surrogatepass")
    with pytest.raises(MalformedEvidence, match=message):
        AttestationDocument.from_json(raw)
