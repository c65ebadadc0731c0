#!/usr/bin/env python3
"""Mutation testing of Starlock's security checks: how many injected bugs do the tests catch?

Usage (from the repository root; see README.md)::

    nice -n 19 python tools/mutation/mutate.py --package attestation --max-mutants 150
    python tools/mutation/mutate.py --package kms --module derive.py --list

The package's sources are copied to a temporary directory; each mutant is written into that
copy only and the package's tests run against it (``PYTHONPATH`` first, with the interpreter of
the package's tox env). A mutant is killed when the tests fail or time out. The driver reports;
it does not gate: exit 0 after any measurement, 2 for bad arguments or a missing environment,
3 when no module could be measured (e.g. the tests fail without any mutant).
"""

from __future__ import annotations

import argparse
import ast
import datetime
import fnmatch
import hashlib
import queue
import random
import shutil
import sys
import tempfile
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from mutants import OPERATORS, Mutant, generate, survey_source
from report import (
    KILLED,
    NOT_APPLICABLE,
    SURVIVED,
    TIMEOUT,
    Equivalents,
    ModuleRun,
    Result,
    format_report,
    from_json,
    to_json,
)
from runner import Outcome, Survey, TestCommand, Workspace, parse_failures, python_has
from targets import TARGETS

REPO_ROOT = Path(__file__).resolve().parents[2]


class DriverError(Exception):
    """The driver cannot run (bad arguments, missing environment): exit 2."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0], formatter_class=argparse.RawTextHelpFormatter)
    p.add_argument("--package", help="attestation, atls, kms, ... (libs/<package>)")
    p.add_argument("--module", action="append", default=[], help="module path or glob below src/starlock/<package>")
    p.add_argument("--operator", action="append", choices=OPERATORS, help="only these operators (repeatable)")
    p.add_argument("--max-mutants", type=int, help="run at most N mutants, spread over modules and operators")
    p.add_argument("--seed", type=int, default=0, help="sampling seed for --max-mutants (default 0)")
    p.add_argument("--jobs", type=int, default=1, help="mutants run in parallel (default 1)")
    p.add_argument("--timeout", type=float, help="seconds per mutant (default: 3 x baseline + 10, at least 30)")
    p.add_argument("--equivalent", type=Path, help="file of survivor ids judged equivalent (excluded from the score)")
    p.add_argument("--confirm-survivors", action="store_true", help="re-run each survivor against the whole suite")
    p.add_argument("--list", action="store_true", help="print the selected mutants and exit (runs no tests)")
    p.add_argument("--json", type=Path, help="also write the results as JSON to this file")
    p.add_argument("--rescore", type=Path, help="print the report of a saved --json file again (runs no tests)")
    p.add_argument("--repo-root", type=Path, default=REPO_ROOT, help=argparse.SUPPRESS)
    p.add_argument("--package-dir", type=Path, help="default: <repo>/libs/<package>")
    p.add_argument("--tests-dir", type=Path, help="default: <package-dir>/tests")
    p.add_argument("--python", type=Path, help="test interpreter (default: <repo>/.tox/<package>/bin/python)")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temporary copy (for debugging)")
    args = p.parse_args(argv)
    if not args.package and not args.rescore:
        p.error("--package is required")
    if args.jobs < 1 or (args.max_mutants is not None and args.max_mutants < 1):
        p.error("--jobs and --max-mutants must be positive")
    return args


def _display(path: Path, repo_root: Path) -> str:
    try:
        return str(path.relative_to(repo_root))
    except ValueError:
        return str(path)


def resolve_modules(package_src: Path, package: str, requested: list[str]) -> list[tuple[str, tuple[str, ...]]]:
    """(module path relative to the package, mapped test files) for each target module."""
    table = TARGETS.get(package, {})
    patterns = requested or list(table)
    if not patterns:
        raise DriverError(f"no default targets for package {package!r}: give --module")
    files = sorted(str(f.relative_to(package_src)) for f in package_src.rglob("*.py") if "__pycache__" not in f.parts)
    chosen: list[tuple[str, tuple[str, ...]]] = []
    for pattern in patterns:
        matches = [f for f in files if fnmatch.fnmatch(f, pattern)]
        if not matches:
            print(f"note: no module matches {pattern!r} in {package_src}", file=sys.stderr)
        for rel in matches:
            if rel in (c[0] for c in chosen):
                continue
            tests = next((t for pat, t in table.items() if fnmatch.fnmatch(rel, pat)), ())
            chosen.append((rel, tests))
    if not chosen:
        raise DriverError("no module to mutate")
    return chosen


def select(per_module: dict[str, list[Mutant]], limit: int | None, seed: int) -> dict[str, list[Mutant]]:
    """At most ``limit`` mutants: modules take turns, and within a module the operators take
    turns (so the rare operators, e.g. ``digest-true``, are always in); deterministic per seed."""
    # Sampling, not cryptography: a seeded generator makes the selection repeatable.
    ordered = {rel: _interleave(ms, random.Random(f"{seed}:{rel}")) for rel, ms in per_module.items()}  # noqa: S311
    if limit is None or sum(map(len, ordered.values())) <= limit:
        return {rel: sorted(ms, key=lambda m: (m.line, m.uid)) for rel, ms in ordered.items()}
    chosen: dict[str, list[Mutant]] = {rel: [] for rel in ordered}
    count, turn = 0, 0
    while count < limit:
        progressed = False
        for rel, ms in ordered.items():
            if turn < len(ms) and count < limit:
                chosen[rel].append(ms[turn])
                count += 1
                progressed = True
        if not progressed:
            break
        turn += 1
    return {rel: sorted(ms, key=lambda m: (m.line, m.uid)) for rel, ms in chosen.items()}


def _interleave(mutants: list[Mutant], rng: random.Random) -> list[Mutant]:
    """The mutants in turns of operators, each operator's own list shuffled."""
    by_op = [[m for m in mutants if m.operator == op] for op in OPERATORS]
    for ms in by_op:
        rng.shuffle(ms)
    out: list[Mutant] = []
    for turn in range(max(map(len, by_op), default=0)):
        out.extend(ms[turn] for ms in by_op if turn < len(ms))
    return out


class Driver:
    def __init__(self, args: argparse.Namespace, tmp: Path) -> None:
        self.args = args
        self.repo_root: Path = args.repo_root.resolve()
        self.package: str = args.package
        self.package_dir = (args.package_dir or self.repo_root / "libs" / self.package).resolve()
        self.tests_dir = (args.tests_dir or self.package_dir / "tests").resolve()
        self.python = (args.python or self.repo_root / ".tox" / self.package / "bin" / "python").absolute()
        self.package_src = self.package_dir / "src" / "starlock" / self.package
        self.tmp = tmp
        self.baselines: dict[frozenset[str], tuple[TestCommand, float, list[str], str]] = {}
        self.extra: list[str] = []

    def check_environment(self) -> None:
        if not self.package_src.is_dir():
            raise DriverError(f"{self.package_src} is not a directory (PEP 420 layout src/starlock/<package>)")
        if not self.tests_dir.is_dir():
            raise DriverError(f"no test folder {self.tests_dir}")
        if not self.python.exists():
            raise DriverError(
                f"no interpreter {self.python}: create the tox env first (.venv/bin/tox -e {self.package} --notest)"
            )
        if not python_has(self.python, "pytest"):
            raise DriverError(f"{self.python} has no pytest")
        # Node ids relative to the repository root, as pytest prints them (for --deselect).
        self.extra = [f"--rootdir={self.repo_root}"]
        if python_has(self.python, "hypothesis"):
            self.extra.append("--hypothesis-seed=0")  # the same examples for every mutant

    def test_paths(self, mapped: tuple[str, ...]) -> list[str]:
        existing = [self.tests_dir / t for t in dict.fromkeys(mapped) if (self.tests_dir / t).is_file()]
        paths = existing or [self.tests_dir]
        return [_display(p, self.repo_root) for p in paths]

    def baseline(self, ws: Workspace, tests: list[str]) -> tuple[TestCommand, float, list[str], str]:
        """The green command for ``tests`` (failing tests of the working tree left out), its time."""
        key = frozenset(tests)
        if key not in self.baselines:
            self.baselines[key] = self._baseline(ws, tests)
        return self.baselines[key]

    def _baseline(self, ws: Workspace, tests: list[str]) -> tuple[TestCommand, float, list[str], str]:
        command = TestCommand(self.python, tests, extra=self.extra)
        outcome = ws.run(command, timeout=3600, stop_first=False)
        left_out: list[str] = []
        if outcome.returncode not in (0, 5):
            for kind, node in parse_failures(ws.log.read_text(errors="replace")):
                (command.deselect if "::" in node else command.ignore).append(node)
                left_out.append(f"{kind} {node}")
            if left_out:
                outcome = ws.run(command, timeout=3600, stop_first=False)
        if outcome.returncode == 5:
            return command, outcome.seconds, left_out, "no tests collected"
        if outcome.returncode != 0:
            tail = outcome.output_tail.strip().splitlines()[-1:] or ["?"]
            return command, outcome.seconds, left_out, f"the tests fail without any mutant ({tail[0]})"
        return command, outcome.seconds, left_out, ""

    def run_mutants(self, workspaces: list[Workspace], run: ModuleRun, command: TestCommand, survey: Survey) -> None:
        pool: queue.Queue[Workspace] = queue.Queue()
        for ws in workspaces:
            pool.put(ws)
        total = len(run.selected)

        def one(index: int, mutant: Mutant) -> Result:
            if not survey.reached(*mutant.lines):
                print(f"[{index}/{total}] survived {mutant.uid} (not run: lines never executed)", file=sys.stderr)
                return Result(mutant, SURVIVED, 0.0, reached=False, ran=False)
            ws = pool.get()
            try:
                target = ws.module_file(run.relpath)
                original = target.read_text()
                target.write_text(mutant.source)
                try:
                    outcome = ws.run(command, run.timeout)
                finally:
                    target.write_text(original)
            finally:
                pool.put(ws)
            result = classify(mutant, outcome)
            print(
                f"[{index}/{total}] {result.status:<8} {run.relpath}:{mutant.line} {mutant.operator} "
                f"{mutant.variant} ({outcome.seconds:.1f} s)",
                file=sys.stderr,
                flush=True,
            )
            return result

        with ThreadPoolExecutor(max_workers=len(workspaces)) as ex:
            run.results = list(ex.map(one, range(1, total + 1), run.selected))

    def confirm(self, ws: Workspace, runs: list[ModuleRun]) -> None:
        """Re-run survivors against the whole suite: a kill there is a gap of the table, not of the tests."""
        survivors = [(run, r) for run in runs for r in run.results if r.status == SURVIVED]
        if not survivors:
            return
        full, seconds, _left, broken = self.baseline(ws, [_display(self.tests_dir, self.repo_root)])
        if broken:
            print(f"note: cannot confirm survivors: whole suite: {broken}", file=sys.stderr)
            return
        timeout = self.args.timeout or max(30.0, 3 * seconds + 10)
        for run, r in survivors:
            target = ws.module_file(run.relpath)
            original = target.read_text()
            target.write_text(r.mutant.source)
            try:
                outcome = ws.run(full, timeout)
            finally:
                target.write_text(original)
            again = classify(r.mutant, outcome)
            print(f"[confirm] {again.status:<8} {r.mutant.uid}", file=sys.stderr, flush=True)
            if again.status in (KILLED, TIMEOUT):
                r.status, r.killed_by, r.full_suite = again.status, again.killed_by or "(timeout)", True

    def run(self) -> tuple[list[ModuleRun], str]:
        self.check_environment()
        started = datetime.datetime.now(datetime.UTC)
        snapshot = Workspace(self.tmp / "job0", self.package_src, self.package, self.python, self.repo_root)
        modules = resolve_modules(snapshot.copy, self.package, self.args.module)
        wanted = frozenset(self.args.operator) if self.args.operator else None
        generated: dict[str, list[Mutant]] = {}
        runs: list[ModuleRun] = []
        for rel, tests in modules:
            path = _display(self.package_src / rel, self.repo_root)
            generated[rel] = generate(snapshot.module_file(rel).read_text(), path, wanted)
            runs.append(ModuleRun(rel, path, self.test_paths(tests), len(generated[rel]), []))
        if self.args.list:
            chosen = select(generated, self.args.max_mutants, self.args.seed)
            for run in runs:
                run.selected = chosen[run.relpath]
            return runs, ""
        self.check_imports(snapshot, runs)
        hashes = {run.relpath: _sha256(self.package_src / run.relpath) for run in runs}
        surveys = {run.relpath: s for run in runs if (s := self.prepare(snapshot, run, generated))}
        chosen = select({r: generated[r] for r in surveys}, self.args.max_mutants, self.args.seed)
        workspaces = [snapshot] + [
            Workspace(self.tmp / f"job{i}", snapshot.copy, self.package, self.python, self.repo_root)
            for i in range(1, self.args.jobs)
        ]
        for run in runs:
            run.selected = chosen.get(run.relpath, []) if not run.skipped else []
            if run.selected:
                command = self.baseline(snapshot, run.tests)[0]
                print(
                    f"{run.relpath}: {len(run.selected)} of {run.generated} mutants ({len(run.not_applicable)} n/a); "
                    f"timeout {run.timeout:.0f} s; tests {' '.join(Path(t).name for t in run.tests)}",
                    file=sys.stderr,
                    flush=True,
                )
                self.run_mutants(workspaces, run, command, surveys[run.relpath])
        for key, (command, _s, _l, broken) in list(self.baselines.items()):
            if not broken and snapshot.run(command, 3600, stop_first=True).returncode != 0:
                for run in runs:
                    run.drifted = run.drifted or frozenset(run.tests) == key
        if self.args.confirm_survivors:
            self.confirm(snapshot, [r for r in runs if not r.skipped])
        changed = [rel for rel, h in hashes.items() if _sha256(self.package_src / rel) != h]
        return runs, self.header(started, changed)

    def prepare(self, ws: Workspace, run: ModuleRun, generated: dict[str, list[Mutant]]) -> Survey | None:
        """Baseline and survey of one module; takes its n/a mutants out of ``generated``."""
        if not generated[run.relpath]:
            return None  # nothing to mutate: no baseline needed
        print(f"{run.relpath}: baseline and survey ...", file=sys.stderr, flush=True)
        command, seconds, left_out, broken = self.baseline(ws, run.tests)
        run.baseline_seconds, run.deselected = seconds, left_out
        if broken:
            run.skipped = broken
            print(f"note: {run.relpath} not measured: {broken}", file=sys.stderr)
            return None
        run.timeout = self.args.timeout or max(30.0, 3 * seconds + 10)
        survey = self.survey(ws, run, command)
        instrumented = set(survey_source(ws.module_file(run.relpath).read_text(), run.path)[1])
        run.not_applicable = [
            m
            for m in generated[run.relpath]
            if m.operator == "prefix-eq"
            and survey.ok
            and m.site in instrumented
            and survey.reached(*m.lines)
            and m.site not in survey.text_sites
        ]
        dropped = {m.uid for m in run.not_applicable}
        generated[run.relpath] = [m for m in generated[run.relpath] if m.uid not in dropped]
        return survey

    def header(self, started: datetime.datetime, changed: list[str]) -> str:
        elapsed = (datetime.datetime.now(datetime.UTC) - started).total_seconds()
        header = (
            f"Mutation report for {self.package} ({_display(self.package_src, self.repo_root)}, snapshot of "
            f"{started:%Y-%m-%d %H:%M:%S} UTC, {elapsed / 60:.1f} min, "
            f"tests by {_display(self.python, self.repo_root)})"
        )
        if changed:
            header += "\nnote: changed in the working tree since the snapshot (results are for the snapshot): "
            header += ", ".join(changed)
        return header

    def check_imports(self, ws: Workspace, runs: list[ModuleRun]) -> None:
        """The test interpreter must import every target module from the copy, not the working tree."""
        names = {}
        for run in runs:
            name = "starlock." + self.package + "." + run.relpath[: -len(".py")].replace("/", ".")
            names[run.relpath] = name.removesuffix(".__init__")
        imported = ws.imported_files(sorted(set(names.values())))
        for name in names.values():
            where = imported.get(name, "")
            if not Path(where).resolve().is_relative_to(ws.src.resolve()):
                raise DriverError(f"{name} is imported from {where!r}, not from the copy in {ws.src}")

    def survey(self, ws: Workspace, run: ModuleRun, command: TestCommand) -> Survey:
        text = ws.module_file(run.relpath).read_text()
        instrumented, sites = survey_source(text, run.path)
        survey = ws.survey(command, run.relpath, instrumented, timeout=max(120.0, 5 * run.baseline_seconds + 60))
        if survey.ok:
            executable = _code_lines(text)
            run.survey = (
                f"{len(survey.lines & executable)} of {len(executable)} code lines run by the mapped tests; "
                f"{len(survey.text_sites)} of {len(sites)} equality sites compare bytes/str ({survey.seconds:.0f} s)"
            )
        else:
            run.survey = "failed (every mutant runs; unreached mutants are not skipped)"
        return survey


def classify(mutant: Mutant, outcome: Outcome) -> Result:
    if outcome.timed_out:
        return Result(mutant, TIMEOUT, outcome.seconds, outcome.reached, "(timeout)")
    if outcome.returncode != 0:
        return Result(
            mutant, KILLED, outcome.seconds, outcome.reached, outcome.failed_test or f"exit {outcome.returncode}"
        )
    if mutant.operator == "prefix-eq" and not outcome.reached:
        return Result(mutant, NOT_APPLICABLE, outcome.seconds, False)
    return Result(mutant, SURVIVED, outcome.seconds, outcome.reached)


def _code_lines(text: str) -> frozenset[int]:
    """Lines that hold the start of a statement (what a line tracer can report)."""
    return frozenset(n.lineno for n in ast.walk(ast.parse(text)) if isinstance(n, ast.stmt))


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest() if path.exists() else ""


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    if args.rescore:
        try:
            package, header, runs = from_json(args.rescore.read_text())
            equivalents = Equivalents.load(args.equivalent)
        except (OSError, ValueError, KeyError) as exc:
            print(f"mutate.py: cannot rescore {args.rescore}: {exc}", file=sys.stderr)
            return 2
        print(format_report(package, runs, equivalents, header or f"Mutation report for {package} (rescored)"))
        return 0
    tmp = Path(tempfile.mkdtemp(prefix=f"starlock-mutation-{args.package}-"))
    try:
        equivalents = Equivalents.load(args.equivalent)
        runs, header = Driver(args, tmp).run()
    except (DriverError, OSError) as exc:
        print(f"mutate.py: {exc}", file=sys.stderr)
        return 2
    finally:
        if args.keep_tmp:
            print(f"temporary copy kept in {tmp}", file=sys.stderr)
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    if args.list:
        for run in runs:
            print(f"# {run.path}: {len(run.selected)} of {run.generated} mutants; tests: {' '.join(run.tests)}")
            for m in run.selected:
                print(f"{m.uid}  {m.description}")
        return 0
    print(format_report(args.package, runs, equivalents, header))
    if args.json:
        args.json.write_text(to_json(args.package, runs, equivalents, header) + "\n")
    return 0 if any(not r.skipped for r in runs) else 3


if __name__ == "__main__":
    sys.exit(main())
