"""Build the Go differential program (tests/differential/main.go) into a cache and run cases on it.

The build follows tools/kubecluster's pattern: ``<repo>/.cache/differential/`` (gitignored) holds
the binary and a stamp naming the inputs it was built from (go.mod, go.sum, main.go, the Go
version and flags); a matching stamp makes the build a no-op. Any failure (no Go, a refused module
download, a compile error) raises :class:`GoHarnessError` with one line naming what failed and the
log that holds Go's own output.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import threading
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import Any

MODULE = Path(__file__).resolve().parent
REPO_ROOT = MODULE.parents[1]
_FLAGS = {"CGO_ENABLED": "0", "GOFLAGS": "-mod=readonly -buildvcs=false"}
_STAMP = ".starlock-build.json"
_BINARY = "differential"


class GoHarnessError(Exception):
    """The Go differential program could not be built or run (one-line message)."""


def cache_dir() -> Path:
    return Path(os.environ.get("STARLOCK_DIFFERENTIAL_CACHE") or REPO_ROOT / ".cache" / "differential")


def _go() -> str:
    candidate = os.environ.get("STARLOCK_GO") or "go"
    found = shutil.which(candidate)
    if found is None:
        raise GoHarnessError(
            f"differential: the Go toolchain ({candidate!r}) is not installed or not on PATH; install Go 1.26 "
            "or newer (https://go.dev/dl) or set STARLOCK_GO"
        )
    return found


def _inputs_digest(go_version: str) -> str:
    digest = hashlib.sha256()
    for name in ("go.mod", "go.sum", "main.go"):
        digest.update(name.encode() + b"\0" + (MODULE / name).read_bytes())
    digest.update(go_version.encode())
    digest.update(json.dumps(_FLAGS, sort_keys=True).encode())
    return digest.hexdigest()


def _last_line(log: Path) -> str:
    try:
        lines = [ln.strip() for ln in log.read_text(errors="replace").splitlines() if ln.strip()]
    except OSError:
        return ""
    return next((ln[:300] for ln in reversed(lines) if not ln.startswith("$ ")), "")


def ensure_binary(report: Any = None) -> Path:
    """The built program; builds it first unless the stamp says it is current."""
    say = report or (lambda _line: None)
    target = cache_dir()
    binary = target / _BINARY
    go = _go()
    env = {**os.environ, **_FLAGS}
    version = subprocess.run(
        [go, "env", "GOVERSION"], capture_output=True, text=True, check=False, env=env
    ).stdout.strip()
    inputs = _inputs_digest(version)
    try:
        stamp = json.loads((target / _STAMP).read_text())
    except (OSError, ValueError):
        stamp = {}
    if os.access(binary, os.X_OK) and isinstance(stamp, dict) and stamp.get("inputs") == inputs:
        say(f"differential: Go program already built in {target}")
        return binary
    target.mkdir(parents=True, exist_ok=True)
    log = target / "build.log"
    log.write_bytes(b"")
    steps = [
        ("module download (go mod download, through $GOPROXY)", [go, "mod", "download"]),
        ("building the Go differential program", [go, "build", "-trimpath", "-o", str(target / ".tmp"), "."]),
    ]
    for what, args in steps:
        with log.open("ab") as out:
            out.write(f"$ {' '.join(args)}\n".encode())
            out.flush()
            result = subprocess.run(args, cwd=MODULE, env=env, stdout=out, stderr=subprocess.STDOUT, check=False)
        if result.returncode != 0:
            reason = _last_line(log) or f"exit status {result.returncode}"
            raise GoHarnessError(f"differential: {what} failed: {reason}; full log: {log}")
    (target / ".tmp").replace(binary)
    (target / _STAMP).write_text(json.dumps({"go": version, "inputs": inputs}, indent=2))
    say(f"differential: built the Go program with {version} into {target}")
    return binary


class GoRun:
    """One Go process fed the requests from a background thread; ``results()`` yields verdicts."""

    def __init__(self, binary: Path, requests: Iterable[dict[str, Any]]) -> None:
        self._proc = subprocess.Popen(
            [str(binary)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE
        )
        self._error: BaseException | None = None
        self._writer = threading.Thread(target=self._write, args=(list(requests),), daemon=True)
        self._writer.start()

    def _write(self, requests: list[dict[str, Any]]) -> None:
        assert self._proc.stdin is not None
        try:
            for req in requests:
                self._proc.stdin.write(json.dumps(req, separators=(",", ":")).encode() + b"\n")
            self._proc.stdin.close()
        except BaseException as exc:  # a broken pipe: the process died; reported by results()
            self._error = exc

    def results(self) -> Iterator[dict[str, Any]]:
        assert self._proc.stdout is not None and self._proc.stderr is not None
        for line in self._proc.stdout:
            yield json.loads(line)
        self._writer.join()
        err = self._proc.stderr.read().decode(errors="replace").strip()
        code = self._proc.wait()
        if code != 0 or self._error is not None:
            last = err.splitlines()[-1] if err else f"exit status {code}"
            raise GoHarnessError(f"differential: the Go program failed: {last}")
