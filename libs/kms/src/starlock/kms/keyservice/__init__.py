"""The key service: ``/kms.API/GetDataKey`` over a Unix socket, mutual TLS or (explicitly) plaintext.

Run it as ``starlock-keyservice``; embed it with :class:`KeyService` (or :func:`build_server`)
and one of the ``add_*`` listeners.
"""

from __future__ import annotations

from starlock.kms.keyservice.cli import main, parse_args, run
from starlock.kms.keyservice.server import (
    MAX_DATA_KEY_ID_LENGTH,
    SERVICE_NAME,
    KeyService,
    KeyServiceServicer,
    add_insecure_port,
    add_mtls_port,
    add_unix_socket,
    build_server,
)

__all__ = [
    "MAX_DATA_KEY_ID_LENGTH",
    "SERVICE_NAME",
    "KeyService",
    "KeyServiceServicer",
    "add_insecure_port",
    "add_mtls_port",
    "add_unix_socket",
    "build_server",
    "main",
    "parse_args",
    "run",
]
