"""The committed generated code matches the .proto sources.

Each ``.proto`` of the package is compiled afresh with ``grpc_tools.protoc`` into a descriptor set
and compared with the descriptor embedded in the committed ``*_pb2.py`` module. Comparing
descriptors (not text) keeps the test independent of generator cosmetics. When the installed
generator is the very version that produced the committed files, the text of every generated
file must also match exactly (that is what ``scripts/genproto.py --check`` verifies).
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path
from types import ModuleType

import pytest
from google.protobuf import descriptor_pb2
from grpc_tools import protoc

import starlock.joinproto

PACKAGE_DIR = Path(starlock.joinproto.__file__).resolve().parent
SRC_ROOT = PACKAGE_DIR.parents[1]
PROTOS = sorted(p.name for p in PACKAGE_DIR.glob("*.proto"))
GENERATED_SUFFIXES = ("_pb2.py", "_pb2.pyi", "_pb2_grpc.py")


def _proto_path(name: str) -> str:
    return f"starlock/joinproto/{name}"


def _module(name: str) -> ModuleType:
    return importlib.import_module(f"starlock.joinproto.{name.removesuffix('.proto')}_pb2")


def _normalise(fdp: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
    """Drop what protoc adds to descriptor sets but the Python generator does not embed."""
    out = descriptor_pb2.FileDescriptorProto()
    out.CopyFrom(fdp)
    out.ClearField("source_code_info")

    def strip(messages: list[descriptor_pb2.DescriptorProto]) -> None:
        for msg in messages:
            for field in msg.field:
                field.ClearField("json_name")
            strip(list(msg.nested_type))

    strip(list(out.message_type))
    return out


@pytest.fixture(scope="module")
def fresh_descriptors(tmp_path_factory: pytest.TempPathFactory) -> dict[str, descriptor_pb2.FileDescriptorProto]:
    out = tmp_path_factory.mktemp("desc") / "set.pb"
    args = ["grpc_tools.protoc", f"-I{SRC_ROOT}", f"--descriptor_set_out={out}"]
    assert protoc.main(args + [_proto_path(p) for p in PROTOS]) == 0
    fds = descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes())
    return {f.name: f for f in fds.file}


@pytest.fixture(scope="module")
def fresh_code(tmp_path_factory: pytest.TempPathFactory) -> Path:
    out = tmp_path_factory.mktemp("gen")
    args = ["grpc_tools.protoc", f"-I{SRC_ROOT}", f"--python_out={out}", f"--pyi_out={out}", f"--grpc_python_out={out}"]
    assert protoc.main(args + [_proto_path(p) for p in PROTOS]) == 0
    return out / "starlock" / "joinproto"


def test_expected_proto_files_present() -> None:
    assert set(PROTOS) >= {"components.proto", "join.proto", "init.proto", "keyservice.proto", "verify.proto"}


@pytest.mark.parametrize("proto", PROTOS)
def test_embedded_descriptor_matches_proto(
    proto: str, fresh_descriptors: dict[str, descriptor_pb2.FileDescriptorProto]
) -> None:
    committed = descriptor_pb2.FileDescriptorProto.FromString(_module(proto).DESCRIPTOR.serialized_pb)
    fresh = _normalise(fresh_descriptors[_proto_path(proto)])
    assert committed == fresh, f"{proto}: generated code is stale, run scripts/genproto.py"


def test_no_stale_or_missing_generated_files(fresh_code: Path) -> None:
    expected = {p.name for p in fresh_code.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}
    committed = {p.name for p in PACKAGE_DIR.iterdir() if p.name.endswith(GENERATED_SUFFIXES)}
    assert committed == expected


def _header(text: str, pattern: str) -> str | None:
    match = re.search(pattern, text, re.MULTILINE)
    return match.group(1) if match else None


@pytest.mark.parametrize("name", [p.removesuffix(".proto") + s for p in PROTOS for s in GENERATED_SUFFIXES])
def test_generated_text_identical_with_same_generator(name: str, fresh_code: Path) -> None:
    fresh = (fresh_code / name).read_text()
    committed = (PACKAGE_DIR / name).read_text()
    if name.endswith("_pb2_grpc.py"):
        pattern = r"^GRPC_GENERATED_VERSION = '([^']+)'"
        fresh_version, committed_version = _header(fresh, pattern), _header(committed, pattern)
    else:
        # The .pyi carries no version; pair it with its .py sibling.
        sibling = name.removesuffix("i") if name.endswith(".pyi") else name
        pattern = r"^# Protobuf Python Version: (\S+)"
        fresh_version = _header((fresh_code / sibling).read_text(), pattern)
        committed_version = _header((PACKAGE_DIR / sibling).read_text(), pattern)
    if fresh_version != committed_version:
        pytest.skip(f"installed generator {fresh_version} differs from the committed {committed_version}")
    assert committed == fresh, f"{name}: differs from a fresh run, run scripts/genproto.py"
