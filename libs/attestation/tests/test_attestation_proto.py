"""Binary go-tpm-tools ``attest.Attestation``: generated code, conversion, bounds.

Vector: ``gcp-vtpm/gotpmtools-gce-cos85-nonce9009/gce-cos-85-nonce9009.pb`` (MANIFEST.md, family
``gcp-vtpm``, entry ``gotpmtools-gce-cos85-nonce9009``): a binary protobuf ``attest.Attestation``
with fields 1 ak_pub, 2 quotes x3, 3 event_log, 6 ak_cert; no intermediates, no TEE attestation,
no instance_info; quotes over banks SHA-1, SHA-256, SHA-384, PCRs 0-23; SHA-256 PCR0/4/7/9 as
listed there.
"""

from __future__ import annotations

import base64
import re
from pathlib import Path
from typing import Any

import pytest
from google.protobuf import descriptor_pb2
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import starlock.attestation._proto as proto_pkg
from starlock.attestation import document
from starlock.attestation._proto import attest_pb2, tpm_pb2
from starlock.attestation._proto.convert import (
    TEE_SEV_SNP_KEY,
    TEE_TDX_KEY,
    attestation_from_pb,
    attestation_to_pb,
)
from starlock.attestation.document import Attestation, GceInstanceInfo, PCRs, Quote
from starlock.attestation.errors import MalformedEvidence, UnsupportedError

VECTOR = "gcp-vtpm/gotpmtools-gce-cos85-nonce9009/gce-cos-85-nonce9009.pb"
SHA1, SHA256, SHA384 = 0x0004, 0x000B, 0x000C

PACKAGE_DIR = Path(proto_pkg.__file__).resolve().parent
SRC_ROOT = PACKAGE_DIR.parents[2]
PROTOS = ["attest.proto", "tpm.proto"]


@pytest.fixture(scope="module")
def vector_bytes(vectors: Path) -> bytes:
    return (vectors / VECTOR).read_bytes()


# --- generated code matches the .proto sources --------------------------------------------


def _normalise(fdp: descriptor_pb2.FileDescriptorProto) -> descriptor_pb2.FileDescriptorProto:
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


def _protoc() -> Any:
    # grpcio-tools is a development tool, not a dependency of starlock-attestation.
    return pytest.importorskip("grpc_tools.protoc", reason="grpcio-tools is needed to compile the .proto files")


def test_generated_descriptors_match_protos(tmp_path: Path) -> None:
    protoc = _protoc()
    out = tmp_path / "set.pb"
    args = ["grpc_tools.protoc", f"-I{SRC_ROOT}", f"--descriptor_set_out={out}"]
    assert protoc.main(args + [f"starlock/attestation/_proto/{p}" for p in PROTOS]) == 0
    fresh = {f.name: f for f in descriptor_pb2.FileDescriptorSet.FromString(out.read_bytes()).file}
    for module in (attest_pb2, tpm_pb2):
        committed = descriptor_pb2.FileDescriptorProto.FromString(module.DESCRIPTOR.serialized_pb)
        assert committed == _normalise(fresh[module.DESCRIPTOR.name]), "stale, run scripts/genproto.py"


def test_generated_text_identical_with_same_generator(tmp_path: Path) -> None:
    protoc = _protoc()
    args = ["grpc_tools.protoc", f"-I{SRC_ROOT}", f"--python_out={tmp_path}", f"--pyi_out={tmp_path}"]
    assert protoc.main(args + [f"starlock/attestation/_proto/{p}" for p in PROTOS]) == 0
    fresh_dir = tmp_path / "starlock" / "attestation" / "_proto"
    version = re.compile(r"^# Protobuf Python Version: (\S+)", re.MULTILINE)
    fresh_v = version.search((fresh_dir / "tpm_pb2.py").read_text())
    committed_v = version.search((PACKAGE_DIR / "tpm_pb2.py").read_text())
    assert fresh_v and committed_v
    if fresh_v.group(1) != committed_v.group(1):
        pytest.skip(f"installed generator {fresh_v.group(1)} differs from the committed {committed_v.group(1)}")
    generated = sorted(p.name for p in fresh_dir.iterdir() if p.suffix in (".py", ".pyi"))
    assert generated == sorted(p.name for p in PACKAGE_DIR.iterdir() if "_pb2" in p.name)
    for name in generated:
        assert (PACKAGE_DIR / name).read_text() == (fresh_dir / name).read_text(), name


def test_wire_names_and_numbers() -> None:
    assert attest_pb2.Attestation.DESCRIPTOR.full_name == "attest.Attestation"
    assert tpm_pb2.Quote.DESCRIPTOR.full_name == "tpm.Quote"
    fields = {f.name: f.number for f in attest_pb2.Attestation.DESCRIPTOR.fields}
    assert fields == {
        "ak_pub": 1,
        "quotes": 2,
        "event_log": 3,
        "instance_info": 4,
        "canonical_event_log": 5,
        "ak_cert": 6,
        "intermediate_certs": 7,
        "sev_snp_attestation": 8,
        "tdx_attestation": 9,
    }
    tee = attest_pb2.Attestation.DESCRIPTOR.oneofs_by_name["tee_attestation"]
    assert [f.number for f in tee.fields] == [8, 9]


def test_hash_algo_enum_is_tpm_alg_id() -> None:
    assert {name: tpm_pb2.HashAlgo.Value(name) for name in document.HASH_ALG_IDS} == dict(document.HASH_ALG_IDS)
    assert tpm_pb2.HashAlgo.Value("HASH_INVALID") == 0


# --- the real vector (MANIFEST gcp-vtpm/gotpmtools-gce-cos85-nonce9009) ----------------------


def test_vector_fields(vector_bytes: bytes) -> None:
    att = attestation_from_pb(vector_bytes)
    # "Fields: 1 ak_pub, 2 quotes x3, 3 event_log, 6 ak_cert."
    assert att.ak_pub
    assert att.event_log
    assert att.ak_cert
    # "No intermediates, no TEE attestation, no instance_info."
    assert att.intermediate_certs == ()
    assert att.tee_attestation is None
    assert att.instance_info is None
    assert att.canonical_event_log == b""


def test_vector_quotes(vector_bytes: bytes) -> None:
    att = attestation_from_pb(vector_bytes)
    # "Quotes: banks SHA-1, SHA-256 and SHA-384, PCRs 0-23"
    assert [q.pcrs.hash for q in att.quotes] == [SHA1, SHA256, SHA384]
    for quote, size in zip(att.quotes, (20, 32, 48), strict=True):
        assert sorted(quote.pcrs.pcrs) == list(range(24))
        assert {len(d) for d in quote.pcrs.pcrs.values()} == {size}
        assert quote.quote
        assert quote.raw_sig
    sha256 = att.quote_for(SHA256)
    assert sha256 is not None
    # "SHA-256 bank: PCR0 0f35c2..., PCR4 d690bd..., PCR7 3365d7..., PCR9 e01c8c..."
    assert sha256.pcrs.pcrs[0].hex() == "0f35c214608d93c7a6e68ae7359b4a8be5a0e99eea9107ece427c4dea4e439cf"
    assert sha256.pcrs.pcrs[4].hex() == "d690bdac2aa8b73a1d718cb91990df07d0747b07ea57b3b2d0f0d511f0d90491"
    assert sha256.pcrs.pcrs[7].hex() == "3365d7fa2b024c852913c06e04ffbfa6ea5289f743bbf1a76f7ffdf21ed84793"
    assert sha256.pcrs.pcrs[9].hex() == "e01c8cf808763422c5ede2cdb34595b92bd7d06b8bbd6014b54d2e95b14b0963"


def test_vector_round_trip(vector_bytes: bytes) -> None:
    att = attestation_from_pb(vector_bytes)
    encoded = attestation_to_pb(att)
    assert attestation_from_pb(encoded) == att
    # Nothing dropped: only the order of map entries may differ from go-tpm-tools' output.
    assert len(encoded) == len(vector_bytes)
    assert attestation_to_pb(attestation_from_pb(encoded)) == encoded  # our output is stable


def test_vector_survives_the_json_form(vector_bytes: bytes) -> None:
    att = attestation_from_pb(vector_bytes)
    doc = document.AttestationDocument(attestation=att, instance_info=b"", user_data=b"")
    assert document.AttestationDocument.from_json(doc.to_json()).attestation == att


# --- TEE oneof -------------------------------------------------------------------------------


@pytest.mark.parametrize(("key", "tag"), [(TEE_SEV_SNP_KEY, 0x42), (TEE_TDX_KEY, 0x4A)])
def test_tee_member_kept_opaque(key: str, tag: int) -> None:
    # field 8 -> key (8 << 3 | 2) = 0x42, field 9 -> 0x4a; payload is any message bytes.
    payload = bytes.fromhex("0a0201020a00")
    data = bytes([tag, len(payload)]) + payload
    att = attestation_from_pb(data)
    assert att.tee_attestation == {key: base64.b64encode(payload).decode()}
    assert attestation_to_pb(att) == data


def test_tee_empty_member_is_present() -> None:
    att = attestation_from_pb(bytes.fromhex("4200"))
    assert att.tee_attestation == {TEE_SEV_SNP_KEY: ""}
    assert attestation_to_pb(att) == bytes.fromhex("4200")


def test_tee_json_form_cannot_be_encoded() -> None:
    att = Attestation(ak_pub=b"", quotes=(), tee_attestation={"SevSnpAttestation": {"report": "AA=="}})
    with pytest.raises(UnsupportedError):
        attestation_to_pb(att)


@pytest.mark.parametrize(
    "tee",
    [{}, {TEE_SEV_SNP_KEY: "!!"}, {TEE_SEV_SNP_KEY: 5}, {TEE_SEV_SNP_KEY: "", TEE_TDX_KEY: ""}],
)
def test_tee_bad_values(tee: dict[str, object]) -> None:
    with pytest.raises(MalformedEvidence):
        attestation_to_pb(Attestation(ak_pub=b"", quotes=(), tee_attestation=tee))


# --- bounds ----------------------------------------------------------------------------------


def _quote(alg: int, pcrs: dict[int, bytes]) -> bytes:
    msg = attest_pb2.Attestation()
    msg.quotes.add().pcrs.MergeFrom(tpm_pb2.PCRs(pcrs=pcrs))
    msg.quotes[0].pcrs.hash = alg  # type: ignore[assignment]  # raw TPM_ALG_ID, possibly unknown
    return msg.SerializeToString()


@pytest.mark.parametrize(
    ("data", "match"),
    [
        (_quote(SHA256, {0: b"\x00" * 31}), "31 bytes, expected 32"),
        (_quote(SHA1, {32: b"\x00" * 20}), "PCR index 32"),
        (_quote(0, {}), "hash algorithm"),
        (_quote(5, {0: b"\x00" * 32}), "hash algorithm"),
        (attest_pb2.Attestation(quotes=[tpm_pb2.Quote()] * 9).SerializeToString(), "9 quotes"),
        (attest_pb2.Attestation(intermediate_certs=[b"c"] * 9).SerializeToString(), "9 certificates"),
        (attest_pb2.Attestation(instance_info={"zone": "z" * 1025}).SerializeToString(), "instance_info.zone"),
        (bytes.fromhex("22020aff"), "cannot decode"),  # instance_info.zone not UTF-8
        (bytes.fromhex("0a05ab"), "cannot decode"),  # truncated
        (bytes.fromhex("07"), "cannot decode"),  # wire type 7 does not exist
        (b"\x00" * (document.MAX_DOCUMENT_SIZE + 1), "more than the limit"),
    ],
)
def test_bounds(data: bytes, match: str) -> None:
    with pytest.raises(MalformedEvidence, match=match):
        attestation_from_pb(data)


def test_instance_info_round_trip() -> None:
    info = GceInstanceInfo(zone="z", project_id="p", project_number=2**64 - 1, instance_name="n", instance_id=7)
    att = Attestation(ak_pub=b"k", quotes=(), instance_info=info)
    assert attestation_from_pb(attestation_to_pb(att)) == att


@pytest.mark.parametrize(
    "att",
    [
        Attestation(ak_pub=b"", quotes=(Quote(b"", b"", PCRs(hash=SHA256, pcrs={40: b"\x00" * 32})),)),
        Attestation(ak_pub=b"", quotes=(Quote(b"", b"", PCRs(hash=SHA256, pcrs={0: b"\x00"})),)),
        Attestation(ak_pub=b"", quotes=(Quote(b"", b"", PCRs(hash=7, pcrs={})),)),
        Attestation(ak_pub=b"", quotes=(), instance_info=GceInstanceInfo(project_number=2**64)),
        Attestation(ak_pub=b"", quotes=(), instance_info=GceInstanceInfo(instance_id=-1)),
        Attestation(ak_pub=b"", quotes=(), intermediate_certs=(b"",) * 9),
    ],
)
def test_encode_refuses_what_decode_would_refuse(att: Attestation) -> None:
    with pytest.raises(MalformedEvidence):
        attestation_to_pb(att)


def test_non_bytes_input() -> None:
    with pytest.raises(MalformedEvidence):
        attestation_from_pb("not bytes")  # type: ignore[arg-type]


# --- property: only MalformedEvidence escapes -------------------------------------------------


def _parse_or_refuse(data: bytes) -> None:
    try:
        att = attestation_from_pb(data)
    except MalformedEvidence:
        return
    # Whatever parses re-encodes and parses to the same value.
    assert attestation_from_pb(attestation_to_pb(att)) == att


@given(st.binary(max_size=4096))
def test_random_bytes(data: bytes) -> None:
    _parse_or_refuse(data)


@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
@given(data=st.data())
def test_mutated_vector(vector_bytes: bytes, data: st.DataObject) -> None:
    blob = bytearray(vector_bytes)
    for _ in range(data.draw(st.integers(1, 4), label="mutations")):
        kind = data.draw(st.sampled_from(["flip", "set", "insert", "delete", "truncate"]), label="kind")
        pos = data.draw(st.integers(0, len(blob) - 1), label="pos")
        if kind == "flip":
            blob[pos] ^= 1 << data.draw(st.integers(0, 7))
        elif kind == "set":
            blob[pos] = data.draw(st.integers(0, 255))
        elif kind == "insert":
            blob[pos:pos] = data.draw(st.binary(min_size=1, max_size=8))
        elif kind == "delete":
            del blob[pos : pos + data.draw(st.integers(1, 8))]
        else:
            del blob[pos:]
        if not blob:
            break
    _parse_or_refuse(bytes(blob))
