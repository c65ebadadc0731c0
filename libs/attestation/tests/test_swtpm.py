"""The swtpm launcher: free ports, readiness, clean stop, simulated reboot, clear errors."""

from __future__ import annotations

import os
import socket
import stat
import struct
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from starlock.attestation import swtpm as swtpm_module
from starlock.attestation.swtpm import Swtpm, SwtpmError, SwtpmNotFound

# TPM2_GetRandom(8) with no sessions: tag TPM_ST_NO_SESSIONS, size, command code, bytesRequested.
_GET_RANDOM = struct.pack(">HIIH", 0x8001, 12, 0x0000017B, 8)


def _get_random(port: int) -> bytes:
    """Send a raw TPM2_GetRandom to swtpm's command port; return the random bytes."""
    with socket.create_connection(("127.0.0.1", port), timeout=5) as conn:
        conn.sendall(_GET_RANDOM)
        header = conn.recv(10, socket.MSG_WAITALL)
        tag, size, code = struct.unpack(">HII", header)
        assert (tag, code) == (0x8001, 0), f"TPM answered tag {tag:#x} rc {code:#x}"
        body = conn.recv(size - 10, socket.MSG_WAITALL)
    (length,) = struct.unpack(">H", body[:2])
    return body[2 : 2 + length]


def _process_gone(pid: int) -> bool:
    """True when no process (not even an unreaped zombie) has this pid."""
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


def _port_free(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_start_answers_tpm_commands(swtpm: Swtpm) -> None:
    assert swtpm.running
    assert swtpm.tcti == f"swtpm:host=127.0.0.1,port={swtpm.port}"
    assert swtpm.ctrl_port == swtpm.port + 1
    assert len(_get_random(swtpm.port)) == 8


def test_instances_get_distinct_free_ports(swtpm_factory: Callable[..., Swtpm]) -> None:
    nodes = [swtpm_factory() for _ in range(3)]
    ports = {p for node in nodes for p in (node.port, node.ctrl_port)}
    assert len(ports) == 6
    assert len({node.state_dir for node in nodes}) == 3
    for node in nodes:
        assert len(_get_random(node.port)) == 8


def test_stop_leaves_no_process_and_frees_ports(swtpm: Swtpm) -> None:
    pid, port = swtpm.pid, swtpm.port
    swtpm.stop()
    assert not swtpm.running
    assert _process_gone(pid)
    assert not Path(f"/proc/{pid}").exists()  # reaped: not even a zombie
    assert _port_free(port)
    assert _port_free(port + 1)
    swtpm.stop()  # idempotent
    with pytest.raises(SwtpmError, match="not running"):
        _ = swtpm.tcti


def test_context_manager_removes_temporary_state(swtpm_binary: Path) -> None:
    with Swtpm(binary=swtpm_binary) as tpm:
        state_dir, pid = tpm.state_dir, tpm.pid
        assert any(state_dir.iterdir())
    assert not state_dir.exists()
    assert not Path(f"/proc/{pid}").exists()
    with pytest.raises(SwtpmError, match="closed"):
        tpm.start()


def test_given_state_dir_is_kept(swtpm_binary: Path, tmp_path: Path) -> None:
    state = tmp_path / "node-state"
    with Swtpm(state, binary=swtpm_binary):
        pass
    assert (state / "tpm2-00.permall").is_file()


def test_restart_resets_pcrs_and_keeps_persistent_objects(swtpm: Swtpm, tpm2_pytss: Any) -> None:
    from starlock.attestation.tpm_device import DEFAULT_AK_RSA_HANDLE, TpmDevice

    with TpmDevice(swtpm.tcti) as tpm:
        tpm.extend(10, {0x000B: bytes(range(32))})
        extended = tpm.read_pcrs(0x000B, [10]).pcrs[10]
        ak = tpm.attestation_key(persistent_handle=DEFAULT_AK_RSA_HANDLE)
    assert extended != bytes(32)

    old_pid = swtpm.pid
    swtpm.restart()
    assert swtpm.pid != old_pid
    assert not Path(f"/proc/{old_pid}").exists()

    with TpmDevice(swtpm.tcti) as tpm:
        assert tpm.read_pcrs(0x000B, [10]).pcrs[10] == bytes(32)
        again = tpm.attestation_key(persistent_handle=DEFAULT_AK_RSA_HANDLE)
    assert again.persistent
    assert again.public_area == ak.public_area


def test_second_start_is_refused(swtpm: Swtpm) -> None:
    with pytest.raises(SwtpmError, match="already running"):
        swtpm.start()


def test_port_collision_is_retried(swtpm_binary: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    busy = socket.socket()
    busy.bind(("127.0.0.1", 0))
    busy.listen()
    busy_port = busy.getsockname()[1]
    real = swtpm_module._reserve_port_pair
    calls: list[int] = []

    def reserve() -> int:
        calls.append(1)
        return busy_port if len(calls) == 1 else real()

    monkeypatch.setattr(swtpm_module, "_reserve_port_pair", reserve)
    try:
        with Swtpm(binary=swtpm_binary) as tpm:
            assert tpm.port != busy_port
            assert len(_get_random(tpm.port)) == 8
    finally:
        busy.close()
    assert len(calls) >= 2


def test_missing_binary_is_a_clear_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    with pytest.raises(SwtpmNotFound, match="not found"):
        Swtpm(binary=tmp_path / "no-such-swtpm")
    monkeypatch.setenv("STARLOCK_SWTPM", str(tmp_path / "missing"))
    with pytest.raises(SwtpmNotFound, match="STARLOCK_SWTPM"):
        Swtpm()
    monkeypatch.delenv("STARLOCK_SWTPM")
    monkeypatch.setenv("PATH", str(tmp_path))
    with pytest.raises(SwtpmNotFound, match="swtpm-tools"):
        Swtpm()
    assert issubclass(SwtpmNotFound, RuntimeError)


def _fake_binary(tmp_path: Path, script: str) -> Path:
    path = tmp_path / "fake-swtpm"
    path.write_text("#!/bin/sh\n" + script + "\n")
    path.chmod(path.stat().st_mode | stat.S_IXUSR)
    return path


def test_early_exit_reports_swtpm_output(tmp_path: Path) -> None:
    fake = _fake_binary(tmp_path, 'echo "swtpm: simulated failure" >&2; exit 3')
    with pytest.raises(SwtpmError, match=r"exited with code 3.*simulated failure"):
        Swtpm(tmp_path / "state", binary=fake).start()


def test_never_ready_times_out_and_kills(tmp_path: Path) -> None:
    fake = _fake_binary(tmp_path, 'echo "$$" > "$(dirname "$0")/pid"; exec sleep 30')
    tpm = Swtpm(tmp_path / "state", binary=fake, start_timeout=0.3)
    with pytest.raises(SwtpmError, match="did not answer TPM commands"):
        tpm.start()
    pid = int((tmp_path / "pid").read_text())
    assert not Path(f"/proc/{pid}").exists()
    assert not tpm.running


def test_swtpm_setup_manufactures_ek_and_banks(swtpm_factory: Callable[..., Swtpm], tpm2_pytss: Any) -> None:
    import shutil

    if shutil.which("swtpm_setup") is None:
        message = "swtpm_setup (Debian package swtpm-tools) not installed"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)
    from starlock.attestation.tpm_device import TpmDevice

    node = swtpm_factory(create_ek=True, pcr_banks=("sha256",))
    with TpmDevice(node.tcti) as tpm:
        assert list(tpm.pcr_banks()) == [0x000B]
    # Manufacturing happens once: a restart reuses the state.
    node.restart()
    with TpmDevice(node.tcti) as tpm:
        assert list(tpm.pcr_banks()) == [0x000B]
