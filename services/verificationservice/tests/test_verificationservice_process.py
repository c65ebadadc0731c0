"""``python -m starlock.verificationservice`` as a real process: flags, logs, listeners, signals."""

from __future__ import annotations

import importlib.resources
import secrets
import signal
import socket
import subprocess
import sys
import tomllib
from collections.abc import Callable
from pathlib import Path

import grpc
import pytest
from conftest import DUMMY, Node, Proc, b64url, document_from_http, grpc_attestation, http_get

Run = Callable[..., Proc]
HEALTH = ["--health-listen", "127.0.0.1:0"]
PACKAGE = Path(__file__).parents[1]


def _listeners(pid: int) -> set[tuple[str, int]]:
    """(address, port) of every TCP socket the process listens on, from /proc."""
    inodes = set()
    for fd in Path(f"/proc/{pid}/fd").iterdir():
        try:
            target = fd.readlink().as_posix()
        except OSError:
            continue
        if target.startswith("socket:["):
            inodes.add(target[8:-1])
    found = set()
    for table, size in (("tcp", 4), ("tcp6", 16)):
        for line in Path(f"/proc/net/{table}").read_text().splitlines()[1:]:
            fields = line.split()
            local, state, inode = fields[1], fields[3], fields[9]
            if state != "0A" or inode not in inodes:  # 0A: LISTEN
                continue
            address, port = local.split(":")
            raw = bytes.fromhex(address)
            if size == 4:
                host = socket.inet_ntop(socket.AF_INET, raw[::-1])
            else:
                host = socket.inet_ntop(socket.AF_INET6, b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4)))
            found.add((host, int(port, 16)))
    return found


def _speaks_http(port: int) -> bool:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(b"GET /?nonce=aGk HTTP/1.1\r\nHost: n\r\n\r\n")
        try:
            return sock.recv(64).startswith(b"HTTP/")
        except (ConnectionResetError, TimeoutError):
            return False


def test_qemu_vtpm_process_atls_and_sigterm(node: Node, run_service: Run) -> None:
    proc = run_service(
        *node.flags(), "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", *HEALTH, "-v", "2"
    )
    nonce = secrets.token_bytes(32)
    result = node.validator().validate(grpc_attestation(proc.ports["grpc"], nonce, validator=node.validator()), nonce)
    assert result.user_data == b"VerifyService"
    reply = http_get(proc.ports["http"], f"/?nonce={b64url(nonce, padded=False)}", validator=node.validator())
    assert node.validator().validate(document_from_http(reply), nonce).user_data == b"VerifyService"
    assert proc.stop(signal.SIGTERM) == 0
    logs = proc.logs()
    listening = next(line for line in logs if line["msg"] == "verification service listening")
    assert listening["grpc_port"] == proc.ports["grpc"] and listening["http_port"] == proc.ports["http"]
    assert listening["health_port"] == proc.ports["health"]
    assert (listening["transport"], listening["variant"]) == ("atls", "qemu-vtpm")
    assert [line["msg"] for line in logs][-1] == "verification service stopped"
    assert any(line["msg"] == "attestation request" and line["endpoint"] == "grpc" for line in logs)


def test_no_plaintext_listener_on_the_network_without_the_flag(run_service: Run) -> None:
    proc = run_service(*DUMMY, "--grpc-listen", "0.0.0.0:0", "--http-listen", "0.0.0.0:0", *HEALTH)
    listeners = _listeners(proc.popen.pid)
    network = {port for host, port in listeners if not host.startswith("127.") and host != "::1"}
    assert network == {proc.ports["grpc"], proc.ports["http"]}
    for port in network:
        assert not _speaks_http(port)  # TLS only
    # on loopback: the health endpoint and the HTTP backend behind the aTLS tunnel
    assert {port for host, port in listeners if host.startswith("127.")} >= {proc.ports["health"]}
    assert proc.stop(signal.SIGINT) == 0


def test_insecure_plaintext_process(run_service: Run) -> None:
    proc = run_service(
        *DUMMY, "--insecure-plaintext", "--grpc-listen", "0.0.0.0:0", "--http-listen", "0.0.0.0:0", *HEALTH
    )
    assert grpc_attestation(proc.ports["grpc"], b"nonce", plaintext=True).startswith(
        b'{"UserData":"VmVyaWZ5U2VydmljZQ=="'
    )
    assert _speaks_http(proc.ports["http"])
    assert http_get(proc.ports["http"], "/?nonce=", mode="plain").status == 400
    assert proc.stop() == 0
    warnings = [line for line in proc.logs() if line["level"] == "WARNING"]
    assert any("--insecure-plaintext" in line["msg"] and "WITHOUT aTLS" in line["msg"] for line in warnings)


def test_grpc_keepalive_and_unreachable_tpm_at_start(tmp_path: Path, run_service: Run) -> None:
    from starlock.verificationservice.cli import KEEPALIVE_MS

    assert KEEPALIVE_MS == 15_000
    proc = run_service(
        "--attestation-variant", "qemu-vtpm", "--tcti", "swtpm:host=127.0.0.1,port=1", *HEALTH, wait=False
    )
    assert proc.popen.wait(timeout=60) == 1
    (line,) = [line for line in proc.logs() if line["level"] == "ERROR"]
    assert line["msg"] == "cannot start the verification service"
    assert "the TPM cannot be reached" in line["error"] and "TpmError" in line["error"]
    assert "Tss2_" not in proc.stderr_path.read_text()  # libtss2's own lines are silenced below -v 6


@pytest.mark.parametrize(
    ("flags", "code"),
    [
        (["--attestation-variant", "dummy"], 2),  # dummy needs --insecure-dummy
        (["--attestation-variant", "dummy", "--insecure-dummy", "--grpc-listen", "nowhere"], 2),
        (["--attestation-variant", "no-such-variant"], 1),
        (["--attestation-variant", "azure-sev-snp"], 1),  # no issuer for it yet
    ],
)
def test_refused_flags(flags: list[str], code: int, run_service: Run) -> None:
    proc = run_service(*flags, *HEALTH, wait=False)
    assert proc.popen.wait(timeout=60) == code


def test_busy_port_fails_start(run_service: Run) -> None:
    with socket.socket() as busy:
        busy.bind(("127.0.0.1", 0))
        busy.listen()
        port = busy.getsockname()[1]
        proc = run_service(
            *DUMMY, "--grpc-listen", "127.0.0.1:0", "--http-listen", f"127.0.0.1:{port}", *HEALTH, wait=False
        )
        assert proc.popen.wait(timeout=60) == 1
    assert any("cannot serve" in line.get("error", "") for line in proc.logs())


def test_packaging() -> None:
    project = tomllib.loads((PACKAGE / "pyproject.toml").read_text())["project"]
    assert project["name"] == "starlock-verificationservice"
    assert project["scripts"] == {"starlock-verificationservice": "starlock.verificationservice.cli:main"}
    assert not (PACKAGE / "src" / "starlock" / "__init__.py").exists()  # PEP 420 namespace
    assert importlib.resources.files("starlock.verificationservice").joinpath("py.typed").is_file()
    helped = subprocess.run(
        [sys.executable, "-m", "starlock.verificationservice", "--help"],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert helped.returncode == 0 and "--insecure-plaintext" in helped.stdout


def test_plain_grpc_client_refused_by_atls_process(run_service: Run) -> None:
    proc = run_service(*DUMMY, "--grpc-listen", "127.0.0.1:0", "--http-listen", "127.0.0.1:0", *HEALTH)
    with pytest.raises(grpc.RpcError) as caught:
        grpc_attestation(proc.ports["grpc"], b"nonce", plaintext=True)
    assert caught.value.code() is grpc.StatusCode.UNAVAILABLE
    assert grpc_attestation(proc.ports["grpc"], b"nonce")  # an aTLS client gets the document
