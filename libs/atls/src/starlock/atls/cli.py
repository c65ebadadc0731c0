"""``starlock-atls``: aTLS tunnels from the command line.

    starlock-atls tunnel server --listen 0.0.0.0:7443 --forward 127.0.0.1:8080 \\
        --issuer qemu-vtpm --tcti device:/dev/tpmrm0
    starlock-atls tunnel client --listen 127.0.0.1:8080 --connect node:7443 \\
        --validate qemu-vtpm=attestation-config.json

Exit codes: 0 after a clean shutdown (SIGTERM/SIGINT), 1 when this side's issuer cannot attest
(checked once at start: no TPM, no tpm2-pytss, ...), 2 for bad usage or configuration.
"""

from __future__ import annotations

import argparse
import logging
import os
import signal
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from types import FrameType
from typing import Any, NoReturn

from starlock.atls._admission import AdmissionLimits
from starlock.atls._handshake import ClientConfig, ServerConfig
from starlock.atls._log import level_for_verbosity
from starlock.atls.dummy import DummyIssuer, DummyValidator
from starlock.atls.errors import AtlsError, IssuerUnavailable
from starlock.atls.tunnel import DEFAULT_IDLE_TIMEOUT, Tunnel, start_tunnel_client, start_tunnel_server
from starlock.attestation.config import CLI_CONFIG_KEYS, load_attestation_config
from starlock.attestation.errors import AttestationError
from starlock.attestation.interfaces import Issuer, Validator
from starlock.attestation.variant import Variant

__all__ = ["main"]

EXIT_OK, EXIT_ISSUER, EXIT_USAGE = 0, 1, 2
_LIMITS = AdmissionLimits()
_MAX_CONFIG_FILE = 1024 * 1024


class _UsageError(Exception):
    pass


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="starlock-atls", description="Attested TLS (aTLS) tools.")
    parser.add_argument("-v", type=int, default=2, metavar="N", help="log verbosity (klog levels 2, 4, 6)")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)
    tunnel = sub.add_parser("tunnel", help="put aTLS in front of (or behind) any TCP service")
    sides = tunnel.add_subparsers(dest="side", required=True, parser_class=_Parser)
    server = sides.add_parser("server", help="accept aTLS on --listen and forward plain TCP to --forward")
    server.add_argument("--listen", required=True, help="host:port to accept aTLS on")
    server.add_argument("--forward", required=True, help="host:port of the plain TCP service")
    client = sides.add_parser("client", help="accept plain TCP on a loopback --listen, dial aTLS to --connect")
    client.add_argument("--listen", required=True, help="loopback host:port for local clients")
    client.add_argument("--connect", required=True, help="host:port of the tunnel server")
    client.add_argument(
        "--accept-unattested-server",
        action="store_true",
        help="INSECURE: without --validate, connect to any server (anyone on the path can impersonate it)",
    )
    for side in (server, client):
        side.add_argument("--issuer", metavar="VARIANT", help="attest this side with VARIANT (qemu-vtpm, dummy)")
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
        side.add_argument("--variant", help="variant of --validate configs given without VARIANT=")
        side.add_argument("--insecure-dummy", action="store_true", help="allow the dummy variant (tests only)")
        side.add_argument("--max-connections", type=int, default=256, help="established connections at once")
        side.add_argument("--idle-timeout", type=float, default=DEFAULT_IDLE_TIMEOUT, help="seconds, 0 for none")
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


def _variant(name: str) -> Variant:
    try:
        return Variant.from_string(name)
    except AttestationError as exc:
        raise _UsageError(str(exc)) from None


def _issuer(args: argparse.Namespace) -> Issuer | None:
    if args.issuer is None:
        return None
    variant = _variant(args.issuer)
    if variant is Variant.DUMMY:
        if not args.insecure_dummy:
            raise _UsageError("--issuer dummy proves nothing; add --insecure-dummy to use it (tests only)")
        return DummyIssuer(insecure=True)
    if variant is Variant.QEMU_VTPM:
        from starlock.attestation.qemu.issuer import QemuVtpmIssuer

        kwargs: dict[str, Any] = {"event_log_path": args.event_log}
        if args.tcti:
            kwargs["tcti"] = args.tcti
        return QemuVtpmIssuer(**kwargs)
    raise _UsageError(f"no issuer for variant {variant.value} in this version (supported: qemu-vtpm, dummy)")


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
        variant = _variant(name) if name else _variant(args.variant) if args.variant else _variant_from_cli_form(data)
        if variant is None:
            raise _UsageError(f"--validate {spec}: name the variant (VARIANT=CONFIG or --variant)")
        try:
            validators.append(validator_for(load_attestation_config(data, variant)))
        except AttestationError as exc:
            raise _UsageError(f"--validate {spec}: {exc}") from None
    return validators


def _start(args: argparse.Namespace) -> Tunnel:
    issuer, validators = _issuer(args), _validators(args)
    idle = args.idle_timeout or None
    if args.max_connections < 1:
        raise _UsageError("--max-connections must be at least 1")
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
    args = _build_parser().parse_args(argv)
    if args.v < 6:  # libtss2 writes its own multi-line errors to stderr; ours name the cause in one line
        os.environ.setdefault("TSS2_LOG", "all+none")
    logging.basicConfig(
        level=level_for_verbosity(args.v), stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s"
    )
    done = threading.Event()

    def on_signal(_signum: int, _frame: FrameType | None) -> None:
        done.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    try:
        tunnel = _start(args)
    except IssuerUnavailable as exc:  # the one line says what is missing; nothing was started
        print(f"starlock-atls: error: {exc}", file=sys.stderr)
        return EXIT_ISSUER
    except (_UsageError, AtlsError, OSError) as exc:
        print(f"starlock-atls: error: {exc}", file=sys.stderr)
        return EXIT_USAGE
    # The bound port on stdout lets scripts use --listen host:0.
    print(f"listening on port {tunnel.port}", flush=True)
    logging.getLogger("starlock.atls").info("tunnel %s listening on port %d", args.side, tunnel.port)
    while not done.wait(1.0):
        pass
    logging.getLogger("starlock.atls").info("shutting down: %d connections open", tunnel.active_connections)
    tunnel.stop()
    return EXIT_OK


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
