"""What a fresh process and a rebooted node see (spec-services.md §4.4).

PCR 15 lives as long as one boot: a fresh process on the same, still running TPM sees the node
as marked; after a reboot (swtpm restarted on the same state) PCR 15 is zero again, and
recognising the node as initialized is the state disk's job (LUKS token, node_state.json), after
which the node is marked again with the same derived cluster ID.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from nodelock_testutil import read_pcr15, run_workers, single_extend, start_worker

from starlock.nodelock import NodeLock, is_node_bootstrapped

CLUSTER_ID = bytes.fromhex("e7fd5a0e36fb56d69807aa36e68aee24438c1bf8766780b6106150f35b7aacba")  # §3.7.2 set S


def test_fresh_process_same_tpm_state_sees_marked_node(swtpm: Any, tss: Any, lock_dir: Path) -> None:
    assert NodeLock(swtpm.tcti, lock_dir / "first").try_lock_once(CLUSTER_ID)
    # A new process that shares no lock file with the first one: the TPM alone tells.
    (result,) = run_workers([start_worker("check", swtpm.tcti, str(lock_dir / "second"), CLUSTER_ID.hex())])
    assert result == {"bootstrapped": True, "won": False}
    assert read_pcr15(tss, swtpm.tcti)["sha256"] == single_extend(CLUSTER_ID)
    # Even without any lock file: PCR 15 is non-zero, so nobody marks again.
    (result,) = run_workers([start_worker("check", swtpm.tcti, "-", bytes(32).hex())])
    assert result == {"bootstrapped": True, "won": False}
    assert read_pcr15(tss, swtpm.tcti)["sha256"] == single_extend(CLUSTER_ID)


def test_reboot_resets_the_mark(swtpm: Any, tss: Any, tmp_path: Path) -> None:
    boot1 = tmp_path / "boot1"  # /run is a fresh tmpfs on every boot
    assert NodeLock(swtpm.tcti, boot1 / "nodelock").try_lock_once(CLUSTER_ID)
    assert is_node_bootstrapped(swtpm.tcti)

    swtpm.restart()
    assert not is_node_bootstrapped(swtpm.tcti)
    assert read_pcr15(tss, swtpm.tcti)["sha256"] == bytes(32)

    # The disk-mapper/bootstrapper re-derives the same cluster ID and marks again.
    assert NodeLock(swtpm.tcti, tmp_path / "boot2" / "nodelock").try_lock_once(CLUSTER_ID)
    assert read_pcr15(tss, swtpm.tcti)["sha256"] == single_extend(CLUSTER_ID)


def test_lock_file_surviving_a_reboot_keeps_the_node_locked_and_unmarked(swtpm: Any, lock_dir: Path) -> None:
    """Why the lock file belongs on a tmpfs: the lock file and PCR 15 must share one lifetime."""
    lock_file = lock_dir / "nodelock"
    assert NodeLock(swtpm.tcti, lock_file).try_lock_once(CLUSTER_ID)
    swtpm.restart()
    lock = NodeLock(swtpm.tcti, lock_file)
    assert lock.try_lock_once(CLUSTER_ID) is False
    assert not lock.is_node_bootstrapped()
