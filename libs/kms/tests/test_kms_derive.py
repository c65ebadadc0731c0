"""HKDF derivation and the cluster KMS against every vector of spec §3.7 (tests/vectors/kms-vectors.json)."""

from __future__ import annotations

import base64
import hashlib
from typing import Any

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

from starlock.kms import (
    DEK_PREFIX,
    MAX_DEK_LENGTH,
    MEASUREMENT_SECRET_KEY_ID,
    SSH_CA_KEY_ID,
    ClusterKMS,
    KmsConfigError,
    KmsInvalidArgument,
    MasterSecret,
    derive_cluster_id,
    derive_key,
    open_kms,
    parse_kms_uri,
)


def _info(v: dict[str, Any]) -> bytes:
    if "info" in v:
        return bytes.fromhex(v["info"])
    return (v["info_prefix"] + v["info_text"]).encode()


def _upstream(kms_vectors: dict[str, Any], name: str) -> dict[str, Any]:
    return next(v for v in kms_vectors["hkdf_upstream"] if v["name"] == name)


UPSTREAM = ["HKDFrfc1", "HKDFrfc2", "HKDFrfc3", "HKDFZero", "HKDF0xFF", "HKDFClusterID", "HKDFMeasurementSecret"]


@pytest.mark.parametrize("name", UPSTREAM)
def test_upstream_vector_derive_key(kms_vectors: dict[str, Any], name: str) -> None:
    """§3.7.1: DeriveKey(secret, salt, [InfoPrefix+]Info, length) == output."""
    v = _upstream(kms_vectors, name)
    out = derive_key(bytes.fromhex(v["secret"]), bytes.fromhex(v["salt"]), _info(v), v["length"])
    assert out.hex() == v["output"]


@pytest.mark.parametrize("name", [n for n in UPSTREAM if n.startswith("HKDF") and "rfc" not in n])
def test_upstream_vector_through_cluster_kms(kms_vectors: dict[str, Any], name: str) -> None:
    """§3.7.1 prefixed vectors: ClusterKMS.get_dek gets the full ``key-`` id, as upstream GetDEK."""
    v = _upstream(kms_vectors, name)
    kms = ClusterKMS(bytes.fromhex(v["secret"]), bytes.fromhex(v["salt"]))
    assert kms.get_dek(v["info_prefix"] + v["info_text"], v["length"]).hex() == v["output"]


def test_rfc3_accepted_by_derive_key_but_cluster_kms_refuses_empty_salt(kms_vectors: dict[str, Any]) -> None:
    """§3.7.1 HKDFrfc3: empty salt is fine for DeriveKey; the cluster KMS constructor refuses it."""
    v = _upstream(kms_vectors, "HKDFrfc3")
    assert v["cluster_kms_rejects"]
    with pytest.raises(KmsConfigError, match="salt is empty"):
        ClusterKMS(bytes.fromhex(v["secret"]), b"")
    with pytest.raises(KmsConfigError, match="master key is empty"):
        ClusterKMS(b"", b"salt")


def test_cluster_id_vector(kms_vectors: dict[str, Any]) -> None:
    """§3.7.1 HKDFClusterID == DeriveClusterID(secret, salt)."""
    v = _upstream(kms_vectors, "HKDFClusterID")
    assert derive_cluster_id(bytes.fromhex(v["secret"]), bytes.fromhex(v["salt"])).hex() == v["output"]


def test_ids_are_case_sensitive(kms_vectors: dict[str, Any]) -> None:
    """§3.7.1 HKDF0xFF: the upper-cased full id ``KEY-FFFF...`` gives a different key."""
    v = _upstream(kms_vectors, "HKDF0xFF")
    kms = ClusterKMS(bytes.fromhex(v["secret"]), bytes.fromhex(v["salt"]))
    full_id = v["info_prefix"] + v["info_text"]
    assert kms.get_dek(full_id, 32).hex() == v["output"]
    assert kms.get_dek(full_id.upper(), 32).hex() != v["output"]


def test_length_bounds() -> None:
    kms = ClusterKMS(b"k" * 32, b"s" * 32)
    assert len(kms.get_dek("key-x", 1)) == 1
    assert len(kms.get_dek("key-x", MAX_DEK_LENGTH)) == 255 * 32
    # A shorter output is a prefix of a longer one (HKDF-Expand), as with upstream.
    assert kms.get_dek("key-x", MAX_DEK_LENGTH).startswith(kms.get_dek("key-x", 100))
    for bad in (0, -1, MAX_DEK_LENGTH + 1):
        with pytest.raises(KmsInvalidArgument):
            kms.get_dek("key-x", bad)
    with pytest.raises(KmsInvalidArgument):
        kms.get_dek("key-\ud800", 32)


def test_repr_hides_secrets() -> None:
    kms = ClusterKMS(b"K" * 32, b"S" * 32)
    assert "KKKK" not in repr(kms)
    assert "KKKK" not in repr(MasterSecret(b"K" * 32, b"S" * 32))


@pytest.mark.parametrize("set_name", ["Z", "S"])
def test_end_to_end_vectors(kms_vectors: dict[str, Any], set_name: str) -> None:
    """§3.7.2: master secret -> measurement secret -> cluster ID -> PCR 15 / RTMR 2; SSH CA; disk key; URI."""
    v = next(s for s in kms_vectors["end_to_end"] if s["name"] == set_name)
    secret = MasterSecret(bytes.fromhex(v["key"]), bytes.fromhex(v["salt"]))
    assert secret.to_uri() == v["uri"]
    kms = open_kms(v["uri"])

    measurement_secret = kms.get_dek(DEK_PREFIX + MEASUREMENT_SECRET_KEY_ID, 32)
    assert measurement_secret.hex() == v["measurement_secret"]
    cluster_id = derive_cluster_id(measurement_secret, bytes.fromhex(v["measurement_salt"]))
    assert cluster_id.hex() == v["cluster_id"]
    pcr15 = hashlib.sha256(bytes(32) + hashlib.sha256(cluster_id).digest()).hexdigest()
    assert pcr15 == v["pcr15"]
    rtmr2 = hashlib.sha384(bytes(48) + hashlib.sha384(cluster_id).digest()).hexdigest()
    assert rtmr2 == v["rtmr2"]

    seed = kms.get_dek(DEK_PREFIX + SSH_CA_KEY_ID, 32)
    assert seed.hex() == v["ssh_seed"]
    pub = Ed25519PrivateKey.from_private_bytes(seed).public_key()
    openssh = pub.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    assert openssh == v["ssh_ca_pub_key"]

    assert kms.get_dek(DEK_PREFIX + v["disk_uuid"], 32).hex() == v["disk_key"]


def test_upstream_uri_example(kms_vectors: dict[str, Any]) -> None:
    """§3.3: key "key", salt "salt" -> kms://cluster-kms?key=a2V5&salt=c2FsdA== (and back)."""
    ex = kms_vectors["uri_upstream_example"]
    secret = MasterSecret(ex["key_text"].encode(), ex["salt_text"].encode())
    assert secret.to_uri() == ex["uri"]
    parsed = parse_kms_uri(ex["uri"])
    assert parsed.master_secret == secret  # type: ignore[union-attr]
    assert base64.urlsafe_b64decode("c2FsdA==") == b"salt"
