"""Results of a mutation run: statuses, the ``--equivalent`` list, the printed report and JSON."""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from mutants import Mutant

__all__ = ["Equivalents", "ModuleRun", "Result", "format_report", "from_json", "to_json"]

KILLED, TIMEOUT, SURVIVED, NOT_APPLICABLE = "killed", "timeout", "survived", "n/a"


@dataclass
class Result:
    """The fate of one mutant. ``killed_by``: the first failing test (or the whole-suite note)."""

    mutant: Mutant
    status: str
    seconds: float
    reached: bool
    killed_by: str = ""
    full_suite: bool = False  # killed only when re-run against the whole suite (--confirm-survivors)
    ran: bool = True  # False: not run, the survey saw none of its lines execute (a certain survivor)


@dataclass
class ModuleRun:
    relpath: str
    path: str  # as shown (repo-relative)
    tests: list[str]
    generated: int
    selected: list[Mutant]
    results: list[Result] = field(default_factory=list)
    baseline_seconds: float = 0.0
    timeout: float = 0.0
    deselected: list[str] = field(default_factory=list)
    skipped: str = ""  # why the module was not measured
    drifted: bool = False  # the baseline failed after the mutants ran: results unreliable
    not_applicable: list[Mutant] = field(default_factory=list)  # prefix-eq sites that never compare text
    survey: str = ""  # how the survey run went (shown in the report)


class Equivalents:
    """Survivors judged equivalent: one id per line (``path:line:operator[:variant]``), then a reason.

    Lines starting with ``#`` are comments. An id without ``:variant`` covers every variant of
    that operator on that line.
    """

    def __init__(self, entries: dict[str, str] | None = None) -> None:
        self.entries = entries or {}
        self.used: set[str] = set()

    @classmethod
    def load(cls, path: Path | None) -> Equivalents:
        entries: dict[str, str] = {}
        if path is not None:
            for line in path.read_text().splitlines():
                text = line.strip()
                if not text or text.startswith("#"):
                    continue
                uid, _, reason = text.partition(" ")
                entries[uid] = reason.strip()
        return cls(entries)

    def match(self, uid: str) -> str | None:
        """The entry covering ``uid``, if any (and remember it was used)."""
        for entry in self.entries:
            if uid == entry or uid.startswith((entry + ":", entry + "#")):
                self.used.add(entry)
                return entry
        return None

    def stale(self, paths: Iterable[str]) -> list[str]:
        """Entries for the modules of this run that matched no mutant (a moved line?)."""
        wanted = tuple(f"{p}:" for p in paths)
        return sorted(e for e in self.entries if e not in self.used and e.startswith(wanted))


def _counts(run: ModuleRun, equivalents: Equivalents) -> dict[str, int]:
    c = {KILLED: 0, TIMEOUT: 0, SURVIVED: 0, NOT_APPLICABLE: len(run.not_applicable), "equivalent": 0}
    for r in run.results:
        if r.status == SURVIVED and equivalents.match(r.mutant.uid):
            c["equivalent"] += 1
        else:
            c[r.status] += 1
    return c


def _score(c: dict[str, int]) -> str:
    total = c[KILLED] + c[TIMEOUT] + c[SURVIVED]
    return f"{100.0 * (c[KILLED] + c[TIMEOUT]) / total:5.1f}%" if total else "    -"


def format_report(package: str, runs: Sequence[ModuleRun], equivalents: Equivalents, header: str) -> str:
    out = [header, ""]
    row = "{:<26} {:>9} {:>4} {:>6} {:>7} {:>8} {:>5} {:>4}  {}"
    out.append(row.format("module", "generated", "run", "killed", "timeout", "survived", "equiv", "n/a", "score"))
    grand = {KILLED: 0, TIMEOUT: 0, SURVIVED: 0, NOT_APPLICABLE: 0, "equivalent": 0}
    generated = ran = 0
    for run in runs:
        if run.skipped:
            out.append(f"{run.relpath:<26} {run.generated:>9}  NOT MEASURED: {run.skipped}")
            continue
        c = _counts(run, equivalents)
        for k in grand:
            grand[k] += c[k]
        generated += run.generated
        ran += len(run.results)
        note = "  (tests went red during the run: unreliable)" if run.drifted else ""
        out.append(
            row.format(
                run.relpath,
                run.generated,
                len(run.results),
                c[KILLED],
                c[TIMEOUT],
                c[SURVIVED],
                c["equivalent"],
                c[NOT_APPLICABLE],
                _score(c) + note,
            )
        )
    out.append(
        row.format(
            f"{package} (total)",
            generated,
            ran,
            grand[KILLED],
            grand[TIMEOUT],
            grand[SURVIVED],
            grand["equivalent"],
            grand[NOT_APPLICABLE],
            _score(grand),
        )
    )
    out.append("score = (killed + timeout) / (killed + timeout + survived); equivalent and n/a excluded")
    measured = [r for r in runs if not r.skipped]
    for run in measured:
        if run.survey:
            out.append(f"survey: {run.relpath}: {run.survey}")
        if run.deselected:
            left_out = ", ".join(run.deselected)
            out.append(f"note: {run.relpath}: tests failing without any mutant were left out: {left_out}")
    out += _survivors(measured, equivalents)
    stale = equivalents.stale(run.path for run in runs)
    if stale:
        out += ["", "--equivalent entries that matched no mutant of this run (moved lines, or not sampled):"]
        out += [f"  {e}" for e in stale]
    return "\n".join(out)


def _where(r: Result) -> str:
    if r.reached:
        return "reached by the tests"
    return "mutated code never evaluated" if r.ran else "not run: no mapped test executes these lines"


def _survivors(measured: Sequence[ModuleRun], equivalents: Equivalents) -> list[str]:
    out: list[str] = []
    survivors = [r for run in measured for r in run.results if r.status == SURVIVED]
    real = [r for r in survivors if not equivalents.match(r.mutant.uid)]
    equiv = [r for r in survivors if equivalents.match(r.mutant.uid)]
    out += ["", f"Survivors ({len(real)}):"]
    for r in real:
        m = r.mutant
        out.append(f"  {m.path}:{m.line}  {m.operator}  {m.description}  [{_where(r)}]")
        out.append(f"      id {m.uid}")
    if equiv:
        out += ["", f"Judged equivalent (--equivalent, not scored) ({len(equiv)}):"]
        for r in equiv:
            entry = equivalents.match(r.mutant.uid) or ""
            out.append(f"  {r.mutant.path}:{r.mutant.line}  {r.mutant.operator}  {r.mutant.description}")
            out.append(f"      id {r.mutant.uid}  — {equivalents.entries.get(entry, '')}")
    full = [(run, r) for run in measured for r in run.results if r.full_suite]
    if full:
        out += ["", "Killed only by the whole suite (add the killing test file to targets.py):"]
        out += [f"  {r.mutant.uid}  by {r.killed_by}  (module table: {run.relpath})" for run, r in full]
    return out


def to_json(package: str, runs: Sequence[ModuleRun], equivalents: Equivalents, header: str = "") -> str:
    data: dict[str, Any] = {"package": package, "header": header, "modules": []}
    for run in runs:
        data["modules"].append(
            {
                "module": run.relpath,
                "path": run.path,
                "tests": run.tests,
                "generated": run.generated,
                "skipped": run.skipped,
                "drifted": run.drifted,
                "baseline_seconds": round(run.baseline_seconds, 1),
                "timeout": round(run.timeout, 1),
                "deselected": run.deselected,
                "counts": _counts(run, equivalents) if not run.skipped else {},
                "survey": run.survey,
                "not_applicable": [m.uid for m in run.not_applicable],
                "mutants": [
                    {
                        "id": r.mutant.uid,
                        "line": r.mutant.line,
                        "operator": r.mutant.operator,
                        "variant": r.mutant.variant,
                        "description": r.mutant.description,
                        "status": r.status,
                        "equivalent": bool(r.status == SURVIVED and equivalents.match(r.mutant.uid)),
                        "reached": r.reached,
                        "killed_by": r.killed_by,
                        "full_suite": r.full_suite,
                        "seconds": round(r.seconds, 2),
                        "ran": r.ran,
                    }
                    for r in run.results
                ],
            }
        )
    return json.dumps(data, indent=2)


def _mutant(uid: str, line: int, operator: str, description: str) -> Mutant:
    base = uid.split("#", 1)[0]
    path, _line, _op, variant = base.rsplit(":", 3)
    return Mutant(path, line, operator, variant, description, "", uid, (line, line))


def from_json(text: str) -> tuple[str, str, list[ModuleRun]]:
    """(package, header, module runs) of a report written by :func:`to_json`, to score it again."""
    data = json.loads(text)
    runs = []
    for m in data["modules"]:
        run = ModuleRun(m["module"], m["path"], m["tests"], m["generated"], [])
        run.skipped, run.drifted, run.survey = m["skipped"], m["drifted"], m.get("survey", "")
        run.baseline_seconds, run.timeout, run.deselected = m["baseline_seconds"], m["timeout"], m["deselected"]
        na = m.get("not_applicable") or [f"{m['path']}:0:prefix-eq:?#{i}" for i in range(m["counts"].get("n/a", 0))]
        run.not_applicable = [_mutant(uid, 0, "prefix-eq", "") for uid in na]
        for x in m["mutants"]:
            mutant = _mutant(x["id"], x["line"], x["operator"], x["description"])
            run.selected.append(mutant)
            run.results.append(
                Result(
                    mutant,
                    x["status"],
                    x["seconds"],
                    x["reached"],
                    x["killed_by"],
                    x["full_suite"],
                    x.get("ran", True),
                )
            )
        runs.append(run)
    return data["package"], data.get("header", ""), runs
