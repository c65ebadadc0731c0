"""starlock-verify's usage paths: --version, JSON on a usage error, Ctrl-C while reading stdin."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
import time
from importlib.metadata import version
from pathlib import Path


def _verify(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "starlock.attestation.cli", *args],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def test_version() -> None:
    done = _verify("--version")
    assert done.returncode == 0 and done.stdout.strip() == f"starlock-verify {version('starlock-attestation')}"


def test_json_usage_error_still_prints_json() -> None:
    done = _verify("document", "--json")  # the file argument is missing
    assert done.returncode == 2
    assert json.loads(done.stdout) == {"accepted": False, "error": "usage error (see stderr)"}
    assert "required: file" in done.stderr
    plain = _verify("document")
    assert plain.returncode == 2 and plain.stdout == ""


def _wait_until_reading_stdin(pid: int, timeout: float = 60.0) -> None:
    """Until the process sits in read(0, ...) (x86-64 syscall 0 on descriptor 0): interrupting it
    earlier, while it still imports, would test the interpreter, not the CLI. Where
    /proc/<pid>/syscall cannot be read, a generous pause stands in."""
    syscall = Path(f"/proc/{pid}/syscall")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        try:
            fields = syscall.read_text().split()
        except OSError:
            time.sleep(3)
            return
        if fields[:2] == ["0", "0x0"]:
            return
        time.sleep(0.05)
    raise AssertionError("starlock-verify never blocked reading standard input")


def test_ctrl_c_while_reading_stdin_is_one_line() -> None:
    proc = subprocess.Popen(
        [sys.executable, "-m", "starlock.attestation.cli", "document", "-", "--variant", "qemu-vtpm",
         "--config", "/dev/null"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    _wait_until_reading_stdin(proc.pid)
    proc.send_signal(signal.SIGINT)
    _, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, err
    assert err.strip() == "starlock-verify: interrupted" and "Traceback" not in err
