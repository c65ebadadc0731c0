"""starlock-atls: attested TLS, wire-compatible with Constellation's aTLS."""

from __future__ import annotations

from starlock.atls import _bindings as _bindings  # fails loudly at import if the bindings are gone
from starlock.atls._admission import AdmissionLimits
from starlock.atls._handshake import ALPN_PROTOCOLS, AtlsConnection, ClientConfig, ServerConfig
from starlock.atls._wire import MAX_EXTENSION_SIZE, MAX_SNI_LENGTH, PeerAttestation
from starlock.atls.dummy import DummyIssuer, DummyValidator
from starlock.atls.errors import (
    AtlsConfigError,
    AtlsError,
    AttestationRejected,
    BindingsUnavailable,
    CertificateError,
    HandshakeError,
    IssuerUnavailable,
    NoCompatibleAttestation,
    NonceError,
    UserDataMismatch,
)

__all__ = [
    "ALPN_PROTOCOLS",
    "MAX_EXTENSION_SIZE",
    "MAX_SNI_LENGTH",
    "AdmissionLimits",
    "AtlsConfigError",
    "AtlsConnection",
    "AtlsError",
    "AttestationRejected",
    "BindingsUnavailable",
    "CertificateError",
    "ClientConfig",
    "DummyIssuer",
    "DummyValidator",
    "HandshakeError",
    "IssuerUnavailable",
    "NoCompatibleAttestation",
    "NonceError",
    "PeerAttestation",
    "ServerConfig",
    "UserDataMismatch",
]
