"""The key service's listeners: a Unix socket in a private directory, mutual TLS, plaintext TCP.

Every failure an operator can cause (a port in use, a socket directory that cannot be created, a
certificate and key that do not belong together, an unresolvable host) is a
:class:`~starlock.kms.interface.KmsConfigError` with a clear message. gRPC's C core reports a
failed bind by writing to file descriptor 2 and raising a bare ``RuntimeError``; both are turned
into that one error here (the core's reason, e.g. "Address already in use", is kept).
"""

from __future__ import annotations

import os
import re
import stat
import sys
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import grpc
from cryptography import x509
from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization

from starlock.kms.interface import KmsConfigError

__all__ = ["add_insecure_port", "add_mtls_port", "add_unix_socket", "check_tls_material"]

#: Longest Unix socket path the kernel accepts (``sun_path`` is 108 bytes with its NUL).
MAX_SOCKET_PATH = 107
_MAX_NATIVE_TEXT = 64 * 1024
_MAX_REASON = 200
_BIND_REASON = re.compile(r"'[^']*': ([^')]+)\)")


def add_unix_socket(server: grpc.Server, path: str | os.PathLike[str]) -> str:
    """Listen on a Unix socket whose directory is private to this user. Returns the gRPC address.

    A missing directory is created (0700), but only the last one: its parent must exist. Refuses
    a directory that is not owned by the effective user or that group/others can access, and a
    non-socket file at ``path``; removes a stale socket.
    """
    sock = Path(path).absolute()
    if len(os.fsencode(sock)) > MAX_SOCKET_PATH:
        raise KmsConfigError(f"socket path {str(sock)!r} is longer than {MAX_SOCKET_PATH} bytes")
    directory = sock.parent
    _make_private_directory(directory)
    try:
        st = directory.stat()
    except OSError as e:
        raise KmsConfigError(f"socket directory {str(directory)!r} is not usable: {e.strerror}") from None
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != os.geteuid() or st.st_mode & 0o077:
        raise KmsConfigError(
            f"socket directory {str(directory)!r} must be a directory owned by uid {os.geteuid()} "
            "with no group/other permissions (chmod 0700)"
        )
    try:
        if sock.is_symlink() or sock.exists():
            if not stat.S_ISSOCK(sock.lstat().st_mode):
                raise KmsConfigError(f"{str(sock)!r} exists and is not a socket")
            sock.unlink()
    except OSError as e:
        raise KmsConfigError(f"cannot remove the stale socket {str(sock)!r}: {e.strerror}") from None
    address = f"unix:{sock}"
    _bind(address, lambda: server.add_insecure_port(address))
    return address


def _make_private_directory(directory: Path) -> None:
    if directory.is_dir():
        return
    try:
        directory.mkdir(mode=0o700)  # never its parents: a typo must not build a tree from /
    except FileExistsError:
        return  # created meanwhile (or not a directory: the caller's checks say so)
    except FileNotFoundError:
        raise KmsConfigError(
            f"cannot create the socket directory {str(directory)!r}: its parent {str(directory.parent)!r} "
            "does not exist (only the socket's own directory is created)"
        ) from None
    except OSError as e:
        raise KmsConfigError(f"cannot create the socket directory {str(directory)!r}: {e.strerror}") from None


def check_tls_material(cert_pem: bytes, key_pem: bytes, ca_pem: bytes) -> None:
    """Check that the server certificate chain, its private key and the client CA bundle parse
    and that the key belongs to the certificate; :class:`KmsConfigError` otherwise (no content shown)."""
    try:
        chain = x509.load_pem_x509_certificates(cert_pem)
    except ValueError:
        raise KmsConfigError("TLS: the server certificate file holds no PEM certificate") from None
    try:
        key = serialization.load_pem_private_key(key_pem, password=None)
    except (ValueError, TypeError, UnicodeError):
        raise KmsConfigError(
            "TLS: the private key file holds no unencrypted PEM private key (content not shown)"
        ) from None
    except UnsupportedAlgorithm:
        raise KmsConfigError("TLS: the private key file holds a key of an unsupported type") from None
    spki = serialization.Encoding.DER, serialization.PublicFormat.SubjectPublicKeyInfo
    if chain[0].public_key().public_bytes(*spki) != key.public_key().public_bytes(*spki):
        raise KmsConfigError("TLS: the private key does not belong to the server certificate (the chain's first)")
    try:
        x509.load_pem_x509_certificates(ca_pem)
    except ValueError:
        raise KmsConfigError("TLS: the client CA file holds no PEM certificate") from None


def add_mtls_port(server: grpc.Server, host: str, port: int, *, cert_pem: bytes, key_pem: bytes, ca_pem: bytes) -> int:
    """Listen on TCP with TLS, requiring a client certificate issued by ``ca_pem``. Returns the port."""
    check_tls_material(cert_pem, key_pem, ca_pem)
    credentials = grpc.ssl_server_credentials([(key_pem, cert_pem)], root_certificates=ca_pem, require_client_auth=True)
    address = _hostport(host, port)
    return _bind(address, lambda: server.add_secure_port(address, credentials))


def add_insecure_port(server: grpc.Server, host: str, port: int) -> int:
    """Listen on plaintext TCP (no authentication at all). Returns the port."""
    address = _hostport(host, port)
    return _bind(address, lambda: server.add_insecure_port(address))


def _hostport(host: str, port: int) -> str:
    return f"[{host}]:{port}" if ":" in host and not host.startswith("[") else f"{host}:{port}"


def _bind(address: str, bind: Callable[[], int]) -> int:
    with _native_stderr() as native:
        try:
            bound = bind()
        except RuntimeError:  # grpcio's "Failed to bind to address ..."
            bound = 0
    text = "".join(native)
    if bound == 0:
        raise KmsConfigError(f"cannot listen on {address}: {_reason(text)}")
    if text:
        sys.stderr.write(text)  # not about this bind: pass it on
    return bound


def _reason(native_text: str) -> str:
    reasons = _BIND_REASON.findall(native_text)
    reason = reasons[-1] if reasons else "gRPC could not bind it (address in use, unresolvable or not local)"
    return "".join(c if c.isprintable() else "?" for c in reason)[:_MAX_REASON]


@contextmanager
def _native_stderr() -> Iterator[list[str]]:
    """Collect what native code writes to file descriptor 2 meanwhile (gRPC's bind errors)."""
    captured: list[str] = []
    try:
        sys.stderr.flush()
        saved = os.dup(2)
    except (OSError, ValueError):
        yield captured
        return
    with tempfile.TemporaryFile() as tmp:
        os.dup2(tmp.fileno(), 2)
        try:
            yield captured
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            tmp.seek(0)
            captured.append(tmp.read(_MAX_NATIVE_TEXT).decode("utf-8", "replace"))
