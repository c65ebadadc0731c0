"""``starlock``: the operator's command line.

``starlock init`` initializes a cluster on its first node (spec §1.3, §5.3); ``starlock verify``
checks a node through its verification service (§1.5, §4.2); ``starlock recover`` brings control
planes back after the whole cluster rebooted (§1.6, §4.4). Exit codes, as ``starlock-verify``:
0 success (initialized / accepted), 1 refused (an Init failure, a rejected attestation),
2 bad usage, unreadable input or an unreachable endpoint (one-line reason on stderr).
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence
from typing import NoReturn

from starlock.cli._common import EXIT_USAGE, CliError

__all__ = ["main"]


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> NoReturn:
        self.print_usage(sys.stderr)
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message}\n")


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("starlock-cli")
    except PackageNotFoundError:  # pragma: no cover - running from a source tree
        return "unknown"


def build_parser() -> argparse.ArgumentParser:
    from starlock.attestation.validators import SUPPORTED_VARIANTS

    variants = ", ".join(v.value for v in SUPPORTED_VARIANTS)
    parser = _Parser(
        prog="starlock", description="Initialize, verify and recover a Starlock (Constellation v2) cluster."
    )
    parser.add_argument("--version", action="version", version=f"%(prog)s {_version()}")
    sub = parser.add_subparsers(dest="command", required=True, parser_class=_Parser)

    init = sub.add_parser("init", help="initialize the cluster on its first node", description=__doc__)
    init.add_argument("--endpoint", required=True, help="the first node's init server, HOST:PORT (usually :9000)")
    init.add_argument("--config", required=True, help="the attestation config the node must satisfy (JSON or YAML)")
    init.add_argument("--variant", required=True, help=f"attestation variant ({variants})")
    init.add_argument("--init-secret", required=True, help="file holding the init secret the node's metadata hashes")
    init.add_argument(
        "--master-secret",
        help="constellation-mastersecret.json to use; without it one is generated and written to --out first",
    )
    init.add_argument("--out", default=".", help="where the master secret, admin kubeconfig and state go (default .)")
    init.add_argument("--kubernetes-version", default="v1.37.2")
    init.add_argument("--cluster-name", default="constellation")
    init.add_argument("--apiserver-cert-san", action="append", default=[], help="extra API server SAN (repeatable)")
    init.add_argument("--service-cidr", default="")
    init.add_argument("--conformance", action="store_true", help="keep kube-proxy (conformance mode)")
    init.add_argument("--components", help="JSON list of components (url, hash, install_path, extract)")
    init.add_argument("--retry-interval", type=float, default=30.0, help="seconds between tries while UNAVAILABLE")
    init.add_argument("--timeout", type=float, default=600.0, help="give up after this many seconds")
    init.add_argument("--json", action="store_true", help="print the result as JSON")

    verify = sub.add_parser("verify", help="verify a node through its verification service")
    verify.add_argument("--endpoint", required=True, help="the verification service's gRPC endpoint, HOST:PORT")
    verify.add_argument("--config", required=True, help="the attestation config (JSON or YAML)")
    verify.add_argument("--variant", required=True, help=f"attestation variant ({variants})")
    verify.add_argument("--cluster-id", help="hex: also require PCR 15 to hold this cluster's mark")
    verify.add_argument(
        "--insecure-plaintext",
        action="store_true",
        help="the service serves plain gRPC (upstream's default); the document is still checked",
    )
    verify.add_argument("--timeout", type=float, default=60.0)
    verify.add_argument("--json", action="store_true", help="print a JSON report instead of a table")

    recover = sub.add_parser(
        "recover",
        help="send the master secret to control planes waiting after a full-cluster reboot",
        description="Recover control planes that rebooted while no join service was up (spec §1.6, §4.4).",
    )
    recover.add_argument(
        "--endpoint",
        action="append",
        default=[],
        help="a control plane's recovery server, HOST:PORT (repeatable; default: the host of the "
        "endpoint in --state, port 9999)",
    )
    recover.add_argument(
        "--state", default="starlock-state.json", help="the state file starlock init wrote (default: ./%(default)s)"
    )
    recover.add_argument("--config", required=True, help="the attestation config the nodes must satisfy")
    recover.add_argument("--variant", required=True, help=f"attestation variant ({variants})")
    recover.add_argument("--master-secret", required=True, help="the constellation-mastersecret.json of the cluster")
    recover.add_argument("--retry-interval", type=float, default=10.0, help="seconds between tries while UNAVAILABLE")
    recover.add_argument("--timeout", type=float, default=300.0, help="give up on a node after this many seconds")
    recover.add_argument("--json", action="store_true", help="print the result as JSON")
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    parser = build_parser()
    json_requested = "--json" in (sys.argv[1:] if argv is None else list(argv))
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:
        if json_requested and exc.code not in (0, None):
            import json

            print(json.dumps({"ok": False, "error": "usage error (see stderr)"}))
        raise
    try:
        if args.command == "init":
            from starlock.cli.init import run_init

            return run_init(args)
        if args.command == "recover":
            from starlock.cli.recover import run_recover

            return run_recover(args)
        from starlock.cli.verify import run_verify

        return run_verify(args)
    except CliError as exc:
        if args.json:
            import json

            print(json.dumps({"ok": False, "error": str(exc)}))
        print(f"starlock {args.command}: {exc}", file=sys.stderr)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"starlock {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
