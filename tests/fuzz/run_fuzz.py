"""Coverage-guided fuzzing of every Starlock parser with atheris (libFuzzer), and a report.

    python tests/fuzz/run_fuzz.py --seconds 5                 # every target, 5 s each
    python tests/fuzz/run_fuzz.py --seconds 300 --only kms_uri,event_log --artifacts out/

For each target: the seeds (cut from the vectors at run time, or generated) go to a temporary
corpus folder; a worker process runs atheris on it for ``--seconds`` (new inputs are added to the
corpus); at the end one process replays every final corpus under coverage.py and measures the lines and
branches of each target's modules. The table gives executions per second and that coverage. A
crash (an exception outside the target's typed errors, or a broken invariant) is saved under
``--artifacts`` and makes the exit status 1. Crashes already kept in ``regressions/`` (see
``fuzz_targets.KNOWN_CRASHES``) are stepped over unless ``STARLOCK_FUZZ_NO_KNOWN=1``.
"""

from __future__ import annotations

import argparse
import json
import os
import re
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from fuzz_corpus import Vectors, find_vectors, missing_vectors_message  # noqa: E402

_STAT = re.compile(r"stat::(\w+):\s*(\d+)")
_DONE = re.compile(r"#(\d+)\s+DONE")


def worker(name: str, argv: list[str]) -> None:
    """The atheris process: instrument every Starlock module, then fuzz one target."""
    import atheris

    with atheris.instrument_imports(include=["starlock"]):
        from fuzz_targets import KNOWN_CRASHES, TARGETS, guarded

        target = TARGETS[name]
        known = () if os.environ.get("STARLOCK_FUZZ_NO_KNOWN") == "1" else KNOWN_CRASHES.get(name, ())
        one = guarded(target.build(), target.allowed_errors(), known)
    atheris.Setup([sys.argv[0], *argv], one)
    atheris.Fuzz()


def replay(names: list[str], workdir: Path, out: Path) -> None:
    """Replay every target's corpus under coverage.py, in one process; write each target's counts.

    The imports run in the context "import"; each target's replay in a context of its name. A
    target's report counts its modules' lines executed in either (module-level code runs only
    once, at import), so the numbers do not depend on the order of the targets.
    """
    import coverage
    from fuzz_targets import TARGETS, module_file

    files = {name: [str(module_file(m)) for m in TARGETS[name].coverage] for name in names}
    cov = coverage.Coverage(branch=True, data_file=None, include=sorted({f for fs in files.values() for f in fs}))
    cov.start()
    try:
        cov.switch_context("import")
        ones = {name: TARGETS[name].build() for name in names}
        for name, one in ones.items():
            cov.switch_context(name)
            for path in sorted((workdir / name).iterdir()):
                try:
                    one(path.read_bytes())
                except Exception:  # crashes are the fuzz worker's business; only coverage here
                    continue
    finally:
        cov.stop()
    totals = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in names:
            report = Path(tmp) / f"{name}.json"
            cov.json_report(outfile=str(report), include=files[name], contexts=["^import$", f"^{name}$"])
            totals[name] = json.loads(report.read_text())["totals"]
    out.write_text(json.dumps(totals))


def _run(cmd: list[str], timeout: float) -> subprocess.CompletedProcess[str]:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, check=False)


def _dictionary(entries: tuple[bytes, ...], path: Path) -> list[str]:
    """A libFuzzer dictionary file of ``entries`` (each a quoted, \\xNN-escaped string) and its flag."""
    if not entries:
        return []
    lines = [
        '"' + "".join(chr(b) if 0x20 <= b < 0x7F and b not in b'"\\' else f"\\x{b:02x}" for b in e) + '"'
        for e in entries
    ]
    path.write_text("\n".join(lines) + "\n")
    return [f"-dict={path}"]


def fuzz_target(
    name: str, seeds: list[bytes], seconds: int, workdir: Path, artifacts: Path, scratch: Path
) -> dict[str, Any]:
    corpus = workdir / name
    corpus.mkdir(parents=True, exist_ok=True)
    for i, seed in enumerate(seeds):
        (corpus / f"seed-{i:03d}").write_bytes(seed)
    artifacts.mkdir(parents=True, exist_ok=True)
    args = [
        f"-max_total_time={seconds}",
        f"-artifact_prefix={artifacts}/{name}-",
        "-print_final_stats=1",
        "-timeout=20",
        "-rss_limit_mb=3072",
        "-max_len=131072"
        if name in ("attdoc_json", "atls_extension", "atls_certificate", "event_log")
        else "-max_len=8192",
    ]
    from fuzz_targets import TARGETS

    args += _dictionary(TARGETS[name].dictionary, scratch / f"{name}.dict")
    started = time.monotonic()
    proc = _run([sys.executable, __file__, "--worker", name, "--", str(corpus), *args], timeout=seconds * 3 + 60)
    elapsed = time.monotonic() - started
    stats = {k: int(v) for k, v in _STAT.findall(proc.stderr)}
    execs = stats.get("number_of_executed_units")
    if execs is None:
        done = [int(n) for n in _DONE.findall(proc.stderr)] or [
            int(n) for n in re.findall(r"^#(\d+)", proc.stderr, re.M)
        ]
        execs = max(done, default=0)
    crashes = sorted(str(p) for p in artifacts.glob(f"{name}-*"))
    crashed = proc.returncode != 0
    return {
        "target": name,
        "seeds": len(seeds),
        "corpus": len(list(corpus.iterdir())),
        "execs": execs,
        "execs_per_sec": stats.get("average_exec_per_sec", round(execs / max(elapsed, 1e-3))),
        "crashed": crashed,
        "crash_files": crashes,
        "log_tail": proc.stderr[-3000:] if crashed else "",
    }


def add_coverage(rows: list[dict[str, Any]], workdir: Path, scratch: Path) -> str:
    """Fill in each row's line and branch counts; the replay's error output, if it failed."""
    out = scratch / "coverage.json"
    names = [r["target"] for r in rows]
    rep = _run([sys.executable, __file__, "--replay", str(workdir), str(out), *names], timeout=900)
    totals = json.loads(out.read_text()) if out.exists() else {}
    for row in rows:
        t = totals.get(row["target"], {})
        row["lines"] = [t.get("covered_lines", 0), t.get("num_statements", 0)]
        row["branches"] = [t.get("covered_branches", 0), t.get("num_branches", 0)]
    return rep.stderr[-3000:] if rep.returncode else ""


def table(rows: list[dict[str, Any]]) -> str:
    head = f"{'target':<18} {'execs':>9} {'exec/s':>7} {'lines':>15} {'branches':>15} {'corpus':>7}  result"
    out = [head, "-" * len(head)]
    for r in rows:
        (lc, lt), (bc, bt) = r["lines"], r["branches"]
        lines = f"{lc}/{lt} {100 * lc / lt if lt else 0:3.0f}%"
        branches = f"{bc}/{bt} {100 * bc / bt if bt else 0:3.0f}%"
        result = "CRASH" if r["crashed"] else "ok"
        counts = f"{r['execs']:>9} {r['execs_per_sec']:>7}"
        out.append(f"{r['target']:<18} {counts} {lines:>15} {branches:>15} {r['corpus']:>7}  {result}")
    return "\n".join(out)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=int, default=5, help="fuzzing time per target")
    parser.add_argument("--only", default="", help="comma-separated target names (default: all)")
    parser.add_argument("--artifacts", type=Path, default=None, help="where crash inputs are kept")
    parser.add_argument("--json", type=Path, default=None, help="write the results as JSON here")
    parser.add_argument(
        "--corpus", type=Path, default=None, help="keep the corpora here (one folder per target), to resume later"
    )
    args = parser.parse_args(argv)

    from fuzz_targets import TARGETS

    names = [n for n in args.only.split(",") if n] or list(TARGETS)
    unknown = sorted(set(names) - set(TARGETS))
    if unknown:
        parser.error(f"unknown targets {unknown}; known: {sorted(TARGETS)}")
    root = find_vectors()
    vectors = Vectors(root) if root is not None else None
    if vectors is None:
        print(f"NOTE: {missing_vectors_message()}; vector-seeded targets start from an empty corpus")
    rows = []
    with tempfile.TemporaryDirectory(prefix="starlock-fuzz-") as tmp:
        artifacts = args.artifacts or Path(tmp) / "artifacts"
        workdir = args.corpus or Path(tmp)
        for name in names:
            rows.append(fuzz_target(name, TARGETS[name].seeds(vectors), args.seconds, workdir, artifacts, Path(tmp)))
            row = rows[-1]
            print(f"{name}: {row['execs']} execs, {row['execs_per_sec']}/s, {'CRASH' if row['crashed'] else 'ok'}")
        replay_error = add_coverage(rows, workdir, Path(tmp))
    print()
    print(table(rows))
    for r in rows:
        if r["crashed"]:
            print(f"\n=== {r['target']} crashed; inputs: {r['crash_files']}\n{r['log_tail']}")
    if replay_error:
        print(f"\n=== the coverage replay failed\n{replay_error}")
    if args.json:
        args.json.write_text(json.dumps(rows, indent=1))
    return 1 if any(r["crashed"] for r in rows) else 0


if __name__ == "__main__":
    if len(sys.argv) > 1 and sys.argv[1] == "--worker":
        sep = sys.argv.index("--")
        worker(sys.argv[2], sys.argv[sep + 1 :])
    elif len(sys.argv) > 1 and sys.argv[1] == "--replay":
        replay(sys.argv[4:], Path(sys.argv[2]), Path(sys.argv[3]))
    else:
        sys.exit(main())
