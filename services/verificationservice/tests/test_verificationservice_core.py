"""The pure core: nonce parsing (HTTP query, gRPC bytes), the response body, issuer failure classes.

The issuers here are small stand-ins that follow the Issuer contract (unit tests only); the
served endpoints are tested against swtpm in the other files.
"""

from __future__ import annotations

import base64
import json

import pytest
from hypothesis import given
from hypothesis import strategies as st

from starlock.attestation import MalformedEvidence, Variant
from starlock.attestation.tpm_device import TpmError, TpmSupportMissing
from starlock.verificationservice import (
    MAX_NONCE_SIZE,
    USER_DATA,
    AttestationFailed,
    BadRequest,
    IssuerUnavailable,
    attest,
    http_body,
    nonce_from_query,
)
from starlock.verificationservice.core import check_nonce


class RecordingIssuer:
    def __init__(self, fail: Exception | None = None) -> None:
        self.calls: list[tuple[bytes, bytes]] = []
        self.fail = fail

    @property
    def variant(self) -> Variant:
        return Variant.DUMMY

    def issue(self, user_data: bytes, nonce: bytes) -> bytes:
        self.calls.append((user_data, nonce))
        if self.fail is not None:
            raise self.fail
        return b"doc:" + nonce


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).decode()


# --- HTTP query --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("query", "nonce"),
    [
        ("nonce=" + b64url(b"\xfb\xff\xbf"), b"\xfb\xff\xbf"),  # URL alphabet (- and _)
        ("nonce=aGVsbG8=", b"hello"),  # padded, as upstream
        ("nonce=aGVsbG8", b"hello"),  # unpadded: accepted here too
        ("nonce=aGVsbG8%3D", b"hello"),  # percent-encoded padding
        ("a=1&nonce=aGk&b=", b"hi"),  # other parameters are ignored
        ("nonce=" + b64url(b"x" * MAX_NONCE_SIZE), b"x" * MAX_NONCE_SIZE),
    ],
)
def test_query_nonce_accepted(query: str, nonce: bytes) -> None:
    assert nonce_from_query(query) == nonce


@pytest.mark.parametrize(
    ("query", "error"),
    [
        ("", "missing"),
        ("other=aGk", "missing"),
        ("Nonce=aGk", "missing"),  # case-sensitive, as Go's url.Values
        ("nonce=aGk&nonce=aGk", "2 times"),
        ("nonce=&nonce=aGk", "2 times"),
        ("nonce=", "empty"),
        ("nonce", "empty"),
        ("nonce=aGk+", "base64"),  # '+' is a space in a query, never base64url
        ("nonce=aG/k", "base64"),  # standard alphabet refused
        ("nonce=a", "padding"),  # one character is never base64
        ("nonce=aGk==", "padding"),  # wrong padding
        ("nonce=aG=k", "base64"),
        ("nonce=%ff%fe", "base64"),
        ("nonce=" + b64url(b"x" * (MAX_NONCE_SIZE + 1)), "limit of 64"),
        ("nonce=" + "A" * 5000, "longer than"),
        ("&".join(f"p{i}=1" for i in range(40)) + "&nonce=aGk", "fields"),
    ],
)
def test_query_nonce_refused(query: str, error: str) -> None:
    with pytest.raises(BadRequest, match=error):
        nonce_from_query(query)


@given(st.binary(min_size=1, max_size=MAX_NONCE_SIZE), st.booleans())
def test_query_nonce_roundtrip(nonce: bytes, padded: bool) -> None:
    text = b64url(nonce)
    assert nonce_from_query("nonce=" + (text if padded else text.rstrip("="))) == nonce


@given(st.text(max_size=300))
def test_query_parser_raises_only_bad_request(query: str) -> None:
    try:
        nonce = nonce_from_query(query)
    except BadRequest:
        return
    assert 1 <= len(nonce) <= MAX_NONCE_SIZE


# --- gRPC nonce, body, issuer ------------------------------------------------------------------


def test_check_nonce_bounds() -> None:
    assert check_nonce(b"x") == b"x"
    assert check_nonce(b"x" * MAX_NONCE_SIZE) == b"x" * MAX_NONCE_SIZE
    with pytest.raises(BadRequest, match="empty"):
        check_nonce(b"")
    with pytest.raises(BadRequest, match="65 bytes"):
        check_nonce(b"x" * (MAX_NONCE_SIZE + 1))


def test_http_body_is_upstreams() -> None:
    body = http_body(b"\x00\xff{document}")
    assert body == b'{"data":"AP97ZG9jdW1lbnR9"}'
    assert base64.b64decode(json.loads(body)["data"]) == b"\x00\xff{document}"


def test_attest_uses_verifyservice_user_data() -> None:
    issuer = RecordingIssuer()
    assert attest(issuer, b"n0nce") == b"doc:n0nce"
    assert issuer.calls == [(b"VerifyService", b"n0nce")]
    assert USER_DATA == b"VerifyService"


def test_attest_refuses_bad_nonce_before_the_issuer() -> None:
    issuer = RecordingIssuer()
    for nonce in (b"", b"x" * (MAX_NONCE_SIZE + 1)):
        with pytest.raises(BadRequest):
            attest(issuer, nonce)
    assert issuer.calls == []


@pytest.mark.parametrize(
    ("fail", "kind"),
    [
        (TpmError("cannot open the TPM with TCTI 'swtpm:port=1': tcti:IO failure"), IssuerUnavailable),
        (TpmError("TPM2_Quote failed: tcti:IO failure"), IssuerUnavailable),
        (TpmError("TCG event log /x is larger than 1048576 bytes"), AttestationFailed),
        (TpmSupportMissing("tpm2-pytss is not installed"), AttestationFailed),
        (MalformedEvidence("bad"), AttestationFailed),
        (ValueError("s3cr3t-key-material"), AttestationFailed),
    ],
)
def test_attest_failure_classes(fail: Exception, kind: type[AttestationFailed]) -> None:
    with pytest.raises(AttestationFailed) as caught:
        attest(RecordingIssuer(fail), b"nonce")
    assert type(caught.value) is kind
    assert caught.value.__cause__ is fail
    assert "s3cr3t" not in str(caught.value) and "TCTI" not in str(caught.value)
