"""SEV-SNP cases from the real vectors: each as given, byte flips of the report and of its
certificates, validity edges, wrong and swapped chains, and policy edits."""

from __future__ import annotations

import base64
import datetime
import json
import random
from collections.abc import Iterator
from pathlib import Path

import attrs
from _common import Case, flip
from _snp import FIELDS, ROOTS, UTC, SnpBase, der, make_case
from cryptography.hazmat.primitives import hashes

from starlock.attestation.config import SnpVersions
from starlock.attestation.snp import VLEK_GUID, Product, SnpPolicy, TcbVersion, split_extended_report
from starlock.attestation.trust import load_certificates

# --- the real vectors -------------------------------------------------------------------------------


def _ders(pem: bytes) -> list[bytes]:
    return [der(c) for c in load_certificates(pem)]


def vector_bases(v: Path) -> list[SnpBase]:
    """The SNP vectors of the MANIFEST, each with a time and a policy under which it is ACCEPTED."""
    mid = datetime.datetime(2026, 1, 1, tzinfo=UTC)
    milan_ask, milan_ark = _ders((v / ROOTS / "ask_ark_milan.pem").read_bytes())
    asvk, _ = _ders((v / ROOTS / "ask_ark_milan_vlek.pem").read_bytes())
    g, t = v / "snp/gosevguest-milan-vcek", v / "snp/trustee-milan-vcek"
    a = v / "azure-snp/constellation-azure-snp-2023"
    w, x = v / "aws-snp/constellation-aws-vlek-2025-05", v / "aws-snp/constellation-aws-2023-06-extreport"
    ev1 = json.loads((v / "azure-snp/trustee-az-snp-vtpm-2025-milan/evidence-v1.json").read_text())

    def b64url(text: str) -> bytes:
        return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))

    x_report, x_table = split_extended_report(
        bytes.fromhex((x / "report_valid.hex").read_text()) + bytes.fromhex((x / "certs_valid.hex").read_text())
    )
    x_vlek = x_table.get(VLEK_GUID)
    assert x_vlek is not None
    hcl = b64url(ev1["hcl_report"])
    common = {"intermediate": milan_ask, "ark": milan_ark, "anchor": milan_ark, "product": Product.MILAN}
    common = {**common, "trust": None}
    vlek = {**common, "intermediate": asvk}
    digest = bytes.fromhex
    return [
        SnpBase(
            "gosevguest-milan-vcek",
            (g / "attestation.bin").read_bytes(),
            (g / "vcek.testcer").read_bytes(),
            at=mid,
            policy=SnpPolicy(allow_debug=True),
            **common,
        ),
        SnpBase(
            "trustee-milan-vcek",
            (t / "test-report.bin").read_bytes(),
            (t / "test-vcek.der").read_bytes(),
            at=mid,
            policy=SnpPolicy(
                accepted_id_key_digests=[
                    digest(
                        "0356215882a825279a85b300b0b742931d113bf7e32dde2e50ffde7ec743ca49"
                        "1ecdd7f336dc28a6e0b2bb57af7a44a3"
                    )
                ]
            ),
            **common,
        ),
        SnpBase(
            "constellation-azure-snp-2023",
            (a / "attestation.bin").read_bytes()[:0x4A0],
            (a / "vcek.cert").read_bytes(),
            at=mid,
            policy=SnpPolicy(
                accepted_id_key_digests=[
                    digest(
                        "57e229e0ffe5fa92d0faddff6cae0e61c926fc9ef9afd20a8b8cfcf7129db933"
                        "8cbe5bf3f6987733a2bf65d06dc38fc1"
                    )
                ]
            ),
            **common,
        ),
        SnpBase(
            "trustee-az-snp-vtpm-2025-milan",
            hcl[0x20:0x4C0],
            b64url(ev1["vcek"]),
            at=mid,
            policy=SnpPolicy(),
            **common,
        ),
        SnpBase(
            "constellation-aws-vlek-2025-05",
            base64.b64decode((w / "report.txt").read_text()),
            _ders((w / "vlek.pem").read_bytes())[0],
            at=datetime.datetime(2025, 6, 1, tzinfo=UTC),
            policy=SnpPolicy(),
            **vlek,
        ),
        SnpBase(
            "constellation-aws-2023-06-extreport",
            x_report,
            x_vlek,
            at=datetime.datetime(2023, 10, 1, tzinfo=UTC),
            policy=SnpPolicy(),
            **vlek,
        ),
    ]


def _der_regions(data: bytes) -> list[tuple[int, int, str]]:
    """(start, end, name) of a certificate's DER: outer header, tbs, signatureAlgorithm, signature."""

    def element(pos: int) -> tuple[int, int]:
        length, start = data[pos + 1], pos + 2
        if length & 0x80:
            n = length & 0x7F
            length, start = int.from_bytes(data[start : start + n], "big"), start + n
        return start, start + length

    body, _ = element(0)
    _, tbs_end = element(body)
    _, alg_end = element(tbs_end)
    return [
        (0, body, "outer-header"),
        (body, tbs_end, "tbs"),
        (tbs_end, alg_end, "sigalg"),
        (alg_end, len(data), "sig"),
    ]


def _cert_flip(rng: random.Random, data: bytes) -> tuple[bytes, str]:
    regions = _der_regions(data)
    start, end, name = rng.choice(regions)
    offset = rng.randrange(start, end)
    return flip(data, offset, 1 << rng.randrange(8)), name


def vector_structured(bases: list[SnpBase], v: Path) -> Iterator[Case]:
    """Fixed cases per vector: as given, times at the validity edges, wrong chains, policy edits."""
    genoa_ask, genoa_ark = _ders((v / ROOTS / "ask_ark_genoa.pem").read_bytes())
    turin_ask, turin_ark = _ders((v / ROOTS / "ask_ark_turin_vcek.pem").read_bytes())
    milan_ask, _ = _ders((v / ROOTS / "ask_ark_milan.pem").read_bytes())
    asvk, _ = _ders((v / ROOTS / "ask_ark_milan_vlek.pem").read_bytes())
    sec = datetime.timedelta(seconds=1)
    for base in bases:
        p = f"snp.vector.{base.label}"
        yield make_case(f"{p}#as-given", "snp.vector.as-given", base)
        # The high nibble of the stepping byte: signed, but dropped by go-sev-guest's protobuf (README).
        yield make_case(f"{p}#flip@0x18a^10", "snp.vector.flip.cpuid", base, report=flip(base.report, 0x18A, 0x10))
        (signer,) = load_certificates(base.signer)
        for name, when in (
            ("signer-not-before", signer.not_valid_before_utc),
            ("signer-not-after", signer.not_valid_after_utc),
            ("signer-not-before-1s", signer.not_valid_before_utc - sec),
            ("signer-not-after+1s", signer.not_valid_after_utc + sec),
            ("far-future", datetime.datetime(2100, 1, 1, tzinfo=UTC)),
        ):
            yield make_case(f"{p}#time.{name}", f"snp.vector.time.{name}", base, at=when)
        other_intermediate = milan_ask if base.intermediate == asvk else asvk
        for name, changes in (
            ("genoa-ask", {"intermediate": genoa_ask}),
            ("genoa-chain", {"intermediate": genoa_ask, "ark": genoa_ark}),
            ("genoa-chain-and-anchor", {"intermediate": genoa_ask, "ark": genoa_ark, "anchor": genoa_ark}),
            ("turin-chain-and-anchor", {"intermediate": turin_ask, "ark": turin_ark, "anchor": turin_ark}),
            ("vcek-vlek-intermediate-mixup", {"intermediate": other_intermediate}),
            ("ask-ark-swapped", {"intermediate": base.ark, "ark": base.intermediate}),
            ("configured-product-genoa", {"product": Product.GENOA, "ark": genoa_ark, "anchor": genoa_ark}),
            ("signer-is-intermediate", {"signer": base.intermediate}),
        ):
            yield make_case(f"{p}#chain.{name}", f"snp.vector.chain.{name}", base, **changes)
        for name, policy in _policy_edits(base):
            yield make_case(f"{p}#policy.{name}", f"snp.vector.policy.{name}", base, policy=policy)


def _policy_edits(base: SnpBase) -> Iterator[tuple[str, SnpPolicy]]:
    raw = base.report
    pol = base.policy
    ev = attrs.evolve
    launch = TcbVersion(int.from_bytes(raw[0x1F0:0x1F8], "little")).parts(base.product.tcb_layout)
    reported = TcbVersion(int.from_bytes(raw[0x180:0x188], "little")).parts(base.product.tcb_layout)
    yield "report-data-expected", ev(pol, report_data=raw[0x50:0x90])
    yield "report-data-other", ev(pol, report_data=flip(raw[0x50:0x90], 63, 1))
    yield "measurement-expected", ev(pol, measurement=raw[0x90:0xC0])
    yield "measurement-other", ev(pol, measurement=flip(raw[0x90:0xC0], 0, 0x80))
    yield "host-data-other", ev(pol, host_data=flip(raw[0xC0:0xE0], 31, 1))
    yield "vmpl-1", ev(pol, vmpl=1)
    yield "vmpl-unchecked", ev(pol, vmpl=None)
    yield "no-debug", ev(pol, allow_debug=False)
    yield "no-smt", ev(pol, allow_smt=False)
    yield "abi-above", ev(pol, minimum_abi=(raw[0x9], raw[0x8] + 1))
    yield "abi-equal", ev(pol, minimum_abi=(raw[0x9], raw[0x8]))
    yield "no-provisional", ev(pol, permit_provisional_firmware=False)
    yield "guest-svn-equal", ev(pol, minimum_guest_svn=int.from_bytes(raw[4:8], "little"))
    yield "guest-svn-above", ev(pol, minimum_guest_svn=int.from_bytes(raw[4:8], "little") + 1)
    yield "id-key-other", ev(pol, accepted_id_key_digests=[bytes(47) + b"\x01"])
    yield "id-key-empty-list", ev(pol, accepted_id_key_digests=[])
    for which, parts, attr in (
        ("launch", launch, "minimum_launch_tcb"),
        ("reported", reported, "minimum_reported_tcb"),
    ):
        exact = SnpVersions(parts.bootloader, parts.tee, parts.snp, parts.microcode)
        yield f"min-{which}-tcb-equal", ev(pol, **{attr: exact})
        for comp in ("bootloader", "tee", "snp", "microcode"):
            value = getattr(parts, comp)
            if value < 255:
                yield f"min-{which}-tcb-{comp}+1", ev(pol, **{attr: attrs.evolve(exact, **{comp: value + 1})})


def vector_flips(bases: list[SnpBase], rng: random.Random) -> Iterator[Case]:
    """Endless: one bit of the report flipped (any offset, signed or not)."""
    while True:
        base = rng.choice(bases)
        start, end, name = rng.choice(FIELDS)
        offset = rng.randrange(start, end)
        mask = 1 << rng.randrange(8)
        yield make_case(
            f"snp.vector.{base.label}#flip@0x{offset:03x}^{mask:02x}",
            f"snp.vector.flip.{name}",
            base,
            report=flip(base.report, offset, mask),
        )


def vector_cert_flips(bases: list[SnpBase], rng: random.Random) -> Iterator[Case]:
    """Endless: one bit of the signer, the ASK/ASVK or the evidence's ARK flipped."""
    while True:
        base = rng.choice(bases)
        which = rng.choice(("signer", "intermediate", "ark"))
        data, region = _cert_flip(rng, getattr(base, which))
        digest = hashes.Hash(hashes.SHA256())
        digest.update(data)
        yield make_case(
            f"snp.vector.{base.label}#{which}-flip.{digest.finalize().hex()[:12]}",
            f"snp.vector.{which}-flip.{region}",
            base,
            **{which: data},
        )
