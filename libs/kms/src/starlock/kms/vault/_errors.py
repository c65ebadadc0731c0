"""Errors of the Vault/OpenBao backend beyond the ones of :mod:`starlock.kms.interface`."""

from __future__ import annotations

from starlock.kms.interface import KmsError, KmsFailedPrecondition, KmsInvalidArgument

__all__ = ["DekLengthMismatch", "VaultStoreError", "WrappedKeyError"]


class DekLengthMismatch(KmsInvalidArgument):
    """A DEK with this id is already stored with a different length than the one requested."""


class WrappedKeyError(KmsError):
    """A stored wrapped key is malformed, belongs to another id, or does not unwrap for its id."""


class VaultStoreError(KmsFailedPrecondition):
    """The wrapped-key store is not initialized, was reset, or its KEK was replaced: no key is
    created until an operator acts (gRPC ``FAILED_PRECONDITION``)."""
