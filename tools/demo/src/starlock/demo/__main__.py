"""``python -m starlock.demo [--nodes N] [--keep DIR]``: a local confidential cluster, end to end.

Phases: the control plane; N nodes booted (each its own swtpm and synthetic measured boot) with
their bootstrappers; ``starlock init`` on node 1; the cluster services (what Helm would install);
the other nodes joining through attestation; the node table; ``starlock verify`` of one node;
``kubectl get nodes`` with the kubeconfig from init; two refusals (a boot that differs from the
measurements, a node already marked asking again); a reboot of the whole cluster, node 1 brought
back with ``starlock recover``. Everything started is stopped at the end, also on Ctrl-C. Each
phase prints its time.
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from starlock.demo.cluster import LocalCluster


def _table(rows: list[dict[str, str]]) -> str:
    headers = {"name": "NODE", "role": "ROLE", "variant": "VARIANT", "ak": "AK NAME", "pcr15": "PCR 15",
               "ready": "K8S READY", "time": "JOIN TIME"}  # fmt: skip
    widths = {k: max(len(h), *(len(r[k]) for r in rows)) for k, h in headers.items()}
    lines = ["  ".join(h.ljust(widths[k]) for k, h in headers.items()).rstrip()]
    lines += ["  ".join(r[k].ljust(widths[k]) for k in headers).rstrip() for r in rows]
    return "\n".join(lines)


def run(cluster: LocalCluster) -> int:
    with cluster.phase("1. control plane (runs on node 1, 127.0.0.1)"):
        cluster.start_control_plane()
    with cluster.phase(f"2. booting {cluster.nodes} nodes"):
        cluster.boot_nodes()
    with cluster.phase("3. starlock init on node 1 (aTLS: the CLI checks the node's attestation)"):
        state = cluster.init()
    with cluster.phase("4. cluster services (what Constellation's Helm charts install)"):
        cluster.install_services()
    with cluster.phase("5. nodes join through attestation"):
        cluster.wait_joined()
        print(_table(cluster.node_rows()))
    with cluster.phase("6. starlock verify (node-2 through its verification service)"):
        node = cluster.members[1] if len(cluster.members) > 1 else cluster.members[0]
        port = cluster.start_verification_service(node)
        code, output = cluster.verify(node, port, cluster_id=state["clusterID"])
        print(output.rstrip())
        if code != 0:
            print(f"starlock verify exited {code}")
            return 1
    with cluster.phase("7. kubectl get nodes (the admin kubeconfig from starlock init)"):
        print(cluster.kubectl_get_nodes().rstrip())
    with cluster.phase("8. refusals"):
        print(f"a node whose boot differs from the measurements: {cluster.refuse_tampered_boot()}")
        print(f"a node already marked (replay):                  {cluster.refuse_replay()}")
    with cluster.phase("9. full-cluster reboot: node 1 recovered with starlock recover"):
        node = cluster.reboot_whole_cluster()
        print(cluster.recover(node))
    total = sum(cluster.timings.values())
    print(f"\nDone in {total:.0f} s: " + ", ".join(f"{k.split(' ')[0]} {v:.1f} s" for k, v in cluster.timings.items()))
    return 0


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m starlock.demo", description=__doc__.splitlines()[0])
    parser.add_argument("--nodes", type=int, default=3, help="how many nodes (default 3, at least 1)")
    parser.add_argument("--keep", type=Path, help="keep every file and log in this directory")
    args = parser.parse_args(argv)
    if not 1 <= args.nodes <= 50:
        parser.error("--nodes must be between 1 and 50")

    def interrupted(*_: Any) -> None:
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, interrupted)
    work = args.keep or Path(tempfile.mkdtemp(prefix="starlock-demo-"))
    started = time.monotonic()
    try:
        with LocalCluster(work, args.nodes) as cluster:
            return run(cluster)
    except KeyboardInterrupt:
        print("\ninterrupted: everything started has been stopped", file=sys.stderr)
        return 130
    except Exception as exc:
        print(f"\ndemo failed after {time.monotonic() - started:.0f} s: {exc}\nlogs: {work / 'logs'}", file=sys.stderr)
        args.keep = work  # keep the logs of a failure
        return 1
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
