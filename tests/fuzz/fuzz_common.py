"""What every fuzz target shares: the invariant error and the check helper."""

from __future__ import annotations

__all__ = ["InvariantViolation", "check"]


class InvariantViolation(AssertionError):
    """A parser returned a value that breaks its own contract: a crash like an unexpected exception."""


def check(condition: bool, message: str) -> None:
    if not condition:
        raise InvariantViolation(message)
