"""Fixtures for starlock-atls: attestation pairs (dummy, and qemu-vtpm on a live swtpm) and a socket helper.

swtpm-backed tests skip with a clear message where swtpm or tpm2-pytss is missing, except under
CI (``CI=true``), where that is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Iterator

import pytest
from atls_helpers import Pair

from starlock.atls import DummyIssuer, DummyValidator
from starlock.attestation import Variant, load_attestation_config, validator_for


def _skip_or_fail(message: str) -> None:
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message)
    pytest.skip(message)


@pytest.fixture(scope="session")
def dummy_pair() -> Pair:
    return Pair("dummy", DummyIssuer(insecure=True), DummyValidator(insecure=True))


@pytest.fixture(scope="session")
def qemu_pair(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Pair]:
    """A booted swtpm node: the qemu-vtpm issuer on it and a validator with its golden measurements."""
    try:
        from starlock.attestation.swtpm import Swtpm, SwtpmNotFound, find_swtpm
    except ImportError as exc:  # pragma: no cover - depends on the environment
        _skip_or_fail(f"starlock.attestation.swtpm unavailable: {exc}")
        raise
    try:
        binary = find_swtpm()
        import tpm2_pytss  # noqa: F401
    except (SwtpmNotFound, ImportError) as exc:
        _skip_or_fail(f"swtpm / tpm2-pytss not available: {exc}")
        raise
    from starlock.attestation.document import HASH_ALG_IDS
    from starlock.attestation.measured_boot import replay, run_synthetic_boot
    from starlock.attestation.qemu import QemuVtpmIssuer

    tmp = tmp_path_factory.mktemp("atls-swtpm")
    with Swtpm(tmp / "node", binary=binary) as tpm:
        log_path = tmp / "eventlog.bin"
        events = run_synthetic_boot(tpm.tcti, log_path)
        golden = replay(events, HASH_ALG_IDS["SHA256"], sorted({e.pcr for e in events}))
        measurements = {str(i): {"expected": v.hex(), "warnOnly": False} for i, v in golden.items()}
        config = load_attestation_config({"measurements": measurements}, Variant.QEMU_VTPM)
        yield Pair("qemu-vtpm", QemuVtpmIssuer(tpm.tcti, event_log_path=log_path), validator_for(config), measurements)


@pytest.fixture(params=["dummy", "qemu-vtpm"])
def pair(request: pytest.FixtureRequest) -> Pair:
    name = "dummy_pair" if request.param == "dummy" else "qemu_pair"
    result: Pair = request.getfixturevalue(name)
    return result
