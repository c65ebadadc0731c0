"""Mutation operators for security checks: Python source in, a list of mutated sources out.

Each mutant is one small textual edit of the original module (found with :mod:`ast`, applied to
the text so comments, formatting and every line number stay as they were). The edited
expression or statement is wrapped in a call to the probe module (:mod:`probe`, importable as
``_mutation_probe`` in the temporary copy), which records that the mutant was executed, so a
survivor can be reported as "reached" (the tests run it and do not notice) or "not reached"
(no mapped test executes that code).

Operators (see README.md for the rationale):

============  ========================================================================
cmp-flip      ``==``↔``!=``, ``<``↔``<=``, ``>``↔``>=``, ``in``↔``not in``, ``is``↔``is not``
prefix-eq     ``a == b`` → ``b.startswith(a)`` / ``a.startswith(b)`` (``!=``: negated), and
              ``compare_digest(a, b)`` likewise; only where both operands are bytes or str at
              run time (elsewhere it behaves as the original and is reported "n/a")
digest-true   ``hmac.compare_digest(a, b)`` → ``True``
if-negate     ``if c:`` → ``if not (c):`` (also ``elif``)
raise-drop    the ``raise`` that ends an ``if``/``else``/``except`` body (or a call to a
              ``fail``/``reject`` helper there) → ``pass``
return-bool   ``return True`` ↔ ``return False``
key-drop      a tuple assigned to a ``*key*`` name (or used as a key of a ``*cache*``) loses one
              element
slice-bound   ``x[:n]`` → ``x[:n - 1]``, ``x[n:]`` → ``x[n + 1:]``
bool-swap     ``and`` ↔ ``or``
============  ========================================================================

Not mutated: message-only code (f-strings, the exception expression of a ``raise``, arguments
of logging calls), ``if TYPE_CHECKING``/``if __name__ == "__main__"``, and any line carrying
``# pragma: no mutate`` or ``# pragma: no cover`` (on a compound statement: its whole body).
"""

from __future__ import annotations

import ast
import bisect
import re
from collections.abc import Iterator
from dataclasses import dataclass

__all__ = ["OPERATORS", "Mutant", "generate", "survey_source"]

OPERATORS = (
    "cmp-flip",
    "prefix-eq",
    "digest-true",
    "if-negate",
    "raise-drop",
    "return-bool",
    "key-drop",
    "slice-bound",
    "bool-swap",
)

PROBE = '__import__("_mutation_probe")'
_PRAGMAS = ("pragma: no mutate", "pragma: no cover")
_LOG_CALLS = frozenset({"debug", "info", "warning", "warn", "error", "exception", "critical", "log", "vlog"})
_FAIL_CALLS = frozenset({"fail", "_fail", "reject", "_reject"})
_NOT_TEXT_CALLS = frozenset(
    {"len", "type", "id", "int", "bool", "float", "isinstance", "set", "frozenset", "list", "tuple", "dict", "sorted"}
)

# cmp-flip: the replacement operator and the regex that finds the original's token in the gap.
_FLIP: dict[type[ast.cmpop], tuple[str, str, str]] = {
    ast.Eq: (r"==", "!=", "NotEq"),
    ast.NotEq: (r"!=", "==", "Eq"),
    ast.Lt: (r"<(?!=)", "<=", "LtE"),
    ast.LtE: (r"<=", "<", "Lt"),
    ast.Gt: (r">(?!=)", ">=", "GtE"),
    ast.GtE: (r">=", ">", "Gt"),
    ast.In: (r"(?<![\w.])in\b", "not in", "NotIn"),
    ast.NotIn: (r"\bnot\s+in\b", "in", "In"),
    ast.Is: (r"\bis\b", "is not", "IsNot"),
    ast.IsNot: (r"\bis\s+not\b", "is", "Is"),
}


@dataclass(frozen=True)
class Mutant:
    """One mutated version of a module.

    ``uid`` is stable as long as the line does not move: ``path:line:operator:variant`` (with
    ``#n`` appended for the n-th identical edit on the same line). ``description`` shows the
    original and the mutated code.
    """

    path: str
    line: int
    operator: str
    variant: str
    description: str
    source: str
    uid: str
    lines: tuple[int, int]  # first and last line of the mutated code (for the survey's line coverage)
    site: str = ""  # prefix-eq: the comparison's site id (for the survey's operand types)


@dataclass(frozen=True)
class _Edit:
    start: int
    end: int
    text: str
    line: int
    operator: str
    variant: str
    description: str
    site: str = ""


class _Text:
    """A module's text with conversions from ast positions (UTF-8 byte columns) to offsets."""

    def __init__(self, text: str) -> None:
        self.text = text
        self.lines = text.splitlines(keepends=True)
        self.starts = [0]
        for line in self.lines:
            self.starts.append(self.starts[-1] + len(line))

    def offset(self, lineno: int, col: int) -> int:
        line = self.lines[lineno - 1]
        return self.starts[lineno - 1] + len(line.encode()[:col].decode(errors="replace"))

    def span(self, node: ast.AST) -> tuple[int, int]:
        start = self.offset(node.lineno, node.col_offset)  # type: ignore[attr-defined]
        end_line, end_col = node.end_lineno, node.end_col_offset  # type: ignore[attr-defined]
        return start, self.offset(end_line, end_col)

    def segment(self, node: ast.AST) -> str:
        start, end = self.span(node)
        return self.text[start:end]


def _short(code: str, limit: int = 90) -> str:
    flat = " ".join(code.split())
    return flat if len(flat) <= limit else flat[: limit - 1] + "…"


def _wrap(expr: str, original: str) -> str:
    """``expr`` inside a probe call, padded with newlines so the module keeps its line count."""
    pad = "\n" * max(0, original.count("\n") - expr.count("\n"))
    return f"{PROBE}.hit({expr}{pad})"


def _call_name(call: ast.Call) -> str | None:
    func = call.func
    if isinstance(func, ast.Attribute):
        return func.attr
    if isinstance(func, ast.Name):
        return func.id
    return None


def _name_of(node: ast.AST) -> str:
    if isinstance(node, ast.Name):
        return node.id
    if isinstance(node, ast.Attribute):
        return node.attr
    return ""


def _skipped_nodes(tree: ast.AST) -> set[int]:
    """ids of nodes whose mutation changes only a message, or that are not product code."""
    skipped: set[int] = set()

    def skip(node: ast.AST | None) -> None:
        if node is not None:
            skipped.update(id(n) for n in ast.walk(node))

    for node in ast.walk(tree):
        if isinstance(node, ast.JoinedStr):
            skip(node)
        elif isinstance(node, ast.Raise):
            skip(node.exc)
        elif isinstance(node, ast.Call) and _call_name(node) in _LOG_CALLS:
            for arg in [*node.args, *(k.value for k in node.keywords)]:
                skip(arg)
        elif isinstance(node, ast.If):
            test = ast.unparse(node.test)
            if test in {"TYPE_CHECKING", "typing.TYPE_CHECKING"} or test.startswith("__name__ =="):
                skip(node)
    return skipped


def _is_texty_candidate(node: ast.expr) -> bool:
    """Could this operand be bytes or str? (A cheap static filter; the probe decides at run time.)"""
    if isinstance(node, ast.Constant):
        return isinstance(node.value, str | bytes)
    if isinstance(node, ast.Call) and _call_name(node) in _NOT_TEXT_CALLS:
        return False
    return not isinstance(
        node, ast.BinOp | ast.UnaryOp | ast.Compare | ast.BoolOp | ast.List | ast.Tuple | ast.Dict | ast.Set
    )


def _is_default(node: ast.expr) -> bool:
    """A constant or an empty container: the ``default`` of ``x or default``."""
    if isinstance(node, ast.Constant):
        return True
    if isinstance(node, ast.List | ast.Tuple | ast.Set):
        return not node.elts
    if isinstance(node, ast.Dict):
        return not node.keys
    return False


class _Finder:
    def __init__(self, text: _Text, tree: ast.AST) -> None:
        self.t = text
        self.tree = tree
        self.skipped = _skipped_nodes(tree)
        self.pragma_lines = {i + 1 for i, line in enumerate(text.lines) if any(p in line for p in _PRAGMAS)}
        for node in ast.walk(tree):  # a pragma on a compound statement's line covers its body
            if isinstance(node, ast.stmt) and node.lineno in self.pragma_lines:
                self.skipped.update(id(n) for n in ast.walk(node))
        self.sites: dict[str, ast.Compare | ast.Call] = {}

    def edits(self) -> Iterator[_Edit]:
        for node in ast.walk(self.tree):
            if id(node) in self.skipped or getattr(node, "lineno", None) in self.pragma_lines:
                continue
            if isinstance(node, ast.Compare):
                yield from self._compare(node)
            elif isinstance(node, ast.If):
                yield from self._if(node)
            elif isinstance(node, ast.Try):
                for handler in node.handlers:
                    yield from self._raise_drop(handler.body, "except")
            elif isinstance(node, ast.Return):
                yield from self._return(node)
            elif isinstance(node, ast.BoolOp):
                yield from self._boolop(node)
            if isinstance(node, ast.Call):
                yield from self._digest(node)
            if isinstance(node, ast.Assign | ast.Subscript | ast.Call):
                yield from self._key_tuple(node)
            if isinstance(node, ast.Subscript) and isinstance(node.slice, ast.Slice):
                yield from self._slice(node.slice)

    # --- comparisons --------------------------------------------------------------------------

    def _compare(self, node: ast.Compare) -> Iterator[_Edit]:
        start, end = self.t.span(node)
        original = self.t.text[start:end]
        operands = [node.left, *node.comparators]
        for i, op in enumerate(node.ops):
            pattern, replacement, new_name = _FLIP[type(op)]
            gap_start = self.t.span(operands[i])[1]
            gap_end = self.t.span(operands[i + 1])[0]
            gap = self.t.text[gap_start:gap_end]
            if "#" in gap:
                continue
            found = re.search(pattern, gap)
            if found is None:
                continue
            a, b = gap_start - start + found.start(), gap_start - start + found.end()
            mutated = original[:a] + replacement + original[b:]
            yield _Edit(
                start,
                end,
                _wrap(mutated, original),
                node.lineno,
                "cmp-flip",
                f"{type(op).__name__}>{new_name}",
                f"`{_short(original)}` → `{_short(mutated)}`",
            )
        if len(node.ops) == 1 and isinstance(node.ops[0], ast.Eq | ast.NotEq):
            left, right = node.left, node.comparators[0]
            if _is_texty_candidate(left) and _is_texty_candidate(right):
                yield from self._prefix(node, left, right, negate=isinstance(node.ops[0], ast.NotEq))

    def _prefix(
        self, node: ast.Compare | ast.Call, left: ast.expr, right: ast.expr, *, negate: bool
    ) -> Iterator[_Edit]:
        start, end = self.t.span(node)
        self.sites[f"{start}-{end}"] = node
        original = self.t.text[start:end]
        a, b = self.t.segment(left), self.t.segment(right)
        variants = ((False, f"({b}).startswith({a})", "rhs-prefix"), (True, f"({a}).startswith({b})", "lhs-prefix"))
        for swap, shown, variant in variants:
            call = f"{PROBE}.prefix_eq(({a}), ({b}), swap={swap}, negate={negate})"
            pad = "\n" * max(0, original.count("\n") - call.count("\n"))
            text = call[:-1] + pad + ")"
            yield _Edit(
                start,
                end,
                text,
                node.lineno,
                "prefix-eq",
                variant,
                f"`{_short(original)}` → `{'not ' if negate else ''}{_short(shown)}` (bytes/str only)",
                site=f"{start}-{end}",
            )

    def _digest(self, node: ast.Call) -> Iterator[_Edit]:
        if _call_name(node) != "compare_digest" or len(node.args) != 2 or node.keywords:
            return
        start, end = self.t.span(node)
        original = self.t.text[start:end]
        yield _Edit(
            start, end, _wrap("True", original), node.lineno, "digest-true", "True", f"`{_short(original)}` → `True`"
        )
        yield from self._prefix(node, node.args[0], node.args[1], negate=False)

    # --- statements ---------------------------------------------------------------------------

    def _if(self, node: ast.If) -> Iterator[_Edit]:
        start, end = self.t.span(node.test)
        original = self.t.text[start:end]
        yield _Edit(
            start,
            end,
            _wrap(f"not ({original})", original),
            node.lineno,
            "if-negate",
            "not",
            f"`if {_short(original)}:` → `if not ({_short(original)}):`",
        )
        yield from self._raise_drop(node.body, "if")
        if node.orelse:  # an ``elif`` ends in an If, never in a raise: it is visited on its own
            yield from self._raise_drop(node.orelse, "else")

    def _raise_drop(self, body: list[ast.stmt], where: str) -> Iterator[_Edit]:
        last = body[-1]
        ends_in_raise = isinstance(last, ast.Raise) or (
            isinstance(last, ast.Expr) and isinstance(last.value, ast.Call) and _call_name(last.value) in _FAIL_CALLS
        )
        if not ends_in_raise or last.lineno in self.pragma_lines:
            return
        start, end = self.t.span(last)
        original = self.t.text[start:end]
        yield _Edit(
            start,
            end,
            f"{PROBE}.hit(None)" + "\n" * original.count("\n"),
            last.lineno,
            "raise-drop",
            "pass",
            f"{where} body: `{_short(original, 70)}` → `pass`",
        )

    def _return(self, node: ast.Return) -> Iterator[_Edit]:
        value = node.value
        if not (isinstance(value, ast.Constant) and isinstance(value.value, bool)):
            return
        start, end = self.t.span(value)
        flipped = str(not value.value)
        yield _Edit(
            start,
            end,
            _wrap(flipped, "x"),
            node.lineno,
            "return-bool",
            f"{value.value}>{flipped}",
            f"`return {value.value}` → `return {flipped}`",
        )

    # --- expressions --------------------------------------------------------------------------

    def _key_tuple(self, node: ast.AST) -> Iterator[_Edit]:
        tup: ast.expr | None = None
        if isinstance(node, ast.Assign) and len(node.targets) == 1 and "key" in _name_of(node.targets[0]).lower():
            tup = node.value
        elif isinstance(node, ast.Subscript) and "cache" in _name_of(node.value).lower():
            tup = node.slice
        elif (
            isinstance(node, ast.Call)
            and isinstance(node.func, ast.Attribute)
            and node.func.attr in {"get", "setdefault", "pop"}
            and "cache" in _name_of(node.func.value).lower()
            and node.args
        ):
            tup = node.args[0]
        if not isinstance(tup, ast.Tuple) or len(tup.elts) < 2 or id(tup) in self.skipped:
            return
        if any(isinstance(e, ast.Starred) for e in tup.elts):
            return
        start, end = self.t.span(tup)
        original = self.t.text[start:end]
        parts = [self.t.segment(e) for e in tup.elts]
        for i, dropped in enumerate(parts):
            kept = parts[:i] + parts[i + 1 :]
            new = "(" + ", ".join(kept) + ("," if len(kept) == 1 else "") + ")"
            yield _Edit(
                start,
                end,
                _wrap(new, original),
                tup.lineno,
                "key-drop",
                f"drop{i}",
                f"key tuple loses element {i} `{_short(dropped, 60)}`",
            )

    def _slice(self, node: ast.Slice) -> Iterator[_Edit]:
        for bound, sign, variant in ((node.upper, "-", "upper-1"), (node.lower, "+", "lower+1")):
            if bound is None or id(bound) in self.skipped:
                continue
            start, end = self.t.span(bound)
            original = self.t.text[start:end]
            yield _Edit(
                start,
                end,
                _wrap(f"({original}) {sign} 1", original),
                bound.lineno,
                "slice-bound",
                variant,
                f"slice bound `{_short(original, 60)}` → `{_short(original, 60)} {sign} 1`",
            )

    def _boolop(self, node: ast.BoolOp) -> Iterator[_Edit]:
        if isinstance(node.op, ast.Or) and _is_default(node.values[-1]):
            return  # ``x or default``: a default value, not a check
        old, new, variant = ("and", "or", "And>Or") if isinstance(node.op, ast.And) else ("or", "and", "Or>And")
        start, end = self.t.span(node)
        original = self.t.text[start:end]
        pieces = []
        pos = start
        for left, right in zip(node.values, node.values[1:], strict=False):
            gap_start, gap_end = self.t.span(left)[1], self.t.span(right)[0]
            gap = self.t.text[gap_start:gap_end]
            found = re.search(rf"\b{old}\b", gap)
            if found is None or "#" in gap[: found.start()]:
                return
            pieces.append(self.t.text[pos : gap_start + found.start()] + new)
            pos = gap_start + found.end()
        mutated = "".join(pieces) + self.t.text[pos:end]
        yield _Edit(
            start,
            end,
            _wrap(mutated, original),
            node.lineno,
            "bool-swap",
            variant,
            f"`{_short(original)}` → `{_short(mutated)}`",
        )


def _line_of(t: _Text, offset: int) -> int:
    return bisect.bisect_right(t.starts, offset) - 1 + 1


def generate(text: str, path: str, operators: frozenset[str] | None = None) -> list[Mutant]:
    """Every mutant of the module ``text`` (shown as ``path``), in source order.

    Each mutant is checked to compile and to keep every line where it was (a failure is a driver
    bug, raised, never reported as a kill).
    """
    tree = ast.parse(text)
    t = _Text(text)
    wanted = frozenset(OPERATORS) if operators is None else operators
    edits = sorted(
        (e for e in _Finder(t, tree).edits() if e.operator in wanted),
        key=lambda e: (e.line, e.start, OPERATORS.index(e.operator), e.variant),
    )
    lines = text.count("\n")
    seen: dict[str, int] = {}
    out: list[Mutant] = []
    for e in edits:
        source = text[: e.start] + e.text + text[e.end :]
        if source.count("\n") != lines:
            raise AssertionError(f"{path}:{e.line}: {e.operator} would move lines")
        compile(source, path, "exec", dont_inherit=True)
        base = f"{path}:{e.line}:{e.operator}:{e.variant}"
        seen[base] = seen.get(base, 0) + 1
        uid = base if seen[base] == 1 else f"{base}#{seen[base]}"
        span = (_line_of(t, e.start), _line_of(t, max(e.start, e.end - 1)))
        out.append(Mutant(path, e.line, e.operator, e.variant, e.description, source, uid, span, e.site))
    return out


def survey_source(text: str, path: str) -> tuple[str, list[str]]:
    """``text`` with every prefix-eq site observed (same behaviour), and the observed site ids.

    ``a == b`` becomes ``observe_eq(site, a, b)`` and ``compare_digest(a, b)`` becomes
    ``compare_digest(*observe_pair(site, a, b))``; the probe records the sites that ever see two
    bytes or two str operands. Nested sites are left out (their mutants simply run).
    """
    tree = ast.parse(text)
    t = _Text(text)
    finder = _Finder(t, tree)
    replacements: list[tuple[int, int, str, str]] = []
    for e in finder.edits():
        if e.operator != "prefix-eq" or e.variant != "rhs-prefix":
            continue
        node = finder.sites[e.site]
        args = (node.left, node.comparators[0]) if isinstance(node, ast.Compare) else tuple(node.args)
        a, b = (t.segment(x) for x in args)
        if isinstance(node, ast.Compare):
            start, end = e.start, e.end
            negate = isinstance(node.ops[0], ast.NotEq)
            new = f'{PROBE}.observe_eq("{e.site}", ({a}), ({b}), negate={negate})'
        else:
            start, end = t.span(args[0])[0], t.span(args[1])[1]
            new = f'*{PROBE}.observe_pair("{e.site}", ({a}), ({b}))'
        original = text[start:end]
        new = new[:-1] + "\n" * max(0, original.count("\n") - new.count("\n")) + ")"
        replacements.append((start, end, new, e.site))
    replacements.sort()
    kept: list[tuple[int, int, str, str]] = []
    for r in replacements:
        if kept and r[0] < kept[-1][1]:
            continue  # nested in the previous site
        kept.append(r)
    out = text
    for start, end, new, _site in reversed(kept):
        out = out[:start] + new + out[end:]
    compile(out, path, "exec", dont_inherit=True)
    return out, [r[3] for r in kept]
