"""Running a package's tests against a temporary copy of its sources (never the working tree).

A :class:`Workspace` is a private copy of ``src/starlock/<package>`` (PEP 420: only the package
directory is needed) plus the probe module, put first on ``PYTHONPATH`` of the test process so
it wins over the editable install's ``.pth`` entry. A mutant is applied by writing one file of
the copy and undone by writing the original text back; the working tree is only ever read.
"""

from __future__ import annotations

import contextlib
import os
import re
import shutil
import signal
import subprocess
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

__all__ = ["Outcome", "Survey", "TestCommand", "Workspace", "parse_failures", "python_has"]

_PROBE_SOURCE = Path(__file__).with_name("probe.py")
_SURVEY_SITE = Path(__file__).with_name("survey_site.py")
_SKIP_COPY = shutil.ignore_patterns("__pycache__", "*.pyc", "*.pyo")
_GRACE = 10.0  # seconds between SIGINT (pytest tears fixtures down) and SIGKILL


@dataclass(frozen=True)
class Outcome:
    """What one test run did: its exit code (None: timed out), time, probe and first failure."""

    returncode: int | None
    seconds: float
    reached: bool
    failed_test: str
    output_tail: str

    @property
    def timed_out(self) -> bool:
        return self.returncode is None


@dataclass(frozen=True)
class Survey:
    """What the unmutated tests execute of one module: its lines, and the prefix-eq sites that
    compared bytes or str. ``ok`` False: the survey run failed, nothing may be skipped."""

    ok: bool
    lines: frozenset[int] = frozenset()
    text_sites: frozenset[str] = frozenset()
    seconds: float = 0.0

    def reached(self, first: int, last: int) -> bool:
        return not self.ok or any(n in self.lines for n in range(first, last + 1))


@dataclass
class TestCommand:
    """``python -m pytest`` for one set of test paths, with the deselections of a red baseline."""

    python: Path
    tests: list[str]
    deselect: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)
    extra: list[str] = field(default_factory=list)

    def argv(self, *, stop_first: bool) -> list[str]:
        args = [str(self.python), "-m", "pytest", "-q", "-p", "no:cacheprovider", "-rfE", "--no-header"]
        if stop_first:
            args.append("-x")
        args += self.extra
        args += [f"--deselect={d}" for d in self.deselect]
        args += [f"--ignore={i}" for i in self.ignore]
        return args + self.tests


class Workspace:
    """A private copy of one package's sources, for one mutant at a time.

    ``copy_from`` is the package directory to copy: the working tree's ``src/starlock/<package>``
    for the first workspace (the snapshot every mutant is made from), that first copy for the
    workspaces of parallel jobs.
    """

    def __init__(self, root: Path, copy_from: Path, package: str, python: Path, repo_root: Path) -> None:
        self.root = root
        self.src = root / "src"
        self.copy = self.src / "starlock" / package
        self.python = python
        self.repo_root = repo_root
        shutil.copytree(copy_from, self.copy, ignore=_SKIP_COPY)
        shutil.copyfile(_PROBE_SOURCE, self.src / "_mutation_probe.py")
        self.probe = root / "probe-hit"
        self.log = root / "pytest.log"
        self.hypothesis_dir = root / "hypothesis"

    def module_file(self, relpath: str) -> Path:
        return self.copy / relpath

    def env(self, *, survey: Path | None = None) -> dict[str, str]:
        env = {k: v for k, v in os.environ.items() if k not in {"PYTHONHOME", "PYTHONSTARTUP", "PYTEST_ADDOPTS"}}
        first = [str(self.src)] + ([str(survey)] if survey else [])
        env["PYTHONPATH"] = os.pathsep.join([*first, *filter(None, [os.environ.get("PYTHONPATH")])])
        bindir = self.python.parent
        env["PATH"] = os.pathsep.join([str(bindir), os.environ.get("PATH", "")])
        if (bindir.parent / "pyvenv.cfg").exists():
            env["VIRTUAL_ENV"] = str(bindir.parent)
        env["PYTHONDONTWRITEBYTECODE"] = "1"  # nothing written beside the tests in the working tree
        env["HYPOTHESIS_STORAGE_DIRECTORY"] = str(self.hypothesis_dir)  # not the repo's .hypothesis
        env["STARLOCK_MUTATION_PROBE"] = str(self.probe)
        return env

    def imported_files(self, modules: Sequence[str]) -> dict[str, str]:
        """``__file__`` of each module as the test interpreter imports it (must be in the copy)."""
        code = "import importlib, sys\nfor m in sys.argv[1:]:\n    print(m, importlib.import_module(m).__file__)\n"
        result = subprocess.run(  # noqa: S603 - the package's own interpreter, argument list
            [str(self.python), "-c", code, *modules],
            cwd=self.repo_root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=300,
            check=False,
        )
        if result.returncode != 0:
            raise RuntimeError(f"cannot import the copied modules: {result.stderr.strip()[-2000:]}")
        return dict(line.split(" ", 1) for line in result.stdout.splitlines() if " " in line)

    def survey(self, command: TestCommand, relpath: str, instrumented: str, timeout: float) -> Survey:
        """Run the tests once on ``instrumented`` (same behaviour) with line tracing of the module."""
        target = self.module_file(relpath)
        original = target.read_text()
        site_dir = self.root / "survey"
        shutil.rmtree(site_dir, ignore_errors=True)
        site_dir.mkdir()
        shutil.copyfile(_SURVEY_SITE, site_dir / "sitecustomize.py")
        extra = {
            "STARLOCK_MUTATION_TRACE": str(target),
            "STARLOCK_MUTATION_LINES": str(site_dir / "lines"),
            "STARLOCK_MUTATION_OBSERVED": str(site_dir / "observed"),
        }
        target.write_text(instrumented)
        try:
            outcome = self.run(command, timeout, stop_first=True, survey=site_dir, extra_env=extra)
        finally:
            target.write_text(original)
        if outcome.returncode != 0:
            return Survey(ok=False, seconds=outcome.seconds)
        lines = {int(n) for f in site_dir.glob("lines.*") for n in f.read_text().split()}
        observed = site_dir / "observed"
        sites = set(observed.read_text().split()) if observed.exists() else set()
        return Survey(True, frozenset(lines), frozenset(sites), outcome.seconds)

    def run(
        self,
        command: TestCommand,
        timeout: float,
        *,
        stop_first: bool = True,
        survey: Path | None = None,
        extra_env: dict[str, str] | None = None,
    ) -> Outcome:
        self.probe.unlink(missing_ok=True)
        started = time.monotonic()
        with self.log.open("wb") as log:
            process = subprocess.Popen(  # noqa: S603 - the package's own interpreter, argument list
                command.argv(stop_first=stop_first),
                cwd=self.repo_root,
                env={**self.env(survey=survey), **(extra_env or {})},
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,  # its own process group: a timeout ends it and its children
            )
            try:
                returncode: int | None = process.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                returncode = None
                _stop_group(process)
            finally:
                _kill_group(process.pid)  # leftovers of the run (servers a killed test did not stop)
        seconds = time.monotonic() - started
        text = self.log.read_text(errors="replace")
        failures = parse_failures(text)
        first = failures[0][1] if failures else ""
        tail = "\n".join(text.splitlines()[-15:])
        return Outcome(returncode, seconds, self.probe.exists(), first, tail)


def _stop_group(process: subprocess.Popen[bytes]) -> None:
    try:
        os.killpg(process.pid, signal.SIGINT)
        process.wait(timeout=_GRACE)
    except (ProcessLookupError, subprocess.TimeoutExpired):
        pass
    _kill_group(process.pid)
    process.wait()


def _kill_group(pgid: int) -> None:
    with contextlib.suppress(ProcessLookupError, PermissionError):
        os.killpg(pgid, signal.SIGKILL)


_SUMMARY = re.compile(r"^(FAILED|ERROR) (.+?)(?: - .*)?$")


def parse_failures(output: str) -> list[tuple[str, str]]:
    """(``FAILED``/``ERROR``, node id or path) for each line of pytest's short summary."""
    found = []
    for line in output.splitlines():
        m = _SUMMARY.match(line.rstrip())
        if m:
            found.append((m.group(1), m.group(2)))
    return found


def python_has(python: Path, module: str) -> bool:
    result = subprocess.run(  # noqa: S603 - the package's own interpreter, argument list
        [str(python), "-c", f"import {module}"], capture_output=True, timeout=120, check=False
    )
    return result.returncode == 0
