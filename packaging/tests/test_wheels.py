"""Each library as it would be published: sdist and wheel, metadata, and the wheel alone in a venv.

Every wheel is installed into a fresh virtual environment holding nothing else: first the other
Starlock wheels it declares (transitively, from the wheels built here: never a same-named package
from an index), then the wheel itself with its third-party dependencies from PyPI. The venv must
then hold exactly those Starlock distributions, pass `pip check`, import the package and run each
console script's `--help`.
"""

from __future__ import annotations

import json
import re
import sys
import tarfile
import tomllib
import venv
import zipfile
from email.message import Message
from email.parser import Parser
from pathlib import Path

import pytest
from conftest import LIBS, Dist, require_tool, run
from packaging.requirements import Requirement
from packaging.version import Version

CHANGELOG_HEADING = re.compile(r"^## \[(?P<version>[^\]]+)\](?: - (?P<date>\d{4}-\d{2}-\d{2}))?$", re.MULTILINE)
REQUIRED_URLS = {"Homepage", "Documentation", "Source", "Changelog", "Issues"}


def _metadata(wheel: Path) -> Message:
    with zipfile.ZipFile(wheel) as z:
        name = next(n for n in z.namelist() if n.endswith(".dist-info/METADATA"))
        return Parser().parsestr(z.read(name).decode())


def _console_scripts(wheel: Path) -> list[str]:
    with zipfile.ZipFile(wheel) as z:
        names = [n for n in z.namelist() if n.endswith(".dist-info/entry_points.txt")]
        if not names:
            return []
        text = z.read(names[0]).decode()
    section = re.search(r"^\[console_scripts\]\n((?:[^\[\n].*\n?)*)", text, re.MULTILINE)
    return [line.split("=")[0].strip() for line in section.group(1).splitlines() if "=" in line] if section else []


def _starlock_requirements(wheel: Path) -> list[Requirement]:
    reqs = [Requirement(r) for r in _metadata(wheel).get_all("Requires-Dist") or []]
    return [r for r in reqs if r.name.startswith("starlock-") and r.marker is None]


def _closure(name: str, dists: dict[str, Dist]) -> set[str]:
    """The Starlock distributions ``name`` needs without extras, itself excluded."""
    needed: set[str] = set()
    todo = [name]
    while todo:
        for req in _starlock_requirements(dists[todo.pop()].wheel):
            if req.name not in needed:
                needed.add(req.name)
                todo.append(req.name)
    return needed


def _project(dist: Dist) -> dict:
    return tomllib.loads((dist.folder / "pyproject.toml").read_text())["project"]


def test_every_library_is_built_and_passes_twine_check_strict(dists: dict[str, Dist]) -> None:
    assert set(dists) == {f"starlock-{lib}" for lib in LIBS}
    twine = require_tool("twine", "twine")
    files = [str(p) for d in dists.values() for p in (d.wheel, d.sdist)]
    res = run([twine, "check", "--strict", *files])
    assert res.returncode == 0, res.stdout + res.stderr
    assert res.stdout.count("PASSED") == len(files)


@pytest.mark.parametrize("lib", LIBS)
def test_metadata_is_complete(lib: str, dists: dict[str, Dist]) -> None:
    dist = dists[f"starlock-{lib}"]
    meta = _metadata(dist.wheel)
    project = _project(dist)
    assert meta["Name"] == dist.name
    assert meta["Version"] == project["version"]
    assert meta["Requires-Python"] == ">=3.11"
    assert meta["License-Expression"] == "Apache-2.0"
    assert meta["Summary"] and meta["Description-Content-Type"] == "text/markdown"
    assert meta["Author"] or meta["Author-email"]
    urls = dict(u.split(", ", 1) for u in meta.get_all("Project-URL") or [])
    assert set(urls) >= REQUIRED_URLS
    # one place to change when the repository moves: every package names the same home
    assert urls["Homepage"] == _project(dists["starlock-kms"]).get("urls", {})["Homepage"]
    assert urls["Changelog"].endswith(f"libs/{lib}/CHANGELOG.md")
    classifiers = set(meta.get_all("Classifier") or [])
    assert {
        "Programming Language :: Python :: 3 :: Only",
        "Typing :: Typed",
        "Operating System :: POSIX :: Linux",
    } <= classifiers
    assert not {c for c in classifiers if c.startswith("License ::")}  # the SPDX expression says it
    assert set(meta.get_all("Provides-Extra") or []) == set(project.get("optional-dependencies", {}))
    for req in [Requirement(r) for r in meta.get_all("Requires-Dist") or []]:
        # lower bounds only (CONVENTIONS.md), and every Starlock one met by this working tree
        assert req.specifier, f"{req.name} has no lower bound"
        assert all(s.operator == ">=" for s in req.specifier), str(req)
        if req.name.startswith("starlock-"):
            assert Version(_project(dists[req.name])["version"]) in req.specifier, str(req)


@pytest.mark.parametrize("lib", LIBS)
def test_sdist_holds_changelog_readme_and_tests_and_the_changelog_matches_the_version(
    lib: str, dists: dict[str, Dist]
) -> None:
    dist = dists[f"starlock-{lib}"]
    with tarfile.open(dist.sdist) as tar:
        names = {n.split("/", 1)[1] for n in tar.getnames() if "/" in n}
    assert {"CHANGELOG.md", "README.md", "pyproject.toml", "PKG-INFO"} <= names
    assert any(n.startswith("tests/test_") for n in names)
    assert f"src/starlock/{lib}/py.typed" in names
    assert "src/starlock/__init__.py" not in names  # PEP 420 namespace
    text = (dist.folder / "CHANGELOG.md").read_text()
    headings = [m.group("version") for m in CHANGELOG_HEADING.finditer(text)]
    assert headings and headings[0] == "Unreleased", "Keep a Changelog: [Unreleased] on top"
    released = [Version(v) for v in headings[1:]]
    assert released == sorted(released, reverse=True), "newest release first"
    if released:  # after the first release the newest section is the version in pyproject.toml
        assert str(released[0]) == _project(dist)["version"]
    for label in headings:
        assert f"\n[{label}]: " in text, f"no link for [{label}]"
    sections = set(re.findall(r"^### (.+)$", text, re.MULTILINE))
    assert sections <= {"Added", "Changed", "Deprecated", "Removed", "Fixed", "Security"}


@pytest.fixture(scope="session")
def wheelhouse(dists: dict[str, Dist], tmp_path_factory: pytest.TempPathFactory) -> Path:
    house = tmp_path_factory.mktemp("wheelhouse")
    for d in dists.values():
        (house / d.wheel.name).write_bytes(d.wheel.read_bytes())
    return house


@pytest.mark.parametrize("lib", LIBS)
def test_wheel_installs_alone_imports_and_runs_its_console_scripts(
    lib: str, dists: dict[str, Dist], wheelhouse: Path, tmp_path: Path
) -> None:
    dist = dists[f"starlock-{lib}"]
    needed = _closure(dist.name, dists)
    env_dir = tmp_path / "venv"
    venv.EnvBuilder(with_pip=False, clear=True).create(env_dir)
    python = str(env_dir / "bin/python")
    # pip of this environment installs into the fresh one (--python): no pip inside it to skew the list
    pip = [sys.executable, "-m", "pip", "--python", python, "--disable-pip-version-check"]
    if needed:
        files = [str(dists[n].wheel) for n in sorted(needed)]
        res = run([*pip, "install", "--no-deps", "--no-index", *files])
        assert res.returncode == 0, res.stderr[-3000:]
    res = run([*pip, "install", "--find-links", str(wheelhouse), str(dist.wheel)])
    assert res.returncode == 0, res.stderr[-3000:]

    listed = run([*pip, "list", "--format=json"])
    names = {p["name"].lower() for p in json.loads(listed.stdout)}
    assert {n for n in names if n.startswith("starlock-")} == needed | {dist.name}
    check = run([*pip, "check"])
    assert check.returncode == 0, check.stdout + check.stderr

    probe = (
        "import importlib, importlib.resources, json, sys\n"
        f"m = importlib.import_module('starlock.{lib}')\n"
        "missing = [n for n in getattr(m, '__all__', []) if not hasattr(m, n)]\n"
        f"typed = importlib.resources.files('starlock.{lib}').joinpath('py.typed').is_file()\n"
        "print(json.dumps({'file': m.__file__, 'missing': missing, 'typed': typed,"
        " 'namespace_file': getattr(sys.modules['starlock'], '__file__', None)}))\n"
    )
    res = run([python, "-I", "-c", probe])
    assert res.returncode == 0, res.stderr[-3000:]
    got = json.loads(res.stdout)
    assert got["file"].startswith(str(env_dir)), "imported from the venv, not the working tree"
    assert got["typed"] and got["namespace_file"] is None
    # names behind an optional extra (the TPM issuer needs tpm2-pytss) are lazy and may be absent
    extras_only = {"QemuVtpmIssuer"}
    assert not set(got["missing"]) - extras_only, got["missing"]

    scripts = _console_scripts(dist.wheel)
    assert scripts == sorted(_project(dist).get("scripts", {}))
    for script in scripts:
        res = run([str(env_dir / "bin" / script), "--help"], timeout=120)
        assert res.returncode == 0, f"{script} --help: {res.stderr[-2000:]}"
        assert res.stdout.startswith(f"usage: {script}"), res.stdout[:300]
