"""What the subcommands share: exit codes, endpoints, bounded file reads, the validator."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

__all__ = [
    "EXIT_OK",
    "EXIT_REFUSED",
    "EXIT_USAGE",
    "CliError",
    "load_validator",
    "raise_if_refused",
    "read_file",
    "split_endpoint",
    "write_private",
]

EXIT_OK, EXIT_REFUSED, EXIT_USAGE = 0, 1, 2
MAX_FILE = 4 * 1024 * 1024


class CliError(Exception):
    """A one-line reason; ``exit_code`` 1 (refused) or 2 (usage, input, unreachable)."""

    def __init__(self, message: str, exit_code: int = EXIT_USAGE) -> None:
        super().__init__(message)
        self.exit_code = exit_code


def split_endpoint(endpoint: str) -> tuple[str, int]:
    host, sep, port = endpoint.rpartition(":")
    host = host.strip("[]")
    if not sep or not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise CliError(f"--endpoint {endpoint!r:.60} is not HOST:PORT with a port 1-65535")
    return host, int(port)


def raise_if_refused(error: Exception | None, endpoint: str) -> None:
    """The node's attestation was checked and refused: final, not retried."""
    from starlock.atls.errors import AttestationRejected, NoCompatibleAttestation, UserDataMismatch

    if isinstance(error, AttestationRejected | NoCompatibleAttestation | UserDataMismatch):
        raise CliError(f"the node at {endpoint} failed attestation: {error}", EXIT_REFUSED)


def read_file(path: str, what: str, limit: int = MAX_FILE) -> bytes:
    try:
        with Path(path).open("rb") as src:
            data = src.read(limit + 1)
    except OSError as exc:
        raise CliError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > limit:
        raise CliError(f"{what} {path} is larger than {limit} bytes")
    return data


def write_private(path: Path, data: bytes) -> None:
    """0600, replaced atomically (a symlink at ``path`` is replaced, not followed)."""
    tmp = path.with_name(f".{path.name}.tmp")
    tmp.unlink(missing_ok=True)
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    with os.fdopen(fd, "wb") as out:
        out.write(data)
        out.flush()
        os.fsync(out.fileno())
    tmp.replace(path)


def load_validator(config_path: str, variant_name: str, *, cluster_id: bytes | None = None) -> Any:
    """The variant's validator for the config; with ``cluster_id``, PCR 15 must hold its mark
    (``SHA256(0^32 ‖ SHA256(cluster_id))``, enforced), as ``constellation verify`` expects."""
    import hashlib

    import attrs

    from starlock.attestation.config import load_attestation_config
    from starlock.attestation.errors import AttestationError
    from starlock.attestation.measurements import Measurement, Measurements
    from starlock.attestation.validators import validator_for
    from starlock.attestation.variant import Variant

    try:
        variant = Variant.from_string(variant_name)
        config = load_attestation_config(read_file(config_path, "attestation config"), variant)
        if cluster_id is not None:
            mark = hashlib.sha256(bytes(32) + hashlib.sha256(cluster_id).digest()).digest()
            entries = dict(config.measurements.items())
            entries[15] = Measurement(mark, warn_only=False)
            config = attrs.evolve(config, measurements=Measurements(entries))
        return validator_for(config)
    except AttestationError as exc:
        raise CliError(str(exc)) from None
