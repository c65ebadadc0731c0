"""The private OpenSSL bindings aTLS needs; nothing else in Starlock touches ``OpenSSL._util``.

pyOpenSSL has no public client-certificate callback and no way to put a raw distinguished name
in the CertificateRequest's CA list. This module supplies both from the cffi bindings pyOpenSSL
itself uses:

* :func:`install_cert_callback` sets ``SSL_CTX_set_cert_cb`` on a client :class:`SSL.Context`;
  OpenSSL calls it when the server asks for a certificate, and the handler registered for that
  connection with :func:`register_cert_handler` installs one (``Connection.use_certificate``);
* :func:`set_client_ca_name` sets the CA list of a server context to one DER-encoded name;
* :func:`use_certificate_der` gives a connection its certificate from DER with one parse (the
  public ``Connection.use_certificate`` wants a cryptography certificate, which it serialises and
  parses again); where those functions are missing it falls back to the public call.

A pyOpenSSL or cryptography release that drops any of these raises :class:`BindingsUnavailable`
when this module is imported (and so when ``starlock.atls`` is): attestation must never be skipped
silently because a callback could not be installed.
"""

from __future__ import annotations

import threading
from collections.abc import Callable
from typing import Any

from cryptography import x509
from OpenSSL import SSL

from starlock.atls.errors import BindingsUnavailable

__all__ = ["install_cert_callback", "register_cert_handler", "set_client_ca_name", "use_certificate_der"]

_REQUIRED = (
    "SSL_CTX_set_cert_cb",
    "SSL_CTX_set_client_CA_list",
    "d2i_X509_NAME",
    "X509_NAME_free",
    "sk_X509_NAME_new_null",
    "sk_X509_NAME_push",
    "sk_X509_NAME_free",
)
_CERT_CB_TYPE = "int (*)(SSL *, void *)"


def _load() -> tuple[Any, Any]:
    try:
        from OpenSSL._util import ffi, lib
    except ImportError as exc:
        raise BindingsUnavailable(
            f"starlock.atls needs pyOpenSSL's private cffi bindings (OpenSSL._util.ffi/lib), which this "
            f"pyOpenSSL does not provide ({exc}); install a pyOpenSSL/cryptography pair that has them"
        ) from exc
    missing = [name for name in _REQUIRED if not hasattr(lib, name)]
    if missing:
        raise BindingsUnavailable(
            f"starlock.atls cannot attest: the OpenSSL bindings of this pyOpenSSL/cryptography lack "
            f"{', '.join(missing)} (needed for the aTLS client certificate and the server nonce)"
        )
    try:
        ffi.typeof(_CERT_CB_TYPE)
        probe = SSL.Connection(SSL.Context(SSL.TLS_METHOD), None)
        probe_ssl = probe._ssl
        probe_ctx = probe.get_context()._context
    except Exception as exc:  # any failure here means the internals moved: refuse loudly
        raise BindingsUnavailable(
            f"starlock.atls cannot attest: pyOpenSSL internals it relies on changed ({type(exc).__name__}: {exc})"
        ) from exc
    if probe_ssl is None or probe_ctx is None:
        raise BindingsUnavailable("starlock.atls cannot attest: pyOpenSSL objects expose no SSL/SSL_CTX pointer")
    return ffi, lib


_ffi, _lib = _load()

CertHandler = Callable[[SSL.Connection], None]
_handlers: dict[int, tuple[SSL.Connection, CertHandler]] = {}
_handlers_lock = threading.Lock()


def _address(conn: SSL.Connection) -> int:
    return int(_ffi.cast("uintptr_t", conn._ssl))


def _on_cert_request(ssl: Any, _arg: Any) -> int:
    """OpenSSL's cert callback: 1 = go on, 0 = fail the handshake."""
    with _handlers_lock:
        entry = _handlers.get(int(_ffi.cast("uintptr_t", ssl)))
    if entry is None:
        return 0  # a connection nobody registered must not proceed without its certificate
    conn, handler = entry
    try:
        handler(conn)
    except Exception:  # the handler records its own error; OpenSSL only needs the verdict
        return 0
    return 1


_CERT_CB = _ffi.callback(_CERT_CB_TYPE, _on_cert_request, error=0)


def install_cert_callback(context: SSL.Context) -> None:
    """Make OpenSSL call the handler registered for each connection of ``context`` on CertificateRequest."""
    _lib.SSL_CTX_set_cert_cb(context._context, _CERT_CB, _ffi.NULL)


class CertHandlerRegistration:
    """Registered while the handshake runs; :meth:`close` (or ``with``) removes the entry."""

    def __init__(self, conn: SSL.Connection, handler: CertHandler) -> None:
        self._key = _address(conn)
        with _handlers_lock:
            _handlers[self._key] = (conn, handler)

    def close(self) -> None:
        with _handlers_lock:
            _handlers.pop(self._key, None)

    def __enter__(self) -> CertHandlerRegistration:
        return self

    def __exit__(self, *_exc: object) -> None:
        self.close()


def register_cert_handler(conn: SSL.Connection, handler: CertHandler) -> CertHandlerRegistration:
    """Call ``handler(conn)`` when the server asks ``conn`` for a certificate (until closed)."""
    return CertHandlerRegistration(conn, handler)


def set_client_ca_name(context: SSL.Context, name_der: bytes) -> None:
    """Make ``context`` send exactly one acceptable CA, the DER ``Name`` given, in its CertificateRequest."""
    buf = _ffi.new("unsigned char[]", name_der)
    pointer = _ffi.new("unsigned char **", buf)
    name = _lib.d2i_X509_NAME(_ffi.NULL, pointer, len(name_der))
    if name == _ffi.NULL:
        raise ValueError("not a DER-encoded X.509 Name")
    stack = _lib.sk_X509_NAME_new_null()
    if stack == _ffi.NULL:
        _lib.X509_NAME_free(name)
        raise MemoryError("sk_X509_NAME_new_null failed")
    if _lib.sk_X509_NAME_push(stack, name) <= 0:
        _lib.X509_NAME_free(name)
        _lib.sk_X509_NAME_free(stack)
        raise MemoryError("sk_X509_NAME_push failed")
    _lib.SSL_CTX_set_client_CA_list(context._context, stack)


_DER_CERT_FUNCTIONS = (
    "BIO_new_mem_buf",
    "BIO_free",
    "d2i_X509_bio",
    "SSL_use_certificate",
    "X509_free",
    "ERR_clear_error",
)
_HAS_DER_CERT = all(hasattr(_lib, name) for name in _DER_CERT_FUNCTIONS)


def use_certificate_der(conn: SSL.Connection, der: bytes) -> None:
    """``conn.use_certificate`` for a DER certificate, parsed once by OpenSSL (ValueError if malformed)."""
    if not _HAS_DER_CERT:
        conn.use_certificate(x509.load_der_x509_certificate(der))
        return
    bio = _lib.BIO_new_mem_buf(der, len(der))
    if bio == _ffi.NULL:
        raise MemoryError("BIO_new_mem_buf failed")
    try:
        cert = _lib.d2i_X509_bio(bio, _ffi.NULL)
    finally:
        _lib.BIO_free(bio)
    if cert == _ffi.NULL:
        _lib.ERR_clear_error()  # leave no stale error for the next pyOpenSSL call to report
        raise ValueError("not a DER-encoded X.509 certificate")
    try:
        if _lib.SSL_use_certificate(conn._ssl, cert) != 1:  # takes its own reference
            _lib.ERR_clear_error()
            raise ValueError("OpenSSL refused the certificate")
    finally:
        _lib.X509_free(cert)
