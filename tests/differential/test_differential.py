"""Differential test: Starlock (libs/attestation) against go-sev-guest and go-tpm-tools.

Thousands of cases are generated from the real vectors (MANIFEST families snp, azure-snp, aws-snp,
aws-nitrotpm, gcp-vtpm) and from the synthetic AMD hierarchy of
``starlock.attestation.snp.testing``: byte flips in every signed field, field edits with valid
re-signatures, swapped, corrupted and expired certificates, wrong products, TCB and validity edges,
policy edits, nonce, PCR, quote, AK and event-log edits. Both implementations judge every case;
a disagreement must be listed in ``_allowed.INTENDED`` (the README table of intended differences),
otherwise it is a Starlock bug and the test fails. A case on which Starlock raises anything but
its own AttestationError is a bug whatever Go says.

``STARLOCK_DIFF_CASES`` (default 5000, about 30 s plus the cached Go build) sets the number of
cases; the ``differential-long`` tox env runs 20000. ``STARLOCK_DIFF_SEED`` (default 0) picks the
random mutations; the seed is printed so that a failure can be reproduced.
"""

from __future__ import annotations

import collections
import os
import random
import time
from pathlib import Path

import pytest
from _allowed import INTENDED, intended_for
from _common import SUMMARY, Case, Verdict, round_robin
from _gorunner import REPO_ROOT, GoHarnessError, GoRun, ensure_binary
from _snp_synthetic import synthetic_base, synthetic_flips, synthetic_structured, turin_cases
from _snp_vectors import vector_bases, vector_cert_flips, vector_flips, vector_structured
from _tpm import event_log_flips, quote_flips, resigned_bases, structured
from _tpm import vector_bases as tpm_vector_bases

from starlock.attestation.snp import Product, SigningKey
from starlock.attestation.snp.testing import SyntheticAmd

DEFAULT_CASES = 5000
SNP_SHARE = 0.6


def _env_int(name: str, default: int) -> int:
    raw = os.environ.get(name, "")
    try:
        return int(raw) if raw else default
    except ValueError:
        pytest.fail(f"{name}={raw!r}: expected an integer", pytrace=False)
        raise  # unreachable


def build_cases(vectors: Path, budget: int, seed: int) -> list[Case]:
    rng = random.Random(seed)
    snp_vectors = vector_bases(vectors)
    milan, genoa = SyntheticAmd.generate(Product.MILAN), SyntheticAmd.generate(Product.GENOA)
    synthetic = [
        synthetic_base(milan, version=2),
        synthetic_base(genoa),
        synthetic_base(milan, SigningKey.VLEK),
    ]
    snp = round_robin(
        [
            vector_structured(snp_vectors, vectors),
            turin_cases(SyntheticAmd.generate(Product.TURIN)),
            synthetic_structured(synthetic),
            vector_flips(snp_vectors, rng),
            vector_cert_flips(snp_vectors, rng),
            synthetic_flips(synthetic, rng),
        ],
        int(budget * SNP_SHARE),
    )
    tpm_vectors = tpm_vector_bases(vectors)
    resigned = resigned_bases(tpm_vectors)
    tpm = round_robin(
        [
            structured(tpm_vectors, resigned),
            quote_flips(tpm_vectors + resigned, rng),
            event_log_flips(tpm_vectors, rng),
        ],
        budget - len(snp),
    )
    return snp + tpm


def _describe(case: Case, starlock: Verdict, go: dict[str, object]) -> str:
    return (
        f"{case.id} [{case.tag}]: Starlock {'ACCEPT' if starlock.accept else 'REJECT'} "
        f"({starlock.stage}: {starlock.reason[:160]}) / Go {'ACCEPT' if go['accept'] else 'REJECT'} "
        f"({go['stage']}: {str(go['reason'])[:160]})"
    )


def test_starlock_agrees_with_go(vectors: Path, go_program: Path) -> None:
    budget = _env_int("STARLOCK_DIFF_CASES", DEFAULT_CASES)
    seed = _env_int("STARLOCK_DIFF_SEED", 0)
    started = time.monotonic()
    cases = build_cases(vectors, budget, seed)
    run = GoRun(go_program, [c.request for c in cases])  # Go works while Starlock does below
    ours = [c.starlock() for c in cases]
    try:
        theirs = list(run.results())
    except GoHarnessError as exc:
        pytest.fail(str(exc), pytrace=False)
    assert [v["id"] for v in theirs] == [c.id for c in cases], "the Go program answered out of order"

    agreements, intended, bugs = 0, collections.Counter[str](), []
    accepted = collections.Counter[str]()
    for case, mine, go in zip(cases, ours, theirs, strict=True):
        go_accepts = bool(go["accept"])
        if mine.stage == "crash" or go["stage"] in ("input", "panic"):
            bugs.append(_describe(case, mine, go))
        elif mine.accept == go_accepts:
            agreements += 1
            accepted[case.tag.split(".")[0]] += mine.accept
        elif (entry := intended_for(case.tag, mine.accept, go_accepts)) is not None:
            intended[entry.key] += 1
        else:
            bugs.append(_describe(case, mine, go))
        if case.tag.endswith(".as-given") and not case.tag.startswith("snp.turin"):
            assert mine.accept and go_accepts, f"a base case is not accepted by both: {_describe(case, mine, go)}"

    SUMMARY[:] = [
        f"seed {seed}, {len(cases)} cases in {time.monotonic() - started:.1f} s (STARLOCK_DIFF_CASES={budget})",
        f"cases: {len(cases)}  agreements: {agreements}  intended differences: {sum(intended.values())}  "
        f"bugs: {len(bugs)}",
        *(f"  intended {key}: {n}" for key, n in sorted(intended.items())),
        f"  accepted by both: SNP {accepted['snp']}, TPM {accepted['tpm']}",
    ]
    assert not bugs, f"{len(bugs)} disagreements are neither intended nor agreed:\n" + "\n".join(bugs[:30])
    # Not vacuous: both implementations accept a good share, and reject most mutations.
    assert accepted["snp"] >= 20 and accepted["tpm"] >= 20, accepted
    assert agreements - sum(accepted.values()) >= len(cases) // 2


def test_readme_lists_every_intended_difference() -> None:
    readme = (REPO_ROOT / "libs/attestation/README.md").read_text()
    section = readme.split("## Differences from go-sev-guest and go-tpm-tools", 1)
    assert len(section) == 2, "libs/attestation/README.md lacks the intended-differences section"
    missing = [e.key for e in INTENDED if f"`{e.key}`" not in section[1]]
    assert not missing, f"intended differences missing from the README table: {missing}"


def test_missing_go_fails_with_one_line(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    monkeypatch.setenv("STARLOCK_GO", str(tmp_path / "no-such-go"))
    monkeypatch.setenv("STARLOCK_DIFFERENTIAL_CACHE", str(tmp_path / "cache"))
    with pytest.raises(GoHarnessError) as err:
        ensure_binary()
    message = str(err.value)
    assert "\n" not in message and "STARLOCK_GO" in message and "no-such-go" in message


def test_refused_module_download_fails_with_one_line(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path, go_program: Path
) -> None:
    """With no proxy and an empty module cache the build stops at the download, in one line."""
    monkeypatch.setenv("STARLOCK_DIFFERENTIAL_CACHE", str(tmp_path / "cache"))
    monkeypatch.setenv("GOPROXY", "off")
    monkeypatch.setenv("GOMODCACHE", str(tmp_path / "modcache"))
    with pytest.raises(GoHarnessError) as err:
        ensure_binary()
    message = str(err.value)
    assert "\n" not in message and "module download" in message and "build.log" in message
