"""``starlock-atls``: aTLS tunnels from the command line.

    starlock-atls tunnel server --listen 0.0.0.0:7443 --forward 127.0.0.1:8080 \\
        --issuer qemu-vtpm --tcti device:/dev/tpmrm0
    starlock-atls tunnel client --listen 127.0.0.1:8080 --connect node:7443 \\
        --validate qemu-vtpm=attestation-config.json

Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT once listening), 1 when this side's issuer
cannot attest (checked once at start: no TPM, no tpm2-pytss, ...), 2 for bad usage or
configuration, 130 when interrupted (Ctrl-C) before the tunnel listens.
"""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Any, NoReturn

from starlock.atls._admission import AdmissionLimits
from starlock.atls._connection import split_endpoint
from starlock.atls._handshake import ClientConfig, ServerConfig
from starlock.atls._log import level_for_verbosity
from starlock.atls.dummy import DummyIssuer, DummyValidator
from starlock.atls.errors import AtlsError, IssuerUnavailable
from starlock.atls.signals import stop_on_signals
from starlock.atls.tunnel import DEFAULT_IDLE_TIMEOUT, Tunnel, start_tunnel_client, start_tunnel_server
from starlock.attestation.config import CLI_CONFIG_KEYS, load_attestation_config
from starlock.attestation.errors import AttestationError
from starlock.attestation.interfaces import Issuer, Validator
from starlock.attestation.validators import SUPPORTED_VARIANTS
from starlock.attestation.variant import Variant

__all__ = ["main"]

EXIT_OK, EXIT_ISSUER, EXIT_USAGE, EXIT_INTERRUPTED = 0, 1, 2, 130
_LIMITS = AdmissionLimits()
_MAX_CONFIG_FILE = 1024 * 1024
#: Variants this CLI can attest as (--issuer) and check (--validate / --variant).
ISSUER_VARIANTS = (Variant.QEMU_VTPM.value, Variant.DUMMY.value)
VALIDATOR_VARIANTS = tuple(v.value for v in (*SUPPORTED_VARIANTS, Variant.DUMMY))
_log = logging.getLogger("starlock.atls")


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("starlock-atls")
    except PackageNotFoundError:  # pragma: no cover - run from a source tree without metadata
        return "unknown"


def _add_verbosity(parser: argparse.ArgumentParser, default: object) -> None:
    # On every level so that ``-v 4`` works before or after the subcommand; below the top level
    # the default is SUPPRESS, so an option given earlier is not overwritten by a default.
    parser.add_argument(
        "-v", type=int, default=default, metavar="N", help="log verbosity (klog levels 2, 4, 6; default 2)"
    )


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="starlock-atls", description="Attested TLS (aTLS) tools.")
    _add_verbosity(parser, 2)
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    tunnel = sub.add_parser("tunnel", help="put aTLS in front of (or behind) any TCP service")
    _add_verbosity(tunnel, argparse.SUPPRESS)
    sides = tunnel.add_subparsers(dest="side", required=True, parser_class=_Parser)
    server = sides.add_parser("server", help="accept aTLS on --listen and forward plain TCP to --forward")
    server.add_argument("--listen", required=True, help="host:port to accept aTLS on (port 0: any free port)")
    server.add_argument("--forward", required=True, help="host:port of the plain TCP service")
    client = sides.add_parser("client", help="accept plain TCP on a loopback --listen, dial aTLS to --connect")
    client.add_argument("--listen", required=True, help="loopback host:port for local clients (port 0: any free port)")
    client.add_argument("--connect", required=True, help="host:port of the tunnel server")
    client.add_argument(
        "--accept-unattested-server",
        action="store_true",
        help="INSECURE: without --validate, connect to any server (anyone on the path can impersonate it)",
    )
    for side in (server, client):
        _add_verbosity(side, argparse.SUPPRESS)
        side.add_argument(
            "--issuer", metavar="VARIANT", help=f"attest this side with VARIANT (one of: {', '.join(ISSUER_VARIANTS)})"
        )
        side.add_argument("--tcti", help="TPM for the qemu-vtpm issuer (default device:/dev/tpmrm0)")
        side.add_argument("--event-log", type=Path, help="TCG event log for the qemu-vtpm issuer")
        side.add_argument(
            "--validate",
            action="append",
            default=[],
            metavar="[VARIANT=]CONFIG",
            help="require the peer to attest; CONFIG is an attestation config file (repeatable; "
            "the variant from VARIANT=, --variant or the CLI config form; 'dummy' needs no file)",
        )
        side.add_argument(
            "--variant",
            metavar="VARIANT",
            help=f"variant of --validate configs given without VARIANT= (one of: {', '.join(VALIDATOR_VARIANTS)})",
        )
        side.add_argument("--insecure-dummy", action="store_true", help="allow the dummy variant (tests only)")
        side.add_argument("--max-connections", type=int, default=256, help="established connections at once")
        side.add_argument(
            "--idle-timeout",
            type=float,
            default=DEFAULT_IDLE_TIMEOUT,
            help=f"seconds without traffic before a connection is closed (default {DEFAULT_IDLE_TIMEOUT:g}; "
            "0 for no timeout)",
        )
    server.add_argument(
        "--max-handshakes", type=int, default=_LIMITS.max_handshakes, help="handshakes in progress at once"
    )
    server.add_argument(
        "--max-handshakes-per-source",
        type=int,
        default=_LIMITS.max_handshakes_per_source,
        help="handshakes in progress from one IPv4 address or IPv6 /64 (0 for no limit)",
    )
    server.add_argument(
        "--first-byte-timeout",
        type=float,
        default=_LIMITS.first_byte_timeout,
        help="seconds a new connection may stay silent",
    )
    return parser


def _variant(name: str, option: str, allowed: Sequence[str]) -> Variant:
    if name not in allowed:
        raise _UsageError(f"{option}: unknown or unsupported variant {name!r:.64}; choose one of: {', '.join(allowed)}")
    return Variant.from_string(name)


def _endpoint(option: str, value: str, *, listen: bool) -> None:
    """Refuse a host:port the tunnel could not use, naming the option and the rule broken."""
    low = 0 if listen else 1
    _host, sep, port = value.rpartition(":")
    if sep and port.isascii() and port.isdigit() and not low <= (int(port) if len(port) <= 6 else -1) <= 65535:
        extra = " (0: any free port)" if listen else ""
        raise _UsageError(f"{option} {value!r:.80}: the port must be {low}–65535{extra}, got {port:.12}")
    try:
        split_endpoint(value)
    except AtlsError:
        raise _UsageError(f"{option} {value!r:.80}: expected host:port (e.g. 127.0.0.1:8080 or [::1]:8080)") from None


def _check_options(args: argparse.Namespace) -> None:
    if args.variant is not None:
        _variant(args.variant, "--variant", VALIDATOR_VARIANTS)
    if not math.isfinite(args.idle_timeout) or args.idle_timeout < 0:
        raise _UsageError(
            f"--idle-timeout must be a number of seconds greater than 0, or 0 for no timeout; got {args.idle_timeout:g}"
        )
    if args.max_connections < 1:
        raise _UsageError(f"--max-connections must be at least 1, got {args.max_connections}")


def _issuer(args: argparse.Namespace) -> Issuer | None:
    if args.issuer is None:
        return None
    variant = _variant(args.issuer, "--issuer", ISSUER_VARIANTS)
    if variant is Variant.DUMMY:
        if not args.insecure_dummy:
            raise _UsageError("--issuer dummy proves nothing; add --insecure-dummy to use it (tests only)")
        return DummyIssuer(insecure=True)
    from starlock.attestation.qemu.issuer import QemuVtpmIssuer

    kwargs: dict[str, Any] = {"event_log_path": args.event_log}
    if args.tcti:
        kwargs["tcti"] = args.tcti
    return QemuVtpmIssuer(**kwargs)


def _read_config(path: Path) -> bytes:
    try:
        with path.open("rb") as handle:
            data = handle.read(_MAX_CONFIG_FILE + 1)
    except OSError as exc:
        raise _UsageError(f"cannot read attestation config {path}: {exc.strerror or exc}") from None
    if len(data) > _MAX_CONFIG_FILE:
        raise _UsageError(f"attestation config {path} is larger than {_MAX_CONFIG_FILE} bytes")
    return data


def _variant_from_cli_form(data: bytes) -> Variant | None:
    import yaml

    try:
        obj = yaml.safe_load(data)
    except yaml.YAMLError:
        return None
    section = obj.get("attestation") if isinstance(obj, dict) else None
    if not isinstance(section, dict):
        return None
    named = [v for v, key in CLI_CONFIG_KEYS.items() if key in section]
    return named[0] if len(named) == 1 else None


def _validators(args: argparse.Namespace) -> list[Validator]:
    from starlock.attestation.validators import validator_for

    validators: list[Validator] = []
    for spec in args.validate:
        name, sep, path = spec.partition("=")
        if not sep:
            name, path = "", spec
        if (name or path) == "dummy":
            if not args.insecure_dummy:
                raise _UsageError("--validate dummy proves nothing; add --insecure-dummy to use it (tests only)")
            validators.append(DummyValidator(insecure=True))
            continue
        data = _read_config(Path(path))
        if name:
            variant: Variant | None = _variant(name, f"--validate {spec}", VALIDATOR_VARIANTS)
        elif args.variant:
            variant = _variant(args.variant, "--variant", VALIDATOR_VARIANTS)
        else:
            variant = _variant_from_cli_form(data)
        if variant is None:
            raise _UsageError(f"--validate {spec}: name the variant (VARIANT=CONFIG or --variant)")
        try:
            validators.append(validator_for(load_attestation_config(data, variant)))
        except AttestationError as exc:
            raise _UsageError(f"--validate {spec}: {exc}") from None
    return validators


def _start(args: argparse.Namespace) -> Tunnel:
    _endpoint("--listen", args.listen, listen=True)
    _endpoint("--forward" if args.side == "server" else "--connect", args.remote, listen=False)
    _check_options(args)
    issuer, validators = _issuer(args), _validators(args)
    idle = args.idle_timeout or None
    if args.side == "server":
        if issuer is None and not validators:
            raise _UsageError("the tunnel server attests nothing: give --issuer, --validate, or both")
        config = ServerConfig(issuer, validators)
        return start_tunnel_server(
            args.listen,
            args.forward,
            config,
            max_connections=args.max_connections,
            idle_timeout=idle,
            limits=_limits(args),
        )
    if not validators and not args.accept_unattested_server:
        raise _UsageError(
            "without --validate the client would accept any server (anyone on the path could impersonate "
            "it): give --validate VARIANT=CONFIG, or --accept-unattested-server to do that knowingly"
        )
    if not validators:
        _log.warning(
            "--accept-unattested-server: the server at %s is NOT attested; anyone on the network path can "
            "impersonate it and read or change the tunnelled traffic",
            args.connect,
        )
    return start_tunnel_client(
        args.listen,
        args.connect,
        ClientConfig(issuer, validators),
        max_connections=args.max_connections,
        idle_timeout=idle,
    )


def _limits(args: argparse.Namespace) -> AdmissionLimits:
    per_source = args.max_handshakes_per_source or None
    try:
        return AdmissionLimits(
            max_handshakes=args.max_handshakes,
            max_handshakes_per_source=per_source,
            first_byte_timeout=args.first_byte_timeout,
        )
    except ValueError as exc:
        raise _UsageError(str(exc)) from None


def main(argv: Sequence[str] | None = None) -> int:
    try:
        return _main(argv)
    except KeyboardInterrupt:  # Ctrl-C before the tunnel listens (e.g. a TPM that does not answer)
        print("starlock-atls: interrupted", file=sys.stderr)
        return EXIT_INTERRUPTED


def _main(argv: Sequence[str] | None) -> int:
    args = _build_parser().parse_args(argv)
    args.remote = args.forward if args.side == "server" else args.connect
    if args.v < 6:  # libtss2 writes its own multi-line errors to stderr; ours name the cause in one line
        os.environ.setdefault("TSS2_LOG", "all+none")
    logging.basicConfig(
        level=level_for_verbosity(args.v), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    try:
        tunnel = _start(args)
    except IssuerUnavailable as exc:  # the one line says what is missing; nothing was started
        print(f"starlock-atls: error: {exc}", file=sys.stderr)
        return EXIT_ISSUER
    except (_UsageError, AtlsError, OSError) as exc:
        print(f"starlock-atls: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # Installed once the tunnel runs: before, Ctrl-C interrupts a start that hangs (exit 130).
    done = stop_on_signals()
    # The bound port on stdout lets scripts use --listen host:0.
    print(f"listening on port {tunnel.port}", flush=True)
    _log.info("tunnel %s listening on port %d", args.side, tunnel.port)
    while not done.wait(1.0):
        pass
    _log.info("shutting down: %d connections open", tunnel.active_connections)
    tunnel.stop()
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
