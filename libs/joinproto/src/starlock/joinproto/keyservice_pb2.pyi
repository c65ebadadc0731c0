from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class GetDataKeyRequest(_message.Message):
    __slots__ = ("data_key_id", "length")
    DATA_KEY_ID_FIELD_NUMBER: _ClassVar[int]
    LENGTH_FIELD_NUMBER: _ClassVar[int]
    data_key_id: str
    length: int
    def __init__(self, data_key_id: _Optional[str] = ..., length: _Optional[int] = ...) -> None: ...

class GetDataKeyResponse(_message.Message):
    __slots__ = ("data_key",)
    DATA_KEY_FIELD_NUMBER: _ClassVar[int]
    data_key: bytes
    def __init__(self, data_key: _Optional[bytes] = ...) -> None: ...
