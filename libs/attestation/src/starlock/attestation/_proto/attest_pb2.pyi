from starlock.attestation._proto import tpm_pb2 as _tpm_pb2
from google.protobuf.internal import containers as _containers
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Iterable as _Iterable, Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class GCEInstanceInfo(_message.Message):
    __slots__ = ("zone", "project_id", "project_number", "instance_name", "instance_id")
    ZONE_FIELD_NUMBER: _ClassVar[int]
    PROJECT_ID_FIELD_NUMBER: _ClassVar[int]
    PROJECT_NUMBER_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_NAME_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_ID_FIELD_NUMBER: _ClassVar[int]
    zone: str
    project_id: str
    project_number: int
    instance_name: str
    instance_id: int
    def __init__(self, zone: _Optional[str] = ..., project_id: _Optional[str] = ..., project_number: _Optional[int] = ..., instance_name: _Optional[str] = ..., instance_id: _Optional[int] = ...) -> None: ...

class Attestation(_message.Message):
    __slots__ = ("ak_pub", "quotes", "event_log", "instance_info", "canonical_event_log", "ak_cert", "intermediate_certs", "sev_snp_attestation", "tdx_attestation")
    AK_PUB_FIELD_NUMBER: _ClassVar[int]
    QUOTES_FIELD_NUMBER: _ClassVar[int]
    EVENT_LOG_FIELD_NUMBER: _ClassVar[int]
    INSTANCE_INFO_FIELD_NUMBER: _ClassVar[int]
    CANONICAL_EVENT_LOG_FIELD_NUMBER: _ClassVar[int]
    AK_CERT_FIELD_NUMBER: _ClassVar[int]
    INTERMEDIATE_CERTS_FIELD_NUMBER: _ClassVar[int]
    SEV_SNP_ATTESTATION_FIELD_NUMBER: _ClassVar[int]
    TDX_ATTESTATION_FIELD_NUMBER: _ClassVar[int]
    ak_pub: bytes
    quotes: _containers.RepeatedCompositeFieldContainer[_tpm_pb2.Quote]
    event_log: bytes
    instance_info: GCEInstanceInfo
    canonical_event_log: bytes
    ak_cert: bytes
    intermediate_certs: _containers.RepeatedScalarFieldContainer[bytes]
    sev_snp_attestation: bytes
    tdx_attestation: bytes
    def __init__(self, ak_pub: _Optional[bytes] = ..., quotes: _Optional[_Iterable[_Union[_tpm_pb2.Quote, _Mapping]]] = ..., event_log: _Optional[bytes] = ..., instance_info: _Optional[_Union[GCEInstanceInfo, _Mapping]] = ..., canonical_event_log: _Optional[bytes] = ..., ak_cert: _Optional[bytes] = ..., intermediate_certs: _Optional[_Iterable[bytes]] = ..., sev_snp_attestation: _Optional[bytes] = ..., tdx_attestation: _Optional[bytes] = ...) -> None: ...
