"""``python -m starlock.kubecluster build|up|versions``: build the binaries, or run a control plane."""

from __future__ import annotations

import argparse
import contextlib
import signal
import subprocess
import sys
import time
from pathlib import Path

from starlock.kubecluster.build import BINARIES, Binaries, default_bin_dir, ensure_binaries
from starlock.kubecluster.cluster import ControlPlane
from starlock.kubecluster.errors import KubeClusterError


def _say(line: str) -> None:
    print(line, flush=True)


def versions(binaries: Binaries) -> dict[str, str]:
    """The version line each built binary reports about itself."""
    flags = {
        "etcd": ["--version"],
        "kube-apiserver": ["--version"],
        "kube-controller-manager": ["--version"],
        "kubeadm": ["version", "-o", "short"],
        "kubectl": ["version", "--client"],
    }
    out = {}
    for name in BINARIES:
        result = subprocess.run(  # noqa: S603
            [str(binaries.path(name)), *flags[name]], capture_output=True, text=True, timeout=30, check=False
        )
        first = (result.stdout or result.stderr).strip().splitlines()
        out[name] = first[0] if first else f"exit status {result.returncode}"
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m starlock.kubecluster", description=__doc__)
    parser.add_argument(
        "--bin-dir",
        type=Path,
        default=None,
        help="binary cache (default: $STARLOCK_KUBE_BIN or .cache/kube/<version>/bin)",
    )
    sub = parser.add_subparsers(dest="command", required=True)
    sub.add_parser("build", help="build the binaries (nothing to do when already built for the same pins)")
    sub.add_parser("versions", help="print the versions the built binaries report")
    up = sub.add_parser("up", help="start a control plane and keep it running until ^C")
    up.add_argument("--root", type=Path, default=None, help="state folder (default: a private temporary one)")
    args = parser.parse_args(argv)
    try:
        binaries = ensure_binaries(args.bin_dir or default_bin_dir(), report=_say)
        if args.command == "versions":
            for name, line in versions(binaries).items():
                _say(f"{name}: {line}")
        elif args.command == "up":
            plane = ControlPlane(binaries=binaries, root=args.root)
            plane.start()
            _say(f"control plane ready in {plane.timings['ready']:.1f} s at {plane.server}")
            _say(f"export KUBECONFIG={plane.admin_kubeconfig}")
            _say(f"kubectl: {binaries.path('kubectl')}; logs: {plane.log_dir}; press ^C to stop")
            stopping: list[int] = []  # no lock in a signal handler: it could be this thread's own
            signal.signal(signal.SIGTERM, lambda signum, _: stopping.append(signum))
            with contextlib.suppress(KeyboardInterrupt):
                while not stopping:
                    time.sleep(0.2)
            plane.stop()
            _say(f"stopped; state kept in {plane.root}")
    except KubeClusterError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
