"""SEV-SNP cases, common part: report fields, a base (evidence both accept), the Go request and
Starlock's verdict. The generators are in ``_snp_vectors`` and ``_snp_synthetic``.

Both implementations see the same thing: Go gets the trusted ARK as ``TrustedRoots`` (as
Constellation passes its configured ``amdRootKey``) and the evidence's chain, from which it takes the
ASK/ASVK by subject CN and ignores the ARK (Constellation's ParseCertChain); Starlock gets the
evidence chain and a trust store that holds the same ARK.
"""

from __future__ import annotations

import datetime
from typing import Any

import attrs
from _common import Case, Verdict, b64
from cryptography import x509
from cryptography.hazmat.primitives.serialization import Encoding

from starlock.attestation.config import SnpVersions
from starlock.attestation.snp import Product, SnpPolicy, evaluate_report
from starlock.attestation.snp.testing import SyntheticAmd
from starlock.attestation.trust import TrustStore

UTC = datetime.UTC
ROOTS = "other/amd-kds-roots"

# (start, end, name) of every report field (spec §1, offsets of ATTESTATION_REPORT).
FIELDS: tuple[tuple[int, int, str], ...] = (
    (0x000, 0x004, "version"),
    (0x004, 0x008, "guest_svn"),
    (0x008, 0x010, "policy"),
    (0x010, 0x020, "family_id"),
    (0x020, 0x030, "image_id"),
    (0x030, 0x034, "vmpl"),
    (0x034, 0x038, "signature_algo"),
    (0x038, 0x040, "current_tcb"),
    (0x040, 0x048, "platform_info"),
    (0x048, 0x04C, "signer_info"),
    (0x04C, 0x050, "reserved_04c"),
    (0x050, 0x090, "report_data"),
    (0x090, 0x0C0, "measurement"),
    (0x0C0, 0x0E0, "host_data"),
    (0x0E0, 0x110, "id_key_digest"),
    (0x110, 0x140, "author_key_digest"),
    (0x140, 0x160, "report_id"),
    (0x160, 0x180, "report_id_ma"),
    (0x180, 0x188, "reported_tcb"),
    (0x188, 0x18B, "cpuid"),
    (0x18B, 0x1A0, "reserved_18b"),
    (0x1A0, 0x1E0, "chip_id"),
    (0x1E0, 0x1E8, "committed_tcb"),
    (0x1E8, 0x1EB, "current_version"),
    (0x1EB, 0x1EC, "reserved_1eb"),
    (0x1EC, 0x1EF, "committed_version"),
    (0x1EF, 0x1F0, "reserved_1ef"),
    (0x1F0, 0x1F8, "launch_tcb"),
    (0x1F8, 0x200, "launch_mit_vector"),
    (0x200, 0x208, "current_mit_vector"),
    (0x208, 0x2A0, "reserved_208"),
    (0x2A0, 0x2E8, "signature_r"),
    (0x2E8, 0x330, "signature_s"),
    (0x330, 0x4A0, "signature_reserved"),
)
SIGNED_FIELDS = tuple(f for f in FIELDS if f[1] <= 0x2A0)


def field_at(offset: int) -> str:
    return next(name for start, end, name in FIELDS if start <= offset < end)


def der(cert: x509.Certificate) -> bytes:
    return cert.public_bytes(Encoding.DER)


@attrs.frozen
class SnpBase:
    """Evidence both implementations accept under ``policy`` at ``at``."""

    label: str
    report: bytes
    signer: bytes  # DER
    intermediate: bytes  # DER: ASK or ASVK
    ark: bytes  # DER: the ARK the evidence carries
    anchor: bytes  # DER: the trusted ARK (Go's root, Starlock's trust store)
    product: Product
    at: datetime.datetime
    policy: SnpPolicy
    trust: TrustStore | None  # None: Starlock's pinned AMD roots
    key: Any = None  # the signer's private key, for re-signing (synthetic only)
    amd: SyntheticAmd | None = None


def _go_policy(p: SnpPolicy) -> dict[str, Any]:
    def versions(v: SnpVersions | None) -> list[int] | None:
        return None if v is None else [v.bootloader, v.tee, v.snp, v.microcode]

    return {
        "report_data": p.report_data.hex() if p.report_data is not None else "",
        "measurement": p.measurement.hex() if p.measurement is not None else "",
        "host_data": p.host_data.hex() if p.host_data is not None else "",
        "vmpl": p.vmpl,
        "min_launch_tcb": versions(p.minimum_launch_tcb),
        "min_tcb": versions(p.minimum_reported_tcb),
        "debug": p.allow_debug,
        "smt": p.allow_smt,
        "migrate_ma": p.allow_migrate_ma,
        "cxl": p.allow_cxl,
        "abi": list(p.minimum_abi),
        "permit_provisional": p.permit_provisional_firmware,
        "id_key_hashes": None if p.accepted_id_key_digests is None else [d.hex() for d in p.accepted_id_key_digests],
        "min_guest_svn": p.minimum_guest_svn,
    }


def _starlock(base: SnpBase) -> Verdict:
    try:
        chain = [x509.load_der_x509_certificate(c) for c in (base.intermediate, base.ark)]
    except (ValueError, x509.InvalidVersion) as exc:  # the caller's loading step, before Starlock
        return Verdict(False, "chain-parse", f"chain certificate does not parse: {exc}")
    try:
        ev = evaluate_report(base.report, base.signer, chain, base.policy, at=base.at, trust_store=base.trust)
    except Exception as exc:  # evaluate_report must not raise for bad evidence: a Starlock bug
        return Verdict(False, "crash", f"{type(exc).__name__}: {exc}")
    if ev.accepted:
        return Verdict(True, "accept", "")
    assert ev.error is not None
    return Verdict(False, ev.error.check, f"{type(ev.error).__name__}: {ev.error}")


def make_case(case_id: str, tag: str, base: SnpBase, **changes: Any) -> Case:
    b = attrs.evolve(base, **changes) if changes else base
    request = {
        "id": case_id,
        "kind": "snp",
        "report": b64(b.report),
        "signer": b64(b.signer),
        "chain": [b64(b.intermediate), b64(b.ark)],
        "ark": b64(b.anchor),
        "product": b.product.value,
        "now": b.at.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),
        "policy": _go_policy(b.policy),
    }
    return Case(case_id, tag, request, lambda: _starlock(b))
