"""Give etcd's disk I/O the highest priority on a control plane (spec §5.4 step 5, §5.6).

etcd is latency-bound on fsync; on a node whose disk is shared with image pulls and logs it can
miss heartbeats. After ``kubeadm init`` or a control-plane ``kubeadm join`` the bootstrapper finds
the ``etcd`` process in ``/proc`` and sets the I/O scheduling class of each of its threads to
real-time, level 0, with ``ioprio_set(2)`` (which sets one thread at a time; threads started
later inherit it), trying every second for up to ten seconds (etcd may not run yet). Failing is
not fatal: the cluster works without it, so it is logged and the bootstrap goes on.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import logging
import os
import platform
import time
from pathlib import Path

__all__ = ["IOPRIO_CLASS_RT", "find_process", "get_io_priority", "prioritize_etcd", "set_io_priority"]

_log = logging.getLogger("starlock.bootstrapper")

IOPRIO_CLASS_RT = 1
_IOPRIO_CLASS_SHIFT = 13
_IOPRIO_WHO_PROCESS = 1
#: ioprio_set / ioprio_get syscall numbers (Linux uapi, asm/unistd.h).
_SYSCALLS = {"x86_64": (251, 252), "aarch64": (30, 31)}


class IoPriorityError(OSError):
    """ioprio_set/ioprio_get failed (errno set)."""


def _syscall(index: int) -> int:
    numbers = _SYSCALLS.get(platform.machine())
    if numbers is None:
        raise IoPriorityError(errno.ENOSYS, f"ioprio syscalls are not known for {platform.machine()}")
    return numbers[index]


@functools.cache
def _libc() -> ctypes.CDLL:
    return ctypes.CDLL(None, use_errno=True)


def set_io_priority(pid: int, io_class: int, level: int) -> None:
    """``ioprio_set(IOPRIO_WHO_PROCESS, pid, class << 13 | level)``."""
    value = (io_class << _IOPRIO_CLASS_SHIFT) | level
    if _libc().syscall(_syscall(0), _IOPRIO_WHO_PROCESS, pid, value) != 0:
        err = ctypes.get_errno()
        raise IoPriorityError(err, f"ioprio_set({pid}): {os.strerror(err)}")


def get_io_priority(pid: int) -> tuple[int, int]:
    """(class, level) of ``pid``'s I/O priority."""
    value = _libc().syscall(_syscall(1), _IOPRIO_WHO_PROCESS, pid)
    if value < 0:
        err = ctypes.get_errno()
        raise IoPriorityError(err, f"ioprio_get({pid}): {os.strerror(err)}")
    return value >> _IOPRIO_CLASS_SHIFT, value & ((1 << _IOPRIO_CLASS_SHIFT) - 1)


def find_process(name: str, proc: Path = Path("/proc")) -> int | None:
    """The lowest PID whose ``comm`` is ``name`` (the kernel keeps the first 15 bytes of it)."""
    wanted = name[:15]
    pids = sorted(int(p.name) for p in proc.iterdir() if p.name.isdigit())
    for pid in pids:
        try:
            comm = (proc / str(pid) / "comm").read_text().rstrip("\n")
        except OSError:  # the process ended meanwhile
            continue
        if comm == wanted:
            return pid
    return None


def _threads(pid: int, proc: Path) -> list[int]:
    """The thread ids of ``pid`` (its own first); just ``pid`` when /proc lists none."""
    try:
        tids = sorted(int(t.name) for t in (proc / str(pid) / "task").iterdir() if t.name.isdigit())
    except OSError:
        tids = []
    return [pid, *(t for t in tids if t != pid)]


def prioritize_etcd(
    *, name: str = "etcd", proc: Path = Path("/proc"), attempts: int = 10, interval: float = 1.0
) -> int | None:
    """Set ``name``'s I/O class to real-time level 0; its PID, or None (logged) when that failed."""
    for attempt in range(attempts):
        pid = find_process(name, proc)
        if pid is not None:
            try:
                # ioprio_set(IOPRIO_WHO_PROCESS) sets one thread: every thread etcd runs already
                for tid in _threads(pid, proc):
                    set_io_priority(tid, IOPRIO_CLASS_RT, 0)
            except IoPriorityError as exc:
                _log.warning("etcd I/O priority not set", extra={"fields": {"pid": pid, "error": str(exc)}})
                return None
            _log.info("etcd I/O priority set to real-time", extra={"fields": {"pid": pid}})
            return pid
        if attempt + 1 < attempts:
            time.sleep(interval)
    _log.warning("etcd I/O priority not set: no etcd process", extra={"fields": {"attempts": attempts}})
    return None
