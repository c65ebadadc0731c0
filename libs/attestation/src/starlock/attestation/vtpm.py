"""The TPM frame that every TPM-based variant shares (reference: spec-attestation §5.0).

:class:`VtpmValidator` parses the document, binds it to the nonce and user data, asks the
variant which AK it trusts, verifies the quotes and the event log under that AK, runs the
variant's CVM checks and compares the measurements. Subclasses provide
:meth:`VtpmValidator.trusted_key` and optionally :meth:`VtpmValidator.validate_cvm`.

Where we differ from Constellation on purpose:

* the nonce must be non-empty (an empty nonce proves no freshness);
* the SHA-256 quote whose PCRs the measurements are compared with is itself verified
  (signature, nonce, PCR digest). Upstream verifies the *first passing* quote in the order
  SHA-512, SHA-384, SHA-256 and then reads the SHA-256 PCR values from the document, so a
  document with a good SHA-384 quote could carry unverified SHA-256 values;
* a config that enforces no measurement needs the caller's explicit opt-in (logged as a WARNING,
  reported as a WARN ``measurements`` row);
* the ``nonce`` row passes only after the quotes proved the binding, and a rejected report always
  ends with a FAIL row (a failed ``nonce`` row too when the evidence is not bound to the nonce).
"""

from __future__ import annotations

import hashlib
import logging
from collections.abc import Callable
from typing import Any, NoReturn, TypeVar

from starlock.attestation.config import AttestationConfig, check_enforced
from starlock.attestation.document import HASH_ALG_IDS, MAX_PCR_INDEX, AttestationDocument, Quote
from starlock.attestation.errors import (
    AttestationError,
    MalformedEvidence,
    NonceMismatch,
    UntrustedKey,
)
from starlock.attestation.interfaces import Check, CheckStatus, EvaluationReport, ValidationResult
from starlock.attestation.tpm import (
    EventLog,
    TpmPublic,
    parse_event_log,
    parse_tpmt_public,
    verify_attestation,
    verify_quote,
)
from starlock.attestation.tpm.eventlog import EventLogReplay, verify_replay
from starlock.attestation.tpm.quote import attest_of
from starlock.attestation.variant import Variant

__all__ = ["CheckRecorder", "VtpmValidator", "make_extra_data", "make_tpm_nonce", "trusted_ak_from_document"]

_SHA256 = HASH_ALG_IDS["SHA256"]
_INDEX_TEXT = tuple(map(str, range(MAX_PCR_INDEX + 1)))  # PCR index → claim key
T = TypeVar("T")
_log = logging.getLogger(__name__)


def make_extra_data(user_data: bytes, nonce: bytes) -> bytes:
    """SHA-256(user_data ‖ nonce): what binds a document to aTLS user data and a peer nonce."""
    return hashlib.sha256(user_data + nonce).digest()


def make_tpm_nonce(instance_info: bytes, extra_data: bytes) -> bytes:
    """SHA-256(instance_info ‖ extra_data): the TPM qualifying data since Constellation 2024-04."""
    return hashlib.sha256(instance_info + extra_data).digest()


class CheckRecorder:
    """Collects checks; runs a step and records pass or the typed failure."""

    def __init__(self) -> None:
        self.checks: list[Check] = []
        self.warnings: list[str] = []

    def add(self, name: str, status: CheckStatus, detail: str) -> None:
        self.checks.append(Check(name, status, detail))
        if status is CheckStatus.WARN:
            self.warnings.append(f"{name}: {detail}")

    def fail(self, name: str, exc: AttestationError) -> NoReturn:
        self.checks.append(Check(name, CheckStatus.FAIL, f"{type(exc).__name__}: {exc}"))
        raise exc

    def run(self, name: str, step: Callable[[], T], detail: Callable[[T], str]) -> T:
        try:
            value = step()
        except AttestationError as exc:
            self.checks.append(Check(name, CheckStatus.FAIL, f"{type(exc).__name__}: {exc}"))
            raise
        self.checks.append(Check(name, CheckStatus.PASS, detail(value)))
        return value


class VtpmValidator:
    """Generic vTPM validator; subclasses decide which AK to trust."""

    variant: Variant = Variant.QEMU_VTPM
    #: Before Constellation commit 913b09aeb (2024-04) the TPM nonce was extraData itself.
    legacy_nonce_binding: bool = False

    def __init__(self, config: AttestationConfig) -> None:
        if config.variant is not self.variant:
            raise ValueError(f"config is for {config.variant.value}, validator is {self.variant.value}")
        # Differs from Constellation: measurements that enforce nothing need the explicit opt-in.
        check_enforced(config)
        if not config.measurements.enforced:
            _log.warning(
                "%s validator enforces no measurement (%d warn-only entries): it accepts any TPM state%s; "
                "allowed because the caller opted in (allow_unenforced / allowUnenforcedMeasurements)",
                self.variant.value,
                len(config.measurements),
                " (any software TPM)" if self.variant is Variant.QEMU_VTPM else "",
            )
        self.config = config

    # --- hooks for variants ---------------------------------------------------------------

    def trusted_key(self, document: AttestationDocument, extra_data: bytes, rec: CheckRecorder) -> TpmPublic:
        """The AK this variant trusts for ``document``; raise UntrustedKey otherwise."""
        raise NotImplementedError

    def validate_cvm(self, document: AttestationDocument, rec: CheckRecorder) -> None:
        """Variant-specific confidential-VM checks (none by default)."""

    def tpm_nonce(self, document: AttestationDocument, extra_data: bytes, rec: CheckRecorder) -> bytes:
        """The TPM qualifying data the quotes must carry (§5.0 step 4); variants may choose a binding."""
        if self.legacy_nonce_binding:
            return extra_data
        return make_tpm_nonce(document.instance_info, extra_data)

    # --- the frame ----------------------------------------------------------------------

    def validate(self, document: bytes, nonce: bytes) -> ValidationResult:
        """Validate ``document`` for ``nonce``; raises the first failure as AttestationError.

        The nonce is required here: only :meth:`evaluate` may skip freshness (for audit tools).
        """
        if not isinstance(nonce, bytes | bytearray):
            raise NonceMismatch("validate() needs the nonce the document must be bound to")
        return self.evaluate(document, bytes(nonce)).to_result()

    def evaluate(self, document: bytes, nonce: bytes | None) -> EvaluationReport:
        """Run every check and report; ``nonce=None`` checks everything but freshness (warned)."""
        rec = CheckRecorder()
        claims: dict[str, Any] = {}
        try:
            user_data = self._run(document, nonce, rec, claims)
        except AttestationError as exc:
            _record_failure(rec, exc, nonce_given=bool(nonce))
            return EvaluationReport(self.variant, False, tuple(rec.checks), claims, tuple(rec.warnings), None, exc)
        return EvaluationReport(self.variant, True, tuple(rec.checks), claims, tuple(rec.warnings), user_data)

    def _run(self, raw: bytes, nonce: bytes | None, rec: CheckRecorder, claims: dict[str, Any]) -> bytes:
        doc = rec.run(
            "document",
            lambda: AttestationDocument.from_json(raw),
            lambda d: (
                f"{len(raw)} bytes, {len(d.attestation.quotes)} quotes, event log {len(d.attestation.event_log)} bytes"
            ),
        )
        claims["user_data"] = doc.user_data.hex()
        att = doc.attestation
        if nonce is None:
            rec.add("nonce", CheckStatus.WARN, "no nonce given: freshness and user-data binding not checked")
            extra_data = None
        elif not nonce:
            rec.fail("nonce", NonceMismatch("the nonce is empty; a fresh, non-empty nonce is required"))
        else:
            # The "nonce" row is recorded once the quotes proved the binding (below), not here.
            extra_data = make_extra_data(doc.user_data, nonce)

        ak = self.trusted_key(doc, extra_data or b"", rec)
        claims["ak_name"] = ak.name().hex()

        tpm_nonce = self._unbound_tpm_nonce(doc) if extra_data is None else self.tpm_nonce(doc, extra_data, rec)

        log = parse_event_log(att.event_log) if att.event_log else None
        # Which events' data is bound to its digest is read in the SHA-256 bank, the one the
        # measurements are compared in (and SHA-256 hashes the data about three times faster than
        # SHA-512); the winning quote's replay marks them only when it is that bank's.
        only_sha256 = all(q.pcrs.hash == _SHA256 for q in att.quotes)
        verified = rec.run(
            "tpm-quotes",
            lambda: verify_attestation(att, tpm_nonce, ak, event_log=log, data_marks=only_sha256),
            lambda v: f"{v.pcrs.hash_name} quote: signature, qualifying data and PCR digest verified under the AK",
        )
        if extra_data is not None:
            rec.add(
                "nonce",
                CheckStatus.PASS,
                f"the quotes carry qualifying data {tpm_nonce.hex()} derived from "
                f"extraData = SHA-256(user data ‖ nonce) = {extra_data.hex()}",
            )
        sha256_quote = att.quote_for(_SHA256)
        if sha256_quote is None:
            banks = ", ".join(q.pcrs.hash_name for q in att.quotes)
            rec.fail(
                "sha256-quote",
                MalformedEvidence(
                    f"quotes: expected a SHA256 quote (the measurements are SHA-256 PCR values), got banks {banks}"
                ),
            )
        replay = verified.event_log
        if verified.hash_alg != _SHA256:
            replay = rec.run(
                "sha256-quote",
                lambda: self._verify_sha256_bank(sha256_quote, ak, tpm_nonce, log),
                lambda _: "the SHA-256 quote that measurements are compared with is verified itself",
            )
        elif log is not None and not only_sha256:
            # The SHA-256 quote won after a preferred one failed: its replay ran without the marks.
            replay = verify_replay(log, verified.pcrs)
        # The values compared with the measurements are those of a quote verified above: the
        # winning quote when it is the SHA-256 one, else the SHA-256 quote verified on its own.
        pcrs = verified.pcrs.pcrs if verified.hash_alg == _SHA256 else sha256_quote.pcrs.pcrs
        claims["pcrs"] = {_INDEX_TEXT[i]: v.hex() for i, v in pcrs.items()}
        if replay is not None:
            verified_numbers = [ev.number for ev in replay.verified_events]
            count, bound = len(replay.events), len(verified_numbers)
            rec.add(
                "event-log",
                CheckStatus.PASS,
                f"{count} events replay to the quoted PCRs {sorted(replay.pcrs)}; the data of {bound} of them is "
                f"bound to their digest, the data of the other {count - bound} is not verified",
            )
            claims["event_log_events"] = count
            claims["event_log_data_verified"] = verified_numbers
        else:
            rec.add("event-log", CheckStatus.WARN, "no event log in the document: nothing to replay")

        self.validate_cvm(doc, rec)

        measurements = self.config.measurements
        if not measurements.enforced:
            rec.add(
                "measurements",
                CheckStatus.WARN,
                f"no enforced measurement ({len(measurements)} warn-only entries): any PCR values are "
                "accepted (the config opted in with allow_unenforced)",
            )
        comparison = measurements.compare(pcrs)
        for warning in comparison.warnings:
            rec.add("measurements", CheckStatus.WARN, warning)
        rec.run(
            "measurements",
            comparison.raise_for_errors,
            lambda _: (
                f"{len(comparison.checked)} expected values compared ({len(comparison.warnings)} warn-only mismatches)"
            ),
        )
        return doc.user_data

    @staticmethod
    def _verify_sha256_bank(
        quote: Quote, ak: TpmPublic, tpm_nonce: bytes, log: EventLog | None
    ) -> EventLogReplay | None:
        verify_quote(ak, quote, tpm_nonce)
        return verify_replay(log, quote.pcrs) if log is not None else None

    @staticmethod
    def _unbound_tpm_nonce(doc: AttestationDocument) -> bytes:
        """Without a nonce, verify the quotes against the qualifying data they carry."""
        if not doc.attestation.quotes:
            raise MalformedEvidence("the document has no quotes")
        return attest_of(doc.attestation.quotes[0]).extra_data  # parsed once; its verification reuses it


def _record_failure(rec: CheckRecorder, exc: AttestationError, *, nonce_given: bool) -> None:
    """Make a rejected report end with the failure, and say when the nonce binding failed."""
    if not rec.checks or rec.checks[-1].status is not CheckStatus.FAIL:
        rec.checks.append(Check(exc.check, CheckStatus.FAIL, f"{type(exc).__name__}: {exc}"))
    if nonce_given and isinstance(exc, NonceMismatch) and not any(c.name == "nonce" for c in rec.checks):
        failed = rec.checks[-1].name
        rec.checks.append(
            Check("nonce", CheckStatus.FAIL, f"the evidence is not bound to the given nonce (failed check {failed!r})")
        )


def trusted_ak_from_document(doc: AttestationDocument, config: AttestationConfig, rec: CheckRecorder) -> TpmPublic:
    """The document's own AK, accepted if pinned (or unconditionally when nothing is pinned)."""
    ak = rec.run("ak-parse", lambda: parse_tpmt_public(doc.attestation.ak_pub), lambda k: f"AK name {k.name().hex()}")
    if not config.accepted_ak_names:
        rec.add(
            "attestation-key",
            CheckStatus.WARN,
            "AK trusted without a hardware root (as upstream); pin it with acceptedAttestationKeys",
        )
        return ak
    name = ak.name()
    if name not in config.accepted_ak_names:
        rec.fail(
            "attestation-key",
            UntrustedKey(f"AK {name.hex()} is not among the {len(config.accepted_ak_names)} accepted attestation keys"),
        )
    rec.add("attestation-key", CheckStatus.PASS, f"AK {name.hex()} is pinned")
    return ak
