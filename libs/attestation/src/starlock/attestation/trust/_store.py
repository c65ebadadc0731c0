"""A store of trusted certificates: only pinned ones, unless the caller explicitly trusts more."""

from __future__ import annotations

import datetime
import logging
from collections.abc import Iterable, Iterator

import attrs
from cryptography import x509

from starlock.attestation.errors import CertificateChainError
from starlock.attestation.trust._certs import (
    _iso,
    _utc,
    check_validity,
    describe,
    fingerprint,
    issuer_of,
    subject_cn,
    subject_of,
)
from starlock.attestation.trust._pins import PINNED_ANCHORS, Family, PinnedAnchor, Role

__all__ = ["TrustStore", "TrustedCertificate", "check_anchor_validity", "is_expired"]

_log = logging.getLogger(__name__)


@attrs.frozen
class TrustedCertificate:
    """A certificate in a :class:`TrustStore`; ``anchor`` is None for an explicitly trusted one."""

    certificate: x509.Certificate
    fingerprint: str
    anchor: PinnedAnchor | None
    role: Role
    name: str

    @property
    def family(self) -> Family | None:
        return self.anchor.family if self.anchor is not None else None

    @property
    def pinned(self) -> bool:
        return self.anchor is not None


class TrustStore:
    """Certificates trusted for chain building, each matched against a pinned fingerprint.

    ``pins`` defaults to every built-in anchor; a validator may pass a subset (one family).
    ``trust_unpinned=True`` makes every :meth:`add` behave as ``explicitly_trusted=True``.
    """

    def __init__(
        self,
        pins: Iterable[PinnedAnchor] = PINNED_ANCHORS,
        *,
        certificates: Iterable[x509.Certificate] = (),
        trust_unpinned: bool = False,
    ) -> None:
        self._pins = {anchor.fingerprint: anchor for anchor in pins}
        self._trust_unpinned = trust_unpinned
        self._entries: dict[str, TrustedCertificate] = {}
        for cert in certificates:
            self.add(cert)

    # --- pins ------------------------------------------------------------------------------------

    @property
    def pins(self) -> tuple[PinnedAnchor, ...]:
        return tuple(self._pins.values())

    def pin_for(self, cert: x509.Certificate) -> PinnedAnchor | None:
        return self._pins.get(fingerprint(cert))

    def is_pinned(self, cert: x509.Certificate) -> bool:
        return fingerprint(cert) in self._pins

    def require_pinned(self, certs: Iterable[x509.Certificate]) -> None:
        """Raise CertificateChainError naming the first certificate whose fingerprint is not pinned."""
        for cert in certs:
            if not self.is_pinned(cert):
                raise _unpinned_error(cert)

    # --- contents --------------------------------------------------------------------------------

    def add(self, cert: x509.Certificate, *, explicitly_trusted: bool = False) -> TrustedCertificate:
        """Trust ``cert`` if its fingerprint is pinned (or the caller opted in); return its entry."""
        fp = fingerprint(cert)
        if fp in self._entries:
            return self._entries[fp]
        anchor = self._pins.get(fp)
        if anchor is None:
            if not (explicitly_trusted or self._trust_unpinned):
                raise _unpinned_error(cert)
            _log.warning("trusting unpinned certificate %s on explicit request", describe(cert))
            role = Role.ROOT if issuer_of(cert) == subject_of(cert) else Role.INTERMEDIATE
            entry = TrustedCertificate(cert, fp, None, role, subject_cn(cert) or fp)
        else:
            cn = subject_cn(cert)
            if anchor.subject_cn is not None and cn != anchor.subject_cn:
                raise CertificateChainError(
                    f"pinned anchor {anchor.name}: expected subject CN {anchor.subject_cn!r}, got {cn!r} "
                    f"(sha256 {fp}); the pin table is inconsistent"
                )
            entry = TrustedCertificate(cert, fp, anchor, anchor.role, anchor.name)
        self._entries[fp] = entry
        return entry

    def add_all(self, certs: Iterable[x509.Certificate], *, explicitly_trusted: bool = False) -> None:
        for cert in certs:
            self.add(cert, explicitly_trusted=explicitly_trusted)

    def find(
        self,
        *,
        family: Family | None = None,
        role: Role | None = None,
        subject_cn: str | None = None,
        subject: x509.Name | None = None,
    ) -> list[TrustedCertificate]:
        """Entries matching every given criterion, in insertion order."""
        return [
            entry
            for entry in self._entries.values()
            if (family is None or entry.family == family)
            and (role is None or entry.role == role)
            and (subject_cn is None or _cn(entry) == subject_cn)
            and (subject is None or subject_of(entry.certificate) == subject)
        ]

    def issuers_of(self, cert: x509.Certificate) -> list[TrustedCertificate]:
        """Trusted certificates whose subject is ``cert``'s issuer name (candidates to verify with)."""
        return self.find(subject=issuer_of(cert))

    def get(self, cert_fingerprint: str) -> TrustedCertificate | None:
        return self._entries.get(cert_fingerprint.lower())

    def __contains__(self, cert: object) -> bool:
        return isinstance(cert, x509.Certificate) and fingerprint(cert) in self._entries

    def __iter__(self) -> Iterator[TrustedCertificate]:
        return iter(list(self._entries.values()))

    def __len__(self) -> int:
        return len(self._entries)

    def check_anchor_validity(self, cert: x509.Certificate, at: datetime.datetime) -> None:
        """:func:`check_anchor_validity` with this store's name for ``cert``."""
        entry = self._entries.get(fingerprint(cert))
        check_anchor_validity(cert, at, name=entry.name if entry is not None else None)


def _cn(entry: TrustedCertificate) -> str | None:
    return subject_cn(entry.certificate)


def _unpinned_error(cert: x509.Certificate) -> CertificateChainError:
    return CertificateChainError(
        f"certificate {describe(cert)} is not a pinned trust anchor: no pin has fingerprint "
        f"{fingerprint(cert)}; trust it explicitly (explicitly_trusted=True / trust_unpinned=True) "
        "only if you obtained it out of band"
    )


def is_expired(cert: x509.Certificate, at: datetime.datetime) -> bool:
    """True when ``at`` is after the certificate's not-after (``at`` must be timezone-aware)."""
    return _utc(at) > cert.not_valid_after_utc


def check_anchor_validity(cert: x509.Certificate, at: datetime.datetime, *, name: str | None = None) -> None:
    """Refuse a trust anchor that has expired (or is not yet valid) at verification time ``at``.

    The message names the anchor, its not-after date and the verification time, e.g. for the
    Microsoft AME root (not-after 2026-05-24) used after that date.
    """
    anchor = name or (subject_cn(cert) or "trust anchor")
    when = _utc(at)
    if when > cert.not_valid_after_utc:
        raise CertificateChainError(
            f"trust anchor {anchor} ({describe(cert)}) expired on {_iso(cert.not_valid_after_utc)}; "
            f"verification time is {_iso(when)}. Pass a verification time inside its validity or "
            "configure a current root"
        )
    check_validity(cert, when)
