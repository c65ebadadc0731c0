"""What the bootstrapper and join-storm benchmarks share: percentiles, /proc readings, and the
join service started as its own process against a running control plane and key service."""

from __future__ import annotations

import json
import os
import secrets
import subprocess
import sys
import time
from pathlib import Path

from starlock.kubecluster import ControlPlane
from starlock.kubecluster.services import KeyService, service_account_kubeconfig


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, int(q * len(ordered)))]


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of a running process."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def peak_rss_mib(pid: int) -> float:
    """Peak resident memory (VmHWM) of a running process; 0 once it has gone."""
    try:
        for line in Path(f"/proc/{pid}/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    except OSError:
        pass
    return 0.0


def start_join_service(
    plane: ControlPlane, work: Path, keys: KeyService, variant: str, config: dict[str, object]
) -> tuple[subprocess.Popen[bytes], int]:
    confdir = work / f"join-config-{variant}"
    confdir.mkdir()
    (confdir / "measurementSalt").write_bytes(secrets.token_bytes(32))
    (confdir / "attestationConfig").write_text(json.dumps(config))
    out = work / f"joinservice-{variant}.log"
    args = [
        sys.executable, "-m", "starlock.joinservice", "--attestation-variant", variant,
        "--key-service-endpoint", keys.endpoint, "--config-dir", str(confdir), "--kubernetes-dir", str(plane.root),
        "--kubeconfig", str(service_account_kubeconfig(plane, work / f"js-{variant}.kubeconfig")),
        "--listen", "127.0.0.1:0", "--api-server-endpoint", plane.server.removeprefix("https://"),
        "--max-workers", "64",
    ]  # fmt: skip
    if variant == "dummy":
        args.append("--insecure-dummy")
    with out.open("ab") as log:
        proc = subprocess.Popen(args, stdout=log, stderr=subprocess.STDOUT)
    deadline = time.monotonic() + 60
    while "listening on port" not in out.read_text():
        if proc.poll() is not None or time.monotonic() > deadline:
            raise SystemExit(f"the join service did not start: {out.read_text()[-2000:]}")
        time.sleep(0.05)
    return proc, int(out.read_text().split("listening on port")[1].split()[0])
