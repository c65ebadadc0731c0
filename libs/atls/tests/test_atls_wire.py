"""Sans-IO wire pieces: nonce encodings and the CA name, with property tests for the parsers."""

from __future__ import annotations

import base64
import contextlib

import pytest
from cryptography import x509
from hypothesis import given
from hypothesis import strategies as st

from starlock.atls import NonceError
from starlock.atls._wire import MAX_SNI_LENGTH, ca_name_der, decode_sni_nonce, encode_nonce, nonce_from_ca_names


def test_ca_name_is_printable_string_cn() -> None:
    nonce = bytes(range(32))
    der = ca_name_der(nonce)
    cn = encode_nonce(nonce).encode()
    # SEQUENCE { SET { SEQUENCE { OID 2.5.4.3, PrintableString } } } as Go writes it
    assert der == bytes([0x30, len(cn) + 11, 0x31, len(cn) + 9, 0x30, len(cn) + 7]) + b"\x06\x03\x55\x04\x03" + (
        bytes([0x13, len(cn)]) + cn
    )
    assert nonce_from_ca_names([x509.Name.from_bytes(der)]) == nonce


def test_ca_list_must_hold_one_name() -> None:
    name = x509.Name.from_bytes(ca_name_der(b"\x01" * 32))
    with pytest.raises(NonceError, match="unexpected acceptableCAs length: expected 1, got 2"):
        nonce_from_ca_names([name, name])
    with pytest.raises(NonceError, match="got 0"):
        nonce_from_ca_names([])


def test_sni_roundtrip() -> None:
    nonce = b"\xfb\xff" * 16  # base64 with '+' and '/'
    assert decode_sni_nonce(encode_nonce(nonce).encode()) == nonce


@given(st.binary(max_size=300))
def test_sni_parser_raises_only_nonce_errors(data: bytes) -> None:
    try:
        nonce = decode_sni_nonce(data)
    except NonceError:
        return
    assert 16 <= len(nonce) <= 64 and len(data) <= MAX_SNI_LENGTH
    assert base64.b64encode(nonce) == data


@given(st.text(max_size=200))
def test_ca_name_parser_raises_only_nonce_errors(cn: str) -> None:
    try:
        name = x509.Name([x509.NameAttribute(x509.NameOID.COMMON_NAME, cn)])
    except ValueError:
        return
    with contextlib.suppress(NonceError):
        nonce_from_ca_names([name])
