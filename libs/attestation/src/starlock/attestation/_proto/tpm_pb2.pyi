from google.protobuf.internal import containers as _containers
from google.protobuf.internal import enum_type_wrapper as _enum_type_wrapper
from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from collections.abc import Mapping as _Mapping
from typing import ClassVar as _ClassVar, Optional as _Optional, Union as _Union

DESCRIPTOR: _descriptor.FileDescriptor

class HashAlgo(int, metaclass=_enum_type_wrapper.EnumTypeWrapper):
    __slots__ = ()
    HASH_INVALID: _ClassVar[HashAlgo]
    SHA1: _ClassVar[HashAlgo]
    SHA256: _ClassVar[HashAlgo]
    SHA384: _ClassVar[HashAlgo]
    SHA512: _ClassVar[HashAlgo]
HASH_INVALID: HashAlgo
SHA1: HashAlgo
SHA256: HashAlgo
SHA384: HashAlgo
SHA512: HashAlgo

class PCRs(_message.Message):
    __slots__ = ("hash", "pcrs")
    class PcrsEntry(_message.Message):
        __slots__ = ("key", "value")
        KEY_FIELD_NUMBER: _ClassVar[int]
        VALUE_FIELD_NUMBER: _ClassVar[int]
        key: int
        value: bytes
        def __init__(self, key: _Optional[int] = ..., value: _Optional[bytes] = ...) -> None: ...
    HASH_FIELD_NUMBER: _ClassVar[int]
    PCRS_FIELD_NUMBER: _ClassVar[int]
    hash: HashAlgo
    pcrs: _containers.ScalarMap[int, bytes]
    def __init__(self, hash: _Optional[_Union[HashAlgo, str]] = ..., pcrs: _Optional[_Mapping[int, bytes]] = ...) -> None: ...

class Quote(_message.Message):
    __slots__ = ("quote", "raw_sig", "pcrs")
    QUOTE_FIELD_NUMBER: _ClassVar[int]
    RAW_SIG_FIELD_NUMBER: _ClassVar[int]
    PCRS_FIELD_NUMBER: _ClassVar[int]
    quote: bytes
    raw_sig: bytes
    pcrs: PCRs
    def __init__(self, quote: _Optional[bytes] = ..., raw_sig: _Optional[bytes] = ..., pcrs: _Optional[_Union[PCRs, _Mapping]] = ...) -> None: ...
