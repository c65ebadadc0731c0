"""Trustee's ``az-snp-vtpm`` evidence (confidential-containers/trustee, Azure SEV-SNP vTPM) imported
onto Starlock's azure-sev-snp path.

Three serialisations (Trustee ``deps/verifier/src/az_snp_vtpm``):

* v0 (no ``version``): ``{"quote": {"signature": [u8], "message": [u8], "pcrs": [[u8; 32] × 24]},
  "report": [u8] (the HCL report), "vcek": "<PEM>"}``;
* v1 / v2 (``"version": 1 | 2``): ``{"tpm_quote": {"signature": hex, "message": hex, "pcrs": [hex]},
  "hcl_report": base64url, "vcek": base64url(DER)}`` (v2 also puts the report data in the runtime
  data's ``user-data``).

``message`` is the TPMS_ATTEST of a quote over the SHA-256 PCRs 0..23, ``signature`` the raw
RSASSA-SHA256 signature of the HCL AK, and the quote's extraData is the verifier's nonce
(Trustee's report data) itself. Checked here, as for an azure-sev-snp document: the SNP report from
the HCL report under the VCEK and the AMD chain with Constellation's azure-sev-snp policy and the
config's TCB minimums and ID-key digests; SHA-256(runtime data) == REPORT_DATA[0:32]; the quote
under the runtime data's HCL AK (signature, nonce, PCR digest over the 24 PCR values); the config's
measurements against those PCR values.
"""

from __future__ import annotations

import base64
import binascii
import datetime
import json
import struct
from typing import Any

import attrs

from starlock.attestation._certpath import utc_now
from starlock.attestation.azure.hcl import HclReport, RuntimeKey, parse_runtime_data
from starlock.attestation.azure.maa import JwksFetcher
from starlock.attestation.config import AttestationConfig
from starlock.attestation.document import PCRs, Quote
from starlock.attestation.errors import AttestationError, ConfigError, MalformedEvidence
from starlock.attestation.formats._report import FormatReport, compare_measurements
from starlock.attestation.formats.amd import read_hcl_report
from starlock.attestation.interfaces import CheckStatus
from starlock.attestation.snpinfo import AzureInfo, SnpInstanceInfo
from starlock.attestation.tpm import TpmPublic, parse_tpms_attest, parse_tpmt_public, verify_quote
from starlock.attestation.tpm import algorithms as alg
from starlock.attestation.trust import load_certificates
from starlock.attestation.variant import Variant
from starlock.attestation.vtpm import CheckRecorder

__all__ = [
    "FORMAT_NAME",
    "MAX_TRUSTEE_EVIDENCE",
    "TrusteeAzSnpVtpmEvidence",
    "evaluate_trustee_az_snp_vtpm",
    "is_trustee_az_snp_vtpm",
    "parse_trustee_az_snp_vtpm",
]

FORMAT_NAME = "trustee-az-snp-vtpm"
MAX_TRUSTEE_EVIDENCE = 256 * 1024
_MAX_BLOB = 16 * 1024
_PCR_COUNT = 24
_AK_ATTRIBUTES = 0x00050072  # fixedTPM, fixedParent, sensitiveDataOrigin, userWithAuth, restricted, sign


@attrs.frozen
class TrusteeAzSnpVtpmEvidence:
    version: int
    hcl: HclReport
    quote_message: bytes
    quote_signature: bytes
    pcrs: tuple[bytes, ...]
    vcek: bytes


def is_trustee_az_snp_vtpm(obj: object) -> bool:
    """Whether a parsed JSON value has the shape of Trustee's az-snp-vtpm (or az-tdx-vtpm) evidence."""
    if not isinstance(obj, dict):
        return False
    return {"tpm_quote", "hcl_report"} <= obj.keys() or {"quote", "report", "vcek"} <= obj.keys()


def parse_trustee_az_snp_vtpm(data: bytes) -> TrusteeAzSnpVtpmEvidence:
    """Parse (and bound) the evidence JSON; raises :class:`MalformedEvidence` naming the field."""
    if len(data) > MAX_TRUSTEE_EVIDENCE:
        raise MalformedEvidence(f"{FORMAT_NAME}: {len(data)} bytes, at most {MAX_TRUSTEE_EVIDENCE}")
    try:
        obj = json.loads(data)
    except (ValueError, RecursionError) as exc:
        raise MalformedEvidence(f"{FORMAT_NAME}: not JSON: {exc}") from None
    if not is_trustee_az_snp_vtpm(obj):
        raise MalformedEvidence(f"{FORMAT_NAME}: expected tpm_quote/hcl_report/vcek (v1, v2) or quote/report/vcek (v0)")
    if "td_quote" in obj:
        raise MalformedEvidence(f"{FORMAT_NAME}: this is az-tdx-vtpm evidence (td_quote); TDX is not supported")
    version = obj.get("version", 0)
    if version == 0 and "version" not in obj:
        quote, hcl, vcek = _field(obj, "quote", dict), _bytes_list(obj.get("report"), "report"), obj.get("vcek")
        if not isinstance(vcek, str) or len(vcek) > _MAX_BLOB:
            raise MalformedEvidence(f"{FORMAT_NAME}: vcek must be a PEM string")
        vcek_bytes = vcek.encode()
        signature = _bytes_list(quote.get("signature"), "quote.signature")
        message = _bytes_list(quote.get("message"), "quote.message")
        pcrs_raw = _field(quote, "pcrs", list)
        pcrs = tuple(_bytes_list(p, f"quote.pcrs[{i}]") for i, p in enumerate(pcrs_raw[: _PCR_COUNT + 1]))
    elif type(version) is int and version in (1, 2):
        quote = _field(obj, "tpm_quote", dict)
        hcl, vcek_bytes = _b64url(obj.get("hcl_report"), "hcl_report"), _b64url(obj.get("vcek"), "vcek")
        signature, message = (
            _hex(quote.get("signature"), "tpm_quote.signature"),
            _hex(quote.get("message"), "tpm_quote.message"),
        )
        pcrs_raw = _field(quote, "pcrs", list)
        pcrs = tuple(_hex(p, f"tpm_quote.pcrs[{i}]") for i, p in enumerate(pcrs_raw[: _PCR_COUNT + 1]))
    else:
        raise MalformedEvidence(f"{FORMAT_NAME}: version {str(version)[:20]} is not supported (expected none, 1 or 2)")
    if len(pcrs) != _PCR_COUNT or any(len(p) != 32 for p in pcrs):
        raise MalformedEvidence(f"{FORMAT_NAME}: expected {_PCR_COUNT} SHA-256 PCR values of 32 bytes")
    parse_tpms_attest(message)  # a quote structure, or MalformedEvidence
    load_certificates(vcek_bytes, max_certs=1)
    return TrusteeAzSnpVtpmEvidence(
        version=0 if "version" not in obj else version,
        hcl=read_hcl_report(hcl),
        quote_message=message,
        quote_signature=signature,
        pcrs=pcrs,
        vcek=vcek_bytes,
    )


def evaluate_trustee_az_snp_vtpm(
    evidence: TrusteeAzSnpVtpmEvidence,
    config: AttestationConfig,
    *,
    nonce: bytes | None,
    at: datetime.datetime | None = None,
    chain: bytes = b"",
    jwks_fetcher: JwksFetcher | None = None,
) -> FormatReport:
    """Verify the evidence on the azure-sev-snp path (module docstring); never raises for bad evidence.

    ``nonce``: the report data the quote's extraData must equal (None: not checked, a WARN row).
    ``chain``: ASK (and ARK) PEM when the config has no ``amdSigningKey`` (Trustee sends none).
    """
    from starlock.attestation.azure.maa import HttpJwksFetcher
    from starlock.attestation.azure.snp import verify_azure_snp_evidence

    if config.variant is not Variant.AZURE_SEV_SNP:
        raise ConfigError(f"{FORMAT_NAME} evidence needs an azure-sev-snp config, got {config.variant.value}")
    rec = CheckRecorder()
    claims: dict[str, Any] = {"evidence_version": evidence.version}
    hcl = evidence.hcl
    rec.add(
        "hcl-report",
        CheckStatus.PASS,
        f"HCL report v{hcl.version}: SNP report at 0x20, {len(hcl.runtime_data)} bytes of runtime data",
    )
    try:
        runtime = rec.run(
            "hcl-ak-key", lambda: parse_runtime_data(hcl.runtime_data).ak_key(), lambda k: f"{k.kid or 'keys[0]'}"
        )
        ak = rec.run("ak-parse", lambda: _ak_from_jwk(runtime), lambda k: f"AK name {k.name().hex()}")
        claims["ak_name"] = ak.name().hex()
        info = SnpInstanceInfo(hcl.snp_report, evidence.vcek, chain, AzureInfo(hcl.runtime_data, ""))
        verified = verify_azure_snp_evidence(
            info, ak, config, rec, at=at or utc_now(), extra_data=None, jwks_fetcher=jwks_fetcher or HttpJwksFetcher()
        )
        claims.update(verified.claims())
        sig = struct.pack(">HHH", alg.TPM_ALG_RSASSA, alg.TPM_ALG_SHA256, len(evidence.quote_signature))
        pcrs = PCRs(alg.TPM_ALG_SHA256, dict(enumerate(evidence.pcrs)))
        quote = Quote(evidence.quote_message, sig + evidence.quote_signature, pcrs)
        expected = nonce if nonce is not None else parse_tpms_attest(evidence.quote_message).extra_data
        rec.run(
            "tpm-quote",
            lambda: verify_quote(ak, quote, expected),
            lambda _: "SHA256 quote: signature under the HCL AK, qualifying data and PCR digest verified",
        )
        if nonce is None:
            rec.add(
                "nonce", CheckStatus.WARN, f"no nonce given: the quote's extraData {expected.hex()} was not compared"
            )
        else:
            rec.add("nonce", CheckStatus.PASS, f"the quote's extraData is the nonce {nonce.hex()}")
        claims["pcrs"] = {str(i): v.hex() for i, v in enumerate(evidence.pcrs)}
        compare_measurements(config, pcrs.pcrs, rec)
    except AttestationError as exc:
        return FormatReport.finish(FORMAT_NAME, rec, claims, exc)
    return FormatReport.finish(FORMAT_NAME, rec, claims, None)


def _ak_from_jwk(key: RuntimeKey) -> TpmPublic:
    """The HCL AK JWK as the TPMT_PUBLIC of an RSASSA-SHA256 restricted signing key."""
    if key.kty != "RSA":
        raise MalformedEvidence(f"runtime data: the HCL AK is a {key.kty!r} key, expected RSA", check="hcl-ak")
    exponent = int.from_bytes(key.e, "big")
    public = (
        struct.pack(">HHIH", alg.TPM_ALG_RSA, alg.TPM_ALG_SHA256, _AK_ATTRIBUTES, 0)
        + struct.pack(">HHH", alg.TPM_ALG_NULL, alg.TPM_ALG_RSASSA, alg.TPM_ALG_SHA256)
        + struct.pack(">HIH", len(key.n) * 8, 0 if exponent == 65537 else exponent, len(key.n))
        + key.n
    )
    return parse_tpmt_public(public)


def _field(obj: dict[str, Any], name: str, kind: type) -> Any:
    value = obj.get(name)
    if not isinstance(value, kind):
        raise MalformedEvidence(f"{FORMAT_NAME}: {name} missing or not a JSON {kind.__name__}")
    return value


def _bytes_list(value: Any, name: str) -> bytes:
    if not isinstance(value, list) or len(value) > _MAX_BLOB:
        raise MalformedEvidence(f"{FORMAT_NAME}: {name} must be a list of at most {_MAX_BLOB} bytes")
    if not all(type(b) is int and 0 <= b <= 255 for b in value):
        raise MalformedEvidence(f"{FORMAT_NAME}: {name} must hold integers 0..255")
    return bytes(value)


def _hex(value: Any, name: str) -> bytes:
    if not isinstance(value, str) or len(value) > 2 * _MAX_BLOB:
        raise MalformedEvidence(f"{FORMAT_NAME}: {name} must be a hex string")
    try:
        return bytes.fromhex(value)
    except ValueError:
        raise MalformedEvidence(f"{FORMAT_NAME}: {name} is not hex") from None


def _b64url(value: Any, name: str) -> bytes:
    if not isinstance(value, str) or len(value) > 2 * _MAX_BLOB:
        raise MalformedEvidence(f"{FORMAT_NAME}: {name} must be a base64url string")
    try:
        return base64.urlsafe_b64decode(value + "=" * (-len(value) % 4))
    except (binascii.Error, ValueError):
        raise MalformedEvidence(f"{FORMAT_NAME}: {name} is not base64url") from None
