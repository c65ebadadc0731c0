"""The demo's flow with 2 nodes, as the README's main command runs it: a real process, real parts."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from pathlib import Path

import pytest


def _require(binary: str, package: str) -> None:
    if shutil.which(binary) is None:
        message = f"{binary} is not installed (Debian package {package})"
        if os.environ.get("CI", "").lower() == "true":
            pytest.fail(message)
        pytest.skip(message)


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            cmdline = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline and str(os.getpid()) != entry.name:
            found.append(cmdline)
    return found


def test_two_node_demo(tmp_path: Path) -> None:
    _require("swtpm", "swtpm")
    work = tmp_path / "demo"
    started = time.monotonic()
    done = subprocess.run(
        [sys.executable, "-m", "starlock.demo", "--nodes", "2", "--keep", str(work)],
        capture_output=True, text=True, timeout=600, check=False,
    )  # fmt: skip
    out = done.stdout
    assert done.returncode == 0, f"{out[-3000:]}\n{done.stderr[-3000:]}"
    # init: a cluster ID, an admin kubeconfig
    cluster_id = re.search(r"Cluster ID:\s+([0-9a-f]{64})", out)
    assert cluster_id is not None
    # the node table: both nodes marked with this cluster's ID and Ready
    rows = {
        line.split()[0]: line.split()
        for line in out.splitlines()
        if re.match(r"node-\d\s+(ControlPlane|Worker)\s", line)
    }
    assert set(rows) == {"node-1", "node-2"}
    assert rows["node-1"][1] == "ControlPlane" and rows["node-2"][1] == "Worker"
    assert all(r[4] == "marked" and r[5] == "True" for r in rows.values()), rows
    # starlock verify of node-2 with the cluster ID: accepted
    assert "Result:  VERIFIED" in out
    assert f"Cluster: {cluster_id.group(1)}" in out
    # kubectl get nodes with the kubeconfig from init
    assert re.search(r"^node-2\s+Ready", out, re.MULTILINE)
    # the two refusals, each with the reason the join service logged
    tampered = next(line for line in out.splitlines() if line.startswith("a node whose boot differs"))
    assert "refused" in tampered and "MeasurementMismatch" in tampered and "index 8" in tampered
    replay = next(line for line in out.splitlines() if line.startswith("a node already marked"))
    assert "refused" in replay and "index 15" in replay
    # the full-cluster reboot: node 1 waits for the operator and comes back with the same cluster ID
    assert "node-1: rebooted (PCR 15 zero); join service down" in out
    assert re.search(r"^Recovered: 127\.0\.0\.1:\d+$", out, re.MULTILINE)
    assert "node-1: state disk unlocked, PCR 15 marked again with this cluster's ID, kubelet started" in out
    # each phase timed
    assert re.search(r"Done in \d+ s: 1\. [\d.]+ s, 2\. ", out)
    # everything it started is gone
    time.sleep(0.5)
    assert _processes_mentioning(str(work)) == []
    print(f"demo with 2 nodes: {time.monotonic() - started:.0f} s")


def test_ctrl_c_stops_everything(tmp_path: Path) -> None:
    _require("swtpm", "swtpm")
    work = tmp_path / "demo"
    proc = subprocess.Popen(
        [sys.executable, "-m", "starlock.demo", "--nodes", "1", "--keep", str(work)],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
    )  # fmt: skip
    deadline = time.monotonic() + 120
    log = work / "node-1" / "bootstrapper.log"
    while not log.exists():  # interrupted while the control plane, swtpm and a bootstrapper run
        assert proc.poll() is None and time.monotonic() < deadline, proc.communicate()
        time.sleep(0.2)
    proc.send_signal(2)  # SIGINT, as Ctrl-C
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 130 and "everything started has been stopped" in err
    time.sleep(0.5)
    assert _processes_mentioning(str(work)) == []
