"""Benchmark: ``starlock-bootstrapper`` from process start to "joined", on swtpm nodes.

Real parts: a control plane (starlock.kubecluster), ``starlock-keyservice``, the join service as
its own process (``qemu-vtpm``, PCR 15 = 0 enforced), and per node its own swtpm with a
synthetic measured boot, a file state disk and the ``local`` driver. Measured in one run:

1. **Start → joined** for N nodes (default 10) one after another and N at once: p50 and p99 of
   the process's wall time (it exits once the node has joined) and of the moment it logs
   "node joined the cluster".
2. **Resident memory** of each bootstrapper (peak VmHWM, sampled while it runs).
3. **Baselines** from the same run: the interpreter starting and importing the bootstrapper,
   and one join ticket requested in-process over aTLS (the node's issuer, the join service).
   Ratio: a sequential join / (import + ticket).

    python benchmarks/bootstrapper.py [--nodes 10]
"""

from __future__ import annotations

import argparse
import json
import logging
import secrets
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import bcrypt
from bench_common import peak_rss_mib, percentile, start_join_service

from starlock.attestation.measured_boot import golden_measurements, run_synthetic_boot
from starlock.attestation.qemu import QemuVtpmIssuer
from starlock.attestation.swtpm import Swtpm
from starlock.kubecluster import ControlPlane
from starlock.kubecluster.services import KeyService, install_join_service_objects

REPO = Path(__file__).resolve().parents[1]


@dataclass
class Node:
    name: str
    tpm: Swtpm
    root: Path


def bootstrap(node: Node, port: int) -> tuple[float, float, float]:
    """One bootstrapper process; returns (wall seconds, seconds until it logged "joined", peak MiB)."""
    meta = node.root / "metadata.json"
    init_hash = bcrypt.hashpw(secrets.token_bytes(16), bcrypt.gensalt(rounds=4)).decode()
    me = {"Name": node.name, "ProviderID": f"qemu:///{node.name}", "Role": "Worker", "VPCIP": "127.0.0.1"}
    meta.write_text(json.dumps({"self": me, "endpoint": "127.0.0.1", "initSecretHash": init_hash}))
    log = node.root / "bootstrapper.log"
    args = [
        sys.executable, "-m", "starlock.bootstrapper.cli", "--variant", "qemu-vtpm", "--csp", "qemu",
        "--tcti", node.tpm.tcti, "--event-log", str(node.root / "eventlog.bin"), "--metadata", f"local:{meta}",
        "--state-disk", f"file:{node.root / 'disk'}", "--driver", "local", "--root", str(node.root / "fs"),
        "--listen", "127.0.0.1:0", "--join-service-port", str(port), "--join-interval", "0.2",
        "--on-fatal", "exit", "--log-file", str(log),
    ]  # fmt: skip
    start = time.time()
    proc = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    peak = 0.0
    while proc.poll() is None:
        peak = max(peak, peak_rss_mib(proc.pid))
        time.sleep(0.05)
    wall = time.time() - start
    if proc.returncode != 0:
        raise SystemExit(f"{node.name}: the bootstrapper exited {proc.returncode}: {log.read_text()[-2000:]}")
    joined = next(json.loads(line) for line in log.read_text().splitlines() if "node joined the cluster" in line)
    at = time.mktime(time.strptime(joined["time"][:19], "%Y-%m-%dT%H:%M:%S")) - time.timezone
    at += float("0." + joined["time"][20:23])
    return wall, at - start, peak


def ticket_baseline(node: Node, port: int, rounds: int) -> float:
    sys.path.insert(0, str(REPO / "services" / "joinservice" / "tests"))
    from join_helpers import join_request

    from starlock.atls import ClientConfig
    from starlock.atls.rpc import attested_channel
    from starlock.joinproto import join_pb2_grpc

    issuer = QemuVtpmIssuer(node.tpm.tcti, event_log_path=node.root / "eventlog.bin")
    times = []
    for n in range(rounds):
        t = time.perf_counter()
        with attested_channel(f"127.0.0.1:{port}", ClientConfig(issuer=issuer)) as channel:
            join_pb2_grpc.APIStub(channel).IssueJoinTicket(join_request(f"baseline-{n}"), timeout=60)
        times.append(time.perf_counter() - t)
    return statistics.median(times)


def report(label: str, results: list[tuple[float, float, float]]) -> None:
    walls = [r[0] for r in results]
    joined = [r[1] for r in results]
    print(
        f"  {label:<22} start→exit p50 {statistics.median(walls):5.2f} s  p99 {percentile(walls, 0.99):5.2f} s   "
        f"start→joined p50 {statistics.median(joined):5.2f} s  p99 {percentile(joined, 0.99):5.2f} s   "
        f"peak RSS max {max(r[2] for r in results):4.0f} MiB"
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=10)
    args = parser.parse_args()
    logging.getLogger("starlock").setLevel(logging.ERROR)
    work = Path(tempfile.mkdtemp(prefix="starlock-bench-boot-"))
    work.chmod(0o700)
    tpms: list[Swtpm] = []
    try:
        with ControlPlane() as plane, KeyService.create() as keys:
            components = [{"url": "https://example.invalid/k", "hash": "sha256:" + "aa" * 32, "install_path": "/opt/k"}]
            install_join_service_objects(
                plane,
                REPO / "deploy/kubernetes/base/join-service-rbac.yaml",
                components=components,
                components_name="k8s-components-boot",
            )

            boots: list[list[object]] = []

            def node(name: str) -> Node:
                root = work / name
                root.mkdir()
                tpm = Swtpm(root / "tpm").start()
                tpms.append(tpm)
                boots.append(list(run_synthetic_boot(tpm.tcti, root / "eventlog.bin")))
                return Node(name, tpm, root)

            first = node("baseline")
            events = boots[0]
            join, port = start_join_service(
                plane, work, keys, "qemu-vtpm", {"measurements": golden_measurements(events)}
            )  # type: ignore[arg-type]
            try:
                t = time.perf_counter()
                subprocess.run([sys.executable, "-c", "import starlock.bootstrapper.cli"], check=True)
                import_time = time.perf_counter() - t
                ticket = ticket_baseline(first, port, 5)

                print(f"{args.nodes} nodes, each its own swtpm; qemu-vtpm; local driver; join service pid {join.pid}")
                sequential = [bootstrap(node(f"seq-{n}"), port) for n in range(args.nodes)]
                report("one after another", sequential)
                nodes = [node(f"par-{n}") for n in range(args.nodes)]
                concurrent: list[tuple[float, float, float]] = []
                threads = [threading.Thread(target=lambda n=n: concurrent.append(bootstrap(n, port))) for n in nodes]
                for thread in threads:
                    thread.start()
                for thread in threads:
                    thread.join()
                report(f"{args.nodes} at once", concurrent)
                seq_p50 = statistics.median(r[0] for r in sequential)
                print(
                    f"  baselines: interpreter + import {import_time:.2f} s; one join ticket over aTLS {ticket:.2f} s"
                )
                print(f"  ratio: a sequential join / (import + ticket) = {seq_p50 / (import_time + ticket):.2f}")
            finally:
                join.terminate()
                join.wait(30)
    finally:
        for tpm in tpms:
            tpm.close()


if __name__ == "__main__":
    main()
