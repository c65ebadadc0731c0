"""Sans-IO screening of a TLS ClientHello before the server spends anything on the connection.

The front end peeks at the bytes a new connection sent and calls :func:`scan_client_hello`: until
a complete, well-formed ClientHello carrying a valid aTLS nonce (standard base64 in SNI) is there,
the connection gets no thread, no TLS state and no attestation (reference: spec-attestation §A1;
RFC 8446 §4.1.2, RFC 6066 §3). Only the framing and the fields aTLS needs are checked; OpenSSL
parses the hello again, fully, once the handshake starts.
"""

from __future__ import annotations

import attrs

from starlock.atls._wire import decode_sni_nonce
from starlock.atls.errors import HandshakeError

__all__ = ["MAX_CLIENT_HELLO_SIZE", "MAX_PEEK", "ClientHello", "scan_client_hello"]

#: Largest ClientHello message accepted (body). Real ones are 0.2-2 KiB (a post-quantum key
#: share included); OpenSSL and Go accept more, but an aTLS client has no use for it.
MAX_CLIENT_HELLO_SIZE = 16 * 1024
#: A ClientHello may be split over several records; more than this many is refused.
MAX_RECORDS = 16
_RECORD_HEADER = 5
_HANDSHAKE_HEADER = 4
#: The most bytes the scan ever needs to see (records of one byte each are refused by MAX_RECORDS).
MAX_PEEK = MAX_CLIENT_HELLO_SIZE + _HANDSHAKE_HEADER + MAX_RECORDS * _RECORD_HEADER
_MAX_RECORD_BODY = 1 << 14  # RFC 8446 §5.1: TLSPlaintext.length <= 2^14
_CONTENT_HANDSHAKE = 0x16
_CLIENT_HELLO = 0x01
_EXT_SERVER_NAME = 0x0000
_HOST_NAME = 0x00


@attrs.frozen
class ClientHello:
    """A complete ClientHello: the client's aTLS nonce and the bytes the records took."""

    nonce: bytes
    size: int


class _Malformed(Exception):
    pass


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data = data
        self.pos = 0

    def take(self, size: int, what: str) -> bytes:
        if self.pos + size > len(self.data):
            raise _Malformed(f"{what} runs past the end of the ClientHello")
        chunk = self.data[self.pos : self.pos + size]
        self.pos += size
        return chunk

    def number(self, size: int, what: str) -> int:
        return int.from_bytes(self.take(size, what), "big")

    def vector(self, length_size: int, what: str) -> bytes:
        return self.take(self.number(length_size, f"{what} length"), what)


def _reassemble(data: bytes) -> tuple[bytes, int] | int:
    """(ClientHello message, bytes of records used), or how many bytes are needed at least."""
    message = b""
    pos = 0
    for _record in range(MAX_RECORDS):
        if len(data) < pos + _RECORD_HEADER:
            return pos + _RECORD_HEADER
        content_type, major = data[pos], data[pos + 1]
        length = int.from_bytes(data[pos + 3 : pos + 5], "big")
        if content_type != _CONTENT_HANDSHAKE:
            raise _Malformed(f"first bytes are not a TLS handshake record (content type 0x{content_type:02x})")
        if major != 3:
            raise _Malformed(f"record version {major}.{data[pos + 2]} is not TLS")
        if not 0 < length <= _MAX_RECORD_BODY:
            raise _Malformed(f"record length {length} is outside 1..{_MAX_RECORD_BODY}")
        end = pos + _RECORD_HEADER + length
        if len(data) < end:
            return end
        message += data[pos + _RECORD_HEADER : end]
        pos = end
        if len(message) >= _HANDSHAKE_HEADER:
            if message[0] != _CLIENT_HELLO:
                raise _Malformed(f"first handshake message is type {message[0]}, not ClientHello")
            body_size = int.from_bytes(message[1:4], "big")
            if body_size > MAX_CLIENT_HELLO_SIZE:
                raise _Malformed(f"ClientHello is {body_size} bytes, more than the limit {MAX_CLIENT_HELLO_SIZE}")
            if len(message) >= _HANDSHAKE_HEADER + body_size:
                return message[_HANDSHAKE_HEADER : _HANDSHAKE_HEADER + body_size], pos
    raise _Malformed(f"ClientHello is split over more than {MAX_RECORDS} records")


def _server_name(body: bytes) -> bytes | None:
    """The host_name of the server_name extension (None without one), checking the hello's framing."""
    reader = _Reader(body)
    reader.take(2 + 32, "legacy_version and random")
    if len(reader.vector(1, "legacy_session_id")) > 32:
        raise _Malformed("legacy_session_id is longer than 32 bytes")
    suites = reader.vector(2, "cipher_suites")
    if not suites or len(suites) % 2:
        raise _Malformed(f"cipher_suites has {len(suites)} bytes, not a non-empty list of 2-byte suites")
    if not reader.vector(1, "legacy_compression_methods"):
        raise _Malformed("legacy_compression_methods is empty")
    if reader.pos == len(body):
        return None  # no extensions at all (TLS 1.2 allows it): no SNI
    extensions = _Reader(reader.vector(2, "extensions"))
    if reader.pos != len(body):
        raise _Malformed(f"{len(body) - reader.pos} bytes follow the extensions")
    seen: set[int] = set()
    name: bytes | None = None
    while extensions.pos < len(extensions.data):
        kind = extensions.number(2, "extension type")
        data = extensions.vector(2, f"extension 0x{kind:04x}")
        if kind in seen:
            raise _Malformed(f"extension 0x{kind:04x} appears twice")
        seen.add(kind)
        if kind == _EXT_SERVER_NAME:
            name = _host_name(data)
    return name


def _host_name(data: bytes) -> bytes:
    names = _Reader(_Reader(data).vector(2, "server_name_list"))
    if len(names.data) + 2 != len(data):
        raise _Malformed("server_name extension has bytes after its list")
    while names.pos < len(names.data):
        kind = names.number(1, "server name type")
        value = names.vector(2, "server name")
        if kind == _HOST_NAME:
            return value
    raise _Malformed("server_name extension has no host_name")


def scan_client_hello(data: bytes) -> ClientHello | int:
    """Screen the first bytes of a connection.

    Returns the :class:`ClientHello` when it is complete and carries a valid nonce, or the number
    of bytes needed at least (more than ``len(data)``) when it is incomplete so far. Raises
    :class:`~starlock.atls.errors.NonceError` (no or a bad nonce in SNI) or
    :class:`~starlock.atls.errors.HandshakeError` (not a well-formed ClientHello). Never reads past
    :data:`MAX_PEEK` bytes.
    """
    try:
        found = _reassemble(data[:MAX_PEEK])
        if isinstance(found, int):
            if found > MAX_PEEK:
                raise _Malformed(f"its records would take {found} bytes, more than the limit {MAX_PEEK}")
            return found
        body, size = found
        name = _server_name(body)
    except _Malformed as exc:
        raise HandshakeError(f"not a well-formed TLS ClientHello: {exc}") from None
    return ClientHello(nonce=decode_sni_nonce(name), size=size)
