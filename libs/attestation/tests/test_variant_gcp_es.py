"""gcp-sev-es validator and GCE AK trust (spec-attestation §5d, §5.0 step 5).

Vector gcp-vtpm/gotpmtools-gce-cos85-nonce9009 (MANIFEST: ACCEPT with nonce 9009; AK cert ←
tpm_ek_intermediate_2 ← tpm_ek_root_1; critical SAN; GCE extension zone us-central1-a, project
google.com:wuale-gcp-testing, instance cos-test, is_production true; PCR0 = AMD SEV GCE firmware).
It is a bare go-tpm-tools Attestation (no Constellation wrapper, extraData 0x9009), so it is checked
with the AK-certificate verifier and the tpm layer; the full validator runs on synthetic documents.
Negatives from the MANIFEST: nonce ≠ 9009, no intermediates, no roots, CAS roots only, a flipped
quote byte, the AK cert grafted onto another AK's quote.
"""

from __future__ import annotations

import contextlib
import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path
from typing import Any, ClassVar

import attrs
import pytest
from cryptography import x509
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import rsa
from hypothesis import given
from hypothesis import strategies as st
from test_tpm_quote import rsa_key
from test_variant_common import NOW, config_for, gce_event_log, make_cert, make_document, rsa_keys

from starlock.attestation import CheckStatus, Variant
from starlock.attestation._proto.convert import attestation_from_pb
from starlock.attestation.document import Attestation, Quote
from starlock.attestation.errors import (
    AttestationError,
    CertificateChainError,
    MalformedEvidence,
    NonceMismatch,
    PolicyViolation,
    SignatureError,
    UntrustedKey,
)
from starlock.attestation.gcp import (
    GceComputeApiClient,
    GceConfidentialTechnology,
    GcpSevEsIssuer,
    GcpSevEsValidator,
    gce_platform_state,
    parse_gce_instance_extension,
    verify_gce_ak_certificate,
)
from starlock.attestation.tpm import parse_tpmt_public, public_keys_equal, verify_attestation
from starlock.attestation.trust import TrustStore, fingerprint, load_certificates
from starlock.attestation.validators import ValidatorAdapters, validator_for

GCE_PB = "gcp-vtpm/gotpmtools-gce-cos85-nonce9009/gce-cos-85-nonce9009.pb"
ROOTS = "other/gce-ek-ak-roots"
NONCE_9009 = b"\x90\x09"
NONCE = b"gcp-nonce"
INSTANCE = {"zone": "europe-west3-b", "project_id": "proj", "instance_name": "node-1"}
INSTANCE_INFO = json.dumps(INSTANCE).encode()


def _cert(vectors: Path, name: str) -> x509.Certificate:
    return load_certificates((vectors / ROOTS / name).read_bytes())[0]


@pytest.fixture(scope="module")
def gce(vectors: Path) -> Attestation:
    return attestation_from_pb((vectors / GCE_PB).read_bytes())


@pytest.fixture(scope="module")
def google_trust(vectors: Path) -> TrustStore:
    return TrustStore(certificates=[_cert(vectors, "tpm_ek_root_1.cer"), _cert(vectors, "tpm_ek_intermediate_2.crt")])


# --- the cos85 vector -------------------------------------------------------------------------------------


def test_vector_ak_certificate_chain(gce: Attestation, google_trust: TrustStore) -> None:
    certified = verify_gce_ak_certificate(gce.ak_cert, gce.intermediate_certs, google_trust, NOW)
    assert [fingerprint(c)[:8] for c in certified.path.chain[1:]] == [
        "5d8dbcf8",
        "9bd5285f",
    ]
    assert public_keys_equal(parse_tpmt_public(gce.ak_pub), certified.public_key)
    assert certified.extension is not None and certified.extension.is_production
    assert certified.extension.security_version == 0
    assert certified.instance is not None
    assert attrs.asdict(certified.instance) == {
        "zone": "us-central1-a",
        "project_id": "google.com:wuale-gcp-testing",
        "project_number": 117478743145,
        "instance_name": "cos-test",
        "instance_id": 6797026933021542085,
    }
    # quotes verified under the certified key, nonce 9009 (MANIFEST: ACCEPT)
    verified = verify_attestation(gce, NONCE_9009, certified.public_key)
    assert verified.event_log is not None


def test_vector_intermediate_inside_attestation(gce: Attestation, vectors: Path) -> None:
    """Upstream: intermediates placed inside the attestation also work."""
    root_only = TrustStore(certificates=[_cert(vectors, "tpm_ek_root_1.cer")])
    inter = (vectors / ROOTS / "tpm_ek_intermediate_2.crt").read_bytes()
    assert verify_gce_ak_certificate(gce.ak_cert, [inter], root_only, NOW).instance is not None
    with pytest.raises(MalformedEvidence):
        verify_gce_ak_certificate(gce.ak_cert, [b"\x30\x03\x02\x01\x00"], root_only, NOW)


def test_vector_negatives(gce: Attestation, vectors: Path, google_trust: TrustStore) -> None:
    root_only = TrustStore(certificates=[_cert(vectors, "tpm_ek_root_1.cer")])
    with pytest.raises(CertificateChainError, match="no trusted root or intermediate"):
        verify_gce_ak_certificate(gce.ak_cert, [], root_only, NOW)  # no intermediates
    with pytest.raises(CertificateChainError, match="no trusted root configured"):
        verify_gce_ak_certificate(
            gce.ak_cert, [], TrustStore(certificates=[_cert(vectors, "tpm_ek_intermediate_2.crt")]), NOW
        )
    cas = TrustStore(
        certificates=[_cert(vectors, "gcp_ek_ak_ca_root.crt"), _cert(vectors, "gcp_ek_ak_ca_intermediate_v3.crt")]
    )
    with pytest.raises(CertificateChainError):
        verify_gce_ak_certificate(gce.ak_cert, [], cas, NOW)  # CAS roots only
    with pytest.raises(NonceMismatch):
        verify_attestation(gce, b"\x90\x10", parse_tpmt_public(gce.ak_pub))
    quote = gce.quotes[0]
    flipped = bytearray(quote.quote)
    flipped[30] ^= 1
    bad = attrs.evolve(gce, quotes=(Quote(bytes(flipped), quote.raw_sig, quote.pcrs),))
    with pytest.raises(SignatureError):
        verify_attestation(bad, NONCE_9009, parse_tpmt_public(gce.ak_pub), allow_sha1=True)
    with pytest.raises(CertificateChainError, match="expired"):
        verify_gce_ak_certificate(gce.ak_cert, [], google_trust, NOW.replace(year=2052))


def test_vector_unpinned_roots_refused(vectors: Path) -> None:
    """TrustStore refuses a root that is not pinned unless trusted explicitly."""
    other_key = rsa_keys(1)[0]
    fake = make_cert("tpm_ek_v1_cloud_host_root", other_key, "tpm_ek_v1_cloud_host_root", other_key, ca=True)
    with pytest.raises(CertificateChainError, match="not a pinned trust anchor"):
        TrustStore(certificates=[fake])


def test_vector_platform_state(gce: Attestation, vectors: Path) -> None:
    """cos85: GCE firmware v1 on AMD SEV (MANIFEST: PCR0 is the AMD SEV GCE firmware)."""
    state = gce_platform_state(gce.event_log)
    assert state.gce_version == 1 and state.technology is GceConfidentialTechnology.AMD_SEV
    expected = {
        "cos-85-amd-sev.bin": GceConfidentialTechnology.AMD_SEV,
        "cos-93-amd-sev.bin": GceConfidentialTechnology.AMD_SEV,
        "cos-101-amd-sev.bin": GceConfidentialTechnology.AMD_SEV,
        "ubuntu-1804-amd-sev.bin": GceConfidentialTechnology.AMD_SEV,
        "ubuntu-2404-amd-sevsnp.bin": GceConfidentialTechnology.AMD_SEV_SNP,
        "rhel8-uefi.bin": GceConfidentialTechnology.NONE,
        "confidential-gke-debug-251000_eventlog.bin": GceConfidentialTechnology.NONE,
    }
    for name, tech in expected.items():
        state = gce_platform_state((vectors / "gcp-vtpm/gotpmtools-gce-eventlogs" / name).read_bytes())
        assert state.technology is tech, name
        assert state.gce_version is not None and state.gce_version >= 1


# --- GCE extension parser -----------------------------------------------------------------------------


def _der(tag: int, body: bytes) -> bytes:
    assert len(body) < 0x80 or len(body) < 0x100
    length = bytes([len(body)]) if len(body) < 0x80 else bytes([0x81, len(body)])
    return bytes([tag]) + length + body


def gce_extension(zone: str, project: str, name: str, *, production: bool = True, number: int = 7) -> bytes:
    props = _der(0x30, _der(0xA0, _der(0x02, b"\x00")) + _der(0xA1, _der(0x01, b"\xff" if production else b"\x00")))
    body = (
        _der(0x0C, zone.encode())
        + _der(0x02, number.to_bytes(8, "big").lstrip(b"\x00") or b"\x00")
        + _der(0x0C, project.encode())
        + _der(0x02, b"\x05")
        + _der(0x0C, name.encode())
        + _der(0xA0, props)
    )
    return _der(0x30, body)


def test_extension_parse_and_negative_integers() -> None:
    info = parse_gce_instance_extension(gce_extension("z", "p", "n"))
    assert (info.zone, info.project_id, info.instance_name, info.project_number, info.is_production) == (
        "z",
        "p",
        "n",
        7,
        True,
    )
    assert not parse_gce_instance_extension(gce_extension("z", "p", "n", production=False)).is_production
    negative = _der(
        0x30, _der(0x0C, b"z") + _der(0x02, b"\xff") + _der(0x0C, b"p") + _der(0x02, b"\x01") + _der(0x0C, b"n")
    )
    with pytest.raises(MalformedEvidence, match="negative"):
        parse_gce_instance_extension(negative)


@given(st.binary(max_size=200))
def test_extension_parser_raises_only_typed_errors(data: bytes) -> None:
    with contextlib.suppress(MalformedEvidence):
        parse_gce_instance_extension(data)


# --- GCE API adapter (local HTTP server) -----------------------------------------------------------------


class _ApiHandler(BaseHTTPRequestHandler):
    responses: ClassVar[dict[str, tuple[int, bytes]]] = {}
    seen: ClassVar[list[tuple[str, str | None]]] = []

    def do_GET(self) -> None:
        type(self).seen.append((self.path, self.headers.get("Authorization")))
        status, body = type(self).responses.get(self.path, (404, b"{}"))
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, *args: Any) -> None:
        pass


@pytest.fixture
def api() -> Iterator[tuple[str, type[_ApiHandler]]]:
    handler = type("Handler", (_ApiHandler,), {"responses": {}, "seen": []})
    server = HTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_port}/compute/v1", handler
    finally:
        server.shutdown()
        server.server_close()


def _pem(key: rsa.RSAPrivateKey) -> str:
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def _serve_key(handler: type[_ApiHandler], key: rsa.RSAPrivateKey, instance: dict[str, str] = INSTANCE) -> str:
    where = f"projects/{instance['project_id']}/zones/{instance['zone']}/instances/{instance['instance_name']}"
    path = f"/compute/v1/{where}/getShieldedInstanceIdentity"
    body = json.dumps({"kind": "compute#shieldedInstanceIdentity", "signingKey": {"ekPub": _pem(key)}})
    handler.responses[path] = (200, body.encode())
    return path


def test_api_client_fetches_signing_key(api: tuple[str, type[_ApiHandler]]) -> None:
    endpoint, handler = api
    key = rsa_key()
    path = _serve_key(handler, key)
    client = GceComputeApiClient(lambda: "tok", endpoint=endpoint)
    got = client.signing_key("proj", "europe-west3-b", "node-1")
    assert public_keys_equal(got, key.public_key())
    assert handler.seen == [(path, "Bearer tok")]


def test_api_client_errors(api: tuple[str, type[_ApiHandler]]) -> None:
    endpoint, handler = api
    client = GceComputeApiClient(endpoint=endpoint)
    with pytest.raises(UntrustedKey, match="HTTP 404"):
        client.signing_key("a", "b", "c")
    base = "/compute/v1/projects/p/zones/z/instances/i/getShieldedInstanceIdentity"
    for body, match in (
        (b"not json", "not JSON"),
        (b'{"signingKey": {}}', "no signingKey.ekPub"),
        (b'{"signingKey": {"ekPub": "-----BEGIN CERTIFICATE-----\\nAA==\\n-----END CERTIFICATE-----"}}', "PUBLIC KEY"),
        (
            b'{"signingKey": {"ekPub": "-----BEGIN PUBLIC KEY-----\\nAA==\\n-----END PUBLIC KEY-----"}}',
            "does not parse",
        ),
    ):
        handler.responses[base] = (200, body)
        with pytest.raises(UntrustedKey, match=match):
            client.signing_key("p", "z", "i")
    with pytest.raises(UntrustedKey, match="unreachable"):
        GceComputeApiClient(endpoint="http://127.0.0.1:1/x", timeout=2).signing_key("p", "z", "i")


# --- the validator on synthetic documents ---------------------------------------------------------------


def _validator(**kwargs: Any) -> GcpSevEsValidator:
    extra = kwargs.pop("config", {})
    return GcpSevEsValidator(config_for(Variant.GCP_SEV_ES, **extra), at=NOW, **kwargs)


def test_validator_with_gce_api(api: tuple[str, type[_ApiHandler]]) -> None:
    endpoint, handler = api
    key = rsa_key()
    _serve_key(handler, key)
    raw = make_document(key, nonce=NONCE, instance_info=INSTANCE_INFO, event_log=gce_event_log())
    client = GceComputeApiClient(endpoint=endpoint)
    result = _validator(identity_client=client).validate(raw, NONCE)
    checks = {c.name: c.status for c in result.checks}
    assert checks["ak-gce-api"] is CheckStatus.PASS and checks["gce-platform"] is CheckStatus.PASS
    # via the registry
    validator = validator_for(config_for(Variant.GCP_SEV_ES), at=NOW, adapters=ValidatorAdapters(gce_identity=client))
    assert validator.validate(raw, NONCE).user_data == b"\x42" * 32
    # the API vouches for another key: rejected
    _serve_key(handler, rsa_keys(1)[0])
    with pytest.raises(UntrustedKey, match="signingKey"):
        _validator(identity_client=client).validate(raw, NONCE)


class _StaticIdentity:
    def __init__(self, key: rsa.RSAPrivateKey) -> None:
        self.key = key

    def signing_key(self, project_id: str, zone: str, instance_name: str) -> Any:
        return self.key.public_key()


@pytest.mark.parametrize(
    ("log", "error"),
    [
        (gce_event_log(technology=0), "NONE, expected AMD_SEV"),
        (gce_event_log(technology=4), "AMD_SEV_SNP, expected AMD_SEV"),
        (gce_event_log(version=0), "version is 0"),
        (b"", "no event log"),
    ],
)
def test_validator_platform_policy(log: bytes, error: str) -> None:
    key = rsa_key()
    raw = make_document(key, nonce=NONCE, instance_info=INSTANCE_INFO, event_log=log)
    with pytest.raises(PolicyViolation, match=error):
        _validator(identity_client=_StaticIdentity(key)).validate(raw, NONCE)


def test_validator_needs_ak_trust_and_instance_info() -> None:
    key = rsa_key()
    raw = make_document(key, nonce=NONCE, instance_info=INSTANCE_INFO, event_log=gce_event_log())
    with pytest.raises(UntrustedKey, match="cannot establish trust"):
        _validator().validate(raw, NONCE)
    for info in (b"{}", b"[1]"):
        bad = make_document(key, nonce=NONCE, instance_info=info, event_log=gce_event_log())
        with pytest.raises(MalformedEvidence):
            _validator(identity_client=_StaticIdentity(key)).validate(bad, NONCE)
    with pytest.raises(NonceMismatch):
        _validator(identity_client=_StaticIdentity(key)).validate(raw, b"other")


def _google_like(
    leaf_key: rsa.RSAPrivateKey, instance: dict[str, str], *, production: bool = True
) -> tuple[TrustStore, bytes]:
    root_key, ca_key = rsa_keys(2)
    root = make_cert("ek root", root_key, "ek root", root_key, ca=True)
    ca = make_cert("ek intermediate", ca_key, "ek root", root_key, ca=True, path_length=0)
    san = x509.SubjectAlternativeName(
        [x509.DirectoryName(x509.Name([x509.NameAttribute(x509.ObjectIdentifier("2.23.133.2.1"), "id:474F4F47")]))]
    )
    ext = x509.UnrecognizedExtension(
        x509.ObjectIdentifier("1.3.6.1.4.1.11129.2.1.21"),
        gce_extension(instance["zone"], instance["project_id"], instance["instance_name"], production=production),
    )
    leaf = make_cert("", leaf_key, "ek intermediate", ca_key, ca=False, extensions=[(san, True), (ext, False)])
    trust = TrustStore(pins=(), certificates=(), trust_unpinned=True)
    trust.add_all([root, ca])
    return trust, leaf.public_bytes(serialization.Encoding.DER)


def test_validator_with_ak_certificate_offline() -> None:
    key = rsa_key()
    trust, ak_cert = _google_like(key, INSTANCE)
    raw = make_document(key, nonce=NONCE, instance_info=INSTANCE_INFO, event_log=gce_event_log(), ak_cert=ak_cert)
    result = _validator(ak_trust=trust).validate(raw, NONCE)
    checks = {c.name: c.status for c in result.checks}
    assert checks["ak-certificate"] is CheckStatus.PASS and checks["ak-instance"] is CheckStatus.PASS
    # instance info that differs from the certificate
    other = json.dumps(INSTANCE | {"instance_name": "node-2"}).encode()
    bad = make_document(key, nonce=NONCE, instance_info=other, event_log=gce_event_log(), ak_cert=ak_cert)
    with pytest.raises(UntrustedKey, match="instance_name"):
        _validator(ak_trust=trust).validate(bad, NONCE)
    # AK cert grafted onto another AK's quotes
    grafted = make_document(
        rsa_keys(1)[0], nonce=NONCE, instance_info=INSTANCE_INFO, event_log=gce_event_log(), ak_cert=ak_cert
    )
    with pytest.raises(UntrustedKey, match="AK certificate"):
        _validator(ak_trust=trust).validate(grafted, NONCE)
    # a verification time after the certificates expired
    report = GcpSevEsValidator(config_for(Variant.GCP_SEV_ES), at=NOW.replace(year=2045), ak_trust=trust).evaluate(
        raw, NONCE
    )
    assert isinstance(report.error, CertificateChainError)


def test_non_production_certificate_gives_no_instance() -> None:
    key = rsa_key()
    trust, ak_cert = _google_like(key, INSTANCE, production=False)
    raw = make_document(key, nonce=NONCE, instance_info=INSTANCE_INFO, event_log=gce_event_log(), ak_cert=ak_cert)
    result = _validator(ak_trust=trust).validate(raw, NONCE)
    assert any("isProduction" in w for w in result.warnings)


def test_pinned_ak_names_also_apply() -> None:
    key = rsa_key()
    raw = make_document(key, nonce=NONCE, instance_info=INSTANCE_INFO, event_log=gce_event_log())
    pin = {"acceptedAttestationKeys": ["000b" + "00" * 32]}
    with pytest.raises(UntrustedKey, match="accepted"):
        _validator(identity_client=_StaticIdentity(key), config=pin).validate(raw, NONCE)


def test_issuer_needs_the_cloud() -> None:
    with pytest.raises(AttestationError, match="metadata server"):
        GcpSevEsIssuer().issue(b"u", b"n")
