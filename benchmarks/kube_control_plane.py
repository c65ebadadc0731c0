"""Benchmark: the local Kubernetes control plane (tools/kube, starlock.kubecluster).

1. **Binaries**: the version each built binary reports, and the build time: the cached check
   (``ensure_binaries`` when nothing is to be done) and, with ``--cold``, a full build from
   source with an empty Go build cache and bin dir (minutes; the module cache is kept).
2. **Warm start-to-ready** (``--rounds`` starts): from nothing to a control plane whose
   controllers run and whose kubeadm objects and CRDs exist, per phase, vs the aim of 20 s;
   baseline in the same run: etcd alone from exec to healthy.
3. **Resident memory** of the whole control plane (sum of VmRSS of etcd, kube-apiserver and
   kube-controller-manager) 5 s after ready.

Prints numbers and ratios only; nothing here is asserted by tests.

    python benchmarks/kube_control_plane.py [--rounds 3] [--cold]
"""

from __future__ import annotations

import argparse
import os
import statistics
import tempfile
import time
from pathlib import Path

from starlock.kubecluster import ControlPlane, ensure_binaries
from starlock.kubecluster.__main__ import versions
from starlock.kubecluster.process import Component, free_port

AIM_READY_SECONDS = 20.0


def rss_mib(pid: int) -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1]) / 1024
    return 0.0


def etcd_alone(binaries_dir: Path) -> float:
    """Baseline: a plaintext etcd on loopback from exec to its first successful TCP accept."""
    import socket

    with tempfile.TemporaryDirectory(prefix="starlock-bench-etcd-") as tmp:
        port, peer = free_port(), free_port()
        url = f"http://127.0.0.1:{port}"
        etcd = Component(
            "etcd",
            [
                str(binaries_dir / "etcd"),
                f"--data-dir={tmp}/data",
                f"--listen-client-urls={url}",
                f"--advertise-client-urls={url}",
                f"--listen-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-advertise-peer-urls=http://127.0.0.1:{peer}",
                f"--initial-cluster=default=http://127.0.0.1:{peer}",
                "--listen-metrics-urls=",
                "--unsafe-no-fsync=true",
            ],
            Path(tmp) / "etcd.log",
        )
        began = time.monotonic()
        etcd.start()

        def serving() -> bool:
            with socket.create_connection(("127.0.0.1", port), timeout=1):
                return True

        etcd.wait_until(serving, timeout=30, what="serving")
        took = time.monotonic() - began
        etcd.stop()
        return took


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--cold", action="store_true", help="also time a full build from source")
    args = parser.parse_args()

    began = time.monotonic()
    binaries = ensure_binaries()
    print(f"cached-build check: {time.monotonic() - began:.2f} s (nothing rebuilt)")
    for name, line in versions(binaries).items():
        print(f"  {name}: {line}")
    if args.cold:
        with tempfile.TemporaryDirectory(prefix="starlock-bench-gocache-") as cache:
            os.environ["GOCACHE"] = cache
            began = time.monotonic()
            ensure_binaries(Path(cache) / "bin", report=lambda line: print("  " + line))
            print(f"cold build (empty Go build cache, 2 cores): {time.monotonic() - began:.0f} s")
            del os.environ["GOCACHE"]

    baselines, readies, memory = [], [], []
    phases: dict[str, list[float]] = {}
    for _ in range(args.rounds):
        baselines.append(etcd_alone(binaries.bin_dir))
        plane = ControlPlane(binaries=binaries)
        try:
            plane.start()
            readies.append(plane.timings["ready"])
            for phase, seconds in plane.timings.items():
                phases.setdefault(phase, []).append(seconds)
            time.sleep(5)
            memory.append({name: rss_mib(pid) for name, pid in plane.pids().items()})
        finally:
            plane.stop()
            plane.cleanup()

    ready = statistics.median(readies)
    baseline = statistics.median(baselines)
    spread = f"min {min(readies):.1f}, max {max(readies):.1f}"
    print(f"warm start-to-ready over {args.rounds} rounds: median {ready:.1f} s ({spread})")
    print(f"  ratio to the aim of {AIM_READY_SECONDS:.0f} s: {ready / AIM_READY_SECONDS:.2f}")
    print(f"  baseline, etcd alone exec-to-serving: {baseline:.2f} s; ready / baseline = {ready / baseline:.1f}")
    for phase, values in phases.items():
        if phase != "ready":
            print(f"  phase {phase:<24} median {statistics.median(values):5.2f} s")
    last = memory[-1]
    total = sum(last.values())
    print(f"resident memory 5 s after ready: {total:.0f} MiB in total")
    for name, mib in last.items():
        print(f"  {name:<24} {mib:6.0f} MiB")


if __name__ == "__main__":
    main()
