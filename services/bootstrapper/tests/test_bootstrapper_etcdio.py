"""etcd's I/O priority: found by name in /proc and set with the real ioprio_set(2) on a real process."""

from __future__ import annotations

import logging
import os
import secrets
import shutil
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

import starlock.bootstrapper.etcdio as etcdio
from starlock.bootstrapper.etcdio import (
    IOPRIO_CLASS_RT,
    IoPriorityError,
    find_process,
    get_io_priority,
    prioritize_etcd,
    set_io_priority,
)


def _require_root() -> None:
    """The real-time I/O class needs CAP_SYS_ADMIN: skipped for a non-root developer, a failure in CI."""
    if os.geteuid() == 0:
        return
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail("CI must run as root: the real-time I/O class needs CAP_SYS_ADMIN")
    pytest.skip("the real-time I/O class needs CAP_SYS_ADMIN (run as root)")


@pytest.fixture
def fake_etcd(tmp_path: Path) -> Iterator[tuple[str, int]]:
    """A process whose name (comm) is unique to this test, standing in for etcd."""
    name = "etcd-" + secrets.token_hex(4)  # 13 characters: the kernel keeps 15
    binary = tmp_path / name
    shutil.copy(shutil.which("sleep") or "/bin/sleep", binary)
    proc = subprocess.Popen([str(binary), "60"])
    comm = Path(f"/proc/{proc.pid}/comm")
    deadline = time.monotonic() + 10
    while comm.read_text().strip() != name:  # the name is the child's only once it has exec'd
        assert time.monotonic() < deadline
        time.sleep(0.01)
    try:
        yield name, proc.pid
    finally:
        proc.kill()
        proc.wait()


def test_find_process_by_name(fake_etcd: tuple[str, int]) -> None:
    name, pid = fake_etcd
    assert find_process(name) == pid
    assert find_process(name + "x") is None


def test_prioritize_sets_the_real_time_class(fake_etcd: tuple[str, int], caplog: pytest.LogCaptureFixture) -> None:
    _require_root()
    name, pid = fake_etcd
    assert get_io_priority(pid)[0] != IOPRIO_CLASS_RT
    caplog.set_level(logging.INFO, "starlock.bootstrapper")
    assert prioritize_etcd(name=name, attempts=1) == pid
    assert get_io_priority(pid) == (IOPRIO_CLASS_RT, 0)
    assert [r.fields for r in caplog.records if r.msg == "etcd I/O priority set to real-time"] == [{"pid": pid}]


def test_no_etcd_is_retried_then_logged_not_raised(caplog: pytest.LogCaptureFixture) -> None:
    assert prioritize_etcd(name="no-such-etcd-x", attempts=3, interval=0.01) is None
    assert "no etcd process" in caplog.text


def test_a_failing_syscall_is_logged_not_raised(
    fake_etcd: tuple[str, int], monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    def refuse(pid: int, io_class: int, level: int) -> None:
        raise IoPriorityError(1, "ioprio_set: Operation not permitted")

    monkeypatch.setattr(etcdio, "set_io_priority", refuse)
    assert prioritize_etcd(name=fake_etcd[0], attempts=1) is None
    (record,) = [r for r in caplog.records if r.msg == "etcd I/O priority not set"]
    assert "not permitted" in record.fields["error"]


def test_the_syscall_errors_are_typed() -> None:
    with pytest.raises(IoPriorityError, match="No such process"):
        set_io_priority(2**22 + 12345, IOPRIO_CLASS_RT, 0)  # beyond the kernel's pid_max limit
    with pytest.raises(IoPriorityError):
        get_io_priority(2**22 + 12345)


def test_every_thread_of_the_process_gets_the_class() -> None:
    """ioprio_set sets one thread; etcd (Go) runs many by the time kubeadm is done."""
    _require_root()
    name = "etcd-" + secrets.token_hex(4)
    script = (
        "import sys, threading, time\n"
        f"open('/proc/self/comm', 'w').write({name!r})\n"
        "for _ in range(3):\n"
        "    threading.Thread(target=time.sleep, args=(60,), daemon=True).start()\n"
        "print('ready', flush=True)\n"
        "time.sleep(60)\n"
    )
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None and proc.stdout.readline() == "ready\n"
        tids = [int(t.name) for t in Path(f"/proc/{proc.pid}/task").iterdir()]
        assert len(tids) == 4
        assert prioritize_etcd(name=name, attempts=1) == proc.pid
        assert {tid: get_io_priority(tid) for tid in tids} == dict.fromkeys(tids, (IOPRIO_CLASS_RT, 0))
    finally:
        proc.kill()
        proc.wait()
