"""Fuzz targets of starlock-atls: the attested certificate (and its extension) and the SNI nonce.

Only :class:`~starlock.atls.errors.AtlsError` may escape; an ``AttestationRejected`` must carry
an :class:`AttestationError` as its cause (the validator refused the document), never another
exception (a validator crash that the aTLS layer turned into a refusal).
"""

from __future__ import annotations

import contextlib
import datetime
import ssl
from collections.abc import Callable
from typing import Any

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec
from fuzz_common import InvariantViolation, check

from starlock.atls.errors import AtlsError, AttestationRejected
from starlock.attestation.errors import AttestationError
from starlock.attestation.variant import Variant

OneInput = Callable[[bytes], None]

ALLOWED: tuple[type[BaseException], ...] = (AtlsError,)

NOW = datetime.datetime(2026, 1, 15, 12, 0, tzinfo=datetime.UTC)
NONCE = bytes(range(32))
#: Fixed P-256 key of the certificates the harness signs (so the SPKI hash, the user data, is fixed).
_KEY = ec.derive_private_key(0x5EED_F022, ec.SECP256R1())
_OIDS = (Variant.QEMU_VTPM.oid, Variant.DUMMY.oid)


class _FixedIssuer:
    def __init__(self, variant: Variant, document: bytes) -> None:
        self._variant = variant
        self._document = document

    @property
    def variant(self) -> Variant:
        return self._variant

    def issue(self, user_data: bytes, nonce: bytes) -> bytes:
        return self._document


def _validators() -> dict[str, Any]:
    from starlock.atls.dummy import DummyValidator
    from starlock.attestation import load_attestation_config
    from starlock.attestation.qemu.validator import QemuVtpmValidator

    config = load_attestation_config({"measurements": {}}, Variant.QEMU_VTPM, allow_unenforced=True)
    return {Variant.QEMU_VTPM.oid: QemuVtpmValidator(config), Variant.DUMMY.oid: DummyValidator(insecure=True)}


def _verify(der: bytes, validators: dict[str, Any]) -> None:
    from starlock.atls._wire import verify_peer_certificate

    try:
        peer = verify_peer_certificate(der, NONCE, validators, now=NOW)
    except AttestationRejected as exc:
        if not isinstance(exc.cause, AttestationError):
            raise InvariantViolation(
                f"validator crashed inside aTLS: {type(exc.cause).__name__}: {exc.cause}"
            ) from exc.cause
        raise
    check(peer is not None, "validators configured but no attestation result")


def _sign_tbs(tbs: bytes) -> bytes:
    from starlock.atls._wire import _ECDSA_SHA256, _ECDSA_SHA256_DER, _tlv

    signature = _KEY.sign(tbs, _ECDSA_SHA256)
    return _tlv(0x30, tbs + _ECDSA_SHA256_DER + _tlv(0x03, b"\x00" + signature))


def build_atls_certificate() -> OneInput:
    """Byte 0 even: the rest is a TBSCertificate the harness signs; odd: a whole certificate."""
    validators = _validators()

    def one(data: bytes) -> None:
        if not data:
            return
        der = data[1:] if data[0] & 1 else _sign_tbs(data[1:])
        _verify(der, validators)

    return one


def build_atls_extension() -> OneInput:
    """Byte 0 picks the variant OID; the rest is the document, put in a freshly signed certificate."""
    from starlock.atls._wire import make_certificate_der

    validators = _validators()

    def one(data: bytes) -> None:
        if not data:
            return
        variant = Variant.QEMU_VTPM if data[0] & 1 else Variant.DUMMY
        der = make_certificate_der(_KEY, _FixedIssuer(variant, data[1:]), NONCE, now=NOW)
        _verify(der, validators)

    return one


def atls_documents(aws_doc: bytes | None) -> list[bytes]:
    from starlock.atls._wire import public_key_hash
    from starlock.atls.dummy import DummyIssuer

    dummy = DummyIssuer(insecure=True).issue(public_key_hash(_KEY.public_key()), NONCE)
    seeds = [b"\x00" + dummy, b"\x00" + DummyIssuer(insecure=True).issue(b"other", NONCE)]
    if aws_doc is not None:
        seeds.append(b"\x01" + aws_doc)
    return seeds


def certificate_seeds(documents: list[bytes]) -> list[bytes]:
    from cryptography import x509

    from starlock.atls._wire import make_certificate_der

    seeds = []
    for doc in documents:
        variant = Variant.QEMU_VTPM if doc[0] & 1 else Variant.DUMMY
        der = make_certificate_der(_KEY, _FixedIssuer(variant, doc[1:]), NONCE, now=NOW)
        seeds.append(b"\x01" + der)
        seeds.append(b"\x00" + x509.load_der_x509_certificate(der).tbs_certificate_bytes)
    return seeds


# --- SNI nonce and the ClientHello that carries it ---------------------------------------------


def build_sni_nonce() -> OneInput:
    """Byte 0 even: the rest is an SNI value; odd: the first bytes of a connection (ClientHello)."""
    from starlock.atls._hello import MAX_PEEK, scan_client_hello
    from starlock.atls._wire import MAX_NONCE_SIZE, MIN_NONCE_SIZE, decode_sni_nonce

    def one(data: bytes) -> None:
        if not data:
            return
        body = data[1:]
        if not data[0] & 1:
            nonce = decode_sni_nonce(body)
            check(MIN_NONCE_SIZE <= len(nonce) <= MAX_NONCE_SIZE, f"{len(nonce)}-byte nonce accepted")
            return
        found = scan_client_hello(body)
        if isinstance(found, int):
            check(len(body) < found <= MAX_PEEK, f"needs {found} bytes with {len(body)} given")
            return
        check(0 < found.size <= len(body), f"ClientHello size {found.size} of {len(body)} bytes")
        check(MIN_NONCE_SIZE <= len(found.nonce) <= MAX_NONCE_SIZE, f"{len(found.nonce)}-byte nonce")
        again = scan_client_hello(body[: found.size])
        check(again == found, "the hello's own bytes scan differently")

    return one


def client_hello(server_name: str) -> bytes:
    """A real ClientHello from OpenSSL (memory BIOs, nothing sent) with ``server_name`` in SNI."""
    ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_CLIENT)
    ctx.check_hostname = False
    ctx.verify_mode = ssl.CERT_NONE
    incoming, outgoing = ssl.MemoryBIO(), ssl.MemoryBIO()
    conn = ctx.wrap_bio(incoming, outgoing, server_hostname=server_name)
    with contextlib.suppress(ssl.SSLWantReadError):  # it waits for the ServerHello: the hello is out
        conn.do_handshake()
    return outgoing.read()


def sni_seeds() -> list[bytes]:
    from starlock.atls._wire import encode_nonce

    names = [encode_nonce(NONCE), encode_nonce(bytes(16)), encode_nonce(b"\xff" * 64)]
    seeds = [b"\x00" + n.encode() for n in names]
    for name in names:
        try:
            seeds.append(b"\x01" + client_hello(name))
        except (ValueError, ssl.SSLError):  # a Python that refuses '+', '/' or '=' in server_hostname
            continue
    return seeds


def spki_der() -> bytes:
    return _KEY.public_key().public_bytes(serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo)
