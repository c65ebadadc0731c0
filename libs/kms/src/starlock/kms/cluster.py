"""The cluster KMS: DEKs derived from the master secret (upstream ``internal/kms/kms/cluster``)."""

from __future__ import annotations

from starlock.kms.derive import derive_key
from starlock.kms.interface import KmsConfigError, KmsInvalidArgument

__all__ = ["ClusterKMS"]


class ClusterKMS:
    """Implements :class:`~starlock.kms.interface.KMS` by HKDF from a master key and salt.

    ``get_dek(dek_id, length)`` = HKDF-SHA256(master key, salt, UTF-8(dek_id), length), with
    ``dek_id`` the full, case-sensitive id (``key-...``). Thread-safe and stateless.
    """

    __slots__ = ("_key", "_salt")

    def __init__(self, master_key: bytes, salt: bytes) -> None:
        if not master_key:
            raise KmsConfigError("cluster KMS: master key is empty")
        if not salt:
            raise KmsConfigError("cluster KMS: salt is empty")
        self._key = bytes(master_key)
        self._salt = bytes(salt)

    def __repr__(self) -> str:
        return "ClusterKMS(<secret>)"

    def get_dek(self, dek_id: str, length: int) -> bytes:
        try:
            info = dek_id.encode("utf-8")
        except UnicodeEncodeError:
            # A lone surrogate cannot come from protobuf (strings are valid UTF-8) but can from a
            # Python caller; refuse rather than guess an encoding.
            raise KmsInvalidArgument("DEK id is not valid Unicode text") from None
        return derive_key(self._key, self._salt, info, length)

    def close(self) -> None:
        """Nothing to release."""
