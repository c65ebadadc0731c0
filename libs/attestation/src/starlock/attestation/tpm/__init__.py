"""TPM 2.0 evidence: quote structures, quote verification and TCG event log replay.

Low-level parsers (:mod:`.structures`, :mod:`.eventlog`) take bytes and return frozen values;
:func:`verify_attestation` composes them like go-tpm-tools ``server.VerifyAttestation``.
Every failure raises a subclass of :class:`starlock.attestation.errors.AttestationError`.
"""

from __future__ import annotations

from starlock.attestation.tpm.eventdata import DATA_BOUND_EVENT_TYPES
from starlock.attestation.tpm.eventlog import (
    EventLog,
    EventLogReplay,
    SpecIdEvent,
    TcgEvent,
    parse_event_log,
    replay,
    verify_replay,
)
from starlock.attestation.tpm.quote import VerifiedAttestation, VerifiedQuote, verify_attestation, verify_quote
from starlock.attestation.tpm.structures import (
    AkPublicKey,
    ClockInfo,
    EccParms,
    PcrSelection,
    RsaParms,
    Scheme,
    SymDef,
    TpmPublic,
    TpmsAttest,
    TpmtSignature,
    parse_tpms_attest,
    parse_tpmt_public,
    parse_tpmt_signature,
    public_keys_equal,
)

__all__ = [
    "DATA_BOUND_EVENT_TYPES",
    "AkPublicKey",
    "ClockInfo",
    "EccParms",
    "EventLog",
    "EventLogReplay",
    "PcrSelection",
    "RsaParms",
    "Scheme",
    "SpecIdEvent",
    "SymDef",
    "TcgEvent",
    "TpmPublic",
    "TpmsAttest",
    "TpmtSignature",
    "VerifiedAttestation",
    "VerifiedQuote",
    "parse_event_log",
    "parse_tpms_attest",
    "parse_tpmt_public",
    "parse_tpmt_signature",
    "public_keys_equal",
    "replay",
    "verify_attestation",
    "verify_quote",
    "verify_replay",
]
