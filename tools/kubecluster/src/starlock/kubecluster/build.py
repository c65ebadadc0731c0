"""Build the pinned Kubernetes control-plane binaries from their Go modules into a cache.

The Go module ``tools/kube`` pins ``k8s.io/kubernetes`` (its staging modules replaced by their
published releases) and ``go.etcd.io/etcd/server/v3`` in go.mod/go.sum. :func:`ensure_binaries`
builds ``etcd``, ``kube-apiserver``, ``kube-controller-manager``, ``kubeadm`` and ``kubectl``
into ``<repo>/.cache/kube/<version>/bin`` (or ``$STARLOCK_KUBE_BIN``) and does nothing when a
stamp there says they were built from the same go.mod, go.sum, Go version and flags.

Every failure (no Go, a refused module download, a compile error) raises :class:`BuildError`
with one line naming what failed and the log that holds Go's own output.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

from starlock.kubecluster.errors import BuildError

__all__ = [
    "BINARIES",
    "KUBERNETES_VERSION",
    "Binaries",
    "default_bin_dir",
    "ensure_binaries",
    "find_go_module",
]

KUBERNETES_VERSION = "v1.37.2"

# name of the binary -> Go package that builds it (all pinned by tools/kube/go.mod)
BINARIES: dict[str, str] = {
    "etcd": "go.etcd.io/etcd/server/v3",
    "kube-apiserver": "k8s.io/kubernetes/cmd/kube-apiserver",
    "kube-controller-manager": "k8s.io/kubernetes/cmd/kube-controller-manager",
    "kubeadm": "k8s.io/kubernetes/cmd/kubeadm",
    "kubectl": "k8s.io/kubernetes/cmd/kubectl",
}

_STAMP = ".starlock-build.json"
# A fixed build date keeps the binaries reproducible; Kubernetes' own release builds stamp the
# same variables (hack/lib/version.sh).
_BUILD_DATE = "1970-01-01T00:00:00Z"


def _version_ldflags(version: str) -> str:
    major, minor = version.lstrip("v").split(".")[:2]
    values = {
        "gitVersion": version,
        "gitMajor": major,
        "gitMinor": minor,
        "gitTreeState": "clean",
        "buildDate": _BUILD_DATE,
    }
    parts = ["-s", "-w"]
    for pkg in ("k8s.io/component-base/version", "k8s.io/client-go/pkg/version"):
        parts += [f"-X {pkg}.{key}={value}" for key, value in values.items()]
    return " ".join(parts)


@dataclass(frozen=True)
class Binaries:
    """Where the built binaries are; ``path(name)`` for one of :data:`BINARIES`."""

    bin_dir: Path
    version: str = KUBERNETES_VERSION

    def path(self, name: str) -> Path:
        if name not in BINARIES:
            raise KeyError(name)
        return self.bin_dir / name

    def missing(self) -> list[str]:
        return [name for name in BINARIES if not os.access(self.bin_dir / name, os.X_OK)]


def find_go_module(start: Path | None = None) -> Path:
    """The ``tools/kube`` Go module of this repository (found from this file's location)."""
    here = (start or Path(__file__)).resolve()
    for parent in here.parents:
        candidate = parent / "tools" / "kube"
        if (candidate / "go.mod").is_file() and (candidate / "go.sum").is_file():
            return candidate
    raise BuildError(
        "kube build: tools/kube/go.mod not found above "
        f"{here}; starlock-kubecluster runs from a clone of the Starlock repository"
    )


def default_bin_dir(module: Path | None = None) -> Path:
    env = os.environ.get("STARLOCK_KUBE_BIN")
    if env:
        return Path(env)
    mod = module or find_go_module()
    return mod.parent.parent / ".cache" / "kube" / KUBERNETES_VERSION / "bin"


def _go_binary(go: str | None) -> str:
    candidate = go or os.environ.get("STARLOCK_GO") or "go"
    found = shutil.which(candidate)
    if found is None:
        raise BuildError(
            f"kube build: the Go toolchain ({candidate!r}) is not installed or not on PATH; install Go "
            "1.26 or newer (https://go.dev/dl) or set STARLOCK_GO, or point STARLOCK_KUBE_BIN at prebuilt binaries"
        )
    return found


def _inputs_digest(module: Path, ldflags: str) -> str:
    """What decides the binaries' content: the pins, the link flags and the list of commands."""
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum"):
        digest.update((module / name).read_bytes())
    digest.update(ldflags.encode())
    digest.update(json.dumps(BINARIES, sort_keys=True).encode())
    return digest.hexdigest()


def _read_stamp(bin_dir: Path) -> dict[str, object]:
    try:
        data = json.loads((bin_dir / _STAMP).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def _run_go(args: list[str], *, cwd: Path, env: dict[str, str], log: Path, what: str) -> None:
    with log.open("ab") as out:
        out.write(f"$ {' '.join(args)}\n".encode())
        out.flush()
        result = subprocess.run(args, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)  # noqa: S603
    if result.returncode != 0:
        reason = _last_meaningful_line(log) or f"exit status {result.returncode}"
        raise BuildError(f"kube build: {what} failed: {reason}; full log: {log}")


def _last_meaningful_line(log: Path) -> str:
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return ""
    for line in reversed(lines):
        if not line.startswith("$ "):
            return line[:300]
    return ""


def ensure_binaries(
    bin_dir: Path | None = None,
    *,
    module: Path | None = None,
    go: str | None = None,
    report: Callable[[str], None] | None = None,
) -> Binaries:
    """Build the control-plane binaries unless the cache already holds them for these pins.

    ``report`` receives one line per step (what was built and how long it took).
    """
    say = report or (lambda _line: None)
    mod = module or find_go_module()
    target = bin_dir or default_bin_dir(mod)
    binaries = Binaries(target)
    ldflags = _version_ldflags(KUBERNETES_VERSION)

    stamp = _read_stamp(target)
    if stamp and not binaries.missing() and stamp.get("inputs") == _inputs_digest(mod, ldflags):
        say(f"kube build: {', '.join(BINARIES)} {KUBERNETES_VERSION} already built in {target}")
        return binaries

    go_bin = _go_binary(go)
    go_version = subprocess.run(  # noqa: S603
        [go_bin, "env", "GOVERSION"], capture_output=True, text=True, check=False
    ).stdout.strip()
    target.mkdir(parents=True, exist_ok=True)
    log = target.parent / "build.log"
    log.write_bytes(b"")
    env = dict(os.environ)
    # Static binaries, like Kubernetes' own release builds: no C toolchain needed.
    env.update({"CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly -buildvcs=false"})
    started = time.monotonic()
    say(f"kube build: building {', '.join(BINARIES)} {KUBERNETES_VERSION} with {go_version or go_bin} into {target}")
    say(
        "kube build: the first build compiles Kubernetes from source: about 8 minutes on 2 cores, plus module downloads"
    )
    _run_go(
        [go_bin, "mod", "download"],
        cwd=mod,
        env=env,
        log=log,
        what="module download (go mod download, through $GOPROXY)",
    )
    for name, package in BINARIES.items():
        begun = time.monotonic()
        tmp_out = target / f".{name}.tmp"
        args = [go_bin, "build", "-trimpath", "-ldflags", ldflags, "-o", str(tmp_out), package]
        _run_go(args, cwd=mod, env=env, log=log, what=f"building {name}")
        tmp_out.replace(target / name)
        say(f"kube build: {name} built in {time.monotonic() - begun:.1f} s")
    (target / _STAMP).write_text(
        json.dumps(
            {
                "version": KUBERNETES_VERSION,
                "go": go_version,
                "inputs": _inputs_digest(mod, ldflags),
            },
            indent=2,
        )
    )
    say(f"kube build: done in {time.monotonic() - started:.1f} s")
    return binaries
