"""Azure HCL report and runtime data (reference: spec-attestation §5a).

The HCL report (vTPM NV index 0x01400001)::

    0x000  32     HCL header: "HCLA", version, report size, request type, status, 3 reserved (u32 LE)
    0x020  0x4A0  SNP ATTESTATION_REPORT
    0x4C0  20     IGVM request data: data size, version, report type, report-data hash type, var size
    0x4D4  var    runtime data (UTF-8 JSON), NUL padded

The runtime data is bound by the SNP report: SHA-256(runtime data) == REPORT_DATA[0:32]; its
``HCLAkPub`` JWK is the vTPM AK that signs the quotes.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import hmac
import json
import struct
from typing import Any

import attrs

from starlock.attestation.errors import MalformedEvidence, UntrustedKey
from starlock.attestation.tpm import RsaParms, TpmPublic

__all__ = [
    "HCL_REPORT_NV_INDEX",
    "HclReport",
    "RuntimeData",
    "RuntimeKey",
    "check_hcl_ak",
    "check_runtime_data_binding",
    "parse_hcl_report",
    "parse_runtime_data",
]

HCL_REPORT_NV_INDEX = 0x01400001
MAX_HCL_REPORT = 16 * 1024
MAX_RUNTIME_DATA = 16 * 1024
_SIGNATURE = b"HCLA"
_REPORT_OFFSET, _REPORT_SIZE = 0x20, 0x4A0
_IGVM_OFFSET = 0x4C0
_RUNTIME_OFFSET = 0x4D4
_MAX_KEYS = 16


@attrs.frozen
class HclReport:
    version: int
    report_size: int
    request_type: int
    status: int
    snp_report: bytes = attrs.field(repr=False)
    igvm_data_size: int
    igvm_version: int
    report_type: int
    report_data_hash_type: int
    variable_data_size: int
    runtime_data: bytes = attrs.field(repr=False)


def parse_hcl_report(blob: bytes, *, check_sizes: bool = False) -> HclReport:
    """Split an HCL report; the runtime data is cut at the first NUL (as go-azguestattestation).

    ``check_sizes`` (for a report read from a file, where truncation or a foreign blob must be
    told apart from evidence): the header's report size must be 0x20 + 0x4A0 + the IGVM data size, the
    IGVM data size 20 + the variable data size, the blob must hold all of it, and the report type
    must be SNP (2). Upstream reads none of these sizes.
    """
    if len(blob) > MAX_HCL_REPORT:
        raise MalformedEvidence(f"HCL report: {len(blob)} bytes, at most {MAX_HCL_REPORT}")
    if len(blob) <= _RUNTIME_OFFSET:
        raise MalformedEvidence(f"HCL report: {len(blob)} bytes, expected more than {_RUNTIME_OFFSET}")
    if blob[:4] != _SIGNATURE:
        raise MalformedEvidence(f"HCL report: signature {blob[:4].hex()}, expected 'HCLA' (48434c41)")
    version, report_size, request_type, status = struct.unpack_from("<IIII", blob, 4)
    data_size, igvm_version, report_type, hash_type, var_size = struct.unpack_from("<IIIII", blob, _IGVM_OFFSET)
    runtime = blob[_RUNTIME_OFFSET:].split(b"\x00", 1)[0]
    if check_sizes:
        _check_sizes(len(blob), report_size, data_size, report_type, var_size)
    return HclReport(
        version=version,
        report_size=report_size,
        request_type=request_type,
        status=status,
        snp_report=blob[_REPORT_OFFSET : _REPORT_OFFSET + _REPORT_SIZE],
        igvm_data_size=data_size,
        igvm_version=igvm_version,
        report_type=report_type,
        report_data_hash_type=hash_type,
        variable_data_size=var_size,
        runtime_data=runtime,
    )


def _check_sizes(blob_size: int, report_size: int, data_size: int, report_type: int, var_size: int) -> None:
    if report_type != 2:
        kind = {4: " (TDX)"}.get(report_type, "")
        raise MalformedEvidence(f"HCL report: IGVM report type {report_type}{kind}, expected 2 (SEV-SNP)")
    if data_size != _RUNTIME_OFFSET - _IGVM_OFFSET + var_size:
        raise MalformedEvidence(
            f"HCL report: IGVM data size {data_size}, expected 20 + variable data size {var_size} = {20 + var_size}"
        )
    expected = _REPORT_OFFSET + _REPORT_SIZE + data_size  # header + SNP report + IGVM data
    if report_size != expected:
        raise MalformedEvidence(
            f"HCL report: header report size {report_size}, expected 0x20 + 0x4A0 + IGVM data size {data_size} = "
            f"{expected}"
        )
    if report_size > blob_size:
        raise MalformedEvidence(f"HCL report: truncated: {blob_size} bytes, the header says {report_size}")


@attrs.frozen
class RuntimeKey:
    """A JWK of the runtime data: ``n`` and ``e`` are the decoded big-endian bytes."""

    kid: str
    kty: str
    n: bytes
    e: bytes


@attrs.frozen
class RuntimeData:
    keys: tuple[RuntimeKey, ...]
    vm_configuration: dict[str, Any]
    user_data: str

    def ak_key(self) -> RuntimeKey:
        """The HCL AK: the key whose kid is ``HCLAkPub``; else ``keys[0]`` (upstream takes keys[0])."""
        for key in self.keys:
            if key.kid == "HCLAkPub":
                return key
        return self.keys[0]


def _b64url(value: Any, what: str) -> bytes:
    if not isinstance(value, str) or not value or len(value) > 2048:
        raise MalformedEvidence(f"runtime data: {what} must be a non-empty base64url string")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise MalformedEvidence(f"runtime data: {what} is not base64url") from None


def parse_runtime_data(raw: bytes) -> RuntimeData:
    """Parse the runtime data JSON: ``keys`` (at least one with ``e`` and ``n``), the rest kept."""
    if len(raw) > MAX_RUNTIME_DATA:
        raise MalformedEvidence(f"runtime data: {len(raw)} bytes, at most {MAX_RUNTIME_DATA}")
    try:
        obj = json.loads(raw)
    except (ValueError, RecursionError) as exc:
        raise MalformedEvidence(f"runtime data: not JSON: {exc}") from None
    if not isinstance(obj, dict):
        raise MalformedEvidence("runtime data: expected a JSON object")
    keys_raw = obj.get("keys")
    if not isinstance(keys_raw, list) or not keys_raw or len(keys_raw) > _MAX_KEYS:
        raise MalformedEvidence(f"runtime data: 'keys' must be a list of 1 to {_MAX_KEYS} JWKs")
    keys = []
    for i, key in enumerate(keys_raw):
        if not isinstance(key, dict):
            raise MalformedEvidence(f"runtime data: keys[{i}] is not an object")
        kid, kty = key.get("kid", ""), key.get("kty", "")
        if not isinstance(kid, str) or not isinstance(kty, str):
            raise MalformedEvidence(f"runtime data: keys[{i}].kid/kty must be strings")
        keys.append(RuntimeKey(kid, kty, _b64url(key.get("n"), f"keys[{i}].n"), _b64url(key.get("e"), f"keys[{i}].e")))
    vm = obj.get("vm-configuration", {})
    user_data = obj.get("user-data", "")
    return RuntimeData(tuple(keys), vm if isinstance(vm, dict) else {}, user_data if isinstance(user_data, str) else "")


def check_runtime_data_binding(runtime_data: bytes, report_data: bytes) -> None:
    """SHA-256(runtime data) must equal REPORT_DATA[0:32] (bytes 32..63 are not checked, as upstream)."""
    digest = hashlib.sha256(runtime_data).digest()
    if not hmac.compare_digest(digest, report_data[:32]):
        raise UntrustedKey(
            f"runtime data is not bound by the SNP report: SHA-256(runtime data) {digest.hex()}, "
            f"REPORT_DATA[0:32] {report_data[:32].hex()}",
            check="runtime-data-binding",
        )


def check_hcl_ak(key: RuntimeKey, ak: TpmPublic) -> None:
    """The HCL AK JWK must be the document's AK (modulus, and the exponent rule of upstream)."""
    params = ak.parameters
    if not isinstance(params, RsaParms):
        raise UntrustedKey("the AK is not an RSA key, the HCL AK is", check="hcl-ak")
    if key.n != params.modulus:
        raise UntrustedKey(
            f"the HCL AK (runtime data {key.kid or 'keys[0]'}) is not the document's AK: moduli differ",
            check="hcl-ak",
        )
    if len(key.e) > 4:
        raise UntrustedKey(f"the HCL AK exponent has {len(key.e)} bytes, at most 4", check="hcl-ak")
    # Upstream reads e right-padded to 4 bytes as little-endian ("AQAB" -> 65537).
    exponent = int.from_bytes(key.e.ljust(4, b"\x00"), "little")
    if not ((exponent == 65537 and params.exponent == 0) or exponent == params.exponent):
        raise UntrustedKey(
            f"the HCL AK exponent {exponent} differs from the AK's exponent field {params.exponent}", check="hcl-ak"
        )
