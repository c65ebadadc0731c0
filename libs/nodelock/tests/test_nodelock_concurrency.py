"""Of many concurrent callers exactly one wins, and the TPM is extended exactly once.

Each caller offers a different cluster ID, so PCR 15 tells who marked it and how often: it must
equal one PCR_Event of the winner's ID from zero (a second extend by anyone would change it).
"""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

from nodelock_testutil import BANKS, read_pcr15, run_workers, single_extend, start_worker

from starlock.nodelock import NodeLock

THREADS = 16
PROCESSES = 6


def cluster_ids(count: int) -> list[bytes]:
    return [bytes([i + 1]) * 32 for i in range(count)]


def race(attempts: list[tuple[NodeLock, bytes]]) -> list[bool]:
    barrier = threading.Barrier(len(attempts))
    results: list[bool | BaseException] = [False] * len(attempts)

    def attempt(i: int) -> None:
        lock, cluster_id = attempts[i]
        barrier.wait()
        try:
            results[i] = lock.try_lock_once(cluster_id)
        except BaseException as exc:
            results[i] = exc

    threads = [threading.Thread(target=attempt, args=(i,)) for i in range(len(attempts))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    errors = [r for r in results if isinstance(r, BaseException)]
    assert not errors, errors
    return [bool(r) for r in results]


def assert_marked_once_by(tss: Any, tcti: str, cluster_id: bytes) -> None:
    values = read_pcr15(tss, tcti)
    for bank in BANKS:
        assert values[bank] == single_extend(cluster_id, bank), bank


def test_threads_sharing_one_lock(swtpm: Any, tss: Any) -> None:
    lock = NodeLock(swtpm.tcti)
    ids = cluster_ids(THREADS)
    won = race([(lock, cluster_id) for cluster_id in ids])
    assert won.count(True) == 1
    assert_marked_once_by(tss, swtpm.tcti, ids[won.index(True)])
    assert lock.locked


def test_threads_with_own_locks_sharing_a_lock_file(swtpm: Any, tss: Any, lock_dir: Path) -> None:
    lock_file = lock_dir / "nodelock"
    ids = cluster_ids(THREADS)
    locks = [NodeLock(swtpm.tcti, lock_file) for _ in ids]
    won = race(list(zip(locks, ids, strict=True)))
    assert won.count(True) == 1
    assert_marked_once_by(tss, swtpm.tcti, ids[won.index(True)])
    assert lock_file.is_file()
    assert all(lock.locked for lock in locks)


def test_processes_sharing_a_lock_file_and_tpm(swtpm: Any, tss: Any, lock_dir: Path) -> None:
    lock_file = lock_dir / "nodelock"
    ids = cluster_ids(PROCESSES)
    workers = [start_worker("lock", swtpm.tcti, str(lock_file), cluster_id.hex()) for cluster_id in ids]
    results = run_workers(workers)
    won = [result["won"] for result in results]
    assert won.count(True) == 1, results
    assert_marked_once_by(tss, swtpm.tcti, ids[won.index(True)])
    # A process arriving later loses without marking, too.
    assert NodeLock(swtpm.tcti, lock_file).try_lock_once(ids[0]) is False
    assert_marked_once_by(tss, swtpm.tcti, ids[won.index(True)])


def test_loser_does_not_touch_the_tpm(swtpm: Any, lock_dir: Path) -> None:
    """After the lock is taken, further calls return False without opening the TPM at all."""
    lock_file = lock_dir / "nodelock"
    lock = NodeLock(swtpm.tcti, lock_file)
    other = NodeLock(swtpm.tcti, lock_file)
    assert lock.try_lock_once(cluster_ids(1)[0]) is True
    swtpm.stop()  # any TPM access from now on would fail
    assert lock.try_lock_once(cluster_ids(2)[1]) is False
    assert other.try_lock_once(cluster_ids(2)[1]) is False
