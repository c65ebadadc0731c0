"""Builders for synthetic cloud-variant documents and certificate hierarchies, plus tests of the
shared pieces (validator registry, X.509 path validation).

Synthetic documents: a generated RSA AK signs TPMS_ATTEST quotes (builders of test_tpm_quote.py),
the event log uses the builders of test_tpm_eventlog.py, and the document is the Go encoding/json
form written by ``AttestationDocument.to_json``.
"""

from __future__ import annotations

import datetime
import hashlib
from collections.abc import Sequence
from pathlib import Path

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import rsa
from cryptography.x509.oid import NameOID
from test_tpm_eventlog import agile_log, measured
from test_tpm_quote import RSASSA, SHA256, ak_for, make_quote, pcr_values

from starlock.attestation import AttestationConfig, Measurements, Variant, load_attestation_config
from starlock.attestation._certpath import verify_path
from starlock.attestation.document import Attestation, AttestationDocument
from starlock.attestation.errors import CertificateChainError, SignatureError, UnsupportedError
from starlock.attestation.tpm import replay
from starlock.attestation.validators import SUPPORTED_VARIANTS, ValidatorAdapters, validator_for
from starlock.attestation.vtpm import make_extra_data, make_tpm_nonce

UTC = datetime.UTC
NOW = datetime.datetime(2026, 11, 25, 12, 0, tzinfo=UTC)
EV_S_CRTM_VERSION, EV_NONHOST_INFO, EV_SEPARATOR = 0x8, 0x11, 0x4


def gce_event_log(technology: int = 1, version: int = 1) -> bytes:
    """A small crypto-agile log with the GCE S-CRTM version and NonHostInfo events in PCR 0."""
    crtm = f"GCE Virtual Firmware v{version}".encode("utf-16-le") + b"\x00\x00"
    nonhost = b"GCE NonHostInfo\x00" + bytes([technology]) + bytes(15)
    return agile_log(
        measured(0, crtm, ev_type=EV_S_CRTM_VERSION),
        measured(0, nonhost, ev_type=EV_NONHOST_INFO),
        measured(0, b"\x00\x00\x00\x00", ev_type=EV_SEPARATOR),
        measured(7, b"secure boot"),
    )


def make_document(
    key: rsa.RSAPrivateKey,
    *,
    nonce: bytes,
    user_data: bytes = b"\x42" * 32,
    instance_info: bytes = b"",
    legacy: bool = False,
    event_log: bytes = b"",
    ak_cert: bytes = b"",
    intermediates: Sequence[bytes] = (),
    ak_pub: bytes | None = None,
    tpm_nonce: bytes | None = None,
) -> bytes:
    """A Go encoding/json attestation document with one SHA-256 quote signed by ``key``."""
    extra = make_extra_data(user_data, nonce)
    if tpm_nonce is None:
        tpm_nonce = extra if legacy else make_tpm_nonce(instance_info, extra)
    values = pcr_values(SHA256)
    if event_log:
        values |= replay(event_log, SHA256)
    quote = make_quote(key, SHA256, extra_data=tpm_nonce, pcrs=values)
    att = Attestation(
        ak_pub=ak_pub if ak_pub is not None else ak_for(key, RSASSA).raw,
        quotes=(quote,),
        event_log=event_log,
        ak_cert=ak_cert,
        intermediate_certs=tuple(intermediates),
    )
    return AttestationDocument(attestation=att, instance_info=instance_info, user_data=user_data).to_json()


def config_for(variant: Variant, **extra: object) -> AttestationConfig:
    return load_attestation_config({"measurements": {}, **extra}, variant, allow_unenforced=True)


# --- certificate hierarchies -----------------------------------------------------------------------


def _name(cn: str) -> x509.Name:
    return x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else [])


def make_cert(
    subject: str,
    key: rsa.RSAPrivateKey,
    issuer: str,
    issuer_key: rsa.RSAPrivateKey,
    *,
    ca: bool,
    path_length: int | None = None,
    not_before: datetime.datetime = datetime.datetime(2020, 1, 1, tzinfo=UTC),
    not_after: datetime.datetime = datetime.datetime(2040, 1, 1, tzinfo=UTC),
    extensions: Sequence[tuple[x509.ExtensionType, bool]] = (),
    serial: int = 1000,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(_name(subject))
        .issuer_name(_name(issuer))
        .public_key(key.public_key())
        .serial_number(serial)
        .not_valid_before(not_before)
        .not_valid_after(not_after)
        .add_extension(x509.BasicConstraints(ca=ca, path_length=path_length if ca else None), critical=True)
    )
    if ca:
        builder = builder.add_extension(
            x509.KeyUsage(False, False, False, False, False, True, True, False, False), critical=True
        )
    for ext, critical in extensions:
        builder = builder.add_extension(ext, critical=critical)
    return builder.sign(issuer_key, hashes.SHA256())


def rsa_keys(count: int) -> list[rsa.RSAPrivateKey]:
    return [rsa.generate_private_key(public_exponent=65537, key_size=2048) for _ in range(count)]


@pytest.fixture(scope="module")
def hierarchy() -> tuple[x509.Certificate, x509.Certificate, x509.Certificate, rsa.RSAPrivateKey]:
    root_key, ca_key, leaf_key = rsa_keys(3)
    root = make_cert("root", root_key, "root", root_key, ca=True, path_length=1)
    ca = make_cert("ca", ca_key, "root", root_key, ca=True, path_length=0)
    leaf = make_cert("leaf", leaf_key, "ca", ca_key, ca=False)
    return root, ca, leaf, leaf_key


# --- tests ---------------------------------------------------------------------------------------------


def test_registry_lists_cloud_variants() -> None:
    assert Variant.AWS_NITRO_TPM in SUPPORTED_VARIANTS
    with pytest.raises(UnsupportedError, match="no validator"):
        validator_for(AttestationConfig(Variant.AZURE_TDX, Measurements.from_obj({})))


def test_registry_passes_time_and_adapters() -> None:
    validator = validator_for(
        config_for(Variant.AWS_NITRO_TPM),
        at=NOW,
        adapters=ValidatorAdapters(allow_legacy_nonce_binding=True),
    )
    assert validator.at == NOW
    assert validator.allow_legacy_nonce_binding is True


def test_path_accepts_root_ca_leaf(hierarchy: tuple[x509.Certificate, ...]) -> None:
    root, ca, leaf, _ = hierarchy
    path = verify_path(leaf, [ca], [root], NOW)
    assert path.chain == (leaf, ca, root)


def test_path_needs_intermediate_and_root(hierarchy: tuple[x509.Certificate, ...]) -> None:
    root, ca, leaf, _ = hierarchy
    with pytest.raises(CertificateChainError, match="no trusted root or intermediate"):
        verify_path(leaf, [], [root], NOW)
    with pytest.raises(CertificateChainError, match="no trusted root configured"):
        verify_path(leaf, [ca], [], NOW)
    with pytest.raises(CertificateChainError, match="no trusted root or intermediate"):
        verify_path(leaf, [ca], [leaf], NOW)


def test_path_time_and_expired_root() -> None:
    root_key, ca_key, leaf_key = rsa_keys(3)
    root = make_cert("root", root_key, "root", root_key, ca=True, not_after=datetime.datetime(2026, 5, 24, tzinfo=UTC))
    ca = make_cert("ca", ca_key, "root", root_key, ca=True)
    leaf = make_cert("leaf", leaf_key, "ca", ca_key, ca=False)
    verify_path(leaf, [ca], [root], datetime.datetime(2026, 1, 1, tzinfo=UTC))
    with pytest.raises(
        CertificateChainError,
        match=r"trust anchor my-root .* expired on 2026-05-24T00:00:00Z; verification time is 2026-11-25T12:00:00Z",
    ):
        verify_path(leaf, [ca], [root], NOW, root_names=["my-root"])
    with pytest.raises(CertificateChainError, match="not yet valid"):
        verify_path(leaf, [ca], [root], datetime.datetime(2019, 1, 1, tzinfo=UTC))


def test_path_rejects_non_ca_issuer_and_bad_signature() -> None:
    root_key, ca_key, leaf_key, other = rsa_keys(4)
    root = make_cert("root", root_key, "root", root_key, ca=True)
    not_ca = make_cert("ca", ca_key, "root", root_key, ca=False)
    leaf = make_cert("leaf", leaf_key, "ca", ca_key, ca=False)
    with pytest.raises(CertificateChainError, match="CA is false"):
        verify_path(leaf, [not_ca], [root], NOW)
    forged = make_cert("leaf", leaf_key, "ca", other, ca=False)
    ca = make_cert("ca", ca_key, "root", root_key, ca=True)
    with pytest.raises(SignatureError):
        verify_path(forged, [ca], [root], NOW)


def test_path_length_and_critical_extensions() -> None:
    root_key, ca_key, ca2_key, leaf_key = rsa_keys(4)
    root = make_cert("root", root_key, "root", root_key, ca=True, path_length=0)
    ca = make_cert("ca", ca_key, "root", root_key, ca=True)
    ca2 = make_cert("ca2", ca2_key, "ca", ca_key, ca=True)
    leaf = make_cert("leaf", leaf_key, "ca2", ca2_key, ca=False)
    with pytest.raises(CertificateChainError, match="path length"):
        verify_path(leaf, [ca, ca2], [root], NOW)
    odd = x509.UnrecognizedExtension(x509.ObjectIdentifier("1.2.3.4"), b"\x05\x00")
    leaf2 = make_cert("leaf", leaf_key, "ca", ca_key, ca=False, extensions=[(odd, True)])
    with pytest.raises(CertificateChainError, match=r"unhandled critical extensions \['1.2.3.4'\]"):
        verify_path(leaf2, [ca], [make_cert("root", root_key, "root", root_key, ca=True)], NOW)


def test_builders_make_verifiable_documents() -> None:
    from test_tpm_quote import rsa_key

    doc = AttestationDocument.from_json(make_document(rsa_key(), nonce=b"n", event_log=gce_event_log()))
    assert doc.attestation.quotes[0].pcrs.pcrs[0] == replay(doc.attestation.event_log, SHA256)[0]
    assert hashlib.sha256(doc.user_data + b"n").digest() == make_extra_data(doc.user_data, b"n")


# --- example configs (docs/configs/<variant>.json, documented in docs/VARIANTS.md) ----------------------

_DOCS = Path(__file__).resolve().parents[1] / "docs"


@pytest.mark.parametrize(
    "variant",
    [
        Variant.AWS_NITRO_TPM,
        Variant.AWS_SEV_SNP,
        Variant.AZURE_SEV_SNP,
        Variant.AZURE_TRUSTED_LAUNCH,
        Variant.GCP_SEV_ES,
        Variant.GCP_SEV_SNP,
    ],
)
def test_example_config_loads_and_builds(variant: Variant) -> None:
    path = _DOCS / "configs" / f"{variant.value}.json"
    config = load_attestation_config(path.read_bytes(), variant)
    assert variant in SUPPORTED_VARIANTS
    assert validator_for(config, at=NOW).variant is variant
    assert f"configs/{variant.value}.json" in (_DOCS / "VARIANTS.md").read_text()


def test_cli_accepts_the_aws_vector_with_the_example_config(vectors: Path, capsys: pytest.CaptureFixture[str]) -> None:
    """MANIFEST aws-nitrotpm: ACCEPT with the AK as given (no nonce recorded); PCR0/4/7/8 values."""
    from starlock.attestation.cli import main

    doc = vectors / "aws-nitrotpm/constellation-aws-attdoc-2023-06/attdoc-aws.txt"
    config = _DOCS / "configs" / "aws-nitro-tpm.json"
    assert main(["document", str(doc), "--variant", "aws-nitro-tpm", "--config", str(config)]) == 0
    assert "ACCEPTED" in capsys.readouterr().out
