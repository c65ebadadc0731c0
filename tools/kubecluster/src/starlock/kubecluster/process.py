"""One control-plane component as a child process with its own log file."""

from __future__ import annotations

import contextlib
import ctypes
import os
import signal
import socket
import ssl
import subprocess
import time
from collections.abc import Callable, Sequence
from http.client import HTTPSConnection
from pathlib import Path
from typing import IO

from starlock.kubecluster.errors import ComponentError

__all__ = ["Component", "free_port", "https_get", "port_is_free"]

_LOOPBACK = "127.0.0.1"
_PR_SET_PDEATHSIG = 1


def free_port() -> int:
    """A TCP port that was free on the loopback interface just now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((_LOOPBACK, 0))
        return int(sock.getsockname()[1])


def port_is_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        try:
            sock.bind((_LOOPBACK, port))
        except OSError:
            return False
    return True


def _die_with_parent() -> None:  # pragma: no cover - runs in the child between fork and exec
    # A control plane must not outlive the test run that started it (a killed pytest, a ^C).
    with contextlib.suppress(OSError, AttributeError):
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(_PR_SET_PDEATHSIG, signal.SIGTERM)


def https_get(
    port: int,
    path: str,
    *,
    ca_file: Path | None,
    cert_file: Path | None = None,
    key_file: Path | None = None,
    timeout: float = 2.0,
) -> tuple[int, bytes]:
    """GET https://127.0.0.1:port/path; the server is verified against ``ca_file``.

    With ``ca_file=None`` the server is not verified: used only for the controller manager's
    health endpoint, whose serving certificate it makes up itself, on loopback.
    """
    context = (
        ssl._create_unverified_context()  # noqa: S323 - loopback health probe, see above
        if ca_file is None
        else ssl.create_default_context(cafile=str(ca_file))
    )
    if cert_file is not None:
        context.load_cert_chain(str(cert_file), str(key_file) if key_file else None)
    conn = HTTPSConnection(_LOOPBACK, port, context=context, timeout=timeout)
    try:
        conn.request("GET", path)
        response = conn.getresponse()
        return response.status, response.read(65536)
    finally:
        conn.close()


class Component:
    """A started (or not yet started) component; its output goes to ``log``."""

    def __init__(self, name: str, args: Sequence[str], log: Path, *, env: dict[str, str] | None = None) -> None:
        self.name = name
        self.args = list(args)
        self.log = log
        self._env = env
        self._process: subprocess.Popen[bytes] | None = None
        self._out: IO[bytes] | None = None

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process is not None else None

    def start(self) -> Component:
        if not os.access(self.args[0], os.X_OK):
            raise ComponentError(self.name, f"binary {self.args[0]} is missing or not executable")
        self.log.parent.mkdir(parents=True, exist_ok=True)
        self._out = self.log.open("ab")
        self._process = subprocess.Popen(  # noqa: S603 - our own binaries, argument list
            self.args,
            stdin=subprocess.DEVNULL,
            stdout=self._out,
            stderr=subprocess.STDOUT,
            env=self._env,
            start_new_session=True,
            preexec_fn=_die_with_parent,  # noqa: PLW1509 - only prctl, no locks taken
        )
        return self

    @property
    def returncode(self) -> int | None:
        return self._process.poll() if self._process is not None else None

    def wait(self, timeout: float | None = None) -> int:
        """Wait for the process to exit; its status (``subprocess.TimeoutExpired`` on timeout)."""
        if self._process is None:
            raise ComponentError(self.name, "was never started", str(self.log))
        return self._process.wait(timeout)

    def alive(self) -> bool:
        return self._process is not None and self._process.poll() is None

    def check_alive(self) -> None:
        """Raise a one-line :class:`ComponentError` if the process has exited."""
        if self._process is None:
            raise ComponentError(self.name, "was never started", str(self.log))
        code = self._process.poll()
        if code is not None:
            raise ComponentError(self.name, f"exited with status {code} during start: {self.reason()}", str(self.log))

    def reason(self) -> str:
        """The most telling line of the log: an address in use, else the last error line."""
        try:
            lines = [ln.strip() for ln in self.log.read_text(errors="replace").splitlines() if ln.strip()]
        except OSError:
            return "no log"
        for line in reversed(lines):
            if "address already in use" in line:
                return "port already in use: " + line[-200:]
        for line in reversed(lines):
            lowered = line.lower()
            if (line[:1] in ("E", "F") and line[1:5].isdigit()) or "error" in lowered or "fatal" in lowered:
                return line[:300]
        return lines[-1][:300] if lines else "no output"

    def wait_until(self, ready: Callable[[], bool], *, timeout: float, what: str) -> float:
        """Poll ``ready`` until it holds; fail at once if the process dies. Returns seconds waited."""
        started = time.monotonic()
        deadline = started + timeout
        delay = 0.05
        while True:
            self.check_alive()
            try:
                if ready():
                    return time.monotonic() - started
            except (OSError, ssl.SSLError):
                pass
            if time.monotonic() >= deadline:
                raise ComponentError(self.name, f"not {what} after {timeout:.0f} s: {self.reason()}", str(self.log))
            time.sleep(delay)
            delay = min(delay * 1.5, 0.5)

    def stop(self, timeout: float = 10.0) -> None:
        process = self._process
        if process is not None and process.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                process.send_signal(signal.SIGTERM)
            try:
                process.wait(timeout)
            except subprocess.TimeoutExpired:
                with contextlib.suppress(ProcessLookupError):
                    process.kill()
                process.wait(timeout)
        if self._out is not None:
            self._out.close()
            self._out = None

    def tail(self, lines: int = 40) -> str:
        try:
            text = self.log.read_text(errors="replace").splitlines()
        except OSError:
            return ""
        return "\n".join(text[-lines:])
