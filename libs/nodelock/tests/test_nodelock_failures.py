"""A marking failure leaves the lock taken and says so; a bad lock-file location is refused."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest
from nodelock_testutil import read_pcr15, run_workers, start_worker

from starlock.nodelock import LockFileError, MarkingError, NodeLock, NodeLockError, TpmError, is_node_bootstrapped
from starlock.nodelock._tpm import Tpm

CLUSTER_ID = bytes(range(32))


def test_tpm_stopped_before_marking(swtpm: Any, lock_dir: Path) -> None:
    lock_file = lock_dir / "nodelock"
    tcti = swtpm.tcti
    lock = NodeLock(tcti, lock_file)
    swtpm.stop()
    with pytest.raises(MarkingError, match="marking the TPM failed") as info:
        lock.try_lock_once(CLUSTER_ID)
    assert info.value.lock_held is True
    assert info.value.stage == "tpm-check"
    assert isinstance(info.value.__cause__, TpmError)
    # Locked for good: this instance, another instance and another process all lose.
    assert lock.locked
    assert lock_file.is_file()
    assert lock.try_lock_once(CLUSTER_ID) is False
    assert NodeLock(tcti, lock_file).try_lock_once(CLUSTER_ID) is False
    (result,) = run_workers([start_worker("lock", tcti, str(lock_file), CLUSTER_ID.hex())])
    assert result == {"won": False}


def test_failure_reported_by_a_process(swtpm: Any, lock_dir: Path) -> None:
    tcti = swtpm.tcti
    swtpm.stop()
    (result,) = run_workers([start_worker("lock", tcti, str(lock_dir / "nodelock"), CLUSTER_ID.hex())])
    assert result == {"error": "MarkingError", "lock_held": True}


def test_tpm_lost_between_check_and_marking(swtpm: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    """The TPM goes away after PCR 15 was read as zero and right before TPM2_PCR_Event."""
    original = Tpm.extend_cluster_id_pcr

    def stop_then_extend(self: Tpm, event_data: bytes) -> None:
        swtpm.stop()
        original(self, event_data)

    monkeypatch.setattr(Tpm, "extend_cluster_id_pcr", stop_then_extend)
    lock = NodeLock(swtpm.tcti)
    with pytest.raises(MarkingError) as info:
        lock.try_lock_once(CLUSTER_ID)
    assert info.value.stage == "tpm-mark"
    assert info.value.lock_held
    assert lock.try_lock_once(CLUSTER_ID) is False


def test_tpm_without_sha256_bank(swtpm_factory: Any, tss: Any) -> None:
    """Constellation's IsNodeBootstrapped error: no PCR 15 in the SHA-256 bank."""
    tpm = swtpm_factory(pcr_banks=("sha1",))
    with pytest.raises(TpmError, match="cluster ID PCR does not exist"):
        is_node_bootstrapped(tpm.tcti)
    lock = NodeLock(tpm.tcti)
    with pytest.raises(MarkingError, match="cluster ID PCR does not exist") as info:
        lock.try_lock_once(CLUSTER_ID)
    assert info.value.stage == "tpm-check"
    assert read_pcr15(tss, tpm.tcti, ("sha1",))["sha1"] == bytes(20)  # not marked


def test_lock_file_not_creatable(swtpm: Any, tss: Any, lock_dir: Path) -> None:
    lock = NodeLock(swtpm.tcti, lock_dir / "nodelock")
    shutil.rmtree(lock_dir)
    with pytest.raises(MarkingError, match="lock file") as info:
        lock.try_lock_once(CLUSTER_ID)
    assert info.value.stage == "lock-file"
    assert lock.try_lock_once(CLUSTER_ID) is False
    assert read_pcr15(tss, swtpm.tcti)["sha256"] == bytes(32)


def test_lock_file_directory_created_private(tmp_path: Path) -> None:
    lock = NodeLock("swtpm:host=127.0.0.1,port=1", tmp_path / "run" / "starlock" / "nodelock")
    assert lock.lock_file is not None
    assert (lock.lock_file.parent.stat().st_mode & 0o777) == 0o700
    assert not lock.lock_file.exists()


@pytest.mark.parametrize("mode", [0o777, 0o770, 0o1777])
def test_lock_file_directory_writable_by_others(tmp_path: Path, mode: int) -> None:
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, mode)
    with pytest.raises(LockFileError, match="writable by group or others"):
        NodeLock("swtpm:host=127.0.0.1,port=1", shared / "nodelock")


def test_lock_file_directory_owned_by_another_user(tmp_path: Path) -> None:
    foreign = tmp_path / "foreign"
    foreign.mkdir(mode=0o700)
    other_uid = 65534 if os.geteuid() != 65534 else 65533  # "nobody"
    if os.geteuid() != 0:
        pytest.skip("changing a directory's owner needs root (CI runs as root)")
    os.chown(foreign, other_uid, -1)
    with pytest.raises(LockFileError, match=f"belongs to uid {other_uid}"):
        NodeLock("swtpm:host=127.0.0.1,port=1", foreign / "nodelock")


def test_lock_file_path_must_name_a_file(tmp_path: Path) -> None:
    blocker = tmp_path / "file"
    blocker.write_text("")
    with pytest.raises(LockFileError):
        NodeLock("swtpm:host=127.0.0.1,port=1", blocker / "nodelock")
    assert issubclass(LockFileError, NodeLockError)
