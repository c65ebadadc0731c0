"""``starlock-keyservice``: the key service process (upstream ``keyservice/cmd/main.go``).

Flags as upstream (``--port``, ``--master-secret``, ``--salt``, ``-v``; the single-dash Go
spellings ``-port`` etc. are accepted too) plus the transport (exactly one of ``--unix PATH``,
``--tls-cert/--tls-key/--tls-ca`` or ``--insecure-plaintext``) and ``--kms-uri``.
SIGTERM/SIGINT: refuse new calls (``UNAVAILABLE``), let in-flight calls finish within
``--shutdown-grace`` (their backend deadlines are shortened to it), close the backend once they
have (or the grace ran out), exit (within the grace plus about 2 s).

Operator errors (bad flags aside, which are usage errors: exit 2) are one JSON error line on
stderr and exit status 1, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib.metadata
import ipaddress
import logging
import os
import signal
import time
import urllib.parse
from collections.abc import Sequence
from types import FrameType

import grpc

from starlock.kms.factory import open_kms
from starlock.kms.interface import KMS, KmsConfigError, KmsError
from starlock.kms.keyservice._log import configure_logging, vlog
from starlock.kms.keyservice.server import KeyService, add_insecure_port, add_mtls_port, add_unix_socket
from starlock.kms.mastersecret import read_secret_files

__all__ = ["main", "parse_args", "run"]

DEFAULT_PORT = 9000


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="starlock-keyservice",
        description="Serve /kms.API/GetDataKey (Constellation-compatible key service).",
        allow_abbrev=False,
    )
    p.add_argument("--version", action="version", version=f"%(prog)s {importlib.metadata.version('starlock-kms')}")
    p.add_argument("--port", "-port", type=int, default=DEFAULT_PORT, help="TCP port (default 9000)")
    p.add_argument(
        "--master-secret",
        "-master-secret",
        default="/var/config/mastersecret",
        help="file with the raw master secret (>= 16 bytes)",
    )
    p.add_argument("--salt", "-salt", default="/var/config/salt", help="file with the raw salt (>= 32 bytes)")
    p.add_argument("-v", type=int, default=0, metavar="N", help="log verbosity: 2 requests, 4 general, 6 low-level")
    p.add_argument(
        "--kms-uri",
        default=None,
        help="KMS URI without secrets in it (default: cluster KMS from --master-secret/--salt); "
        "e.g. kms://vault?...&tokenFile=PATH",
    )
    p.add_argument(
        "--kms-uri-file",
        default=None,
        metavar="PATH",
        help="file holding the KMS URI (for URIs that carry secrets: key, salt, token, accessKey, "
        "clientSecret); mode 0600 or stricter",
    )
    t = p.add_argument_group("transport (choose exactly one)")
    t.add_argument("--unix", metavar="PATH", help="listen on a Unix socket (its directory must be private, 0700)")
    t.add_argument("--tls-cert", metavar="PEM", help="server certificate chain (mutual TLS on TCP)")
    t.add_argument("--tls-key", metavar="PEM", help="server private key")
    t.add_argument("--tls-ca", metavar="PEM", help="CA certificates that client certificates must chain to")
    t.add_argument(
        "--insecure-plaintext",
        action="store_true",
        help="INSECURE: plaintext TCP without authentication (as upstream); anyone who can connect gets keys",
    )
    p.add_argument("--listen-host", default=None, help="TCP host (default 127.0.0.1 plaintext, 0.0.0.0 mTLS)")
    p.add_argument("--shutdown-grace", type=float, default=30.0, help="seconds in-flight calls get on SIGTERM")
    p.add_argument("--max-workers", type=int, default=16, help="gRPC handler threads")
    p.add_argument(
        "--initialize-vault-store",
        action="store_true",
        help="once per new Vault/OpenBao store: write its marker (and let Transit create a missing KEK), "
        "then exit; the service refuses to create keys in a store without one (a reset store)",
    )
    return p


def parse_args(argv: Sequence[str] | None = None) -> argparse.Namespace:
    """Parse and cross-check the flags (exits with status 2 on a usage error)."""
    p = _parser()
    args = p.parse_args(argv)
    tls = (args.tls_cert, args.tls_key, args.tls_ca)
    modes = [args.unix is not None, any(tls), args.insecure_plaintext]
    if args.initialize_vault_store:
        if any(modes):
            p.error("--initialize-vault-store serves nothing: give no transport flags with it")
        if args.kms_uri is None and args.kms_uri_file is None:
            p.error("--initialize-vault-store needs the store's kms://vault URI (--kms-uri-file or --kms-uri)")
    elif sum(modes) != 1:
        p.error("choose exactly one transport: --unix PATH, --tls-cert/--tls-key/--tls-ca, or --insecure-plaintext")
    if any(tls) and not all(tls):
        p.error("mutual TLS needs all of --tls-cert, --tls-key and --tls-ca")
    if not 0 <= args.port <= 65535:
        p.error("--port must be 0..65535")
    if args.unix is not None and args.listen_host is not None:
        p.error("--listen-host applies to TCP transports only")
    if args.insecure_plaintext and args.listen_host is not None and not _is_loopback(args.listen_host):
        p.error(
            "--insecure-plaintext hands out keys to anyone who connects: it binds to loopback only "
            "(127.0.0.1, ::1, localhost); use mutual TLS or a Unix socket to serve other hosts"
        )
    if args.kms_uri is not None and args.kms_uri_file is not None:
        p.error("give --kms-uri or --kms-uri-file, not both")
    if args.kms_uri is not None and _carries_secrets(args.kms_uri):
        # argv is readable by every local user (/proc/<pid>/cmdline, ps): secrets go in a file.
        p.error(
            "--kms-uri carries a secret parameter (key, salt, token, accessKey or clientSecret): "
            "pass it with --kms-uri-file"
        )
    if args.v < 0 or args.max_workers < 1 or args.shutdown_grace < 0:
        p.error("-v, --max-workers and --shutdown-grace must not be negative (--max-workers >= 1)")
    return args


_SECRET_PARAMETERS = frozenset({"key", "salt", "token", "accessKey", "clientSecret"})
MAX_URI_FILE_SIZE = 64 * 1024


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def _carries_secrets(uri: str) -> bool:
    query = urllib.parse.urlsplit(uri).query
    return any(name in _SECRET_PARAMETERS for name, _ in urllib.parse.parse_qsl(query, keep_blank_values=True))


def _read_uri_file(path: str) -> str:
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    except OSError as e:
        raise KmsError(f"cannot read the KMS URI file {path!r}: {e.strerror}") from None
    with os.fdopen(fd, "rb") as f:
        if os.fstat(f.fileno()).st_mode & 0o077:
            raise KmsError(f"the KMS URI file {path!r} is readable by others: make it mode 0600")
        data = f.read(MAX_URI_FILE_SIZE + 1)
    if len(data) > MAX_URI_FILE_SIZE:
        raise KmsError(f"the KMS URI file {path!r} is larger than {MAX_URI_FILE_SIZE} bytes")
    try:
        return data.decode("utf-8").strip()
    except UnicodeDecodeError:
        raise KmsError(f"the KMS URI file {path!r} is not UTF-8 text") from None


def _open_kms(args: argparse.Namespace) -> KMS:
    if args.kms_uri_file is not None:
        return open_kms(_read_uri_file(args.kms_uri_file), check_lengths=True)
    if args.kms_uri is not None:
        return open_kms(args.kms_uri, check_lengths=True)
    secret = read_secret_files(args.master_secret, args.salt)
    return open_kms(secret.to_uri(), check_lengths=True)


def _read(path: str) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(1024 * 1024)
    except OSError as e:
        raise KmsError(f"cannot read {path!r}: {e.strerror}") from None


def _initialize_store(backend: KMS, log: logging.Logger) -> int:
    initialize = getattr(backend, "initialize_store", None)
    try:
        if initialize is None:
            log.error(
                "--initialize-vault-store applies to a kms://vault store only",
                extra={"v": 0, "fields": {"backend": type(backend).__name__}},
            )
            return 1
        created = initialize()
    except KmsError as e:
        log.error("cannot initialize the store", extra={"v": 0, "fields": {"error": str(e)}})
        return 1
    finally:
        backend.close()
    vlog(log, 0, "store initialized" if created else "store was already initialized; its marker checks out")
    return 0


def run(args: argparse.Namespace, kms: KMS | None = None, *, install_signals: bool = True) -> int:
    """Start the service and block until SIGTERM/SIGINT; return the exit status.

    ``kms`` overrides the backend built from the flags (for embedding and tests).
    """
    log = configure_logging(args.v)
    try:
        backend = kms if kms is not None else _open_kms(args)
    except KmsError as e:
        log.error("cannot set up the KMS", extra={"v": 0, "fields": {"error": str(e)}})
        return 1
    if getattr(args, "initialize_vault_store", False):
        return _initialize_store(backend, log)
    service = KeyService(backend, max_workers=args.max_workers, shutdown_grace=args.shutdown_grace)
    try:
        where = _listen(service.server, args, log)
    except KmsError as e:
        log.error("cannot listen", extra={"v": 0, "fields": {"error": str(e)}})
        backend.close()
        return 1

    # The handler takes no lock: it runs between two bytecodes of this thread, which could then
    # hold the very lock (an Event's) the handler waits for, and the process would never stop.
    stopping: list[int] = []

    def _on_signal(signum: int, _frame: FrameType | None) -> None:
        stopping.append(signum)

    if install_signals:
        signal.signal(signal.SIGTERM, _on_signal)
        signal.signal(signal.SIGINT, _on_signal)
    service.server.start()
    vlog(log, 0, "key service listening", address=where, pid=os.getpid())
    try:
        while not stopping:
            time.sleep(0.2)
    finally:
        # From here on calls accepted later get UNAVAILABLE; earlier ones finish within the grace.
        vlog(log, 0, "shutting down; letting in-flight calls finish", grace_seconds=args.shutdown_grace)
        if not service.shutdown(args.shutdown_grace):
            log.warning(
                "calls still running after the shutdown grace; closing the backend and exiting anyway",
                extra={"v": 0, "fields": {"grace_seconds": args.shutdown_grace}},
            )
        backend.close()
        vlog(log, 0, "key service stopped")
    return 0


def _listen(server: grpc.Server, args: argparse.Namespace, log: logging.Logger) -> str:
    """Add the transport the flags choose; return its address. :class:`KmsError` if impossible."""
    if args.unix is not None:
        where = add_unix_socket(server, args.unix)
        try:
            os.chmod(args.unix, 0o600)
        except OSError as e:
            raise KmsError(f"cannot restrict the socket {args.unix!r} to mode 0600: {e.strerror}") from None
        return where
    if args.insecure_plaintext:
        host = args.listen_host or "127.0.0.1"
        port = add_insecure_port(server, host, args.port)
        where = f"{host}:{port}"
        log.warning(
            "serving plaintext gRPC without authentication (--insecure-plaintext)",
            extra={"v": 0, "fields": {"address": where}},
        )
        return where
    host = args.listen_host or "0.0.0.0"  # noqa: S104 - mutual TLS authenticates every client
    cert_pem, key_pem, ca_pem = _read(args.tls_cert), _read(args.tls_key), _read(args.tls_ca)
    try:
        port = add_mtls_port(server, host, args.port, cert_pem=cert_pem, key_pem=key_pem, ca_pem=ca_pem)
    except KmsConfigError as e:
        files = f"--tls-cert {args.tls_cert!r}, --tls-key {args.tls_key!r}, --tls-ca {args.tls_ca!r}"
        raise KmsConfigError(f"{e} ({files})") from None
    return f"{host}:{port}"


def main(argv: Sequence[str] | None = None) -> int:
    """Console entry point of ``starlock-keyservice``."""
    logging.captureWarnings(True)
    return run(parse_args(argv))
