"""The KMS interface every backend implements, and the KMS error hierarchy.

Semantics (identical to Constellation's ``kms.CloudKMS.GetDEK``):

* ``KMS.get_dek(dek_id, length)`` receives the **full** DEK id, i.e. *with* the ``key-`` prefix
  (``"key-measurementSecret"``, ``"key-<disk uuid>"``, ``"key-ca_emergency_ssh"``). The prefix
  is added by the caller that speaks to the outside world: the key service adds it to the bare
  ``data_key_id`` of a ``GetDataKey`` request (upstream ``keyservice/internal/server``), and
  in-process callers (init server, disk recovery) pass the prefixed id themselves. A backend
  never adds or strips the prefix; for the cluster KMS the id's UTF-8 bytes are the HKDF
  ``info``; a storing backend (Vault/OpenBao) uses it verbatim as its key name.
* Ids are case-sensitive; ``length`` is in bytes, ``1 <= length <= MAX_DEK_LENGTH``. A backend
  raises :class:`KmsError` (or a subclass) for every failure, never another exception type, and
  the message never contains key material, the master secret, a salt or a credential.
* ``close()`` releases resources; calling it twice is harmless.
* A backend may be called from many threads at once (the key service runs a thread pool).
* A backend that does network I/O bounds each request by :func:`starlock.kms.deadline.time_left`
  (the caller's deadline; the key service sets it per call) and raises :class:`KmsUnavailable`
  when it runs out.

gRPC status mapping used by the key service (``starlock-keyservice``):

* :class:`KmsUnavailable` -> ``UNAVAILABLE``: backend unreachable or timed out; retryable.
* :class:`KmsPermissionDenied` -> ``INTERNAL``: the *key service's own* credentials were refused
  by the backend; the calling client is not at fault, and ``PERMISSION_DENIED`` would wrongly
  tell it that it lacks a permission. Same status as upstream for every KMS failure.
* :class:`KmsInvalidArgument` -> ``INVALID_ARGUMENT``: the backend cannot serve this id or length
  at all (e.g. a name its store refuses); the key service's own checks (length 0, empty id, length
  over :data:`MAX_DEK_LENGTH`) give the same status before the backend is called.
* :class:`KmsFailedPrecondition` -> ``FAILED_PRECONDITION``: the backend is in a state where it
  must not serve keys until an operator acts (e.g. a Vault store that was never initialized or
  was reset: serving would hand out new keys for existing ids). Not retryable as it is.
* any other :class:`KmsError` (incl. :class:`KmsConfigError`) -> ``INTERNAL`` (as upstream).
* an exception that is not a :class:`KmsError` (a backend bug) -> ``INTERNAL``, logged by type
  only.
"""

from __future__ import annotations

from typing import Protocol, runtime_checkable

__all__ = [
    "DEK_PREFIX",
    "KMS",
    "MAX_DEK_LENGTH",
    "KmsConfigError",
    "KmsError",
    "KmsFailedPrecondition",
    "KmsInvalidArgument",
    "KmsNotSupported",
    "KmsPermissionDenied",
    "KmsUnavailable",
]

#: Prefix of every DEK id (upstream ``crypto.DEKPrefix``), added by the key service.
DEK_PREFIX = "key-"
#: Longest DEK HKDF-SHA256 can produce (255 blocks of 32 bytes).
MAX_DEK_LENGTH = 255 * 32


class KmsError(Exception):
    """Base of every KMS failure. Messages never contain secrets."""


class KmsUnavailable(KmsError):
    """The backend could not be reached or timed out; retryable (gRPC ``UNAVAILABLE``)."""


class KmsPermissionDenied(KmsError):
    """The backend refused the KMS's own credentials (gRPC ``INTERNAL``, see module docs)."""


class KmsInvalidArgument(KmsError):
    """The DEK id or length is not acceptable (gRPC ``INVALID_ARGUMENT``)."""


class KmsFailedPrecondition(KmsError):
    """The backend must not serve keys until an operator acts (gRPC ``FAILED_PRECONDITION``)."""


class KmsConfigError(KmsError):
    """A KMS/storage URI, master secret or backend configuration is invalid.

    Raised by the parsers and by backend constructors (``open_vault_kms`` for a bad
    ``kms://vault?...`` URI). Names the offending parameter, never its value.
    """


class KmsNotSupported(KmsConfigError):
    """A well-formed configuration selects a backend this installation does not provide
    (aws/azure/gcp, or ``kms://vault`` when ``starlock.kms.vault`` is missing)."""


@runtime_checkable
class KMS(Protocol):
    """A key-management backend: returns the DEK for a full (``key-``-prefixed) id."""

    def get_dek(self, dek_id: str, length: int) -> bytes:
        """Return ``length`` bytes of key for ``dek_id`` (full id, with ``key-``).

        Deterministic for a given id and length for derived backends; for storing backends the
        first call creates the key and later calls return the same bytes.
        """
        ...

    def close(self) -> None:
        """Release resources (idempotent)."""
        ...
