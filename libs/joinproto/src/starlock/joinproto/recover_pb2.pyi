from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class RecoverMessage(_message.Message):
    __slots__ = ("kms_uri", "storage_uri")
    KMS_URI_FIELD_NUMBER: _ClassVar[int]
    STORAGE_URI_FIELD_NUMBER: _ClassVar[int]
    kms_uri: str
    storage_uri: str
    def __init__(self, kms_uri: _Optional[str] = ..., storage_uri: _Optional[str] = ...) -> None: ...

class RecoverResponse(_message.Message):
    __slots__ = ()
    def __init__(self) -> None: ...
