"""What an SNP report must satisfy beyond authenticity: :class:`SnpPolicy` and :func:`check_policy`.

Defaults reproduce Constellation (spec §1.4, §5a/§5b): DEBUG, MIGRATE_MA and CXL_ALLOW refused,
SMT allowed, ABI >= 0.0, VMPL 0, provisional firmware permitted; TCB minimums come from the
attestation config (``bootloaderVersion``... compared with LAUNCH_TCB). Expected report data,
measurement, host data and ID-/author-key digests are checked only when given.
"""

from __future__ import annotations

import hmac
from collections.abc import Callable, Iterable
from typing import Any

import attrs

from starlock.attestation.config import AttestationConfig, EnforcementPolicy, SnpVersions
from starlock.attestation.errors import (
    AttestationError,
    ConfigError,
    MeasurementMismatch,
    NonceMismatch,
    PolicyViolation,
)
from starlock.attestation.interfaces import Check, CheckStatus
from starlock.attestation.snp.report import AttestationReport, Product, TcbLayout, TcbParts, TcbVersion

__all__ = ["SnpPolicy", "check_policy", "check_tcb_minimum"]


def _exact_size(size: int) -> Callable[[Any, attrs.Attribute[Any], bytes | None], None]:
    def check(_: Any, attribute: attrs.Attribute[Any], value: bytes | None) -> None:
        if value is not None and len(value) != size:
            raise ConfigError(f"SNP policy {attribute.name}: expected {size} bytes, got {len(value)}")

    return check


def _digests(value: Iterable[bytes] | None) -> tuple[bytes, ...] | None:
    return None if value is None else tuple(bytes(v) for v in value)


def _digest_sizes(_: Any, attribute: attrs.Attribute[Any], value: tuple[bytes, ...] | None) -> None:
    for digest in value or ():
        if len(digest) != 48:
            raise ConfigError(f"SNP policy {attribute.name}: every digest must be 48 bytes, got {len(digest)}")


def _versions(_: Any, attribute: attrs.Attribute[Any], value: SnpVersions | None) -> None:
    if value is None:
        return
    for name in ("bootloader", "tee", "snp", "microcode"):
        part = getattr(value, name)
        if not isinstance(part, int) or not 0 <= part <= 255:
            raise ConfigError(f"SNP policy {attribute.name}.{name}: expected 0..255, got {part!r}")


@attrs.frozen(kw_only=True)
class SnpPolicy:
    """Checks applied to an authentic report. ``None`` means "not checked"."""

    minimum_launch_tcb: SnpVersions | None = attrs.field(default=None, validator=_versions)
    minimum_reported_tcb: SnpVersions | None = attrs.field(default=None, validator=_versions)
    allow_debug: bool = False
    allow_migrate_ma: bool = False
    allow_cxl: bool = False
    allow_smt: bool = True
    minimum_abi: tuple[int, int] = (0, 0)
    vmpl: int | None = 0
    minimum_guest_svn: int = 0
    permit_provisional_firmware: bool = True
    report_data: bytes | None = attrs.field(default=None, validator=_exact_size(64))
    measurement: bytes | None = attrs.field(default=None, validator=_exact_size(48))
    host_data: bytes | None = attrs.field(default=None, validator=_exact_size(32))
    accepted_id_key_digests: tuple[bytes, ...] | None = attrs.field(
        default=None, converter=_digests, validator=_digest_sizes
    )
    #: A digest not in ``accepted_id_key_digests`` is a warning, not a rejection (Azure warnOnly,
    #: or maaFallback where the caller then checks the MAA token: see SnpVerification.id_key_accepted).
    id_key_digest_warn_only: bool = False
    accepted_author_key_digests: tuple[bytes, ...] | None = attrs.field(
        default=None, converter=_digests, validator=_digest_sizes
    )
    #: Product used when neither the report's CPUID bytes nor the certificate name one.
    product: Product | None = None
    allowed_products: tuple[Product, ...] = (Product.MILAN, Product.GENOA, Product.TURIN)

    @classmethod
    def from_config(cls, config: AttestationConfig, **overrides: Any) -> SnpPolicy:
        """Constellation's policy for an SNP variant's config (minimum launch TCB, ID-key digests).

        ``acceptedKeyDigests`` are enforced for ``equal`` and ``maaFallback`` (the MAA fallback is
        the Azure variant's job: it passes ``id_key_digest_warn_only=True`` and then checks MAA),
        and warn-only for ``warnOnly``.
        """
        values: dict[str, Any] = {"minimum_launch_tcb": config.snp_versions}
        signer = config.firmware_signer
        if signer is not None:
            values["accepted_id_key_digests"] = signer.accepted_key_digests
            values["id_key_digest_warn_only"] = signer.enforcement_policy is EnforcementPolicy.WARN_ONLY
        values.update(overrides)
        return cls(**values)


def _pass(name: str, detail: str) -> Check:
    return Check(name, CheckStatus.PASS, detail)


def check_tcb_minimum(name: str, actual: TcbVersion, minimum: SnpVersions, layout: TcbLayout, *, label: str) -> Check:
    """Every component of ``actual`` must be >= the configured minimum (component-wise)."""
    parts = actual.parts(layout)
    for part, want in (
        ("bootloader", minimum.bootloader),
        ("tee", minimum.tee),
        ("snp", minimum.snp),
        ("microcode", minimum.microcode),
    ):
        got = getattr(parts, part)
        if got < want:
            raise PolicyViolation(
                f"{label} {part} version: expected at least {want}, got {got} ({actual.describe(layout)})",
                check=name,
            )
    floor = TcbParts(minimum.bootloader, minimum.tee, minimum.snp, minimum.microcode)
    return _pass(name, f"{parts.describe()} >= {floor.describe()}")


def _equal(name: str, what: str, expected: bytes, actual: bytes, error: type[AttestationError]) -> Check:
    if not hmac.compare_digest(expected, actual):
        raise error(f"{what}: expected {expected.hex()}, got {actual.hex()}", check=name)
    return _pass(name, f"{what} matches")


def _guest_policy(report: AttestationReport, policy: SnpPolicy) -> Check:
    gp = report.policy
    refused = (
        ("debug", gp.debug, policy.allow_debug, "DEBUG (bit 19)"),
        ("migrate-ma", gp.migrate_ma, policy.allow_migrate_ma, "MIGRATE_MA (bit 18)"),
        ("cxl", gp.cxl_allow, policy.allow_cxl, "CXL_ALLOW (bit 21)"),
        ("smt", gp.smt, policy.allow_smt, "SMT (bit 16)"),
    )
    for short, present, allowed, text in refused:
        if present and not allowed:
            raise PolicyViolation(
                f"guest policy {gp.describe()}: expected {text} clear (the policy forbids it), got set",
                check=f"guest-policy.{short}",
            )
    major, minor = policy.minimum_abi
    if (gp.abi_major, gp.abi_minor) < (major, minor):
        raise PolicyViolation(
            f"guest policy ABI version: expected at least {major}.{minor}, got {gp.abi_major}.{gp.abi_minor}",
            check="guest-policy.abi",
        )
    return _pass("guest-policy", gp.describe())


def _committed(report: AttestationReport, policy: SnpPolicy, layout: TcbLayout) -> Check:
    r = report
    committed_v = (r.committed_major, r.committed_minor, r.committed_build)
    current_v = (r.current_major, r.current_minor, r.current_build)
    if policy.permit_provisional_firmware:
        ok_tcb, ok_fw, relation = r.committed_tcb.le(r.current_tcb), committed_v <= current_v, "<="
    else:
        ok_tcb, ok_fw, relation = r.committed_tcb == r.current_tcb, committed_v == current_v, "=="
    if not ok_tcb:
        raise PolicyViolation(
            f"committed TCB: expected {relation} current TCB {r.current_tcb.describe(layout)}, "
            f"got {r.committed_tcb.describe(layout)}",
            check="committed-tcb",
        )
    if not ok_fw:
        raise PolicyViolation(
            "committed firmware: expected {} current firmware {}.{} build {}, got {}.{} build {}".format(
                relation, *current_v, *committed_v
            ),
            check="committed-tcb",
        )
    return _pass("committed-tcb", f"committed {relation} current (firmware {'{}.{} build {}'.format(*current_v)})")


def check_policy(report: AttestationReport, policy: SnpPolicy, *, product: Product) -> tuple[list[Check], list[str]]:
    """Apply ``policy`` to an (already authenticated) report; return (checks, warnings).

    Raises on the first failure: :class:`PolicyViolation` (checks ``guest-policy.*``, ``vmpl``,
    ``launch-tcb-minimum``, ``reported-tcb-minimum``, ``committed-tcb``, ``guest-svn``,
    ``author-key-digest``, ``id-key-digest``), :class:`NonceMismatch` (``report-data``) or
    :class:`MeasurementMismatch` (``measurement``, ``host-data``).
    """
    layout = product.tcb_layout
    checks = [_guest_policy(report, policy)]
    warnings: list[str] = []
    if policy.vmpl is not None:
        if report.vmpl != policy.vmpl:
            raise PolicyViolation(f"report VMPL: expected {policy.vmpl}, got {report.vmpl}", check="vmpl")
        checks.append(_pass("vmpl", f"VMPL {report.vmpl}"))
    if policy.minimum_launch_tcb is not None:
        checks.append(
            check_tcb_minimum(
                "launch-tcb-minimum", report.launch_tcb, policy.minimum_launch_tcb, layout, label="launch TCB"
            )
        )
    if policy.minimum_reported_tcb is not None:
        checks.append(
            check_tcb_minimum(
                "reported-tcb-minimum", report.reported_tcb, policy.minimum_reported_tcb, layout, label="reported TCB"
            )
        )
    checks.append(_committed(report, policy, layout))
    if report.guest_svn < policy.minimum_guest_svn:
        raise PolicyViolation(
            f"guest SVN: expected at least {policy.minimum_guest_svn}, got {report.guest_svn}", check="guest-svn"
        )
    if policy.minimum_guest_svn:
        checks.append(_pass("guest-svn", f"guest SVN {report.guest_svn} >= {policy.minimum_guest_svn}"))
    checks.extend(_expected_values(report, policy))
    checks.extend(_key_digests(report, policy, warnings))
    return checks, warnings


def _expected_values(report: AttestationReport, policy: SnpPolicy) -> list[Check]:
    checks: list[Check] = []
    if policy.report_data is not None:
        checks.append(_equal("report-data", "report data", policy.report_data, report.report_data, NonceMismatch))
    if policy.measurement is not None:
        checks.append(
            _equal("measurement", "launch measurement", policy.measurement, report.measurement, MeasurementMismatch)
        )
    if policy.host_data is not None:
        checks.append(_equal("host-data", "host data", policy.host_data, report.host_data, MeasurementMismatch))
    return checks


def _key_digests(report: AttestationReport, policy: SnpPolicy, warnings: list[str]) -> list[Check]:
    checks: list[Check] = []
    if policy.accepted_author_key_digests is not None:
        if not report.signer_info.author_key_en or report.author_key_digest not in policy.accepted_author_key_digests:
            raise PolicyViolation(
                f"author key digest: expected one of {_hexes(policy.accepted_author_key_digests)}, "
                f"got {report.author_key_digest.hex()} (AUTHOR_KEY_EN={int(report.signer_info.author_key_en)})",
                check="author-key-digest",
            )
        checks.append(_pass("author-key-digest", "author key digest accepted"))
    if policy.accepted_id_key_digests is not None:
        if report.id_key_digest in policy.accepted_id_key_digests:
            checks.append(_pass("id-key-digest", f"ID key digest {report.id_key_digest.hex()[:16]}… accepted"))
        else:
            message = (
                f"ID key digest: expected one of {_hexes(policy.accepted_id_key_digests)}, "
                f"got {report.id_key_digest.hex()}"
            )
            if not policy.id_key_digest_warn_only:
                raise PolicyViolation(message, check="id-key-digest")
            checks.append(Check("id-key-digest", CheckStatus.WARN, message))
            warnings.append(message)
    return checks


def _hexes(digests: tuple[bytes, ...]) -> str:
    return "[" + ", ".join(d.hex() for d in digests) + "]" if digests else "[] (none accepted)"
