"""The driver end to end on a tiny fake package: kills, survivors, timeouts, equivalents, and a
working tree left exactly as it was."""

from __future__ import annotations

import hashlib
import json
import sys
import textwrap
from pathlib import Path

import mutate
import pytest

CHECK = '''\
"""A fake check module."""

import hmac


def verify_tag(tag: bytes, expected: bytes) -> None:
    if not hmac.compare_digest(tag, expected):
        raise ValueError("bad tag")


def short_enough(data: bytes) -> bool:
    if len(data) > 8:
        return False
    return True


def is_ready(state: str) -> bool:
    return state == "ready"
'''

TESTS = """\
import time

import pytest

from starlock.mutfake.check import is_ready, short_enough, verify_tag


def test_tag() -> None:
    verify_tag(b"abc", b"abc")
    with pytest.raises(ValueError):
        verify_tag(b"abd", b"abc")


def test_short() -> None:
    assert short_enough(b"ab")  # never tries a long input: the `return False` branch is untested


def test_ready() -> None:
    while not is_ready("ready"):  # a broken is_ready makes this spin: a timeout
        time.sleep(0.01)
"""


def _tree(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest() + f"{p.stat().st_mtime_ns}"
        for p in sorted(root.rglob("*"))
        if p.is_file()
    }


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    pkg = tmp_path / "repo" / "libs" / "mutfake"
    (pkg / "src" / "starlock" / "mutfake").mkdir(parents=True)  # PEP 420: no src/starlock/__init__.py
    (pkg / "src" / "starlock" / "mutfake" / "__init__.py").write_text("")
    (pkg / "src" / "starlock" / "mutfake" / "check.py").write_text(CHECK)
    (pkg / "tests").mkdir()
    (pkg / "tests" / "test_check.py").write_text(TESTS)
    return tmp_path / "repo"


def _run(repo: Path, *args: str) -> int:
    return mutate.main(
        ["--package", "mutfake", "--repo-root", str(repo), "--python", sys.executable, "--module", "check.py", *args]
    )


def test_kills_survivors_timeouts_and_an_untouched_tree(
    repo: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    before = _tree(repo)
    equivalent = tmp_path / "equivalent.txt"
    equivalent.write_text(
        "# judged equivalent\n"
        "libs/mutfake/src/starlock/mutfake/check.py:18:prefix-eq:lhs-prefix  'ready'.startswith(state) is a test gap\n"
        "libs/mutfake/src/starlock/mutfake/check.py:99:cmp-flip  a stale entry\n"
    )
    out_json = tmp_path / "out.json"
    assert _run(repo, "--timeout", "8", "--equivalent", str(equivalent), "--json", str(out_json)) == 0
    assert _tree(repo) == before  # nothing written, nothing touched (not even __pycache__)

    data = json.loads(out_json.read_text())
    status = {m["id"].split("check.py:")[1]: m["status"] for m in data["modules"][0]["mutants"]}
    path = "libs/mutfake/src/starlock/mutfake/check.py"
    assert status == {
        "7:digest-true:True": "killed",
        "7:if-negate:not": "killed",
        "7:prefix-eq:lhs-prefix": "survived",  # b"abd".startswith(b"abc") is False: still rejected
        "7:prefix-eq:rhs-prefix": "survived",
        "8:raise-drop:pass": "killed",
        "12:cmp-flip:Gt>GtE": "survived",  # the boundary is untested
        "12:if-negate:not": "killed",
        "13:return-bool:False>True": "survived",  # not run: no test reaches the line
        "14:return-bool:True>False": "killed",
        "18:cmp-flip:Eq>NotEq": "timeout",
        "18:prefix-eq:lhs-prefix": "survived",
        "18:prefix-eq:rhs-prefix": "survived",
    }
    unrun = [m for m in data["modules"][0]["mutants"] if not m["ran"]]
    assert [m["id"] for m in unrun] == [f"{path}:13:return-bool:False>True"]
    assert data["modules"][0]["counts"] == {"killed": 5, "timeout": 1, "survived": 5, "n/a": 0, "equivalent": 1}

    report = capsys.readouterr().out
    assert "check.py                          12   12      5       1        5     1    0   54.5%" in report
    assert f"  {path}:12  cmp-flip  `len(data) > 8` → `len(data) >= 8`  [reached by the tests]" in report
    assert "not run: no mapped test executes these lines" in report
    assert "Judged equivalent (--equivalent, not scored) (1):" in report
    assert f"{path}:99:cmp-flip" in report.split("matched no mutant")[1]  # the stale entry

    # Judging survivors after the run: the saved JSON scores again with another list, runs nothing.
    equivalent.write_text(f"{path}:12:cmp-flip  boundary judged equivalent\n")
    assert mutate.main(["--rescore", str(out_json), "--equivalent", str(equivalent)]) == 0
    again = capsys.readouterr().out
    assert "check.py                          12   12      5       1        5     1    0   54.5%" in again
    assert f"{path}:12  cmp-flip" in again.split("Judged equivalent")[1]
    assert _tree(repo) == before


def test_list_and_operator_filter(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    before = _tree(repo)
    assert _run(repo, "--list", "--operator", "raise-drop", "--operator", "digest-true") == 0
    lines = capsys.readouterr().out.splitlines()
    assert lines[1:] == [
        "libs/mutfake/src/starlock/mutfake/check.py:7:digest-true:True  `hmac.compare_digest(tag, expected)` → `True`",
        'libs/mutfake/src/starlock/mutfake/check.py:8:raise-drop:pass  if body: `raise ValueError("bad tag")` → `pass`',
    ]
    assert _tree(repo) == before


def test_red_baseline_is_reported_not_scored(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    tests = repo / "libs" / "mutfake" / "tests"
    (tests / "test_red.py").write_text("def test_red():\n    assert False\n")
    assert _run(repo, "--operator", "digest-true") == 0  # the red test is left out, the rest still measures
    out = capsys.readouterr().out
    assert "tests failing without any mutant were left out: FAILED libs/mutfake/tests/test_red.py::test_red" in out
    (tests / "conftest.py").write_text("raise RuntimeError('broken conftest')\n")
    assert _run(repo, "--operator", "digest-true") == 3  # nothing could be measured
    assert "NOT MEASURED" in capsys.readouterr().out


def test_missing_interpreter_is_a_driver_error(repo: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert mutate.main(["--package", "mutfake", "--repo-root", str(repo)]) == 2
    assert "tox -e mutfake --notest" in capsys.readouterr().err


def test_sampling_is_deterministic_and_spreads_operators() -> None:
    from mutants import generate

    text = textwrap.dedent(CHECK) * 1
    ms = generate(text, "check.py")
    first = mutate.select({"check.py": ms}, 4, seed=0)["check.py"]
    assert first == mutate.select({"check.py": ms}, 4, seed=0)["check.py"]
    assert len({m.operator for m in first}) == 4
