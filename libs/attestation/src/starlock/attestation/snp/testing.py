"""Test support: a synthetic AMD-like key hierarchy and signed synthetic SNP reports.

**Never trust this in production.** The roots generated here are not pinned; verifying against
them needs an explicit opt-in (:meth:`SyntheticAmd.trust_store`). They follow AMD's certificate
profile (spec §2): ARK (RSA, self-signed) -> ASK / ASVK (RSA) -> VCEK / VLEK (ECDSA P-384), every
certificate signed with RSASSA-PSS SHA-384 (MGF1-SHA-384, salt 48), AMD subjects, and the KDS
extensions (structVersion, productName, SPLs 1.3.6.1.4.1.3704.1.3.x, hwID or CSP_ID). So tests
can build reports whose only fault is one field.

RSA key generation is slow (about a second per 4096-bit key); keys are generated once per
process and shared by every product line's hierarchy.

:class:`CaProfile` builds ARK / ASK / ASVK variants that break one rule of AMD's CA profile at a
time (validity, X.509 version, signature algorithm and hash, CN, basicConstraints, keyUsage), for
tests of :mod:`starlock.attestation.snp.caprofile` and of the chain's validity checks.
"""

from __future__ import annotations

import datetime
import functools
import struct
from collections.abc import Mapping

import attrs
from cryptography import x509
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec, padding, rsa
from cryptography.hazmat.primitives.asymmetric.utils import decode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding
from cryptography.x509.oid import NameOID

from starlock.attestation.snp.certs import (
    AMD_LOCATION,
    OID_BL_SPL,
    OID_CSP_ID,
    OID_FMC_SPL,
    OID_HWID,
    OID_PRODUCT_NAME,
    OID_SNP_SPL,
    OID_STRUCT_VERSION,
    OID_TEE_SPL,
    OID_UCODE_SPL,
    intermediate_cn,
)
from starlock.attestation.snp.report import REPORT_SIZE, SIGNED_SIZE, Product, SigningKey, TcbParts, TcbVersion
from starlock.attestation.trust import TrustStore

__all__ = ["CaProfile", "SyntheticAmd", "build_report", "sign_report", "spl_extensions"]

_PSS = padding.PSS(mgf=padding.MGF1(hashes.SHA384()), salt_length=48)
_EPOCH = datetime.datetime(2020, 1, 1, tzinfo=datetime.UTC)
_FAR = datetime.datetime(2049, 1, 1, tzinfo=datetime.UTC)
_ZERO_TCB = TcbVersion(0)


@functools.cache
def _rsa_key(role: str, bits: int) -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=bits)


def _amd_name(cn: str) -> x509.Name:
    """AMD's subject with ``cn``; an empty ``cn`` leaves the CN attribute out."""
    common = [x509.NameAttribute(NameOID.COMMON_NAME, cn)] if cn else []
    return x509.Name(common + [x509.NameAttribute(o, v) for o, v in AMD_LOCATION])


@attrs.frozen
class CaProfile:
    """How a synthetic ARK, ASK or ASVK is built. The defaults follow AMD's profile; tests change one.

    ``version_1``: an X.509 v1 certificate (no version field, hence no extensions). ``pss``: False
    signs with PKCS#1 v1.5. ``hash``: the signature hash. ``cn``: the subject CN instead of the
    role's ("" for none). ``key_cert_sign`` / ``ca``: None leaves keyUsage / basicConstraints out.
    """

    not_before: datetime.datetime = _EPOCH
    not_after: datetime.datetime = _FAR
    version_1: bool = False
    pss: bool = True
    hash: hashes.SHA256 | hashes.SHA384 | hashes.SHA512 = attrs.field(factory=hashes.SHA384)
    cn: str | None = None
    key_cert_sign: bool | None = True
    ca: bool | None = True

    def padding(self) -> padding.PSS | padding.PKCS1v15:
        if not self.pss:
            return padding.PKCS1v15()
        return padding.PSS(mgf=padding.MGF1(self.hash), salt_length=self.hash.digest_size)


_AMD_PROFILE = CaProfile()


def _der_int(value: int) -> bytes:
    body = value.to_bytes(max(1, (value.bit_length() + 8) // 8), "big", signed=True)
    return bytes([0x02, len(body)]) + body


def _ia5(text: str) -> bytes:
    data = text.encode("ascii")
    return bytes([0x16, len(data)]) + data


def spl_extensions(tcb: TcbParts, *, fmc: bool = False) -> dict[str, bytes]:
    """The SPL extension values (DER INTEGERs) for ``tcb``; ``fmc`` adds fmcSPL (Turin)."""
    values = {
        OID_BL_SPL: _der_int(tcb.bootloader),
        OID_TEE_SPL: _der_int(tcb.tee),
        OID_SNP_SPL: _der_int(tcb.snp),
        OID_UCODE_SPL: _der_int(tcb.microcode),
        **{f"1.3.6.1.4.1.3704.1.3.{n}": _der_int(0) for n in (4, 5, 6, 7)},
    }
    if fmc:
        values[OID_FMC_SPL] = _der_int(tcb.fmc or 0)
    return values


@attrs.frozen
class SyntheticAmd:
    """One product line's synthetic ARK, ASK and ASVK (certificates and keys)."""

    product: Product
    ark: x509.Certificate
    ask: x509.Certificate
    asvk: x509.Certificate
    ark_key: rsa.RSAPrivateKey = attrs.field(repr=False)
    ask_key: rsa.RSAPrivateKey = attrs.field(repr=False)
    asvk_key: rsa.RSAPrivateKey = attrs.field(repr=False)

    @classmethod
    def generate(
        cls,
        product: Product = Product.MILAN,
        *,
        key_size: int = 4096,
        ark: CaProfile = _AMD_PROFILE,
        ask: CaProfile = _AMD_PROFILE,
        asvk: CaProfile = _AMD_PROFILE,
    ) -> SyntheticAmd:
        """A hierarchy for ``product``; ``ark`` / ``ask`` / ``asvk`` change how each CA is built."""
        ark_key, ask_key, asvk_key = (_rsa_key(role, key_size) for role in ("ark", "ask", "asvk"))
        ark_name = _amd_name(f"ARK-{product.value}" if ark.cn is None else ark.cn)
        ark_cert = _ca(ark_name, ark_name, ark_key, ark_key, ark)
        ask_cn = intermediate_cn(product, SigningKey.VCEK) if ask.cn is None else ask.cn
        asvk_cn = intermediate_cn(product, SigningKey.VLEK) if asvk.cn is None else asvk.cn
        ask_cert = _ca(_amd_name(ask_cn), ark_name, ask_key, ark_key, ask)
        asvk_cert = _ca(_amd_name(asvk_cn), ark_name, asvk_key, ark_key, asvk)
        return cls(product, ark_cert, ask_cert, asvk_cert, ark_key, ask_key, asvk_key)

    def trust_store(self) -> TrustStore:
        """A store with no pins that trusts this ARK explicitly (the opt-in tests must make)."""
        store = TrustStore(pins=())
        store.add(self.ark, explicitly_trusted=True)
        return store

    def chain(self, signing_key: SigningKey = SigningKey.VCEK) -> list[x509.Certificate]:
        """[ASK or ASVK, ARK], as in a KDS ``cert_chain``."""
        return [self.asvk if signing_key is SigningKey.VLEK else self.ask, self.ark]

    def chain_pem(self, signing_key: SigningKey = SigningKey.VCEK) -> bytes:
        return b"".join(c.public_bytes(Encoding.PEM) for c in self.chain(signing_key))

    def issue(
        self,
        signing_key: SigningKey,
        tcb: TcbParts,
        *,
        hwid: bytes | None = None,
        hwid_encoding: str = "raw",
        csp_id: str = "CN=cc-test.example",
        product_name: str | None = None,
        not_before: datetime.datetime = _EPOCH,
        not_after: datetime.datetime = _FAR,
        key: ec.EllipticCurvePrivateKey | None = None,
        extra: Mapping[str, bytes] | None = None,
        omit: tuple[str, ...] = (),
    ) -> tuple[x509.Certificate, ec.EllipticCurvePrivateKey]:
        """A VCEK (with ``hwid``) or VLEK (with ``csp_id``) for ``tcb``, signed by the ASK/ASVK.

        ``extra`` adds or replaces extension values by OID; ``omit`` drops extensions by OID.
        """
        key = key if key is not None else ec.generate_private_key(ec.SECP384R1())
        turin = self.product is Product.TURIN
        values: dict[str, bytes] = {OID_STRUCT_VERSION: _der_int(1 if turin else 0)}
        if product_name is None:
            product_name = self.product.value if signing_key is SigningKey.VLEK else f"{self.product.value}-B0"
        values[OID_PRODUCT_NAME] = _ia5(product_name)
        values.update(spl_extensions(tcb, fmc=turin))
        if signing_key is SigningKey.VCEK:
            raw = hwid if hwid is not None else bytes(range(8 if turin else 64))
            values[OID_HWID] = bytes([0x04, len(raw)]) + raw if hwid_encoding == "octet" else raw
        else:
            values[OID_CSP_ID] = _ia5(csp_id)
        values.update(extra or {})
        issuer, issuer_key = (self.asvk, self.asvk_key) if signing_key is SigningKey.VLEK else (self.ask, self.ask_key)
        builder = (
            x509.CertificateBuilder()
            .subject_name(_amd_name("SEV-VLEK" if signing_key is SigningKey.VLEK else "SEV-VCEK"))
            .issuer_name(issuer.subject)
            .public_key(key.public_key())
            .serial_number(1)  # real VCEKs use 0, which cryptography's builder refuses
            .not_valid_before(not_before)
            .not_valid_after(not_after)
        )
        for oid, value in values.items():
            if oid not in omit:
                builder = builder.add_extension(x509.UnrecognizedExtension(x509.ObjectIdentifier(oid), value), False)
        cert = builder.sign(issuer_key, hashes.SHA384(), rsa_padding=_PSS)
        return cert, key


def _ca(
    subject: x509.Name,
    issuer: x509.Name,
    key: rsa.RSAPrivateKey,
    issuer_key: rsa.RSAPrivateKey,
    profile: CaProfile = _AMD_PROFILE,
) -> x509.Certificate:
    builder = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(issuer)
        .public_key(key.public_key())
        .serial_number(0x10000)
        .not_valid_before(profile.not_before)
        .not_valid_after(profile.not_after)
    )
    if profile.key_cert_sign is not None:
        usage = x509.KeyUsage(
            digital_signature=False,
            content_commitment=False,
            key_encipherment=False,
            data_encipherment=False,
            key_agreement=False,
            key_cert_sign=profile.key_cert_sign,
            crl_sign=True,
            encipher_only=False,
            decipher_only=False,
        )
        builder = builder.add_extension(usage, critical=True)
    if profile.ca is not None:
        basic = x509.BasicConstraints(ca=profile.ca, path_length=None)
        builder = builder.add_extension(basic, critical=True)
    builder = builder.add_extension(x509.SubjectKeyIdentifier.from_public_key(key.public_key()), critical=False)
    cert = builder.sign(issuer_key, profile.hash, rsa_padding=profile.padding())
    return _as_version_1(cert, issuer_key, profile) if profile.version_1 else cert


def _der_element(data: bytes, pos: int) -> tuple[int, int]:
    """(start of content, end of element) of the DER element at ``pos`` (test data: trusted)."""
    length, start = data[pos + 1], pos + 2
    if length & 0x80:
        count = length & 0x7F
        length, start = int.from_bytes(data[start : start + count], "big"), start + count
    return start, start + length


def _der(tag: int, content: bytes) -> bytes:
    size = len(content)
    if size < 0x80:
        return bytes([tag, size]) + content
    octets = size.to_bytes((size.bit_length() + 7) // 8, "big")
    return bytes([tag, 0x80 | len(octets)]) + octets + content


def _as_version_1(cert: x509.Certificate, issuer_key: rsa.RSAPrivateKey, profile: CaProfile) -> x509.Certificate:
    """``cert`` re-signed as X.509 v1: without the version field and the extensions (v1 has none)."""
    tbs = cert.tbs_certificate_bytes
    start, end = _der_element(tbs, 0)
    fields, pos = [], start
    while pos < end:
        _, stop = _der_element(tbs, pos)
        if tbs[pos] not in (0xA0, 0xA3):  # [0] version, [3] extensions
            fields.append(tbs[pos:stop])
        pos = stop
    new_tbs = _der(0x30, b"".join(fields))
    outer = cert.public_bytes(Encoding.DER)
    body, _ = _der_element(outer, 0)
    _, tbs_end = _der_element(outer, body)
    _, alg_end = _der_element(outer, tbs_end)
    signature = issuer_key.sign(new_tbs, profile.padding(), profile.hash)
    der = _der(0x30, new_tbs + outer[tbs_end:alg_end] + _der(0x03, b"\x00" + signature))
    return x509.load_der_x509_certificate(der)


def build_report(
    *,
    version: int = 2,
    guest_svn: int = 0,
    policy: int = 0x30000,
    vmpl: int = 0,
    signing_key: SigningKey = SigningKey.VCEK,
    author_key_en: bool = False,
    mask_chip_key: bool = False,
    current_tcb: TcbVersion = _ZERO_TCB,
    reported_tcb: TcbVersion = _ZERO_TCB,
    committed_tcb: TcbVersion | None = None,
    launch_tcb: TcbVersion | None = None,
    platform_info: int = 0,
    report_data: bytes = bytes(64),
    measurement: bytes = bytes(48),
    host_data: bytes = bytes(32),
    id_key_digest: bytes = bytes(48),
    author_key_digest: bytes = bytes(48),
    chip_id: bytes = bytes(64),
    cpuid: tuple[int, int, int] = (0, 0, 0),
    firmware: tuple[int, int, int] = (1, 55, 0),
    committed_firmware: tuple[int, int, int] | None = None,
    mit_vectors: tuple[int, int] = (0, 0),
    patches: Mapping[int, bytes] | None = None,
) -> bytearray:
    """An unsigned report with these fields (``firmware`` = major, minor, build); ``patches`` last."""
    raw = bytearray(REPORT_SIZE)
    signer = int(author_key_en) | int(mask_chip_key) << 1 | int(signing_key) << 2
    struct.pack_into("<IIQ", raw, 0, version, guest_svn, policy)
    struct.pack_into("<IIQQI", raw, 0x30, vmpl, 1, current_tcb.raw, platform_info, signer)
    for offset, value in (
        (0x050, report_data),
        (0x090, measurement),
        (0x0C0, host_data),
        (0x0E0, id_key_digest),
        (0x110, author_key_digest),
        (0x140, bytes(range(32))),
        (0x160, b"\xff" * 32),
        (0x1A0, chip_id),
    ):
        raw[offset : offset + len(value)] = value
    struct.pack_into("<Q", raw, 0x180, reported_tcb.raw)
    raw[0x188:0x18B] = bytes(cpuid)
    struct.pack_into("<Q", raw, 0x1E0, (committed_tcb or reported_tcb).raw)
    major, minor, build = firmware
    c_major, c_minor, c_build = committed_firmware or firmware
    raw[0x1E8:0x1F0] = bytes([build, minor, major, 0, c_build, c_minor, c_major, 0])
    struct.pack_into("<QQQ", raw, 0x1F0, (launch_tcb or reported_tcb).raw, *mit_vectors)
    for offset, value in (patches or {}).items():
        raw[offset : offset + len(value)] = value
    return raw


def sign_report(raw: bytes | bytearray, key: ec.EllipticCurvePrivateKey) -> bytes:
    """Sign ``raw[0:0x2A0]`` and store (r, s) little-endian at 0x2A0 / 0x2E8."""
    out = bytearray(raw)
    r, s = decode_dss_signature(key.sign(bytes(out[:SIGNED_SIZE]), ec.ECDSA(hashes.SHA384())))
    out[0x2A0:0x2E8] = r.to_bytes(72, "little")
    out[0x2E8:0x330] = s.to_bytes(72, "little")
    return bytes(out)
