"""The CI smoke run of the fuzz harness, and checks that the harness itself can fail.

* Every target's seeds run through its one-input function without a crash, and at least one seed
  per target is accepted whole (so the seeds reach past the first length check).
* A short atheris run of every target (``STARLOCK_FUZZ_SECONDS`` each, default 2): no crash, every
  target executed inputs, and coverage of the target module reached a floor.
* A deliberately crashing target is reported as a crash, with its input saved.

Seeds come from the vectors (MANIFEST families aws-nitrotpm, aws-snp, azure-snp, gcp-vtpm, snp)
read in place; targets of formats the vectors do not hold (KMS URIs, join and init requests, SNI)
generate theirs.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from fuzz_corpus import Vectors

HERE = Path(__file__).resolve().parent
RUNNER = HERE / "run_fuzz.py"
SMOKE_SECONDS = int(os.environ.get("STARLOCK_FUZZ_SECONDS", "2"))
#: Lowest line coverage of the target modules a smoke run must reach (a broken seed or harness
#: that stops at the first check stays far below it).
LINE_FLOOR = 0.45


def _target_names() -> list[str]:
    from fuzz_targets import TARGETS

    return list(TARGETS)


def test_guarded_lets_only_typed_errors_pass() -> None:
    from fuzz_common import InvariantViolation
    from fuzz_targets import guarded

    class Typed(Exception):
        pass

    def one(data: bytes) -> None:
        if data == b"typed":
            raise Typed
        if data == b"other":
            raise KeyError("x")
        if data == b"invariant":
            raise InvariantViolation("broken")

    run = guarded(one, (Typed,))
    run(b"typed")
    run(b"fine")
    with pytest.raises(KeyError):
        run(b"other")
    with pytest.raises(InvariantViolation):
        run(b"invariant")

    stepping = guarded(one, (Typed,), known=((KeyError, "x"),))
    stepping(b"other")  # a crash already kept as a regression test
    with pytest.raises(InvariantViolation):
        stepping(b"invariant")


@pytest.mark.parametrize("name", _target_names())
def test_seeds_run_and_one_is_accepted(name: str, vectors: Vectors) -> None:
    from fuzz_targets import TARGETS

    target = TARGETS[name]
    seeds = target.seeds(vectors)
    assert seeds, f"{name}: no seeds"
    one, allowed = target.build(), target.allowed_errors()
    accepted = 0
    for seed in seeds:
        try:
            one(seed)
        except allowed:
            continue
        accepted += 1
    assert accepted, f"{name}: every seed was refused, the fuzzer would start at the first check"


def _run(args: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(RUNNER), *args], capture_output=True, text=True, timeout=timeout, check=False
    )


def test_smoke_all_targets(tmp_path: Path, vectors: Vectors, capsys: pytest.CaptureFixture[str]) -> None:
    out = tmp_path / "results.json"
    names = _target_names()
    proc = _run(
        ["--seconds", str(SMOKE_SECONDS), "--artifacts", str(tmp_path / "crashes"), "--json", str(out)],
        timeout=len(names) * (SMOKE_SECONDS * 3 + 60),
    )
    with capsys.disabled():
        print("\n" + proc.stdout[proc.stdout.find("target ") :])
    rows = {r["target"]: r for r in json.loads(out.read_text())}
    assert sorted(rows) == sorted(names)
    assert proc.returncode == 0, proc.stdout[-6000:]
    for name, row in rows.items():
        assert row["execs"] > row["seeds"], f"{name}: executed {row['execs']} inputs, no more than its seeds"
        covered, total = row["lines"]
        assert total > 0, f"{name}: coverage measured no line (see the replay error above)"
        assert covered / total >= LINE_FLOOR, f"{name}: {covered}/{total} lines, floor {LINE_FLOOR:.0%}"


def test_a_crashing_target_is_reported(tmp_path: Path) -> None:
    env = {**os.environ, "STARLOCK_FUZZ_SELFTEST": "1"}
    proc = subprocess.run(
        [sys.executable, str(RUNNER), "--seconds", "2", "--only", "selftest", "--artifacts", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        env=env,
    )
    assert proc.returncode == 1, proc.stdout[-3000:]
    assert "CRASH" in proc.stdout
    saved = list(tmp_path.glob("selftest-crash-*"))
    assert saved, proc.stdout[-3000:]
    assert b"FUZZ" in saved[0].read_bytes()
