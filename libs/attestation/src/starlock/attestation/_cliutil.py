"""What the ``starlock-verify`` subcommands share: exit codes, bounded input, --at and --strict."""

from __future__ import annotations

import sys
from collections.abc import Sequence
from datetime import datetime
from pathlib import Path

from starlock.attestation.interfaces import Check, CheckStatus

__all__ = [
    "EXIT_ACCEPTED",
    "EXIT_REJECTED",
    "EXIT_USAGE",
    "STRICT_HELP",
    "UsageError",
    "check_json_syntax",
    "parse_time",
    "read_input",
    "strict_failure",
]

STRICT_HELP = "treat every WARN row (something not checked, a warn-only mismatch) as a rejection: exit 1"

EXIT_ACCEPTED, EXIT_REJECTED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad usage or unreadable input: exit 2 with this one-line reason."""


def read_input(path: str, what: str, max_size: int) -> bytes:
    """Read a file (``-`` for standard input) of at most ``max_size`` bytes."""
    try:
        if path == "-":
            data = sys.stdin.buffer.read(max_size + 1)
        else:
            with Path(path).open("rb") as fh:
                data = fh.read(max_size + 1)
    except OSError as exc:
        raise UsageError(f"cannot read {what} {path}: {exc.strerror}") from None
    if len(data) > max_size:
        raise UsageError(f"{what} {path} is larger than {max_size} bytes")
    return data


def check_json_syntax(data: bytes, what: str) -> None:
    """Input that starts like JSON (``{`` or ``[``) must be JSON: its error with line and column,
    instead of the YAML parser's multi-line message for a JSON typo."""
    from starlock.attestation.formats.sniff import json_error, looks_like_json

    if looks_like_json(data):
        error = json_error(data)
        if error is not None:
            raise UsageError(f"{what} is not valid JSON: {error}")


def parse_time(value: str | None) -> datetime | None:
    """``--at``: an RFC 3339 time with a zone, or None for now."""
    if value is None:
        return None
    try:
        at = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise UsageError(f"--at {value!r:.40} is not an RFC 3339 time (e.g. 2026-11-25T12:00:00Z)") from None
    if at.tzinfo is None:
        raise UsageError("--at needs a time zone (e.g. 2026-11-25T12:00:00Z)")
    return at


def strict_failure(checks: Sequence[Check]) -> str | None:
    """With ``--strict``: why an accepted evaluation is rejected (its WARN rows), or None without any."""
    warned = [c.name for c in checks if c.status is CheckStatus.WARN]
    if not warned:
        return None
    names = ", ".join(dict.fromkeys(warned))
    return f"--strict: {len(warned)} warning{'s' if len(warned) != 1 else ''} ({names})"
