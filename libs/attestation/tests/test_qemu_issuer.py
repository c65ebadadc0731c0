"""The qemu-vtpm issuer on a live swtpm after the synthetic measured boot.

Every check here decodes the TPM structures itself (struct + cryptography) so that it does not
depend on the code under test: TPMT_PUBLIC of the AK, TPMT_SIGNATURE and TPMS_ATTEST of each quote.
"""

from __future__ import annotations

import hashlib
import json
import struct
import sys
from pathlib import Path
from typing import Any

import attrs
import pytest
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import padding, rsa

from starlock.attestation.document import AttestationDocument
from starlock.attestation.interfaces import Issuer
from starlock.attestation.measured_boot import BootEvent, replay, run_synthetic_boot
from starlock.attestation.qemu import QemuVtpmIssuer
from starlock.attestation.swtpm import Swtpm
from starlock.attestation.tpm_device import TpmDevice, TpmError, TpmSupportMissing
from starlock.attestation.variant import Variant

SHA1, SHA256, SHA384, SHA512 = 0x0004, 0x000B, 0x000C, 0x000D
_DIGEST_SIZE = {SHA1: 20, SHA256: 32, SHA384: 48, SHA512: 64}


# --- independent decoders ----------------------------------------------------------------


class _Reader:
    def __init__(self, data: bytes) -> None:
        self.data, self.pos = data, 0

    def take(self, n: int) -> bytes:
        assert self.pos + n <= len(self.data), "structure truncated"
        out = self.data[self.pos : self.pos + n]
        self.pos += n
        return out

    def u8(self) -> int:
        return self.take(1)[0]

    def u16(self) -> int:
        return int(struct.unpack(">H", self.take(2))[0])

    def u32(self) -> int:
        return int(struct.unpack(">I", self.take(4))[0])

    def u64(self) -> int:
        return int(struct.unpack(">Q", self.take(8))[0])

    def tpm2b(self) -> bytes:
        return self.take(self.u16())

    def done(self) -> bool:
        return self.pos == len(self.data)


@attrs.frozen
class RsaPublic:
    type: int
    name_alg: int
    attributes: int
    auth_policy: bytes
    symmetric: int
    scheme: int
    scheme_hash: int
    key_bits: int
    exponent: int
    modulus: bytes


def parse_rsa_tpmt_public(data: bytes) -> RsaPublic:
    r = _Reader(data)
    type_, name_alg, attributes, policy = r.u16(), r.u16(), r.u32(), r.tpm2b()
    symmetric = r.u16()
    assert symmetric == 0x0010, "AK must have a NULL symmetric definition"
    scheme = r.u16()
    scheme_hash = r.u16() if scheme != 0x0010 else 0
    key_bits, exponent, modulus = r.u16(), r.u32(), r.tpm2b()
    assert r.done(), "trailing bytes after TPMT_PUBLIC"
    return RsaPublic(type_, name_alg, attributes, policy, symmetric, scheme, scheme_hash, key_bits, exponent, modulus)


def parse_signature(data: bytes) -> tuple[int, int, bytes]:
    r = _Reader(data)
    sig_alg, hash_alg, sig = r.u16(), r.u16(), r.tpm2b()
    assert r.done()
    return sig_alg, hash_alg, sig


@attrs.frozen
class QuoteInfo:
    extra_data: bytes
    selection: dict[int, list[int]]
    pcr_digest: bytes


def parse_quote_attest(data: bytes) -> QuoteInfo:
    r = _Reader(data)
    assert r.u32() == 0xFF544347, "magic is not TPM_GENERATED_VALUE"
    assert r.u16() == 0x8018, "type is not TPM_ST_ATTEST_QUOTE"
    r.tpm2b()  # qualifiedSigner
    extra = r.tpm2b()
    r.take(17)  # clockInfo
    r.u64()  # firmwareVersion
    selection: dict[int, list[int]] = {}
    for _ in range(r.u32()):
        alg, size = r.u16(), r.u8()
        mask = r.take(size)
        selection[alg] = [i for i in range(8 * size) if mask[i // 8] >> (i % 8) & 1]
    digest = r.tpm2b()
    assert r.done()
    return QuoteInfo(extra, selection, digest)


def ak_public_key(ak_pub: bytes) -> rsa.RSAPublicKey:
    area = parse_rsa_tpmt_public(ak_pub)
    exponent = area.exponent or 65537
    return rsa.RSAPublicNumbers(exponent, int.from_bytes(area.modulus, "big")).public_key()


# --- fixtures ----------------------------------------------------------------------------


@pytest.fixture
def booted(swtpm: Swtpm, tpm2_pytss: Any, tmp_path: Path) -> tuple[Swtpm, Path, list[BootEvent]]:
    log_path = tmp_path / "binary_bios_measurements"
    events = run_synthetic_boot(swtpm.tcti, log_path)
    return swtpm, log_path, events


def _issue(booted: tuple[Swtpm, Path, list[BootEvent]], user_data: bytes, nonce: bytes) -> AttestationDocument:
    tpm, log_path, _events = booted
    raw = QemuVtpmIssuer(tpm.tcti, log_path).issue(user_data, nonce)
    return AttestationDocument.from_json(raw)


# --- tests -------------------------------------------------------------------------------


def test_issuer_protocol_and_variant() -> None:
    issuer = QemuVtpmIssuer("swtpm:host=127.0.0.1,port=1")  # nothing is opened until issue()
    assert isinstance(issuer, Issuer)
    assert issuer.variant is Variant.QEMU_VTPM


def test_document_shape(booted: tuple[Swtpm, Path, list[BootEvent]]) -> None:
    tpm, log_path, _ = booted
    raw = QemuVtpmIssuer(tpm.tcti, log_path).issue(b"user data", b"nonce")
    obj = json.loads(raw)
    assert list(obj) == ["Attestation", "InstanceInfo", "UserData"]
    assert obj["InstanceInfo"] is None  # qemu-vtpm: empty instance info, Go writes null
    assert list(obj["Attestation"]) == ["ak_pub", "quotes", "event_log", "TeeAttestation"]
    doc = AttestationDocument.from_json(raw)
    assert doc.user_data == b"user data"
    assert doc.instance_info == b""
    assert doc.attestation.event_log == log_path.read_bytes()


def test_quotes_verify_and_bind_the_nonce(booted: tuple[Swtpm, Path, list[BootEvent]]) -> None:
    user_data, nonce = b"hash of the aTLS public key", b"fresh nonce from the peer"
    doc = _issue(booted, user_data, nonce)
    key = ak_public_key(doc.attestation.ak_pub)
    expected_extra = hashlib.sha256(b"" + hashlib.sha256(user_data + nonce).digest()).digest()

    with TpmDevice(booted[0].tcti) as tpm:
        banks = tpm.pcr_banks()
        fresh = {bank.hash: dict(bank.pcrs) for bank in tpm.read_all_pcrs()}
    # One quote per allocated bank, SHA-1 included, in the TPM's bank order.
    assert [q.pcrs.hash for q in doc.attestation.quotes] == list(banks)
    assert SHA1 in banks and SHA256 in banks

    for quote in doc.attestation.quotes:
        sig_alg, hash_alg, sig = parse_signature(quote.raw_sig)
        assert (sig_alg, hash_alg) == (0x0014, SHA256)  # RSASSA with SHA-256
        key.verify(sig, quote.quote, padding.PKCS1v15(), hashes.SHA256())

        info = parse_quote_attest(quote.quote)
        assert info.extra_data == expected_extra
        assert info.selection == {quote.pcrs.hash: list(range(24))}
        assert list(quote.pcrs.pcrs) == list(range(24))
        assert dict(quote.pcrs.pcrs) == fresh[quote.pcrs.hash]
        assert all(len(v) == _DIGEST_SIZE[quote.pcrs.hash] for v in quote.pcrs.pcrs.values())
        assert info.pcr_digest == hashlib.sha256(b"".join(quote.pcrs.pcrs.values())).digest()


def test_tampered_quote_does_not_verify(booted: tuple[Swtpm, Path, list[BootEvent]]) -> None:
    doc = _issue(booted, b"u", b"n")
    quote = doc.attestation.quotes[0]
    _, _, sig = parse_signature(quote.raw_sig)
    tampered = bytearray(quote.quote)
    tampered[-1] ^= 1
    with pytest.raises(InvalidSignature):
        ak_public_key(doc.attestation.ak_pub).verify(sig, bytes(tampered), padding.PKCS1v15(), hashes.SHA256())


def test_event_log_replays_to_quoted_pcrs(booted: tuple[Swtpm, Path, list[BootEvent]]) -> None:
    _, log_path, events = booted
    doc = _issue(booted, b"u", b"n")
    for quote in doc.attestation.quotes:
        assert dict(quote.pcrs.pcrs) == replay(events, quote.pcrs.hash)
    # PCRs the boot measured are no longer at their reset value; PCR 15 (node lock) is untouched.
    sha256 = doc.attestation.quote_for(SHA256)
    assert sha256 is not None
    for pcr in (0, 4, 5, 7, 8, 9):
        assert sha256.pcrs.pcrs[pcr] != bytes(32)
    assert sha256.pcrs.pcrs[15] == bytes(32)
    # Crypto-agile header: SHA-1-format EV_NO_ACTION event with the Spec ID Event03 structure.
    log = log_path.read_bytes()
    assert struct.unpack("<II", log[:8]) == (0, 0x3)
    assert log[8:28] == bytes(20)
    assert log[32:48] == b"Spec ID Event03\x00"


def test_different_nonces_give_different_documents(booted: tuple[Swtpm, Path, list[BootEvent]]) -> None:
    first = _issue(booted, b"same user data", b"nonce-1")
    second = _issue(booted, b"same user data", b"nonce-2")
    assert first.attestation.ak_pub == second.attestation.ak_pub  # the same (primary) AK
    for a, b in zip(first.attestation.quotes, second.attestation.quotes, strict=True):
        assert parse_quote_attest(a.quote).extra_data != parse_quote_attest(b.quote).extra_data
        assert a.raw_sig != b.raw_sig
    assert first.to_json() != second.to_json()


def test_ak_has_go_tpm_tools_default_rsa_template(booted: tuple[Swtpm, Path, list[BootEvent]]) -> None:
    """go-tpm-tools AKTemplateRSA: RSA-2048, SHA-256 name, FlagSignerDefault, RSASSA-SHA256."""
    area = parse_rsa_tpmt_public(_issue(booted, b"u", b"n").attestation.ak_pub)
    assert area.type == 0x0001  # TPM_ALG_RSA
    assert area.name_alg == SHA256
    fixed_tpm, fixed_parent, sensitive_origin, user_with_auth = 0x2, 0x10, 0x20, 0x40
    no_da, restricted, decrypt, sign = 0x400, 0x10000, 0x20000, 0x40000
    assert area.attributes == fixed_tpm | fixed_parent | sensitive_origin | user_with_auth | restricted | sign
    assert area.attributes == 0x00050072
    assert not area.attributes & (no_da | decrypt)
    assert area.auth_policy == b""
    assert area.symmetric == 0x0010  # TPM_ALG_NULL
    assert area.scheme == 0x0014  # TPM_ALG_RSASSA
    assert area.scheme_hash == SHA256
    assert area.key_bits == 2048
    assert area.exponent == 0  # default public exponent 65537
    assert len(area.modulus) == 256
    assert ak_public_key(_issue(booted, b"u", b"n").attestation.ak_pub).public_numbers().e == 65537


def test_ak_is_stable_across_reboots(booted: tuple[Swtpm, Path, list[BootEvent]]) -> None:
    tpm, _, _ = booted
    before = _issue(booted, b"u", b"n").attestation.ak_pub
    tpm.restart()
    after = AttestationDocument.from_json(QemuVtpmIssuer(tpm.tcti, include_event_log=False).issue(b"u", b"n"))
    assert after.attestation.ak_pub == before
    assert after.attestation.event_log == b""


def test_endorsement_hierarchy_ak_differs_but_has_same_template(booted: tuple[Swtpm, Path, list[BootEvent]]) -> None:
    tpm, log_path, _ = booted
    owner = _issue(booted, b"u", b"n").attestation.ak_pub
    raw = QemuVtpmIssuer(tpm.tcti, log_path, ak_hierarchy="endorsement").issue(b"u", b"n")
    endorsement = AttestationDocument.from_json(raw).attestation.ak_pub
    assert endorsement != owner
    assert endorsement[:22] == owner[:22]  # everything up to the modulus


def test_missing_event_log_is_a_clear_error(swtpm: Swtpm, tpm2_pytss: Any, tmp_path: Path) -> None:
    with pytest.raises(TpmError, match="cannot read the TCG event log"):
        QemuVtpmIssuer(swtpm.tcti, tmp_path / "absent").issue(b"u", b"n")


def test_synthetic_boot_refuses_a_booted_tpm(booted: tuple[Swtpm, Path, list[BootEvent]], tmp_path: Path) -> None:
    with pytest.raises(TpmError, match="already booted"):
        run_synthetic_boot(booted[0].tcti, tmp_path / "second-log")
    assert not (tmp_path / "second-log").exists()


def test_unreachable_tpm_is_a_clear_error(swtpm: Swtpm, tpm2_pytss: Any) -> None:
    tcti = swtpm.tcti
    swtpm.stop()
    with pytest.raises(TpmError, match="cannot open the TPM"):
        QemuVtpmIssuer(tcti, include_event_log=False).issue(b"u", b"n")


def test_missing_tpm2_pytss_is_a_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "tpm2_pytss", None)
    with pytest.raises(TpmSupportMissing, match=r"starlock-attestation\[tpm\]"):
        TpmDevice("swtpm:host=127.0.0.1,port=1")
