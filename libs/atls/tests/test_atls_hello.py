"""Screening the ClientHello before any work: real hellos of two TLS stacks, every prefix, any
re-framing into records, and arbitrary bytes (only typed errors, never a read past MAX_PEEK)."""

from __future__ import annotations

import base64

import pytest
from atls_helpers import client_hello, stdlib_client_hello
from hypothesis import given
from hypothesis import strategies as st

from starlock.atls import HandshakeError, NonceError
from starlock.atls._hello import MAX_CLIENT_HELLO_SIZE, MAX_PEEK, ClientHello, scan_client_hello

NONCE = bytes(range(32))
SNI = base64.b64encode(NONCE)


def _records(message: bytes, sizes: list[int]) -> bytes:
    """``message`` (handshake bytes) framed as TLS handshake records of the given body sizes."""
    out, pos = b"", 0
    for size in [*sizes, len(message)]:
        chunk = message[pos : pos + max(1, size)]
        if not chunk:
            break
        out += b"\x16\x03\x01" + len(chunk).to_bytes(2, "big") + chunk
        pos += len(chunk)
    return out


def _message(hello: bytes) -> bytes:
    """The handshake message of a single-record hello."""
    assert hello[0] == 0x16 and int.from_bytes(hello[3:5], "big") == len(hello) - 5
    return hello[5:]


@pytest.mark.parametrize("tls12_only", [False, True])
def test_pyopenssl_hello(tls12_only: bool) -> None:
    hello = client_hello(SNI, tls12_only=tls12_only)
    assert scan_client_hello(hello) == ClientHello(nonce=NONCE, size=len(hello))
    assert scan_client_hello(hello + b"\x14\x03\x03\x00\x01\x01") == ClientHello(nonce=NONCE, size=len(hello))


def test_stdlib_hello() -> None:
    hello = stdlib_client_hello(SNI.decode())
    assert isinstance(scan_client_hello(hello), ClientHello)


def test_every_prefix_asks_for_more() -> None:
    hello = client_hello(SNI)
    for cut in range(len(hello)):
        need = scan_client_hello(hello[:cut])
        assert isinstance(need, int) and cut < need <= len(hello)


@given(st.lists(st.integers(min_value=1, max_value=400), max_size=14))
def test_any_record_framing(sizes: list[int]) -> None:
    hello = _records(_message(client_hello(SNI)), sizes)
    found = scan_client_hello(hello)
    assert isinstance(found, ClientHello) and found.nonce == NONCE and found.size == len(hello)


@pytest.mark.parametrize(
    ("server_name", "error", "message"),
    [
        (None, NonceError, "client sent no nonce"),
        (b"example.com", NonceError, "not standard base64"),
        (base64.b64encode(b"\x01" * 8), NonceError, "8-byte nonce"),
    ],
)
def test_bad_nonce(server_name: bytes | None, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match=message):
        scan_client_hello(client_hello(server_name))


@pytest.mark.parametrize(
    ("data", "message"),
    [
        (b"GET / HTTP/1.1\r\n\r\n", "not a TLS handshake record"),
        (b"\x16\x02\x00\x00\x10", "not TLS"),
        (b"\x16\x03\x01\x00\x00", "record length 0"),
        (b"\x16\x03\x01\x40\x01", "record length 16385"),
        (b"\x16\x03\x01\x00\x04\x02\x00\x00\x00", "type 2, not ClientHello"),
        (b"\x16\x03\x01\x00\x04\x01\x00\x40\x01", "more than the limit"),
        (b"\x16\x03\x01\x00\x05\x01\x00\x00\x01\x03", "legacy_version and random runs past"),
    ],
)
def test_malformed(data: bytes, message: str) -> None:
    with pytest.raises(HandshakeError, match=message):
        scan_client_hello(data)


def test_too_many_records() -> None:
    hello = _records(_message(client_hello(SNI)), [1] * 40)
    with pytest.raises(HandshakeError, match="more than 16 records"):
        scan_client_hello(hello)


def test_duplicate_server_name_is_refused() -> None:
    message = bytearray(_message(client_hello(SNI)))
    sni_ext = b"\x00\x00" + (len(SNI) + 5).to_bytes(2, "big") + (len(SNI) + 3).to_bytes(2, "big") + b"\x00"
    sni_ext += len(SNI).to_bytes(2, "big") + SNI
    assert sni_ext in message
    # append a second server_name extension: grow the extensions block, the body and the header.
    # The extensions length is found by walking the ClientHello's fields (type, length, version,
    # random, session id, cipher suites, compression methods), not by searching: the random bytes
    # can look like anything.
    ext_len_at = 4 + 2 + 32
    ext_len_at += 1 + message[ext_len_at]
    ext_len_at += 2 + int.from_bytes(message[ext_len_at : ext_len_at + 2], "big")
    ext_len_at += 1 + message[ext_len_at]
    old = int.from_bytes(message[ext_len_at : ext_len_at + 2], "big")
    assert ext_len_at + 2 + old == len(message)
    message += sni_ext
    message[ext_len_at : ext_len_at + 2] = (old + len(sni_ext)).to_bytes(2, "big")
    message[1:4] = (len(message) - 4).to_bytes(3, "big")
    with pytest.raises(HandshakeError, match="appears twice"):
        scan_client_hello(_records(bytes(message), []))


@given(st.binary(max_size=600))
def test_arbitrary_bytes_raise_only_typed_errors(data: bytes) -> None:
    try:
        found = scan_client_hello(data)
    except (HandshakeError, NonceError):
        return
    if isinstance(found, int):
        assert len(data) < found <= MAX_PEEK
    else:
        assert found.size <= len(data)


@given(st.data())
def test_mutated_hellos_raise_only_typed_errors(data: st.DataObject) -> None:
    hello = bytearray(client_hello(SNI))
    for _ in range(data.draw(st.integers(1, 4))):
        hello[data.draw(st.integers(0, len(hello) - 1))] = data.draw(st.integers(0, 255))
    try:
        found = scan_client_hello(bytes(hello))
    except (HandshakeError, NonceError):
        return
    assert isinstance(found, int | ClientHello)


def test_bound() -> None:
    assert MAX_PEEK < MAX_CLIENT_HELLO_SIZE + 200
    need = scan_client_hello(b"\x16\x03\x01\x40\x00\x01\x00\x3f\xfc")  # a 16380-byte hello announced
    assert need == 5 + 16384


def _vector(length_size: int, data: bytes) -> bytes:
    return len(data).to_bytes(length_size, "big") + data


def _sni_extension(names: bytes, trailing: bytes = b"") -> bytes:
    return b"\x00\x00" + _vector(2, _vector(2, names) + trailing)


def _hello_message(
    *,
    session_id: bytes = b"\x00" * 32,
    suites: bytes = b"\x13\x01",
    compression: bytes = b"\x00",
    extensions: bytes | None = None,
    trailing: bytes = b"",
) -> bytes:
    """A ClientHello handshake message built field by field (RFC 8446 §4.1.2)."""
    if extensions is None:
        extensions = _sni_extension(b"\x00" + _vector(2, SNI))
    body = b"\x03\x03" + bytes(32) + _vector(1, session_id) + _vector(2, suites) + _vector(1, compression)
    body += _vector(2, extensions) + trailing
    return b"\x01" + len(body).to_bytes(3, "big") + body


def test_built_hello_is_accepted() -> None:
    """The builder makes hellos the scan accepts (host_name first or after another name type); each
    malformed case below changes one field."""
    for names in (b"\x00" + _vector(2, SNI), b"\x01" + _vector(2, b"x") + b"\x00" + _vector(2, SNI)):
        hello = _records(_hello_message(extensions=_sni_extension(names)), [])
        assert scan_client_hello(hello) == ClientHello(nonce=NONCE, size=len(hello))


@pytest.mark.parametrize(
    ("fields", "message"),
    [
        ({"session_id": b"\x00" * 33}, "legacy_session_id is longer than 32 bytes"),
        ({"suites": b""}, "cipher_suites has 0 bytes"),
        ({"suites": b"\x13\x01\x13"}, "cipher_suites has 3 bytes"),
        ({"compression": b""}, "legacy_compression_methods is empty"),
        ({"trailing": b"\x00"}, "1 bytes follow the extensions"),
        ({"extensions": _sni_extension(b"\x00" + _vector(2, SNI), b"\x00")}, "bytes after its list"),
        ({"extensions": _sni_extension(b"\x01" + _vector(2, SNI))}, "no host_name"),
        ({"extensions": _sni_extension(b"\x00" + _vector(2, SNI))[:-1]}, "runs past the end"),
    ],
)
def test_malformed_hello_fields(fields: dict[str, bytes], message: str) -> None:
    with pytest.raises(HandshakeError, match=message):
        scan_client_hello(_records(_hello_message(**fields), []))


def test_hello_without_extensions_has_no_nonce() -> None:
    body = b"\x03\x03" + bytes(32) + b"\x00" + _vector(2, b"\x13\x01") + b"\x01\x00"
    message = b"\x01" + len(body).to_bytes(3, "big") + body
    with pytest.raises(NonceError, match="client sent no nonce"):
        scan_client_hello(_records(message, []))


def test_announced_size_uses_all_three_length_bytes() -> None:
    """A handshake length of 0x010000 is 65536 bytes (refused), not 0 (an empty hello)."""
    with pytest.raises(HandshakeError, match="ClientHello is 65536 bytes, more than the limit"):
        scan_client_hello(b"\x16\x03\x01\x00\x04\x01\x01\x00\x00")


def test_records_that_would_run_past_max_peek_are_refused() -> None:
    """A largest hello's header, then a record announcing more than the hello needs: the scan asks
    for at most MAX_PEEK bytes (exactly MAX_PEEK is fine) and refuses a framing that needs more."""
    header = b"\x01" + MAX_CLIENT_HELLO_SIZE.to_bytes(3, "big")
    for extra in (0, 1):
        first = header.ljust(MAX_PEEK - 2 * 5 - 2**14 + extra, b"\x00")
        data = b"\x16\x03\x01" + len(first).to_bytes(2, "big") + first + b"\x16\x03\x01\x40\x00"  # 2^14 announced
        if not extra:
            assert scan_client_hello(data) == MAX_PEEK
        else:
            with pytest.raises(
                HandshakeError, match=f"would take {MAX_PEEK + 1} bytes, more than the limit {MAX_PEEK}"
            ):
                scan_client_hello(data)
