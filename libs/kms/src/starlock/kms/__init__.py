"""Starlock KMS: Constellation-compatible key derivation, cluster KMS, KMS URIs, key service.

High-level API::

    from starlock.kms import MasterSecret, open_kms

    kms = open_kms(MasterSecret.generate().to_uri())
    disk_key = kms.get_dek("key-" + disk_uuid, 32)  # full id, with the "key-" prefix

The key service lives in :mod:`starlock.kms.keyservice` (console script ``starlock-keyservice``);
the backend interface and error hierarchy in :mod:`starlock.kms.interface`.
"""

from __future__ import annotations

from starlock.kms.cluster import ClusterKMS
from starlock.kms.deadline import deadline_scope, time_left
from starlock.kms.derive import (
    CLUSTER_ID_CONTEXT,
    DERIVED_KEY_LENGTH_DEFAULT,
    MASTER_SECRET_LENGTH_MIN,
    MEASUREMENT_SECRET_KEY_ID,
    SSH_CA_KEY_ID,
    STATE_DISK_KEY_LENGTH,
    derive_cluster_id,
    derive_key,
)
from starlock.kms.factory import open_kms
from starlock.kms.interface import (
    DEK_PREFIX,
    KMS,
    MAX_DEK_LENGTH,
    KmsConfigError,
    KmsError,
    KmsFailedPrecondition,
    KmsInvalidArgument,
    KmsNotSupported,
    KmsPermissionDenied,
    KmsUnavailable,
)
from starlock.kms.mastersecret import (
    MIN_SALT_LENGTH,
    MasterSecret,
    read_master_secret_file,
    read_secret_files,
    write_master_secret_file,
)
from starlock.kms.uri import (
    NO_STORE_URI,
    AwsKmsConfig,
    AwsStorageConfig,
    AzureKmsConfig,
    AzureStorageConfig,
    ClusterKmsConfig,
    GcpKmsConfig,
    GcpStorageConfig,
    KmsConfig,
    NoStoreConfig,
    StorageConfig,
    VaultKmsConfig,
    encode_kms_uri,
    encode_storage_uri,
    parse_kms_uri,
    parse_storage_uri,
)

__all__ = [
    "CLUSTER_ID_CONTEXT",
    "DEK_PREFIX",
    "DERIVED_KEY_LENGTH_DEFAULT",
    "KMS",
    "MASTER_SECRET_LENGTH_MIN",
    "MAX_DEK_LENGTH",
    "MEASUREMENT_SECRET_KEY_ID",
    "MIN_SALT_LENGTH",
    "NO_STORE_URI",
    "SSH_CA_KEY_ID",
    "STATE_DISK_KEY_LENGTH",
    "AwsKmsConfig",
    "AwsStorageConfig",
    "AzureKmsConfig",
    "AzureStorageConfig",
    "ClusterKMS",
    "ClusterKmsConfig",
    "GcpKmsConfig",
    "GcpStorageConfig",
    "KmsConfig",
    "KmsConfigError",
    "KmsError",
    "KmsFailedPrecondition",
    "KmsInvalidArgument",
    "KmsNotSupported",
    "KmsPermissionDenied",
    "KmsUnavailable",
    "MasterSecret",
    "NoStoreConfig",
    "StorageConfig",
    "VaultKmsConfig",
    "deadline_scope",
    "derive_cluster_id",
    "derive_key",
    "encode_kms_uri",
    "encode_storage_uri",
    "open_kms",
    "parse_kms_uri",
    "parse_storage_uri",
    "read_master_secret_file",
    "read_secret_files",
    "time_left",
    "write_master_secret_file",
]
