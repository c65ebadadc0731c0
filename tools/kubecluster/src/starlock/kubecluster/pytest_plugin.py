"""pytest fixtures for a real local control plane; opt in with
``pytest_plugins = ["starlock.kubecluster.pytest_plugin"]`` in a conftest.

``kube_control_plane`` (session scope) builds the binaries if needed (cached) and starts one
control plane for the whole session. When a test that used it fails, the tail of every
component's log is added to the report. Where Go or the binaries are missing the tests skip
with the reason, except under ``CI=true``, where that is a failure.
"""

from __future__ import annotations

import os
from collections.abc import Generator, Iterator

import pytest

from starlock.kubecluster.build import Binaries, ensure_binaries
from starlock.kubecluster.cluster import ControlPlane
from starlock.kubecluster.errors import BuildError

_KEY = pytest.StashKey[ControlPlane]()


def _in_ci() -> bool:
    return os.environ.get("CI", "").lower() == "true"


def require_binaries() -> Binaries:
    """The built Kubernetes binaries; skip the test without them, or fail under CI=true."""
    try:
        return ensure_binaries()
    except BuildError as exc:
        if _in_ci():
            pytest.fail(f"Kubernetes binaries unavailable: {exc}")
        pytest.skip(f"Kubernetes binaries unavailable (run scripts/build-kube.sh): {exc}")


@pytest.fixture(scope="session")
def kube_control_plane(request: pytest.FixtureRequest) -> Iterator[ControlPlane]:
    """A started control plane (etcd, kube-apiserver, kube-controller-manager) for the session."""
    plane = ControlPlane(binaries=require_binaries())
    request.config.stash[_KEY] = plane
    try:
        plane.start()
        yield plane
    finally:
        plane.stop()
        plane.cleanup()


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]) -> Generator[None, object, None]:
    outcome = yield
    report = outcome.get_result()  # type: ignore[attr-defined]  # pluggy's result object
    if not report.failed or "kube_control_plane" not in getattr(item, "fixturenames", ()):
        return
    plane = item.config.stash.get(_KEY, None)
    if plane is None:
        return
    for name, tail in plane.logs().items():
        report.sections.append((f"{name} log (last lines)", tail))
