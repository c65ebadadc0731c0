"""Each operator: the edit it makes, that every mutant compiles and keeps its lines, what is skipped."""

from __future__ import annotations

import sys
import textwrap
from pathlib import Path
from typing import Any

import probe
import pytest
from mutants import OPERATORS, generate, survey_source

CHECK = textwrap.dedent(
    """
    import hmac
    import logging

    _log = logging.getLogger(__name__)


    def check(tag: bytes, expected: bytes, n: int, items: list[int], cache: dict) -> bool:
        if not hmac.compare_digest(tag, expected):
            raise ValueError(f"tag {tag[:4]!r} is not {expected == tag}")
        if n < 3 and n in items:
            _log.info("n is %s", n == 1)
            return False
        key = (tag, n, len(items))
        cache.get((tag, n))
        if tag[:n] != expected:
            return True
        try:
            int("x")
        except ValueError:
            raise KeyError("x") from None
        return n >= 2  # pragma: no mutate
    """
)


def _by_op(op: str) -> list[str]:
    return [m.description for m in generate(CHECK, "check.py") if m.operator == op]


def test_every_mutant_compiles_and_keeps_every_line() -> None:
    mutants = generate(CHECK, "check.py")
    assert {m.operator for m in mutants} == set(OPERATORS)
    for m in mutants:
        assert m.source != CHECK
        assert m.source.count("\n") == CHECK.count("\n")
        compile(m.source, m.path, "exec")
        # outside the mutated line(s), the text is untouched
        changed = [i for i, (a, b) in enumerate(zip(CHECK.splitlines(), m.source.splitlines(), strict=True)) if a != b]
        assert changed and m.lines[0] - 1 <= changed[0] and changed[-1] <= m.lines[1] - 1
    assert len({m.uid for m in mutants}) == len(mutants)


def test_comparison_flips() -> None:
    flips = _by_op("cmp-flip")
    assert "`n < 3` → `n <= 3`" in flips
    assert "`n in items` → `n not in items`" in flips
    assert "`tag[:n] != expected` → `tag[:n] == expected`" in flips


def test_security_operators() -> None:
    assert _by_op("digest-true") == ["`hmac.compare_digest(tag, expected)` → `True`"]
    prefix = _by_op("prefix-eq")
    assert "`hmac.compare_digest(tag, expected)` → `(expected).startswith(tag)` (bytes/str only)" in prefix
    assert "`tag[:n] != expected` → `not (tag).startswith(expected)` (bytes/str only)" not in prefix
    assert "`tag[:n] != expected` → `not (expected).startswith(tag[:n])` (bytes/str only)" in prefix
    assert [d.split("`")[1] for d in _by_op("raise-drop")] == [
        'raise ValueError(f"tag {tag[:4]!r} is not {expected == tag}")',
        'raise KeyError("x") from None',
    ]
    assert _by_op("return-bool") == ["`return False` → `return True`", "`return True` → `return False`"]
    assert _by_op("key-drop") == [
        "key tuple loses element 0 `tag`",
        "key tuple loses element 1 `n`",
        "key tuple loses element 2 `len(items)`",
        "key tuple loses element 0 `tag`",
        "key tuple loses element 1 `n`",
    ]
    assert _by_op("slice-bound") == ["slice bound `n` → `n - 1`"]
    assert _by_op("bool-swap") == ["`n < 3 and n in items` → `n < 3 or n in items`"]


def test_messages_logging_and_pragma_are_not_mutated() -> None:
    mutants = [m for m in generate(CHECK, "check.py") if m.operator != "raise-drop"]
    descriptions = " ".join(m.description for m in mutants)
    assert "expected == tag" not in descriptions  # inside the message of a raise
    assert "tag[:4]" not in descriptions  # an f-string
    assert "n == 1" not in descriptions  # a logging argument
    assert CHECK.splitlines().index("    return n >= 2  # pragma: no mutate") + 1 not in {m.line for m in mutants}


def test_operator_filter() -> None:
    only = generate(CHECK, "check.py", frozenset({"digest-true"}))
    assert [m.uid for m in only] == ["check.py:9:digest-true:True"]


def _outcome(text: str, *args: object) -> object:
    namespace: dict[str, Any] = {}
    exec(compile(text, "check.py", "exec"), namespace)
    try:
        return namespace["check"](*args)
    except Exception as exc:
        return type(exc)


def test_survey_source_behaves_as_the_original(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    text, sites = survey_source(CHECK, "check.py")
    assert len(sites) == 2 and text.count("\n") == CHECK.count("\n")
    monkeypatch.setitem(sys.modules, "_mutation_probe", probe)
    monkeypatch.setattr(probe, "_observed", set())
    monkeypatch.setenv("STARLOCK_MUTATION_OBSERVED", str(tmp_path / "observed"))
    cases: list[tuple[object, ...]] = [
        (b"ab", b"abc", 1, [], {}),
        (b"abc", b"abc", 1, [1], {}),
        (b"abc", b"abc", 5, [], {}),
        (b"abc", b"ab", 2, [], {}),
    ]
    for args in cases:
        assert _outcome(text, *args) == _outcome(CHECK, *args)
    assert sorted((tmp_path / "observed").read_text().split()) == sorted(sites)


def test_prefix_mutant_only_weakens_text_comparisons(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setitem(sys.modules, "_mutation_probe", probe)
    monkeypatch.setattr(probe, "_recorded", False)
    monkeypatch.setenv("STARLOCK_MUTATION_PROBE", str(tmp_path / "hit"))
    assert probe.prefix_eq(1, 1, swap=False, negate=False) and not probe.prefix_eq(1, 2, swap=False, negate=False)
    assert not (tmp_path / "hit").exists()  # ints: the original comparison, nothing recorded
    assert probe.prefix_eq(b"ab", b"abc", swap=False, negate=False)  # b"abc".startswith(b"ab")
    assert not probe.prefix_eq(b"ab", b"abc", swap=True, negate=False)
    assert not probe.prefix_eq("ab", "abc", swap=False, negate=True)
    assert (tmp_path / "hit").exists()
