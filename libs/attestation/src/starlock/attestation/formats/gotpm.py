"""go-tpm-tools' binary attestation (``gotpm attest`` output: protobuf ``attest.Attestation``).

Verified as go-tpm-tools ``server.VerifyAttestation`` does: the quotes (most preferred bank first)
under the AK with extraData = the nonce given to ``gotpm attest``, the event log replayed against
them. Trust in the AK comes, offline, from a trusted AK public key or from the AK certificate
(carried in the attestation or given separately) chaining to given roots (the pinned Google EK/AK
roots need no opt-in); without either the AK is trusted as is, which is reported as a WARN row.
With an attestation config, its measurements are compared with the verified SHA-256 PCR values.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence
from typing import Any

from starlock.attestation._certpath import utc_now
from starlock.attestation._proto.convert import attestation_from_pb
from starlock.attestation.config import AttestationConfig
from starlock.attestation.document import HASH_ALG_IDS, Attestation
from starlock.attestation.errors import AttestationError, MalformedEvidence, UntrustedKey
from starlock.attestation.formats._report import FormatReport, compare_measurements
from starlock.attestation.interfaces import CheckStatus
from starlock.attestation.tpm import (
    AkPublicKey,
    TpmPublic,
    parse_event_log,
    parse_tpms_attest,
    parse_tpmt_public,
    public_keys_equal,
    verify_attestation,
    verify_quote,
    verify_replay,
)
from starlock.attestation.trust import TrustStore
from starlock.attestation.vtpm import CheckRecorder

__all__ = ["FORMAT_NAME", "evaluate_gotpm_attestation", "parse_gotpm_attestation"]

FORMAT_NAME = "gotpm-attestation"
_SHA256 = HASH_ALG_IDS["SHA256"]


def parse_gotpm_attestation(data: bytes) -> Attestation:
    """Parse binary ``attest.Attestation``; it must carry an AK and at least one quote."""
    att = attestation_from_pb(data)
    if not att.ak_pub or not att.quotes:
        raise MalformedEvidence("attestation protobuf: no ak_pub or no quotes (not a go-tpm-tools attestation)")
    return att


def evaluate_gotpm_attestation(
    att: Attestation,
    *,
    nonce: bytes | None,
    trusted_ak: TpmPublic | AkPublicKey | None = None,
    ak_trust: TrustStore | None = None,
    ak_cert: bytes | None = None,
    intermediates: Sequence[bytes] = (),
    config: AttestationConfig | None = None,
    at: datetime.datetime | None = None,
) -> FormatReport:
    """Verify ``att`` (module docstring); never raises for bad evidence."""
    rec = CheckRecorder()
    claims: dict[str, Any] = {}
    when = at or utc_now()
    try:
        ak = rec.run("ak-parse", lambda: parse_tpmt_public(att.ak_pub), lambda k: f"AK name {k.name().hex()}")
        claims["ak_name"] = ak.name().hex()
        _trust_ak(
            ak,
            att,
            rec,
            trusted_ak=trusted_ak,
            ak_trust=ak_trust,
            ak_cert=ak_cert,
            intermediates=intermediates,
            at=when,
        )
        expected = nonce if nonce is not None else parse_tpms_attest(att.quotes[0].quote).extra_data
        log = parse_event_log(att.event_log) if att.event_log else None
        verified = rec.run(
            "tpm-quotes",
            lambda: verify_attestation(att, expected, ak, event_log=log),
            lambda v: f"{v.pcrs.hash_name} quote: signature, qualifying data and PCR digest verified under the AK",
        )
        if nonce is None:
            rec.add(
                "nonce", CheckStatus.WARN, f"no nonce given: the quotes' extraData {expected.hex()} was not compared"
            )
        else:
            rec.add("nonce", CheckStatus.PASS, f"the quotes' extraData is the nonce {nonce.hex()}")
        if verified.event_log is not None:
            rec.add("event-log", CheckStatus.PASS, f"{len(verified.event_log.events)} events replay to the quoted PCRs")
        else:
            rec.add("event-log", CheckStatus.WARN, "no event log in the attestation: nothing to replay")
        pcrs = verified.pcrs.pcrs
        if verified.hash_alg != _SHA256:
            sha256 = att.quote_for(_SHA256)
            if sha256 is not None:
                rec.run("sha256-quote", lambda: _verify_bank(sha256, ak, expected, log), lambda _: "verified itself")
                pcrs = sha256.pcrs.pcrs
            elif config is not None:
                rec.fail("sha256-quote", MalformedEvidence("no SHA256 quote to compare the measurements with"))
        claims["pcrs"] = {str(i): v.hex() for i, v in pcrs.items()}
        if config is not None:
            compare_measurements(config, pcrs, rec)
    except AttestationError as exc:
        return FormatReport.finish(FORMAT_NAME, rec, claims, exc)
    return FormatReport.finish(FORMAT_NAME, rec, claims, None)


def _trust_ak(
    ak: TpmPublic,
    att: Attestation,
    rec: CheckRecorder,
    *,
    trusted_ak: TpmPublic | AkPublicKey | None,
    ak_trust: TrustStore | None,
    ak_cert: bytes | None,
    intermediates: Sequence[bytes],
    at: datetime.datetime,
) -> None:
    from starlock.attestation.gcp.ak import verify_gce_ak_certificate

    if trusted_ak is not None:
        if not public_keys_equal(ak, trusted_ak):
            rec.fail("attestation-key", UntrustedKey("ak_pub is not the trusted AK given with --trusted-ak"))
        rec.add("attestation-key", CheckStatus.PASS, "ak_pub is the trusted AK")
        return
    if ak_trust is None:
        rec.add(
            "attestation-key", CheckStatus.WARN, "AK not verified: give --trusted-ak, or --ak-roots for its certificate"
        )
        return
    cert = ak_cert or att.ak_cert
    if not cert:
        rec.fail("attestation-key", UntrustedKey("no AK certificate: the attestation carries none and none was given"))
    certified = rec.run(
        "ak-certificate",
        lambda: verify_gce_ak_certificate(cert, [*att.intermediate_certs, *intermediates], ak_trust, at),
        lambda c: f"chain {c.path.describe()} valid at {at.isoformat()}",
    )
    if not public_keys_equal(ak, certified.public_key):
        rec.fail("attestation-key", UntrustedKey("ak_pub is not the key of the AK certificate"))
    rec.add("attestation-key", CheckStatus.PASS, "ak_pub is the certified AK")


def _verify_bank(quote: Any, ak: TpmPublic, nonce: bytes, log: Any) -> None:
    verify_quote(ak, quote, nonce)
    if log is not None:
        verify_replay(log, quote.pcrs)
