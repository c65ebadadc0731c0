"""Property tests: the TPM parsers and AttestationDocument.from_json, on random bytes and on
mutations of real vector bytes, either succeed or raise an AttestationError subclass.

Seeds: aws-nitrotpm/constellation-aws-attdoc-2023-06/attdoc-aws.txt (akPub, quotes, rawSig,
eventLog, the JSON itself) and gcp-vtpm/gotpmtools-gce-eventlogs/cos-85-amd-sev.bin.
"""

from __future__ import annotations

import contextlib
import json
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from starlock.attestation.document import AttestationDocument, Quote
from starlock.attestation.errors import AttestationError
from starlock.attestation.tpm import (
    parse_event_log,
    parse_tpms_attest,
    parse_tpmt_public,
    parse_tpmt_signature,
    replay,
    verify_attestation,
    verify_quote,
)

AWS_DOC = "aws-nitrotpm/constellation-aws-attdoc-2023-06/attdoc-aws.txt"
GCE_LOG = "gcp-vtpm/gotpmtools-gce-eventlogs/cos-85-amd-sev.bin"
AWS_EXTRA_DATA = bytes.fromhex("b3c5249a218214133262f5a943570890eca99f0f2cf6eca036f72a0f26189696")

FUZZ = settings(max_examples=300, deadline=None, suppress_health_check=[HealthCheck.too_slow])
FUZZ_SLOW = settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def mutations(draw: st.DrawFn, seed: bytes) -> bytes:
    """Flip, overwrite, insert and delete bytes of ``seed``, or truncate it."""
    data = bytearray(seed)
    for _ in range(draw(st.integers(1, 6))):
        op = draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate", "u16", "u32"]))
        pos = draw(st.integers(0, max(len(data) - 1, 0)))
        if op == "flip" and data:
            data[pos] ^= 1 << draw(st.integers(0, 7))
        elif op == "set" and data:
            data[pos] = draw(st.integers(0, 255))
        elif op == "insert":
            data[pos:pos] = draw(st.binary(min_size=1, max_size=8))
        elif op == "delete":
            del data[pos : pos + draw(st.integers(1, 8))]
        elif op == "truncate":
            del data[pos:]
        elif op in ("u16", "u32"):
            width = 2 if op == "u16" else 4
            value = draw(st.sampled_from([0, 1, 0x7F, 0x80, 0xFF, 0xFFFF, 0xFFFFFFFF, 0x10000]))
            data[pos : pos + width] = (value % (1 << (8 * width))).to_bytes(
                width, draw(st.sampled_from(["big", "little"]))
            )
    return bytes(data)


def only_attestation_errors(func: Callable[[], Any]) -> None:
    with contextlib.suppress(AttestationError):
        func()


@pytest.fixture(scope="module")
def aws_raw(vectors: Path) -> bytes:
    return (vectors / AWS_DOC).read_bytes()


@pytest.fixture(scope="module")
def aws(aws_raw: bytes) -> AttestationDocument:
    return AttestationDocument.from_json(aws_raw)


PARSERS = [parse_tpmt_public, parse_tpms_attest, parse_tpmt_signature, parse_event_log]


@FUZZ
@given(data=st.binary(max_size=600), which=st.integers(0, len(PARSERS) - 1))
def test_random_bytes(data: bytes, which: int) -> None:
    only_attestation_errors(lambda: PARSERS[which](data))


@FUZZ
@given(data=st.data())
def test_mutated_ak_pub(aws: AttestationDocument, data: st.DataObject) -> None:
    mutated = data.draw(mutations(aws.attestation.ak_pub))
    only_attestation_errors(lambda: parse_tpmt_public(mutated).name())


@FUZZ
@given(data=st.data())
def test_mutated_quote_and_signature(aws: AttestationDocument, data: st.DataObject) -> None:
    quote = aws.attestation.quotes[data.draw(st.integers(0, len(aws.attestation.quotes) - 1))]
    attest = data.draw(mutations(quote.quote))
    sig = data.draw(st.one_of(st.just(quote.raw_sig), mutations(quote.raw_sig)))
    only_attestation_errors(lambda: parse_tpms_attest(attest))
    only_attestation_errors(lambda: parse_tpmt_signature(sig))
    ak = parse_tpmt_public(aws.attestation.ak_pub)
    only_attestation_errors(lambda: verify_quote(ak, Quote(attest, sig, quote.pcrs), AWS_EXTRA_DATA))


@FUZZ_SLOW
@given(data=st.data(), which=st.sampled_from(["aws", "gce"]), bank=st.sampled_from([0x0004, 0x000B, 0x000C, 0x000D]))
def test_mutated_event_log(vectors: Path, aws: AttestationDocument, data: st.DataObject, which: str, bank: int) -> None:
    seed = aws.attestation.event_log if which == "aws" else (vectors / GCE_LOG).read_bytes()
    mutated = data.draw(mutations(seed))
    only_attestation_errors(lambda: replay(parse_event_log(mutated), bank))


@FUZZ
@given(text=st.one_of(st.text(max_size=200), st.binary(max_size=200)))
def test_random_document(text: str | bytes) -> None:
    only_attestation_errors(lambda: AttestationDocument.from_json(text))


@FUZZ_SLOW
@given(data=st.data())
def test_mutated_document(aws_raw: bytes, aws: AttestationDocument, data: st.DataObject) -> None:
    mutated = data.draw(mutations(aws_raw))

    def run() -> None:
        doc = AttestationDocument.from_json(mutated)
        att = doc.attestation
        verify_attestation(att, AWS_EXTRA_DATA, parse_tpmt_public(att.ak_pub))

    only_attestation_errors(run)


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-(2**70), 2**70) | st.text(max_size=20) | st.just("AAAA"),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=8), children, max_size=3),
    max_leaves=8,
)


def _paths(obj: Any, prefix: tuple[Any, ...] = ()) -> list[tuple[Any, ...]]:
    out = [prefix]
    if isinstance(obj, dict):
        for key, value in obj.items():
            out += _paths(value, (*prefix, key))
    elif isinstance(obj, list):
        for i, value in enumerate(obj):
            out += _paths(value, (*prefix, i))
    return out


@FUZZ_SLOW
@given(data=st.data())
def test_structurally_mutated_document(aws_raw: bytes, data: st.DataObject) -> None:
    """Replace one JSON value anywhere in the AWS document by random JSON."""
    obj = json.loads(aws_raw)
    path = data.draw(st.sampled_from(_paths(obj)[1:]))
    target = obj
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = data.draw(JSON_VALUES)
    mutated = json.dumps(obj).encode()

    def run() -> None:
        att = AttestationDocument.from_json(mutated).attestation
        verify_attestation(att, AWS_EXTRA_DATA, parse_tpmt_public(att.ak_pub))

    only_attestation_errors(run)
