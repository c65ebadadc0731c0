"""azure-sev-snp: HCL report, runtime data, ID-key policies, MAA fallback (spec-attestation §5a).

Vectors:
* azure-snp/constellation-azure-snp-2023 — MANIFEST: ACCEPT when the accepted ID-key digests
  include 57e229e0…; SHA-256(runtimedata.bin) == report_data[0:32]; no quote (the AK comes from the
  runtime data's HCLAkPub, as upstream's test stubs it). Upstream negatives: signature zeroed,
  runtime data truncated by 5 bytes, all-zero digest under Equal, VMPL=1, ASK byte 1676 changed;
  wrong digest accepted under WarnOnly.
* azure-snp/trustee-az-snp-vtpm-2025-milan — MANIFEST: ACCEPT with nonce "challenge" (quote
  extraData), PCR0 e15c4479…; id_key_digest 942fd93e… not in the default list → Equal REJECTS unless
  configured. Its quote is trustee's format: checked with the tpm layer under the HCL AK.
InstanceInfo documents are assembled in the test from the vector files (Constellation's
``snp.InstanceInfo`` JSON of §4.2). The MAA fallback uses tokens signed by a test key and served
from a local JWKS server on 127.0.0.1. A synthetic SNP hierarchy (snp.testing) gives a full document.
"""

from __future__ import annotations

import base64
import contextlib
import datetime
import hashlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import pytest
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import padding, rsa
from hypothesis import given
from hypothesis import strategies as st
from test_tpm_quote import rsa_key
from test_tpm_structures import rsa_public_bytes, rsa_signature_bytes
from test_variant_common import make_cert, make_document, rsa_keys

from starlock.attestation import CheckStatus, Variant, load_attestation_config
from starlock.attestation._snpinfo import parse_snp_instance_info
from starlock.attestation.azure import (
    AzureSevSnpIssuer,
    AzureSevSnpValidator,
    HttpJwksFetcher,
    MaaTokenError,
    check_hcl_ak,
    parse_hcl_report,
    parse_runtime_data,
    verify_azure_snp_evidence,
)
from starlock.attestation.document import Attestation, PCRs, Quote
from starlock.attestation.errors import (
    AttestationError,
    CertificateChainError,
    MalformedEvidence,
    NonceMismatch,
    PolicyViolation,
    SignatureError,
    UntrustedKey,
)
from starlock.attestation.tpm import TpmPublic, parse_tpmt_public, verify_attestation
from starlock.attestation.tpm import algorithms as alg
from starlock.attestation.vtpm import CheckRecorder

UTC = datetime.UTC
NOW = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
C2023 = "azure-snp/constellation-azure-snp-2023"
TRUSTEE = "azure-snp/trustee-az-snp-vtpm-2025-milan/evidence-v1.json"
MILAN = "other/amd-kds-roots/ask_ark_milan.pem"
DIGEST_2023 = "57e229e0ffe5fa92d0faddff6cae0e61c926fc9ef9afd20a8b8cfcf7129db9338cbe5bf3f6987733a2bf65d06dc38fc1"
DIGEST_TRUSTEE = "942fd93ebde6ea7a96efadeafc60f1c6b3d10e703b1dafd7555b92f7f3d32d0e006767648cba5b102af3d65756af4177"
EXTRA = b"\x01" * 32


def _pem_blocks(data: bytes) -> list[bytes]:
    parts = data.split(b"-----END CERTIFICATE-----")
    return [p.strip() + b"\n-----END CERTIFICATE-----\n" for p in parts if b"BEGIN" in p]


def config(vectors: Path, digests: list[str], policy: str = "equal", maa_url: str = "", **versions: int) -> Any:
    ark = _pem_blocks((vectors / MILAN).read_bytes())[1].decode()
    tcb = {"bootloaderVersion": 2, "teeVersion": 0, "snpVersion": 6, "microcodeVersion": 93} | versions
    signer: dict[str, Any] = {"acceptedKeyDigests": digests, "enforcementPolicy": policy}
    if maa_url:
        signer["maaURL"] = maa_url
    obj = {"measurements": {}, **tcb, "amdRootKey": ark, "firmwareSignerConfig": signer}
    return load_attestation_config(obj, Variant.AZURE_SEV_SNP, allow_unenforced=True)


def instance_info(report: bytes, vcek: bytes, chain: bytes, runtime: bytes, token: str = "") -> bytes:
    b64 = lambda b: base64.b64encode(b).decode()  # noqa: E731
    return json.dumps(
        {
            "ReportSigner": b64(vcek),
            "CertChain": b64(chain),
            "AttestationReport": b64(report),
            "Azure": {"RuntimeData": b64(runtime), "MAAToken": token},
            "GCP": None,
        }
    ).encode()


def ak_from_runtime(runtime: bytes) -> TpmPublic:
    key = parse_runtime_data(runtime).ak_key()
    public = rsa.RSAPublicNumbers(int.from_bytes(key.e, "big"), int.from_bytes(key.n, "big")).public_key()
    return parse_tpmt_public(rsa_public_bytes(public))


class C2023Files:
    def __init__(self, vectors: Path) -> None:
        d = vectors / C2023
        self.report = (d / "attestation.bin").read_bytes()
        self.vcek = (d / "vcek.pem").read_bytes()
        self.chain = (d / "certchain.pem").read_bytes()
        self.runtime = (d / "runtimedata.bin").read_bytes()
        self.ak = ak_from_runtime(self.runtime)

    def info(self, **changes: Any) -> Any:
        values = {"report": self.report, "vcek": self.vcek, "chain": self.chain, "runtime": self.runtime} | changes
        return parse_snp_instance_info(instance_info(**values))


@pytest.fixture(scope="module")
def c2023(vectors: Path) -> C2023Files:
    return C2023Files(vectors)


def _verify(info: Any, ak: TpmPublic, cfg: Any, **kwargs: Any) -> CheckRecorder:
    rec = CheckRecorder()
    kwargs.setdefault("at", NOW)
    kwargs.setdefault("extra_data", None)
    kwargs.setdefault("jwks_fetcher", HttpJwksFetcher())
    verify_azure_snp_evidence(info, ak, cfg, rec, **kwargs)
    return rec


# --- constellation-azure-snp-2023 ------------------------------------------------------------------------


def test_2023_accepted_with_its_digest(c2023: C2023Files, vectors: Path) -> None:
    rec = _verify(c2023.info(), c2023.ak, config(vectors, [DIGEST_2023]))
    status = {c.name: c.status for c in rec.checks}
    assert status["snp.report-signature"] is CheckStatus.PASS
    assert status["snp.id-key-digest"] is CheckStatus.PASS
    assert status["runtime-data-binding"] is CheckStatus.PASS and status["hcl-ak"] is CheckStatus.PASS
    # the DER VCEK from KDS works too (MANIFEST: vcek.pem and vcek.cert are the same certificate)
    der = (vectors / C2023 / "vcek.cert").read_bytes()
    _verify(c2023.info(vcek=der), c2023.ak, config(vectors, [DIGEST_2023]))


def test_2023_equal_without_digest_rejected(c2023: C2023Files, vectors: Path) -> None:
    with pytest.raises(PolicyViolation, match="ID key digest"):
        _verify(c2023.info(), c2023.ak, config(vectors, ["00" * 48]))
    with pytest.raises(PolicyViolation):
        _verify(c2023.info(), c2023.ak, config(vectors, []))


def test_2023_warn_only_accepts_with_warning(c2023: C2023Files, vectors: Path) -> None:
    rec = _verify(c2023.info(), c2023.ak, config(vectors, ["00" * 48], "warnOnly"))
    assert any("ID key digest" in w for w in rec.warnings)


def test_2023_maa_fallback_needs_a_token(c2023: C2023Files, vectors: Path) -> None:
    cfg = config(vectors, ["00" * 48], "maaFallback", maa_url="http://127.0.0.1:1")
    with pytest.raises(MaaTokenError, match="no MAA token"):
        _verify(c2023.info(), c2023.ak, cfg)
    # with the digest configured the fallback is not consulted
    _verify(c2023.info(), c2023.ak, config(vectors, [DIGEST_2023], "maaFallback", maa_url="http://127.0.0.1:1"))


def test_2023_ak_mismatch(c2023: C2023Files, vectors: Path) -> None:
    other = parse_tpmt_public(rsa_public_bytes(rsa_key().public_key()))
    with pytest.raises(UntrustedKey, match="HCL AK") as err:
        _verify(c2023.info(), other, config(vectors, [DIGEST_2023]))
    assert err.value.check == "hcl-ak"


def test_2023_runtime_data_binding(c2023: C2023Files, vectors: Path) -> None:
    changed = c2023.runtime.replace(b'"keys"', b' "keys"', 1)
    with pytest.raises(UntrustedKey, match="not bound") as err:
        _verify(c2023.info(runtime=changed), c2023.ak, config(vectors, [DIGEST_2023]))
    assert err.value.check == "runtime-data-binding"
    with pytest.raises(MalformedEvidence, match="runtime data"):
        _verify(c2023.info(runtime=c2023.runtime[:-5]), c2023.ak, config(vectors, [DIGEST_2023]))


def test_2023_upstream_negatives(c2023: C2023Files, vectors: Path) -> None:
    cfg = config(vectors, [DIGEST_2023])
    zeroed = c2023.report[:0x2A0] + bytes(0x90) + c2023.report[0x330:]
    with pytest.raises(SignatureError):
        _verify(c2023.info(report=zeroed), c2023.ak, cfg)
    vmpl = bytearray(c2023.report)
    vmpl[0x30] = 1
    with pytest.raises(AttestationError):
        _verify(c2023.info(report=bytes(vmpl)), c2023.ak, cfg)
    bad_chain = bytearray(c2023.chain)
    bad_chain[1676] = 0x41
    with pytest.raises(AttestationError):
        _verify(c2023.info(chain=bytes(bad_chain)), c2023.ak, cfg)
    with pytest.raises(AttestationError):
        _verify(c2023.info(), c2023.ak, config(vectors, [DIGEST_2023], microcodeVersion=94))  # launch TCB < minimum


# --- trustee-az-snp-vtpm-2025-milan --------------------------------------------------------------------


@pytest.fixture(scope="module")
def trustee(vectors: Path) -> dict[str, Any]:
    return json.loads((vectors / TRUSTEE).read_bytes())


def _b64url(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def test_trustee_hcl_report_layout(trustee: dict[str, Any]) -> None:
    hcl = parse_hcl_report(_b64url(trustee["hcl_report"]))
    assert (hcl.version, hcl.report_size, hcl.request_type, hcl.report_type, hcl.report_data_hash_type) == (
        1,
        2346,
        2,
        2,
        1,
    )
    assert hcl.igvm_data_size == 20 + hcl.variable_data_size and len(hcl.runtime_data) == hcl.variable_data_size
    assert [k.kid for k in parse_runtime_data(hcl.runtime_data).keys] == ["HCLAkPub", "HCLEkPub"]


def _trustee_info(trustee: dict[str, Any], vectors: Path) -> tuple[Any, TpmPublic]:
    hcl = parse_hcl_report(_b64url(trustee["hcl_report"]))
    chain = (vectors / MILAN).read_bytes()
    info = parse_snp_instance_info(instance_info(hcl.snp_report, _b64url(trustee["vcek"]), chain, hcl.runtime_data))
    return info, ak_from_runtime(hcl.runtime_data)


def test_trustee_accepted_with_digest_rejected_without(trustee: dict[str, Any], vectors: Path) -> None:
    info, ak = _trustee_info(trustee, vectors)
    cfg = config(vectors, [DIGEST_TRUSTEE], snpVersion=24, microcodeVersion=219, bootloaderVersion=4)
    rec = _verify(info, ak, cfg)
    assert {c.name: c.status for c in rec.checks}["hcl-ak"] is CheckStatus.PASS
    with pytest.raises(PolicyViolation, match="ID key digest"):
        _verify(info, ak, config(vectors, [DIGEST_2023]))  # Equal, digest not configured


def test_trustee_quote_under_hcl_ak(trustee: dict[str, Any], vectors: Path) -> None:
    """The quote (extraData "challenge") verifies under the HCL AK; PCR0 e15c4479…."""
    _, ak = _trustee_info(trustee, vectors)
    quote = trustee["tpm_quote"]
    pcrs = PCRs(alg.TPM_ALG_SHA256, {i: bytes.fromhex(v) for i, v in enumerate(quote["pcrs"])})
    raw_sig = rsa_signature_bytes(alg.TPM_ALG_RSASSA, alg.TPM_ALG_SHA256, bytes.fromhex(quote["signature"]))
    att = Attestation(ak_pub=ak.raw, quotes=(Quote(bytes.fromhex(quote["message"]), raw_sig, pcrs),))
    verified = verify_attestation(att, b"challenge", ak)
    assert verified.pcrs.pcrs[0].hex() == "e15c44796beabf46abcec7c57e590942041e47497e4ec27571c8b7664f48dced"
    with pytest.raises(NonceMismatch):
        verify_attestation(att, b"challengf", ak)


# --- MAA fallback --------------------------------------------------------------------------------------


class _Jwks(BaseHTTPRequestHandler):
    body = b"{}"
    hits: ClassVar[list[str]] = []

    def do_GET(self) -> None:
        type(self).hits.append(self.path)
        status = 200 if self.path == "/certs" else 404
        self.send_response(status)
        self.end_headers()
        self.wfile.write(type(self).body if status == 200 else b"")

    def log_message(self, *args: Any) -> None:
        pass


class Maa:
    def __init__(self, url: str, handler: type[_Jwks]) -> None:
        self.url, self.handler = url, handler
        self.key = rsa_keys(1)[0]
        cert = make_cert("maa", self.key, "maa", self.key, ca=False)
        x5c = base64.b64encode(cert.public_bytes(serialization.Encoding.DER)).decode()
        handler.body = json.dumps({"keys": [{"kid": "k1", "kty": "RSA", "x5c": [x5c]}]}).encode()

    def token(
        self, claims: dict[str, Any], *, kid: str = "k1", alg_name: str = "RS256", key: rsa.RSAPrivateKey | None = None
    ) -> str:
        enc = lambda o: base64.urlsafe_b64encode(json.dumps(o).encode()).rstrip(b"=").decode()  # noqa: E731
        signing_input = f"{enc({'alg': alg_name, 'kid': kid, 'typ': 'JWT'})}.{enc(claims)}"
        sig = (key or self.key).sign(signing_input.encode(), padding.PKCS1v15(), hashes.SHA256())
        return f"{signing_input}.{base64.urlsafe_b64encode(sig).rstrip(b'=').decode()}"

    def claims(self, report: bytes, **changes: Any) -> dict[str, Any]:
        now = int(NOW.timestamp())
        tee = {
            "x-ms-attestation-type": "sevsnpvm",
            "x-ms-compliance-status": "azure-compliant-cvm",
            "x-ms-sevsnpvm-idkeydigest": report[0xE0:0x110].hex(),
            "x-ms-sevsnpvm-launchmeasurement": report[0x90:0xC0].hex(),
            "x-ms-sevsnpvm-is-debuggable": False,
        }
        base = {
            "iss": self.url,
            "iat": now - 60,
            "nbf": now - 60,
            "exp": now + 3600,
            "x-ms-isolation-tee": tee,
            "x-ms-runtime": {"client-payload": {"nonce": base64.b64encode(EXTRA).decode()}},
        }
        return base | changes


@pytest.fixture
def maa() -> Iterator[Maa]:
    handler = type("Jwks", (_Jwks,), {"hits": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    try:
        yield Maa(f"http://127.0.0.1:{server.server_port}", handler)
    finally:
        server.shutdown()
        server.server_close()


def _maa_verify(c2023: C2023Files, vectors: Path, maa: Maa, token: str, **kwargs: Any) -> CheckRecorder:
    cfg = config(vectors, ["00" * 48], "maaFallback", maa_url=maa.url)
    return _verify(c2023.info(token=token), c2023.ak, cfg, extra_data=EXTRA, **kwargs)


def test_maa_fallback_accepts_a_good_token(c2023: C2023Files, vectors: Path, maa: Maa) -> None:
    rec = _maa_verify(c2023, vectors, maa, maa.token(maa.claims(c2023.report)))
    assert {c.name: c.status for c in rec.checks}["maa-token"] is CheckStatus.PASS
    assert maa.handler.hits == ["/certs"]


@pytest.mark.parametrize(
    ("case", "error", "match"),
    [
        ("expired", MaaTokenError, "expired"),
        ("not-yet-valid", MaaTokenError, "not valid before"),
        ("no-exp", MaaTokenError, "no exp"),
        ("wrong-issuer", MaaTokenError, "issuer"),
        ("wrong-nonce", NonceMismatch, "nonce"),
        ("bad-signature", SignatureError, "does not verify"),
        ("unknown-kid", SignatureError, "kid"),
        ("alg-none", SignatureError, "RS256"),
        ("wrong-idkeydigest", MaaTokenError, "idkeydigest"),
        ("wrong-measurement", MaaTokenError, "launchmeasurement"),
        ("not-snp", MaaTokenError, "attestation-type"),
        ("debuggable", PolicyViolation, "debuggable"),
    ],
)
def test_maa_token_rejections(
    c2023: C2023Files, vectors: Path, maa: Maa, case: str, error: type[Exception], match: str
) -> None:
    claims = maa.claims(c2023.report)
    now = int(NOW.timestamp())
    tee = claims["x-ms-isolation-tee"]
    kwargs: dict[str, Any] = {}
    if case == "expired":
        claims["exp"] = now - 120
    elif case == "not-yet-valid":
        claims["nbf"] = now + 600
    elif case == "no-exp":
        del claims["exp"]
    elif case == "wrong-issuer":
        claims["iss"] = "https://evil.attest.azure.net"
    elif case == "wrong-nonce":
        claims["x-ms-runtime"]["client-payload"]["nonce"] = base64.b64encode(b"\x02" * 32).decode()
    elif case == "bad-signature":
        kwargs["key"] = rsa_keys(1)[0]
    elif case == "unknown-kid":
        kwargs["kid"] = "k2"
    elif case == "alg-none":
        kwargs["alg_name"] = "none"
    elif case == "wrong-idkeydigest":
        tee["x-ms-sevsnpvm-idkeydigest"] = "00" * 48
    elif case == "wrong-measurement":
        tee["x-ms-sevsnpvm-launchmeasurement"] = "00" * 48
    elif case == "not-snp":
        tee["x-ms-attestation-type"] = "sgx"
    elif case == "debuggable":
        tee["x-ms-sevsnpvm-is-debuggable"] = True
    with pytest.raises(error, match=match):
        _maa_verify(c2023, vectors, maa, maa.token(claims, **kwargs))


def test_maa_unreachable(c2023: C2023Files, vectors: Path) -> None:
    cfg = config(vectors, ["00" * 48], "maaFallback", maa_url="http://127.0.0.1:1")
    with pytest.raises(MaaTokenError, match="unreachable"):
        _verify(c2023.info(token="a.b.c"), c2023.ak, cfg, extra_data=EXTRA)


# --- full documents (synthetic SNP hierarchy) ------------------------------------------------------------


@pytest.fixture(scope="module")
def synthetic() -> Any:
    from starlock.attestation.snp import SigningKey, TcbParts, TcbVersion
    from starlock.attestation.snp.testing import SyntheticAmd, build_report, sign_report

    amd = SyntheticAmd.generate()
    parts = TcbParts(bootloader=3, tee=0, snp=8, microcode=115)
    vcek, vcek_key = amd.issue(SigningKey.VCEK, parts)
    ak = rsa_key()
    numbers = ak.public_key().public_numbers()
    jwk = {
        "kid": "HCLAkPub",
        "kty": "RSA",
        "e": base64.urlsafe_b64encode(numbers.e.to_bytes(3, "big")).rstrip(b"=").decode(),
        "n": base64.urlsafe_b64encode(numbers.n.to_bytes(256, "big")).rstrip(b"=").decode(),
    }
    runtime = json.dumps({"keys": [jwk], "vm-configuration": {"tpm-enabled": True}}).encode()
    tcb = TcbVersion.compose(parts)
    raw = build_report(
        policy=0x30000,
        current_tcb=tcb,
        reported_tcb=tcb,
        report_data=hashlib.sha256(runtime).digest() + bytes(32),
        id_key_digest=b"\x07" * 48,
        chip_id=bytes(range(64)),
    )
    report = sign_report(raw, vcek_key)
    pem = serialization.Encoding.PEM
    return {
        "amd": amd,
        "ak": ak,
        "info": instance_info(report, vcek.public_bytes(pem), amd.ask.public_bytes(pem), runtime),
        "ark_pem": amd.ark.public_bytes(pem).decode(),
    }


def _synthetic_config(synthetic: Any, digests: list[str], policy: str = "equal") -> Any:
    obj = {
        "measurements": {},
        "bootloaderVersion": 3,
        "teeVersion": 0,
        "snpVersion": 8,
        "microcodeVersion": 115,
        "amdRootKey": synthetic["ark_pem"],
        "firmwareSignerConfig": {"acceptedKeyDigests": digests, "enforcementPolicy": policy},
    }
    return load_attestation_config(obj, Variant.AZURE_SEV_SNP, allow_unenforced=True)


def test_full_document_accepted_and_bound(synthetic: Any) -> None:
    from starlock.attestation.validators import validator_for

    raw = make_document(synthetic["ak"], nonce=b"n1", instance_info=synthetic["info"])
    validator = validator_for(_synthetic_config(synthetic, ["07" * 48]), at=NOW)
    assert isinstance(validator, AzureSevSnpValidator)
    result = validator.validate(raw, b"n1")
    assert result.user_data == b"\x42" * 32
    with pytest.raises(NonceMismatch):
        validator.validate(raw, b"n2")
    with pytest.raises(PolicyViolation):
        AzureSevSnpValidator(_synthetic_config(synthetic, ["08" * 48]), at=NOW).validate(raw, b"n1")
    warned = AzureSevSnpValidator(_synthetic_config(synthetic, ["08" * 48], "warnOnly"), at=NOW).validate(raw, b"n1")
    assert warned.warnings
    other_ak = make_document(rsa_keys(1)[0], nonce=b"n1", instance_info=synthetic["info"])
    with pytest.raises(UntrustedKey):
        validator.validate(other_ak, b"n1")


def test_full_document_unpinned_ark_must_be_configured(synthetic: Any, vectors: Path) -> None:
    """With the real ARK-Milan in the config, a synthetic chain does not verify."""
    cfg = config(vectors, ["07" * 48], bootloaderVersion=3, snpVersion=8, microcodeVersion=115)
    raw = make_document(synthetic["ak"], nonce=b"n1", instance_info=synthetic["info"])
    with pytest.raises((CertificateChainError, SignatureError)):
        AzureSevSnpValidator(cfg, at=NOW).validate(raw, b"n1")


def test_hcl_ak_exponent_rule() -> None:
    key = rsa_key()
    ak = parse_tpmt_public(rsa_public_bytes(key.public_key()))  # exponent field 0 (= 65537)
    n = key.public_key().public_numbers().n.to_bytes(256, "big")
    from starlock.attestation.azure import RuntimeKey

    check_hcl_ak(RuntimeKey("HCLAkPub", "RSA", n, b"\x01\x00\x01"), ak)
    with pytest.raises(UntrustedKey, match="exponent"):
        check_hcl_ak(RuntimeKey("HCLAkPub", "RSA", n, b"\x03"), ak)


def test_issuer_needs_the_cloud() -> None:
    with pytest.raises(AttestationError, match="HCL report"):
        AzureSevSnpIssuer().issue(b"u", b"n")


# --- property tests: parsers of untrusted input raise only typed errors ----------------------------------


@given(st.binary(max_size=3000))
def test_hcl_parser_typed_errors(blob: bytes) -> None:
    with contextlib.suppress(MalformedEvidence):
        parse_hcl_report(b"HCLA" + blob)
    with contextlib.suppress(MalformedEvidence):
        parse_hcl_report(blob)


_json = st.recursive(
    st.none() | st.booleans() | st.integers() | st.text(max_size=20),
    lambda children: st.lists(children, max_size=4) | st.dictionaries(st.text(max_size=8), children, max_size=4),
    max_leaves=20,
)


@given(st.one_of(st.binary(max_size=500), _json.map(lambda o: json.dumps(o).encode())))
def test_runtime_data_parser_typed_errors(raw: bytes) -> None:
    with contextlib.suppress(MalformedEvidence):
        parse_runtime_data(raw).ak_key()


@given(
    st.dictionaries(
        st.sampled_from(["kid", "kty", "n", "e", "x"]),
        st.one_of(st.text(max_size=40), st.integers(), st.none()),
        max_size=5,
    )
)
def test_runtime_data_keys_typed_errors(key: dict[str, Any]) -> None:
    with contextlib.suppress(MalformedEvidence):
        parse_runtime_data(json.dumps({"keys": [key]}).encode())


@given(st.binary(max_size=400))
def test_snp_instance_info_typed_errors(raw: bytes) -> None:
    with contextlib.suppress(MalformedEvidence):
        parse_snp_instance_info(raw)


@pytest.mark.parametrize(
    "url",
    ["http://myattestationprovider.weu.attest.azure.net/certs", "http://10.0.0.7/certs", "ftp://x/certs", "certs"],
)
def test_jwks_only_over_https_or_loopback(url: str) -> None:
    """The MAA keys are not pinned: a plain-http fetch from the network could be answered by anyone."""
    with pytest.raises(AttestationError, match="must be https"):
        HttpJwksFetcher().fetch(url)
