"""HKDF-SHA256 key derivation, identical to Constellation's ``internal/crypto.DeriveKey``.

Sans-IO: bytes in, bytes out. ``info`` and ``salt`` are used exactly as given (the ``key-``
prefix is part of ``info``; see :mod:`starlock.kms.interface`).
"""

from __future__ import annotations

from cryptography.hazmat.primitives.hashes import SHA256
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

from starlock.kms.interface import DEK_PREFIX, MAX_DEK_LENGTH, KmsInvalidArgument

__all__ = [
    "CLUSTER_ID_CONTEXT",
    "DERIVED_KEY_LENGTH_DEFAULT",
    "MASTER_SECRET_LENGTH_DEFAULT",
    "MASTER_SECRET_LENGTH_MIN",
    "MEASUREMENT_SECRET_KEY_ID",
    "RNG_LENGTH_DEFAULT",
    "SSH_CA_KEY_ID",
    "STATE_DISK_KEY_LENGTH",
    "derive_cluster_id",
    "derive_key",
]

STATE_DISK_KEY_LENGTH = 32
DERIVED_KEY_LENGTH_DEFAULT = 32
MASTER_SECRET_LENGTH_DEFAULT = 32
MASTER_SECRET_LENGTH_MIN = 16
RNG_LENGTH_DEFAULT = 32
#: Bare id (without ``key-``) of the measurement secret, as sent to the key service.
MEASUREMENT_SECRET_KEY_ID = "measurementSecret"  # noqa: S105 - an id, not a secret
#: Bare id of the emergency SSH CA seed (upstream ``SSHCAKeySuffix``).
SSH_CA_KEY_ID = "ca_emergency_ssh"
#: Bare HKDF context of the cluster ID (upstream ``clusterIDContext``).
CLUSTER_ID_CONTEXT = "clusterID"


def derive_key(secret: bytes, salt: bytes, info: bytes, length: int) -> bytes:
    """RFC 5869 HKDF-SHA256 (extract and expand) of ``length`` bytes.

    Accepts an empty salt or info (RFC 5869 A.3); ``length`` must be 1..255*32.
    Raises :class:`~starlock.kms.interface.KmsInvalidArgument` for a bad length.
    """
    # Upstream returns an empty key for length 0; nothing in the bootstrap asks for one and the
    # key service refuses it, so we refuse it here too rather than return b"".
    if not 1 <= length <= MAX_DEK_LENGTH:
        raise KmsInvalidArgument(f"key length must be between 1 and {MAX_DEK_LENGTH} bytes, got {length}")
    return HKDF(algorithm=SHA256(), length=length, salt=salt, info=info).derive(secret)


def derive_cluster_id(measurement_secret: bytes, measurement_salt: bytes) -> bytes:
    """The 32-byte cluster ID: HKDF(measurement secret, measurement salt, ``key-clusterID``)."""
    info = (DEK_PREFIX + CLUSTER_ID_CONTEXT).encode()
    return derive_key(measurement_secret, measurement_salt, info, DERIVED_KEY_LENGTH_DEFAULT)
