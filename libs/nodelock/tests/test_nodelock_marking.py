"""Marking PCR 15 on a real (software) TPM gives the value of spec-services.md §3.7.2.

Vectors: reference/spec-services.md §3.7.2, "End-to-end vectors", sets Z and S: master key and
salt → measurementSecret (HKDF info ``key-measurementSecret``) → clusterID (HKDF with the
measurement salt, info ``key-clusterID``) → "PCR15 after marking". Every step is recomputed
here with the standard library and compared with the quoted numbers before the TPM is used.
"""

from __future__ import annotations

import subprocess
import sys
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st
from nodelock_testutil import BANKS, hkdf_sha256, read_pcr15, single_extend

from starlock.nodelock import (
    InvalidClusterId,
    Marker,
    NodeLock,
    NodeLockError,
    TpmSupportMissing,
    UnsupportedMarker,
    is_node_bootstrapped,
    mark_node_as_bootstrapped,
    read_cluster_id_pcr,
)

# (key, salt, measurementSalt, measurementSecret, clusterID, PCR15 after marking), §3.7.2.
VECTORS = {
    "Z": (
        bytes(32),
        bytes(32),
        bytes(32),
        "54d67b1d917d3464757d9b699f3ee416c209a2270e3876da90535e4108898cdd",
        "823267d1276b940d1f04b9fac150721f196bf1090e125684d4efd8416a691588",
        "739f5470af0ec8615323225d31cb09f458f93c24a94c7fb491b8b3973cb89f89",
    ),
    "S": (
        bytes(range(0x00, 0x20)),
        bytes(range(0x20, 0x40)),
        bytes(range(0x40, 0x60)),
        "ea7fedd14f5a29b1b8545592fc20bfdae06918e4ff447b1a0b8e4f3356005bda",
        "e7fd5a0e36fb56d69807aa36e68aee24438c1bf8766780b6106150f35b7aacba",
        "f75516d57d358d6acd9c5e6e5c74b910ca7da9ddbc7935d0707c9b71656b968d",
    ),
}
UNREACHABLE_TCTI = "swtpm:host=127.0.0.1,port=1"


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_vector_chain_recomputes(name: str) -> None:
    key, salt, measurement_salt, secret_hex, cluster_id_hex, pcr15_hex = VECTORS[name]
    measurement_secret = hkdf_sha256(key, salt, b"key-measurementSecret")
    assert measurement_secret.hex() == secret_hex
    cluster_id = hkdf_sha256(measurement_secret, measurement_salt, b"key-clusterID")
    assert cluster_id.hex() == cluster_id_hex
    assert single_extend(cluster_id).hex() == pcr15_hex


@pytest.mark.parametrize("name", sorted(VECTORS))
def test_marking_gives_the_vector_pcr15(name: str, swtpm: Any, tss: Any) -> None:
    _key, _salt, _msalt, _secret, cluster_id_hex, pcr15_hex = VECTORS[name]
    cluster_id = bytes.fromhex(cluster_id_hex)
    lock = NodeLock(swtpm.tcti)
    assert not lock.is_node_bootstrapped()
    assert read_pcr15(tss, swtpm.tcti)["sha256"] == bytes(32)

    assert lock.try_lock_once(cluster_id) is True

    values = read_pcr15(tss, swtpm.tcti)
    assert values["sha256"].hex() == pcr15_hex
    # TPM2_PCR_Event hashes the event data in every bank's own algorithm.
    for bank in BANKS:
        assert values[bank] == single_extend(cluster_id, bank), bank
    assert lock.is_node_bootstrapped()
    assert read_cluster_id_pcr(swtpm.tcti).hex() == pcr15_hex
    assert lock.locked


def test_low_level_marking_is_unconditional(swtpm: Any, tss: Any) -> None:
    """mark_node_as_bootstrapped has no lock: a second call extends again (why NodeLock exists)."""
    cluster_id = bytes.fromhex(VECTORS["S"][4])
    assert not is_node_bootstrapped(swtpm.tcti)
    mark_node_as_bootstrapped(cluster_id, swtpm.tcti)
    once = read_pcr15(tss, swtpm.tcti)["sha256"]
    assert once == single_extend(cluster_id)
    mark_node_as_bootstrapped(cluster_id, swtpm.tcti)
    twice = read_pcr15(tss, swtpm.tcti)["sha256"]
    assert twice != once
    assert is_node_bootstrapped(swtpm.tcti)


@given(st.binary(max_size=2048).filter(lambda b: len(b) != 32))
def test_wrong_size_cluster_id_is_refused_before_locking(cluster_id: bytes) -> None:
    # The TCTI is never opened: the check comes before the lock and before the TPM.
    lock = NodeLock(UNREACHABLE_TCTI)
    with pytest.raises(InvalidClusterId, match="expected 32"):
        lock.try_lock_once(cluster_id)
    assert not lock.locked


@pytest.mark.parametrize("value", ["823267d1276b940d1f04b9fac150721f", None, 32, list(range(32))])
def test_non_bytes_cluster_id_is_refused(value: Any) -> None:
    lock = NodeLock(UNREACHABLE_TCTI)
    with pytest.raises(InvalidClusterId, match="must be bytes"):
        lock.try_lock_once(value)
    assert not lock.locked
    with pytest.raises(InvalidClusterId):
        mark_node_as_bootstrapped(value, UNREACHABLE_TCTI)


def test_tdx_marker_is_a_clear_error() -> None:
    with pytest.raises(UnsupportedMarker, match="RTMR 2") as info:
        NodeLock(UNREACHABLE_TCTI, marker=Marker.TDX)
    assert isinstance(info.value, NotImplementedError)
    with pytest.raises(UnsupportedMarker):
        NodeLock(UNREACHABLE_TCTI, marker="tdx")
    with pytest.raises(NodeLockError, match="unknown marker 'sev'"):
        NodeLock(UNREACHABLE_TCTI, marker="sev")
    assert NodeLock(UNREACHABLE_TCTI, marker="tpm").tcti == UNREACHABLE_TCTI


def test_missing_tpm2_pytss_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tpm2_pytss", None)
    with pytest.raises(TpmSupportMissing, match="needs tpm2-pytss"):
        is_node_bootstrapped(UNREACHABLE_TCTI)


def test_import_does_not_load_tpm2_pytss() -> None:
    code = "import sys, starlock.nodelock; print('tpm2_pytss' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "False"
