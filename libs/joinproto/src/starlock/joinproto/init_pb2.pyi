from starlock.joinproto import components_pb2 as _components_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class InitRequest(_message.Message):
    __slots__ = ("kms_uri", "storage_uri", "measurement_salt", "kubernetes_version", "conformance_mode", "kubernetes_components", "init_secret", "cluster_name", "apiserver_cert_sans", "service_cidr")
    KMS_URI_FIELD_NUMBER: _ClassVar[int]
    STORAGE_URI_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENT_SALT_FIELD_NUMBER: _ClassVar[int]
    KUBERNETES_VERSION_FIELD_NUMBER: _ClassVar[int]
    CONFORMANCE_MODE_FIELD_NUMBER: _ClassVar[int]
    KUBERNETES_COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    INIT_SECRET_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_NAME_FIELD_NUMBER: _ClassVar[int]
    APISERVER_CERT_SANS_FIELD_NUMBER: _ClassVar[int]
    SERVICE_CIDR_FIELD_NUMBER: _ClassVar[int]
    kms_uri: str
    storage_uri: str
    measurement_salt: bytes
    kubernetes_version: str
    conformance_mode: bool
    kubernetes_components: _containers.RepeatedCompositeFieldContainer[_components_pb2.Component]
    init_secret: bytes
    cluster_name: str
    apiserver_cert_sans: _containers.RepeatedScalarFieldContainer[str]
    service_cidr: str
    def __init__(self, kms_uri: _Optional[str] = ..., storage_uri: _Optional[str] = ..., measurement_salt: _Optional[bytes] = ..., kubernetes_version: _Optional[str] = ..., conformance_mode: _Optional[bool] = ..., kubernetes_components: _Optional[_Iterable[_Union[_components_pb2.Component, _Mapping]]] = ..., init_secret: _Optional[bytes] = ..., cluster_name: _Optional[str] = ..., apiserver_cert_sans: _Optional[_Iterable[str]] = ..., service_cidr: _Optional[str] = ...) -> None: ...

class InitResponse(_message.Message):
    __slots__ = ("init_success", "init_failure", "log")
    INIT_SUCCESS_FIELD_NUMBER: _ClassVar[int]
    INIT_FAILURE_FIELD_NUMBER: _ClassVar[int]
    LOG_FIELD_NUMBER: _ClassVar[int]
    init_success: InitSuccessResponse
    init_failure: InitFailureResponse
    log: LogResponseType
    def __init__(self, init_success: _Optional[_Union[InitSuccessResponse, _Mapping]] = ..., init_failure: _Optional[_Union[InitFailureResponse, _Mapping]] = ..., log: _Optional[_Union[LogResponseType, _Mapping]] = ...) -> None: ...

class InitSuccessResponse(_message.Message):
    __slots__ = ("kubeconfig", "owner_id", "cluster_id")
    KUBECONFIG_FIELD_NUMBER: _ClassVar[int]
    OWNER_ID_FIELD_NUMBER: _ClassVar[int]
    CLUSTER_ID_FIELD_NUMBER: _ClassVar[int]
    kubeconfig: bytes
    owner_id: bytes
    cluster_id: bytes
    def __init__(self, kubeconfig: _Optional[bytes] = ..., owner_id: _Optional[bytes] = ..., cluster_id: _Optional[bytes] = ...) -> None: ...

class InitFailureResponse(_message.Message):
    __slots__ = ("error",)
    ERROR_FIELD_NUMBER: _ClassVar[int]
    error: str
    def __init__(self, error: _Optional[str] = ...) -> None: ...

class LogResponseType(_message.Message):
    __slots__ = ("log",)
    LOG_FIELD_NUMBER: _ClassVar[int]
    log: bytes
    def __init__(self, log: _Optional[bytes] = ...) -> None: ...

class KubernetesComponent(_message.Message):
    __slots__ = ("url", "hash", "install_path", "extract")
    URL_FIELD_NUMBER: _ClassVar[int]
    HASH_FIELD_NUMBER: _ClassVar[int]
    INSTALL_PATH_FIELD_NUMBER: _ClassVar[int]
    EXTRACT_FIELD_NUMBER: _ClassVar[int]
    url: str
    hash: str
    install_path: str
    extract: bool
    def __init__(self, url: _Optional[str] = ..., hash: _Optional[str] = ..., install_path: _Optional[str] = ..., extract: _Optional[bool] = ...) -> None: ...
