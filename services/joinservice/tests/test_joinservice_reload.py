"""qemu-vtpm joins on a live swtpm: attestation failures are counted and never reach a handler,
and the attestation config is reloaded on every kind of change without failing a ticket."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import grpc
import pytest
from conftest import ConfigDir, skip_or_fail
from join_helpers import join_request, join_stub

from starlock.joinservice.cli import JoinService


@dataclass
class Node:
    issuer: Any
    measurements: dict[str, dict[str, object]]

    def config(self, **override: str) -> str:
        measurements = {k: dict(v) for k, v in self.measurements.items()}
        for index, value in override.items():
            measurements[index] = {"expected": value, "warnOnly": False}
        return json.dumps({"measurements": measurements})


@pytest.fixture(scope="module")
def node(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Node]:
    """A booted swtpm node: the qemu-vtpm issuer on it and its golden measurements."""
    try:
        import tpm2_pytss  # noqa: F401

        from starlock.attestation.swtpm import Swtpm, SwtpmNotFound, find_swtpm

        binary = find_swtpm()
    except (ImportError, SwtpmNotFound) as exc:
        skip_or_fail(f"swtpm / tpm2-pytss not available: {exc}")
        raise
    from starlock.attestation.document import HASH_ALG_IDS
    from starlock.attestation.measured_boot import replay, run_synthetic_boot
    from starlock.attestation.qemu import QemuVtpmIssuer

    tmp = tmp_path_factory.mktemp("joinservice-swtpm")
    with Swtpm(tmp / "node", binary=binary) as tpm:
        log = tmp / "eventlog.bin"
        events = run_synthetic_boot(tpm.tcti, log)
        golden = replay(events, HASH_ALG_IDS["SHA256"], sorted({e.pcr for e in events}))
        measurements: dict[str, dict[str, object]] = {
            str(i): {"expected": v.hex(), "warnOnly": False} for i, v in golden.items()
        }
        yield Node(QemuVtpmIssuer(tpm.tcti, event_log_path=log), measurements)


def _metric(service: JoinService, name: str, **labels: str) -> float:
    return float(service.metrics.registry.get_sample_value(name, labels) or 0.0)


def _join(service: JoinService, node: Node, name: str) -> Any:
    with join_stub(service.port, node.issuer) as stub:
        return stub.IssueJoinTicket(join_request(name), timeout=60)


def _eventually_joins(service: JoinService, node: Node, name: str, timeout: float = 10) -> None:
    deadline = time.monotonic() + timeout
    while True:
        try:
            _join(service, node, name)
            return
        except grpc.RpcError:
            if time.monotonic() > deadline:
                raise
            time.sleep(0.2)


def test_failed_attestation_is_counted_and_never_reaches_a_handler(
    start_joinservice: Callable[..., JoinService], config_dir: ConfigDir, node: Node
) -> None:
    config_dir.write(node.config(**{"4": "00" * 32}))  # PCR 4 is not what this node booted
    service = start_joinservice(variant="qemu-vtpm")
    with pytest.raises(grpc.RpcError) as caught:
        _join(service, node, "liar-1")
    assert caught.value.code() == grpc.StatusCode.UNAVAILABLE  # the handshake was refused
    assert _metric(service, "starlock_joinservice_attestation_failures_total", check="measurements") == 1
    assert _metric(service, "starlock_joinservice_tickets_total", method="join", outcome="ok") == 0
    assert service.metrics.registry.get_sample_value(
        "starlock_joinservice_ticket_duration_seconds_count", {"method": "join"}
    ) in (None, 0.0)

    # a plain rewrite with the right measurements lets the node in
    config_dir.write(node.config())
    _eventually_joins(service, node, "honest-1")
    assert _metric(service, "starlock_joinservice_config_reloads_total", result="ok") >= 1


def test_garbage_config_keeps_the_old_validator(
    start_joinservice: Callable[..., JoinService], config_dir: ConfigDir, node: Node
) -> None:
    config_dir.write(node.config())
    service = start_joinservice(variant="qemu-vtpm")
    _join(service, node, "garbage-before")
    for garbage in ("{not json", '{"measurements": {"x": 1}}', "", json.dumps({"measurements": {}, "bogus": 1})):
        config_dir.write(garbage)
        time.sleep(0.4)  # several polls
        _join(service, node, f"garbage-{len(garbage)}")
    assert _metric(service, "starlock_joinservice_config_reloads_total", result="error") == 4
    assert _metric(service, "starlock_joinservice_config_reloads_total", result="ok") == 0


def test_kubelet_symlink_swap_and_rename(
    start_joinservice: Callable[..., JoinService], config_dir: ConfigDir, node: Node, tmp_path: Path
) -> None:
    # lay out the directory as the kubelet projects a ConfigMap: file -> ..data/file, ..data -> ..<ts>
    directory = config_dir.path
    (directory / "attestationConfig").unlink()

    def project(content: str, generation: int) -> None:
        versioned = directory / f"..2026_12_05_{generation:02d}"
        versioned.mkdir()
        (versioned / "attestationConfig").write_text(content)
        (versioned / "measurementSalt").write_bytes(config_dir.salt)
        tmp_link = directory / "..data_tmp"
        tmp_link.symlink_to(versioned.name)
        os.replace(tmp_link, directory / "..data")  # the atomic swap

    project(node.config(), 1)
    (directory / "attestationConfig").symlink_to("..data/attestationConfig")
    service = start_joinservice(variant="qemu-vtpm")
    _join(service, node, "swap-1")

    project(node.config(**{"4": "11" * 32}), 2)  # swap in a config this node fails
    deadline = time.monotonic() + 10
    while True:
        try:
            _join(service, node, "swap-refused")
        except grpc.RpcError:
            break
        assert time.monotonic() < deadline, "the swapped config was not picked up"
        time.sleep(0.2)

    project(node.config(), 3)  # and back
    _eventually_joins(service, node, "swap-2")

    # a rename over the path (an editor's save) is picked up too
    (directory / "attestationConfig").unlink()
    staged = tmp_path / "staged"
    staged.write_text(node.config(**{"4": "22" * 32}))
    os.replace(staged, directory / "attestationConfig")
    deadline = time.monotonic() + 10
    while True:
        try:
            _join(service, node, "rename-refused")
        except grpc.RpcError:
            break
        assert time.monotonic() < deadline, "the renamed config was not picked up"
        time.sleep(0.2)


def test_reload_under_load_fails_no_ticket(
    start_joinservice: Callable[..., JoinService], config_dir: ConfigDir, node: Node
) -> None:
    """Joins run continuously while the config is swapped between two equivalent versions."""
    first = node.config()
    second = json.dumps(json.loads(first), indent=2)  # same policy, new bytes: a real reload
    config_dir.write(first)
    service = start_joinservice(variant="qemu-vtpm")
    failures: list[BaseException] = []
    done = threading.Event()
    count = [0]

    def worker(index: int) -> None:
        i = 0
        while not done.is_set():
            try:
                _join(service, node, f"load-{index}-{i}")
                count[0] += 1
            except BaseException as exc:
                failures.append(exc)
            i += 1

    threads = [threading.Thread(target=worker, args=(n,)) for n in range(3)]
    for thread in threads:
        thread.start()
    for flip in range(6):
        config_dir.write(second if flip % 2 == 0 else first)
        time.sleep(0.5)
    done.set()
    for thread in threads:
        thread.join(60)
    assert not failures
    assert count[0] >= 6
    assert _metric(service, "starlock_joinservice_config_reloads_total", result="ok") >= 5
