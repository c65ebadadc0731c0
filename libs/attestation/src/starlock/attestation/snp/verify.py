"""Verify an SEV-SNP report: signature, signer chain, report-vs-certificate binding, policy.

The composition of the lower layers (spec §1, §2, §2.4): a pure function of (report bytes, signer
certificate, AMD chain, policy, verification time, trust store). :func:`verify_report` returns a
frozen :class:`SnpVerification` or raises the typed error of the first failed check;
:func:`evaluate_report` never raises for bad evidence and returns every check performed.
:class:`SnpVerifier` does the same but caches verified chains (only the validity periods are
re-checked per report), which is what a busy validator wants.
"""

from __future__ import annotations

import datetime
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

import attrs
from cryptography import x509
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.hazmat.primitives.asymmetric.utils import encode_dss_signature
from cryptography.hazmat.primitives.serialization import Encoding

from starlock.attestation.errors import (
    AttestationError,
    CertificateChainError,
    MalformedEvidence,
    PolicyViolation,
    SignatureError,
    UnsupportedError,
)
from starlock.attestation.interfaces import Check, CheckStatus
from starlock.attestation.snp.certs import (
    EndorsementKeyInfo,
    VerifiedChain,
    check_chain_validity,
    intermediate_cn,
    parse_endorsement_key,
    select_chain,
    verify_chain,
)
from starlock.attestation.snp.policy import SnpPolicy, check_policy
from starlock.attestation.snp.report import (
    REPORT_SIZE,
    SIGNED_SIZE,
    AttestationReport,
    Product,
    SigningKey,
    TcbLayout,
    parse_report,
)
from starlock.attestation.trust import TrustStore, fingerprint, load_certificates

__all__ = [
    "SnpEvaluation",
    "SnpVerification",
    "SnpVerifier",
    "check_report_binding",
    "determine_product",
    "evaluate_report",
    "report_claims",
    "verify_report",
    "verify_report_signature",
]

_ECDSA_SHA384 = ec.ECDSA(hashes.SHA384())
_T = TypeVar("_T")


def verify_report_signature(
    report: AttestationReport | bytes, key: ec.EllipticCurvePublicKey | x509.Certificate
) -> None:
    """Check the ECDSA P-384/SHA-384 signature over ``report[0x000:0x2A0]`` (r, s little-endian).

    ``report`` may be raw bytes (exactly 0x4A0; no format check, so third parties can check just
    the signature) or a parsed report. Raises :class:`SignatureError` (check ``report-signature``).
    """
    raw = report.raw if isinstance(report, AttestationReport) else bytes(report)
    if len(raw) != REPORT_SIZE:
        raise MalformedEvidence(f"report size: expected {REPORT_SIZE} bytes, got {len(raw)}", check="report-format")
    public = key.public_key() if isinstance(key, x509.Certificate) else key
    if not isinstance(public, ec.EllipticCurvePublicKey) or not isinstance(public.curve, ec.SECP384R1):
        raise SignatureError(
            f"report signer key: expected ECDSA P-384, got {type(public).__name__}", check="report-signature"
        )
    r = int.from_bytes(raw[0x2A0:0x2E8], "little")
    s = int.from_bytes(raw[0x2E8:0x330], "little")
    try:
        public.verify(encode_dss_signature(r, s), raw[:SIGNED_SIZE], _ECDSA_SHA384)
    except InvalidSignature:
        raise SignatureError(
            "report signature (ECDSA P-384/SHA-384 over bytes 0x000..0x29F) does not verify under the signer key",
            check="report-signature",
        ) from None


def determine_product(
    report: AttestationReport, endorsement: EndorsementKeyInfo | None, fallback: Product | None = None
) -> tuple[Product, str]:
    """The product line and where it came from: CPUID bytes (v3+), else productName, else ``fallback``."""
    cert_product = endorsement.product if endorsement is not None else None
    if report.version >= 3 and (report.cpuid_fam_id or report.cpuid_mod_id or report.cpuid_step):
        cpu = report.cpuid_product
        if cpu is None:
            raise UnsupportedError(
                f"report CPUID family 0x{report.cpuid_fam_id:02x} model 0x{report.cpuid_mod_id:02x} is not a "
                "known SEV-SNP product (expected Milan 19h/01h, Genoa 19h/11h or Turin 1Ah/02h)",
                check="product",
            )
        if cert_product is not None and cert_product is not cpu:
            raise CertificateChainError(
                f"product: expected the signer's productName to name {cpu.value} (from the report's CPUID), "
                f"got {endorsement.product_name if endorsement else None}",
                check="product",
            )
        return cpu, "report CPUID"
    if cert_product is not None:
        return cert_product, "certificate productName"
    if fallback is not None:
        return fallback, "policy"
    raise MalformedEvidence(
        "product: the report has no CPUID bytes and the signer no productName; give a product in the policy",
        check="product",
    )


def check_report_binding(report: AttestationReport, chain: VerifiedChain) -> list[Check]:
    """The report must describe the signer's chip and TCB (spec §2.4).

    REPORTED_TCB == the certificate's TCB (all 8 bytes; check ``reported-tcb``); certificate TCB
    <= CURRENT_TCB component-wise (``current-tcb``); for a VCEK and an unmasked CHIP_ID,
    CHIP_ID == hwID (Turin: CHIP_ID[0:8] == 8-byte hwID and CHIP_ID[8:] zero) (``chip-id``).
    """
    layout = chain.product.tcb_layout
    info = chain.endorsement
    cert_tcb = info.tcb(layout)
    if report.reported_tcb != cert_tcb:
        raise CertificateChainError(
            f"reported TCB: expected the signer certificate's {cert_tcb.describe(layout)}, "
            f"got {report.reported_tcb.describe(layout)}",
            check="reported-tcb",
        )
    checks = [Check("reported-tcb", CheckStatus.PASS, f"{cert_tcb.describe(layout)} == certificate SPLs")]
    if not cert_tcb.le(report.current_tcb):
        raise CertificateChainError(
            f"current TCB: expected at least the signer certificate's {cert_tcb.describe(layout)} "
            f"(component-wise), got {report.current_tcb.describe(layout)}",
            check="current-tcb",
        )
    checks.append(Check("current-tcb", CheckStatus.PASS, f"certificate TCB <= {report.current_tcb.describe(layout)}"))
    checks.append(_chip_id(report, chain, layout))
    return checks


def _chip_id(report: AttestationReport, chain: VerifiedChain, layout: TcbLayout) -> Check:
    hwid = chain.endorsement.hwid
    if chain.signing_key is SigningKey.VLEK or hwid is None:
        return Check("chip-id", CheckStatus.PASS, "VLEK-signed: no hwID to compare")
    if report.chip_id_masked:
        return Check("chip-id", CheckStatus.PASS, "CHIP_ID masked (all zero): not compared")
    if layout is TcbLayout.TURIN:
        expected = hwid + bytes(64 - len(hwid)) if len(hwid) == 8 else None
    else:
        expected = hwid if len(hwid) == 64 else None
    if expected is None:
        raise CertificateChainError(
            f"chip ID: a {chain.product.value} VCEK's hwID must be {8 if layout is TcbLayout.TURIN else 64} "
            f"bytes, got {len(hwid)}",
            check="chip-id",
        )
    if report.chip_id != expected:
        raise CertificateChainError(
            f"chip ID: expected the signer's hwID {hwid.hex()}"
            + (" followed by zeros" if len(hwid) == 8 else "")
            + f", got {report.chip_id.hex()}",
            check="chip-id",
        )
    return Check("chip-id", CheckStatus.PASS, f"CHIP_ID == hwID {hwid.hex()[:16]}…")


@attrs.frozen
class SnpVerification:
    """An accepted report: what it says, which product and key signed it, and every check made."""

    report: AttestationReport
    product: Product
    signing_key: SigningKey
    chain: VerifiedChain
    checks: tuple[Check, ...]
    warnings: tuple[str, ...]
    verified_at: datetime.datetime

    @property
    def signer(self) -> x509.Certificate:
        return self.chain.signer

    @property
    def endorsement(self) -> EndorsementKeyInfo:
        return self.chain.endorsement

    @property
    def id_key_accepted(self) -> bool:
        """False only when an ID-key digest mismatch was let through as a warning."""
        return not any(c.name == "id-key-digest" and c.status is CheckStatus.WARN for c in self.checks)

    def claims(self) -> dict[str, Any]:
        return report_claims(self.report, self.product, self.chain)


def report_claims(report: AttestationReport, product: Product | None, chain: VerifiedChain | None) -> dict[str, Any]:
    """JSON-compatible description of a report (and its signer, when verified)."""
    layout = product.tcb_layout if product is not None else TcbLayout.MILAN_GENOA
    r = report
    out: dict[str, Any] = {
        "version": r.version,
        "guest_svn": r.guest_svn,
        "policy": f"0x{r.policy.raw:x}",
        "vmpl": r.vmpl,
        "signing_key": r.signing_key.name,
        "platform_info": f"0x{r.platform_info.raw:x}",
        "report_data": r.report_data.hex(),
        "measurement": r.measurement.hex(),
        "host_data": r.host_data.hex(),
        "id_key_digest": r.id_key_digest.hex(),
        "author_key_digest": r.author_key_digest.hex(),
        "family_id": r.family_id.hex(),
        "image_id": r.image_id.hex(),
        "report_id": r.report_id.hex(),
        "chip_id": r.chip_id.hex(),
        "current_tcb": r.current_tcb.describe(layout),
        "reported_tcb": r.reported_tcb.describe(layout),
        "committed_tcb": r.committed_tcb.describe(layout),
        "launch_tcb": r.launch_tcb.describe(layout),
        "firmware": f"{r.current_major}.{r.current_minor} build {r.current_build}",
        "cpuid": f"{r.cpuid_fam_id:02x}/{r.cpuid_mod_id:02x}/{r.cpuid_step:02x}",
    }
    if product is not None:
        out["product"] = product.value
    if chain is not None:
        out["signer"] = {**chain.endorsement.claims(), "sha256": fingerprint(chain.signer)}
        out["root"] = {"sha256": fingerprint(chain.ark), "pinned": chain.root_pinned}
    return out


@attrs.frozen
class SnpEvaluation:
    """Everything :func:`evaluate_report` found; ``result`` when accepted, ``error`` when not."""

    accepted: bool
    checks: tuple[Check, ...]
    warnings: tuple[str, ...] = ()
    report: AttestationReport | None = None
    product: Product | None = None
    result: SnpVerification | None = None
    error: AttestationError | None = None

    def claims(self) -> dict[str, Any]:
        if self.result is not None:
            return self.result.claims()
        return report_claims(self.report, self.product, None) if self.report is not None else {}

    def unwrap(self) -> SnpVerification:
        """The verification of an accepted report; raises the error of a rejected one."""
        if self.result is None:
            raise self.error if self.error is not None else PolicyViolation("report rejected")
        return self.result


CertsInput = Sequence[x509.Certificate] | bytes


class _Rejected(Exception):
    pass


class SnpVerifier:
    """Verify reports under one policy and trust store, caching verified signer chains.

    The cache key is the SHA-256 of every certificate involved plus product and signing key; a
    cached chain's validity periods are still checked at every verification time.
    """

    def __init__(
        self, policy: SnpPolicy | None = None, *, trust_store: TrustStore | None = None, cache_size: int = 64
    ) -> None:
        self.policy = policy if policy is not None else SnpPolicy()
        self.trust_store = trust_store
        self._cache_size = cache_size
        self._signers: dict[str, EndorsementKeyInfo] = {}
        # id(cert) -> (cert, SHA-256): holding the certificate keeps its id from being reused.
        self._fingerprints: dict[int, tuple[x509.Certificate, str]] = {}
        self._chains: dict[tuple[Any, ...], VerifiedChain] = {}

    def verify(
        self,
        report: AttestationReport | bytes,
        signer: x509.Certificate | bytes,
        chain: CertsInput,
        *,
        at: datetime.datetime | None = None,
    ) -> SnpVerification:
        """Verify and return the result, or raise the first failure's typed error."""
        return self.evaluate(report, signer, chain, at=at).unwrap()

    def evaluate(
        self,
        report: AttestationReport | bytes,
        signer: x509.Certificate | bytes,
        chain: CertsInput,
        *,
        at: datetime.datetime | None = None,
    ) -> SnpEvaluation:
        """Run every check in order and stop at the first failure; never raises AttestationError."""
        when = at if at is not None else datetime.datetime.now(datetime.UTC)
        checks: list[Check] = []
        state: dict[str, Any] = {}

        def step(name: str, fn: Callable[[], tuple[_T, str]]) -> _T:
            try:
                value, detail = fn()
            except AttestationError as exc:
                if exc.check == type(exc).check:  # a lower layer's generic name: name the step instead
                    exc.check = name
                checks.append(Check(exc.check, CheckStatus.FAIL, str(exc)))
                state["error"] = exc
                raise _Rejected from None
            checks.append(Check(name, CheckStatus.PASS, detail))
            return value

        try:
            parsed = step("report-format", lambda: _parse(report))
            state["report"] = parsed
            signer_cert = step("signer-profile", lambda: self._signer(signer, parsed.signing_key))
            cert, info = signer_cert
            product = step("product", lambda: self._product(parsed, info))
            state["product"] = product
            verified = step("certificate-chain", lambda: self._chain(cert, info, chain, product, parsed.signing_key))
            step("certificate-validity", lambda: _validity(verified, when))
            step("report-signature", lambda: _signature(parsed, verified))
            try:
                checks.extend(check_report_binding(parsed, verified))
                policy_checks, warnings = check_policy(parsed, self.policy, product=product)
            except AttestationError as exc:
                checks.append(Check(exc.check, CheckStatus.FAIL, str(exc)))
                state["error"] = exc
                raise _Rejected from None
            checks.extend(policy_checks)
        except _Rejected:
            return SnpEvaluation(
                False, tuple(checks), (), state.get("report"), state.get("product"), None, state["error"]
            )
        result = SnpVerification(parsed, product, parsed.signing_key, verified, tuple(checks), tuple(warnings), when)
        return SnpEvaluation(True, result.checks, result.warnings, parsed, product, result, None)

    # --- steps ------------------------------------------------------------------------------------

    def _signer(
        self, signer: x509.Certificate | bytes, signing_key: SigningKey
    ) -> tuple[tuple[x509.Certificate, EndorsementKeyInfo], str]:
        if signing_key is SigningKey.NONE:
            raise SignatureError("report SIGNING_KEY is 7 (none): the report is not signed", check="signing-key")
        cert = signer if isinstance(signer, x509.Certificate) else _one_certificate(signer)
        fp = self._fingerprint(cert)
        info = self._signers.get(fp)
        if info is None:
            if isinstance(signer, x509.Certificate):
                cert = _reloaded(cert)
            info = parse_endorsement_key(cert, expected=signing_key)
            self._remember(self._signers, fp, info)
        elif info.kind is not signing_key:
            parse_endorsement_key(cert, expected=signing_key)  # raises the descriptive error
        return (cert, info), f"{info.kind.name} {info.product_name or ''} ({fp[:16]}…)".replace("  ", " ")

    def _product(self, report: AttestationReport, info: EndorsementKeyInfo) -> tuple[Product, str]:
        product, source = determine_product(report, info, self.policy.product)
        if self.policy.product is not None and product is not self.policy.product:
            raise PolicyViolation(
                f"product: expected {self.policy.product.value}, got {product.value} (from {source})", check="product"
            )
        if product not in self.policy.allowed_products:
            allowed = ", ".join(p.value for p in self.policy.allowed_products)
            raise PolicyViolation(f"product: expected one of {allowed}, got {product.value}", check="product")
        return product, f"{product.value} (from {source})"

    def _chain(
        self,
        cert: x509.Certificate,
        info: EndorsementKeyInfo,
        chain: CertsInput,
        product: Product,
        signing_key: SigningKey,
    ) -> tuple[VerifiedChain, str]:
        certs = load_certificates(chain) if isinstance(chain, bytes | bytearray) else list(chain)
        key = (
            self._fingerprint(cert),
            tuple(map(self._fingerprint, certs)),
            product,
            signing_key,
            id(self.trust_store),
        )
        verified = self._chains.get(key)
        if verified is None:
            if not isinstance(chain, bytes | bytearray):
                certs = [_reloaded(c) for c in certs]
            intermediate, ark = select_chain(certs, product, signing_key)
            verified = verify_chain(
                cert,
                intermediate,
                ark,
                product=product,
                signing_key=signing_key,
                trust_store=self.trust_store,
                endorsement=info,
            )
            self._remember(self._chains, key, verified)
        root = "pinned" if verified.root_pinned else "explicitly trusted"
        return (
            verified,
            f"{signing_key.name} <- {intermediate_cn(product, signing_key)} <- ARK-{product.value} ({root})",
        )

    def _fingerprint(self, cert: x509.Certificate) -> str:
        """SHA-256 of the DER, memoised per certificate object (cryptography re-encodes on each call)."""
        known = self._fingerprints.get(id(cert))
        if known is not None and known[0] is cert:
            return known[1]
        fp = fingerprint(cert)
        self._remember(self._fingerprints, id(cert), (cert, fp), limit=4 * self._cache_size)
        return fp

    def _remember(self, cache: dict[Any, Any], key: Any, value: Any, *, limit: int = 0) -> None:
        if len(cache) >= (limit or self._cache_size):
            cache.pop(next(iter(cache)))
        cache[key] = value


def _validity(chain: VerifiedChain, at: datetime.datetime) -> tuple[None, str]:
    check_chain_validity(chain, at)
    return None, f"signer, intermediate and ARK valid at {at.astimezone(datetime.UTC).strftime('%Y-%m-%dT%H:%M:%SZ')}"


def _signature(report: AttestationReport, chain: VerifiedChain) -> tuple[None, str]:
    verify_report_signature(report, chain.public_key)
    return None, f"ECDSA P-384/SHA-384 by the {chain.signing_key.name}"


def _parse(report: AttestationReport | bytes) -> tuple[AttestationReport, str]:
    parsed = report if isinstance(report, AttestationReport) else parse_report(report)
    return parsed, f"version {parsed.version}, {parsed.signing_key.name}-signed"


def _reloaded(cert: x509.Certificate) -> x509.Certificate:
    """A caller's certificate object, loaded again from its DER through :func:`load_certificates`.

    cryptography decodes names, validity and extensions lazily, so a certificate object that was not
    loaded by :mod:`starlock.attestation.trust` can raise ValueError, TypeError or
    DuplicateExtension at first use, deep inside the chain checks. Loading it again checks all of
    them now and turns a failure into :class:`MalformedEvidence` (found by tests/differential).
    """
    return load_certificates(cert.public_bytes(Encoding.DER), max_certs=1)[0]


def _one_certificate(data: bytes) -> x509.Certificate:
    certs = load_certificates(data)
    if len(certs) != 1:
        raise MalformedEvidence(f"signer: expected one certificate, got {len(certs)}", check="signer-profile")
    return certs[0]


def evaluate_report(
    report: AttestationReport | bytes,
    signer: x509.Certificate | bytes,
    chain: CertsInput,
    policy: SnpPolicy | None = None,
    *,
    at: datetime.datetime | None = None,
    trust_store: TrustStore | None = None,
) -> SnpEvaluation:
    """Every check, stopping at the first failure; see :class:`SnpVerifier`."""
    return SnpVerifier(policy, trust_store=trust_store).evaluate(report, signer, chain, at=at)


def verify_report(
    report: AttestationReport | bytes,
    signer: x509.Certificate | bytes,
    chain: CertsInput,
    policy: SnpPolicy | None = None,
    *,
    at: datetime.datetime | None = None,
    trust_store: TrustStore | None = None,
) -> SnpVerification:
    """Verify an SNP report end to end; raise the typed error of the first failed check.

    ``signer`` is the VCEK/VLEK (certificate, PEM or DER); ``chain`` holds the ASK or ASVK and the
    ARK of the product line (certificates or a PEM bundle; extra certificates are ignored). The
    ARK must be pinned unless ``trust_store`` trusts it explicitly. ``at`` defaults to now.
    """
    return SnpVerifier(policy, trust_store=trust_store).verify(report, signer, chain, at=at)
