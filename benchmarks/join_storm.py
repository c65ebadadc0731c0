"""Benchmark: a join storm. N nodes join at once through the real join service, key service and
control plane (10, 50 and 100 by default, so the growth is visible).

Each node is a real join client (``starlock.bootstrapper.joinclient``) with the ``local`` driver:
an IssueJoinTicket over its own aTLS connection, the state disk re-keyed, the files written, then
the kubelet's part against the real API server (bootstrap-token discovery, a kubelet CSR approved
and signed by the real controller manager, the Node registered). Light variant: the ``dummy``
issuer (no TPM) and an in-memory node lock per node (one winner per node, as the contract says);
``--qemu N`` adds a run with N swtpm nodes and ``qemu-vtpm``.

Reported per size: successes, p50/p99 join time (aim with dummy: 100/100 and p99 < 10 s), the
join service's CPU seconds and peak resident memory. Baseline from the same run: one node
joining alone.

    python benchmarks/join_storm.py [--sizes 10,50,100] [--qemu 0]
"""

from __future__ import annotations

import argparse
import logging
import statistics
import tempfile
import threading
import time
from pathlib import Path

from bench_common import cpu_seconds, peak_rss_mib, percentile, start_join_service

from starlock.atls import DummyIssuer
from starlock.bootstrapper.joinclient import JoinClient, JoinPaths, JoinTiming
from starlock.bootstrapper.localdriver import LocalDriver
from starlock.bootstrapper.nodestate import Role
from starlock.bootstrapper.statedisk import FileStateDisk
from starlock.kubecluster import ControlPlane
from starlock.kubecluster.services import KeyService, install_join_service_objects

REPO = Path(__file__).resolve().parents[1]


class MemoryLock:
    """The node lock's contract without a TPM: the first caller wins, once."""

    def __init__(self) -> None:
        self._mutex = threading.Lock()
        self._taken = False

    def try_lock_once(self, cluster_id: bytes) -> bool:
        with self._mutex:
            if self._taken:
                return False
            self._taken = True
            return True


def join_one(name: str, root: Path, port: int, issuer: object, lock: object) -> float:
    disk = FileStateDisk(root / "disk")
    client = JoinClient(
        issuer=issuer,
        endpoints=lambda: [f"127.0.0.1:{port}"],
        disk=disk,
        node_lock=lock,  # type: ignore[arg-type]
        driver=LocalDriver(name, "127.0.0.1", None, disk.mount_point() / "kubelet"),
        on_locked=lambda: None,
        role=Role.WORKER,
        node_name=name,
        node_ip="127.0.0.1",
        principals=lambda: [name],
        paths=JoinPaths(disk.mount_point() / "ssh", root / "pki", disk.mount_point() / "kubelet" / "pki"),
        timing=JoinTiming(interval=0.5, timeout=60),
    )
    started = time.monotonic()
    client.start()
    if not client.joined:
        raise RuntimeError(f"{name} did not join")
    return time.monotonic() - started


def storm(size: int, work: Path, port: int, label: str, make: object) -> tuple[int, list[float]]:
    times: list[float] = []
    failures: list[str] = []
    barrier = threading.Barrier(size)

    def node(n: int) -> None:
        root = work / f"{label}-{size}-{n}"
        issuer, lock = make(n)  # type: ignore[operator]
        barrier.wait()
        try:
            times.append(join_one(f"{label}-{size}-{n}", root, port, issuer, lock))
        except Exception as exc:
            failures.append(f"{type(exc).__name__}: {exc}")

    threads = [threading.Thread(target=node, args=(n,)) for n in range(size)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        print(f"    first failure: {failures[0][:200]}")
    return len(times), times


def report(label: str, size: int, ok: int, times: list[float], cpu: float, rss: float, wall: float) -> None:
    p50 = statistics.median(times) if times else float("nan")
    p99 = percentile(times, 0.99) if times else float("nan")
    print(
        f"  {label:<9} {size:>4} nodes: {ok:>4}/{size} joined  p50 {p50:5.2f} s  p99 {p99:5.2f} s  "
        f"wall {wall:5.1f} s  join service CPU {cpu:5.1f} s  peak RSS {rss:4.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", default="10,50,100")
    parser.add_argument("--qemu", type=int, default=0, help="also N swtpm nodes with qemu-vtpm (0: skip)")
    args = parser.parse_args()
    logging.getLogger("starlock").setLevel(logging.ERROR)  # the dummy issuer warns per connection
    sizes = [int(s) for s in args.sizes.split(",")]
    work = Path(tempfile.mkdtemp(prefix="starlock-storm-"))
    work.chmod(0o700)
    with ControlPlane() as plane, KeyService.create() as keys:
        components = [{"url": "https://example.invalid/k", "hash": "sha256:" + "aa" * 32, "install_path": "/opt/k"}]
        install_join_service_objects(
            plane,
            REPO / "deploy/kubernetes/base/join-service-rbac.yaml",
            components=components,
            components_name="k8s-storm",
        )
        join, port = start_join_service(
            plane, work, keys, "dummy", {"measurements": {}, "allowUnenforcedMeasurements": True}
        )
        try:
            dummy = lambda n: (DummyIssuer(insecure=True), MemoryLock())  # noqa: E731
            print(f"join storm, dummy attestation, join service pid {join.pid} (real control plane and key service)")
            alone = storm(1, work, port, "alone", dummy)[1]
            print(f"  baseline: one node alone joins in {alone[0]:.2f} s")
            for size in sizes:
                cpu0, t0 = cpu_seconds(join.pid), time.monotonic()
                ok, times = storm(size, work, port, "dummy", dummy)
                report(
                    "dummy",
                    size,
                    ok,
                    times,
                    cpu_seconds(join.pid) - cpu0,
                    peak_rss_mib(join.pid),
                    time.monotonic() - t0,
                )
            if sizes:
                print(f"  aim: 100/100 and p99 < 10 s with dummy; ratio p50 at {sizes[-1]} / alone = "
                      f"{statistics.median(times) / alone[0]:.1f}")  # fmt: skip
        finally:
            join.terminate()
            join.wait(30)
        if args.qemu:
            qemu_storm(plane, work, keys, args.qemu)


def qemu_storm(plane: ControlPlane, work: Path, keys: KeyService, size: int) -> None:
    from starlock.attestation.measured_boot import golden_measurements, run_synthetic_boot
    from starlock.attestation.qemu import QemuVtpmIssuer
    from starlock.attestation.swtpm import Swtpm
    from starlock.nodelock import NodeLock

    tpms = [Swtpm(work / f"tpm-{n}").start() for n in range(size)]
    try:
        events = [run_synthetic_boot(t.tcti, work / f"log-{n}.bin") for n, t in enumerate(tpms)]
        measurements = golden_measurements(events[0])
        join, port = start_join_service(plane, work, keys, "qemu-vtpm", {"measurements": measurements})
        try:

            def make(n: int) -> tuple[object, object]:
                return (QemuVtpmIssuer(tpms[n].tcti, event_log_path=work / f"log-{n}.bin"),
                        NodeLock(tpms[n].tcti, work / f"lock-{n}" / "lock"))  # fmt: skip

            cpu0, t0 = cpu_seconds(join.pid), time.monotonic()
            ok, times = storm(size, work, port, "qemu", make)
            report(
                "qemu-vtpm",
                size,
                ok,
                times,
                cpu_seconds(join.pid) - cpu0,
                peak_rss_mib(join.pid),
                time.monotonic() - t0,
            )
        finally:
            join.terminate()
            join.wait(30)
    finally:
        for tpm in tpms:
            tpm.close()


if __name__ == "__main__":
    main()
