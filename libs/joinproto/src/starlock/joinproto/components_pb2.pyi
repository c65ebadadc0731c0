from google.protobuf import descriptor as _descriptor
from google.protobuf import message as _message
from typing import ClassVar as _ClassVar, Optional as _Optional

DESCRIPTOR: _descriptor.FileDescriptor

class Component(_message.Message):
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
