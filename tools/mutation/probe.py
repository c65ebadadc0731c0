"""The probe a mutant calls; copied into the temporary tree as ``_mutation_probe``.

``hit(value)`` returns ``value`` and records (once per process, by creating the file named by
``STARLOCK_MUTATION_PROBE``) that the mutated code ran. ``prefix_eq`` is the prefix-comparison
mutant of ``a == b``: it compares by prefix only when both operands are bytes-like or both are
str, and otherwise behaves exactly as the original (and records nothing, so a mutant that never
saw bytes or str is reported "n/a" instead of as a survivor).

``observe_eq`` and ``observe_pair`` serve the survey run (one per module, before the mutants):
unchanged behaviour, and a record of the comparison sites that ever see two bytes or two str.
"""

from __future__ import annotations

import os
from typing import Any, TypeVar

__all__ = ["hit", "observe_eq", "observe_pair", "prefix_eq"]

_T = TypeVar("_T")
_BYTES = (bytes, bytearray)
_recorded = False
_observed: set[str] = set()


def _record() -> None:
    global _recorded  # noqa: PLW0603 - one flag per process, read on every call
    if _recorded:
        return
    _recorded = True
    path = os.environ.get("STARLOCK_MUTATION_PROBE")
    if path:
        with open(path, "a", encoding="ascii"):
            pass


def hit(value: _T) -> _T:
    _record()
    return value


def prefix_eq(a: Any, b: Any, *, swap: bool, negate: bool) -> bool:
    """``a == b`` (``a != b`` if ``negate``) with the equality weakened to a prefix test."""
    if _texty(a, b):
        _record()
        equal = bool(a.startswith(b) if swap else b.startswith(a))
    else:
        return a != b if negate else a == b  # type: ignore[no-any-return]  # exactly the original
    return not equal if negate else equal


def _texty(a: Any, b: Any) -> bool:
    return (isinstance(a, _BYTES) and isinstance(b, _BYTES)) or (isinstance(a, str) and isinstance(b, str))


def _observe(site: str, a: Any, b: Any) -> None:
    """Survey run: remember (in ``$STARLOCK_MUTATION_OBSERVED``) that ``site`` compared text."""
    if site not in _observed and _texty(a, b):
        _observed.add(site)
        path = os.environ.get("STARLOCK_MUTATION_OBSERVED")
        if path:
            with open(path, "a", encoding="ascii") as fh:
                fh.write(site + "\n")


def observe_eq(site: str, a: Any, b: Any, *, negate: bool) -> bool:
    """Survey run: exactly ``a == b`` (``a != b``), observing the operand types."""
    _observe(site, a, b)
    return a != b if negate else a == b  # type: ignore[no-any-return]  # exactly the original


def observe_pair(site: str, a: Any, b: Any) -> tuple[Any, Any]:
    """Survey run: the arguments of ``compare_digest(a, b)``, unchanged, observing their types."""
    _observe(site, a, b)
    return a, b
