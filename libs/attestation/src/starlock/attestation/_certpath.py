"""X.509 path validation for attestation-key certificates (GCE vTPM AK, Azure trusted-launch AK).

A pure function of (leaf, untrusted intermediates, trusted roots, time), modelled on what Go's
``x509.Certificate.Verify`` checks for the variants that rely on it (spec-attestation §5d, §5e):
every signature, the validity of every certificate including the root at the verification time,
basicConstraints CA and path length of the issuers, keyCertSign when an issuer has key usage,
and no unhandled critical extension. EKUs are not checked (``KeyUsages: [Any]`` upstream).

A critical SubjectAltName is treated as handled: Google's AK certificates mark a SAN holding only
a TPM directoryName critical, which Go flags as unhandled and go-tpm-tools strips before Verify.
"""

from __future__ import annotations

import datetime
from collections.abc import Sequence

import attrs
from cryptography import x509
from cryptography.x509.oid import ExtensionOID

from starlock.attestation.errors import AttestationError, CertificateChainError
from starlock.attestation.trust import (
    check_anchor_validity,
    check_validity,
    describe,
    fingerprint,
    issuer_of,
    subject_of,
    verify_signed_by,
)

__all__ = ["MAX_PATH_DEPTH", "VerifiedPath", "utc_now", "verify_path"]

#: Most intermediates between a leaf and a root (real chains have one).
MAX_PATH_DEPTH = 4

_HANDLED_CRITICAL = frozenset(
    {
        ExtensionOID.BASIC_CONSTRAINTS,
        ExtensionOID.KEY_USAGE,
        ExtensionOID.EXTENDED_KEY_USAGE,
        ExtensionOID.SUBJECT_ALTERNATIVE_NAME,
        ExtensionOID.CERTIFICATE_POLICIES,
        ExtensionOID.SUBJECT_KEY_IDENTIFIER,
        ExtensionOID.AUTHORITY_KEY_IDENTIFIER,
    }
)


def utc_now() -> datetime.datetime:
    return datetime.datetime.now(datetime.UTC)


@attrs.frozen
class VerifiedPath:
    """``chain`` runs from the leaf to the trusted root (inclusive)."""

    chain: tuple[x509.Certificate, ...]

    @property
    def leaf(self) -> x509.Certificate:
        return self.chain[0]

    @property
    def root(self) -> x509.Certificate:
        return self.chain[-1]

    def describe(self) -> str:
        return " <- ".join(describe(c) for c in self.chain)


def verify_path(
    leaf: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    roots: Sequence[x509.Certificate],
    at: datetime.datetime,
    *,
    root_names: Sequence[str] | None = None,
) -> VerifiedPath:
    """Build and verify a path leaf → intermediates → one of ``roots`` at time ``at``.

    Raises CertificateChainError (no path, expired/not-yet-valid certificate, CA constraints,
    critical extensions) or SignatureError. An expired root is reported with its name, its
    not-after and the verification time. ``root_names`` gives display names parallel to ``roots``.
    """
    if not roots:
        raise CertificateChainError(f"no trusted root configured to verify {describe(leaf)}")
    names = list(root_names) if root_names is not None else [None] * len(roots)
    _check_critical(leaf)
    path = [leaf]
    while True:
        current = path[-1]
        root_hit, root_errors = _find_root(current, roots)
        if root_hit is not None:
            path.append(root_hit)
            break
        if len(path) > MAX_PATH_DEPTH:
            raise CertificateChainError(f"no path to a trusted root within {MAX_PATH_DEPTH} intermediates")
        path.append(_find_intermediate(current, intermediates, path, root_errors))
    for position, issuer in enumerate(path[1:], start=1):
        _check_issuer(issuer, cas_below=position - 1)
    # Validity from the root down, so that an expired root is reported as such.
    check_anchor_validity(path[-1], at, name=names[[id(r) for r in roots].index(id(path[-1]))])
    for cert in reversed(path[:-1]):
        check_validity(cert, at)
    return VerifiedPath(tuple(path))


def _find_root(
    cert: x509.Certificate, roots: Sequence[x509.Certificate]
) -> tuple[x509.Certificate | None, list[AttestationError]]:
    errors: list[AttestationError] = []
    for root in roots:
        if subject_of(root) != issuer_of(cert):
            continue
        try:
            verify_signed_by(cert, root)
        except AttestationError as exc:
            errors.append(exc)
            continue
        return root, errors
    return None, errors


def _find_intermediate(
    cert: x509.Certificate,
    intermediates: Sequence[x509.Certificate],
    path: Sequence[x509.Certificate],
    errors: list[AttestationError],
) -> x509.Certificate:
    seen = {fingerprint(c) for c in path}
    for candidate in intermediates:
        if fingerprint(candidate) in seen or subject_of(candidate) != issuer_of(cert):
            continue
        try:
            verify_signed_by(cert, candidate)
        except AttestationError as exc:
            errors.append(exc)
            continue
        _check_critical(candidate)
        return candidate
    if errors:
        raise errors[0]
    raise CertificateChainError(
        f"certificate {describe(cert)}: no trusted root or intermediate certificate is its issuer "
        f"({issuer_of(cert).rfc4514_string()!r})"
    )


def _check_critical(cert: x509.Certificate) -> None:
    unhandled = sorted(e.oid.dotted_string for e in cert.extensions if e.critical and e.oid not in _HANDLED_CRITICAL)
    if unhandled:
        raise CertificateChainError(f"certificate {describe(cert)}: unhandled critical extensions {unhandled}")


def _check_issuer(cert: x509.Certificate, *, cas_below: int) -> None:
    try:
        bc = cert.extensions.get_extension_for_class(x509.BasicConstraints).value
    except x509.ExtensionNotFound:
        raise CertificateChainError(f"issuer {describe(cert)} has no basicConstraints: not a CA") from None
    if not bc.ca:
        raise CertificateChainError(f"issuer {describe(cert)}: basicConstraints CA is false")
    if bc.path_length is not None and cas_below > bc.path_length:
        raise CertificateChainError(
            f"issuer {describe(cert)}: path length constraint {bc.path_length} exceeded ({cas_below} CAs below it)"
        )
    try:
        ku = cert.extensions.get_extension_for_class(x509.KeyUsage).value
    except x509.ExtensionNotFound:
        return
    if not ku.key_cert_sign:
        raise CertificateChainError(f"issuer {describe(cert)}: key usage lacks keyCertSign")
