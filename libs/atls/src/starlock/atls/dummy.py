"""The ``dummy`` variant (OID 1.3.9900.1.1): Constellation's test document, for tests and debugging.

The document is the JSON ``{"UserData": <b64>, "Nonce": <b64>}`` of upstream's ``FakeIssuer``
(Go ``[]byte`` fields: standard base64). It proves nothing about the peer, so both classes refuse
to be built unless the caller passes ``insecure=True``, and each one logs a warning when it is.
"""

from __future__ import annotations

import base64
import binascii
import hmac
import json
import logging

from starlock.atls.errors import AtlsConfigError
from starlock.attestation.document import MAX_DOCUMENT_SIZE
from starlock.attestation.errors import MalformedEvidence, NonceMismatch
from starlock.attestation.interfaces import Check, CheckStatus, ValidationResult
from starlock.attestation.variant import Variant

__all__ = ["DummyIssuer", "DummyValidator"]

_log = logging.getLogger(__name__)
_WARNING = "dummy attestation enabled (%s): it proves NOTHING about the peer; never use it outside tests"


def _require_insecure(insecure: bool, what: str) -> None:
    if not insecure:
        raise AtlsConfigError(
            f"the dummy attestation {what} is for tests only and proves nothing; pass insecure=True "
            "(CLI: --insecure-dummy) to enable it explicitly"
        )
    _log.warning(_WARNING, what)


class DummyIssuer:
    """Issues upstream's fake document: the user data and nonce, unsigned."""

    def __init__(self, *, insecure: bool = False) -> None:
        _require_insecure(insecure, "issuer")

    @property
    def variant(self) -> Variant:
        return Variant.DUMMY

    def issue(self, user_data: bytes, nonce: bytes) -> bytes:
        # json.dumps({"UserData": b64, "Nonce": b64}, separators=(",", ":")), written directly: the
        # base64 alphabet needs no JSON escaping, so the bytes are the same (a test compares them)
        return b'{"UserData":"' + base64.b64encode(user_data) + b'","Nonce":"' + base64.b64encode(nonce) + b'"}'


class DummyValidator:
    """Accepts any fake document whose nonce matches (and, unlike upstream, refuses an empty nonce)."""

    def __init__(self, *, insecure: bool = False) -> None:
        _require_insecure(insecure, "validator")

    @property
    def variant(self) -> Variant:
        return Variant.DUMMY

    def validate(self, document: bytes, nonce: bytes) -> ValidationResult:
        if len(document) > MAX_DOCUMENT_SIZE:
            raise MalformedEvidence(f"dummy document is {len(document)} bytes, more than the limit {MAX_DOCUMENT_SIZE}")
        if not nonce:
            raise NonceMismatch("empty nonce: a document checked without a nonce proves no freshness")
        try:
            obj = json.loads(document)
            user_data = base64.b64decode(obj["UserData"], validate=True)
            doc_nonce = base64.b64decode(obj["Nonce"], validate=True)
        except (ValueError, KeyError, TypeError, binascii.Error) as exc:
            raise MalformedEvidence(
                f"dummy document is not {{UserData, Nonce}} JSON with base64 values: {exc}"
            ) from None
        if not hmac.compare_digest(doc_nonce, nonce):
            raise NonceMismatch(
                f"dummy document nonce {doc_nonce.hex()[:128]} does not match the expected {nonce.hex()}"
            )
        return ValidationResult(
            variant=Variant.DUMMY,
            user_data=user_data,
            checks=(Check("nonce", CheckStatus.PASS, "document nonce matches"),),
            warnings=("dummy attestation: the document is unsigned and proves nothing",),
        )
