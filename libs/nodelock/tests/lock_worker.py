"""A separate process for the multi-process tests (run by conftest.start_worker, not collected).

Usage: ``lock_worker.py MODE TCTI LOCK_FILE CLUSTER_ID_HEX`` (LOCK_FILE ``-`` for none).
It builds a NodeLock, prints ``ready``, waits for a line on stdin (so that the parent can
release all workers at once), then prints one JSON line:

* MODE ``lock``: ``{"won": bool}`` or ``{"error": name, "lock_held": bool}``;
* MODE ``check``: ``{"bootstrapped": bool, "won": bool}`` (is_node_bootstrapped, then try_lock_once).
"""

from __future__ import annotations

import json
import sys

from starlock.nodelock import MarkingError, NodeLock


def main(mode: str, tcti: str, lock_file: str, cluster_id_hex: str) -> None:
    lock = NodeLock(tcti, None if lock_file == "-" else lock_file)
    cluster_id = bytes.fromhex(cluster_id_hex)
    print("ready", flush=True)
    sys.stdin.readline()
    result: dict[str, object]
    if mode == "check":
        result = {"bootstrapped": lock.is_node_bootstrapped(), "won": lock.try_lock_once(cluster_id)}
    else:
        try:
            result = {"won": lock.try_lock_once(cluster_id)}
        except MarkingError as exc:
            result = {"error": type(exc).__name__, "lock_held": exc.lock_held}
    print(json.dumps(result), flush=True)


if __name__ == "__main__":
    main(*sys.argv[1:5])
