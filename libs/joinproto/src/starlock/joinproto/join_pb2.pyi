from starlock.joinproto import components_pb2 as _components_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class IssueJoinTicketRequest(_message.Message):
    __slots__ = ("disk_uuid", "certificate_request", "is_control_plane", "host_public_key", "host_certificate_principals")
    DISK_UUID_FIELD_NUMBER: _ClassVar[int]
    CERTIFICATE_REQUEST_FIELD_NUMBER: _ClassVar[int]
    IS_CONTROL_PLANE_FIELD_NUMBER: _ClassVar[int]
    HOST_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    HOST_CERTIFICATE_PRINCIPALS_FIELD_NUMBER: _ClassVar[int]
    disk_uuid: str
    certificate_request: bytes
    is_control_plane: bool
    host_public_key: bytes
    host_certificate_principals: _containers.RepeatedScalarFieldContainer[str]
    def __init__(self, disk_uuid: _Optional[str] = ..., certificate_request: _Optional[bytes] = ..., is_control_plane: _Optional[bool] = ..., host_public_key: _Optional[bytes] = ..., host_certificate_principals: _Optional[_Iterable[str]] = ...) -> None: ...

class IssueJoinTicketResponse(_message.Message):
    __slots__ = ("state_disk_key", "measurement_salt", "measurement_secret", "kubelet_cert", "api_server_endpoint", "token", "discovery_token_ca_cert_hash", "control_plane_files", "kubernetes_version", "kubernetes_components", "authorized_ca_public_key", "host_certificate")
    STATE_DISK_KEY_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENT_SALT_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    KUBELET_CERT_FIELD_NUMBER: _ClassVar[int]
    API_SERVER_ENDPOINT_FIELD_NUMBER: _ClassVar[int]
    TOKEN_FIELD_NUMBER: _ClassVar[int]
    DISCOVERY_TOKEN_CA_CERT_HASH_FIELD_NUMBER: _ClassVar[int]
    CONTROL_PLANE_FILES_FIELD_NUMBER: _ClassVar[int]
    KUBERNETES_VERSION_FIELD_NUMBER: _ClassVar[int]
    KUBERNETES_COMPONENTS_FIELD_NUMBER: _ClassVar[int]
    AUTHORIZED_CA_PUBLIC_KEY_FIELD_NUMBER: _ClassVar[int]
    HOST_CERTIFICATE_FIELD_NUMBER: _ClassVar[int]
    state_disk_key: bytes
    measurement_salt: bytes
    measurement_secret: bytes
    kubelet_cert: bytes
    api_server_endpoint: str
    token: str
    discovery_token_ca_cert_hash: str
    control_plane_files: _containers.RepeatedCompositeFieldContainer[control_plane_cert_or_key]
    kubernetes_version: str
    kubernetes_components: _containers.RepeatedCompositeFieldContainer[_components_pb2.Component]
    authorized_ca_public_key: bytes
    host_certificate: bytes
    def __init__(self, state_disk_key: _Optional[bytes] = ..., measurement_salt: _Optional[bytes] = ..., measurement_secret: _Optional[bytes] = ..., kubelet_cert: _Optional[bytes] = ..., api_server_endpoint: _Optional[str] = ..., token: _Optional[str] = ..., discovery_token_ca_cert_hash: _Optional[str] = ..., control_plane_files: _Optional[_Iterable[_Union[control_plane_cert_or_key, _Mapping]]] = ..., kubernetes_version: _Optional[str] = ..., kubernetes_components: _Optional[_Iterable[_Union[_components_pb2.Component, _Mapping]]] = ..., authorized_ca_public_key: _Optional[bytes] = ..., host_certificate: _Optional[bytes] = ...) -> None: ...

class control_plane_cert_or_key(_message.Message):
    __slots__ = ("name", "data")
    NAME_FIELD_NUMBER: _ClassVar[int]
    DATA_FIELD_NUMBER: _ClassVar[int]
    name: str
    data: bytes
    def __init__(self, name: _Optional[str] = ..., data: _Optional[bytes] = ...) -> None: ...

class IssueRejoinTicketRequest(_message.Message):
    __slots__ = ("disk_uuid",)
    DISK_UUID_FIELD_NUMBER: _ClassVar[int]
    disk_uuid: str
    def __init__(self, disk_uuid: _Optional[str] = ...) -> None: ...

class IssueRejoinTicketResponse(_message.Message):
    __slots__ = ("state_disk_key", "measurement_secret")
    STATE_DISK_KEY_FIELD_NUMBER: _ClassVar[int]
    MEASUREMENT_SECRET_FIELD_NUMBER: _ClassVar[int]
    state_disk_key: bytes
    measurement_secret: bytes
    def __init__(self, state_disk_key: _Optional[bytes] = ..., measurement_secret: _Optional[bytes] = ...) -> None: ...
