"""Starlock local demo: a software TPM attests a synthetic boot, starlock-verify checks it.

1. start swtpm (a real TPM 2.0 simulator) in a temporary directory;
2. run a synthetic measured boot: write a TCG event log and extend the same events into the TPM;
3. derive the expected measurements from the boot events, as an image build pipeline would;
4. issue a qemu-vtpm attestation document for a fresh nonce (a real TPM2_Quote per PCR bank);
5. verify it with ``starlock-verify document`` and print the table of checks;
6. verify it again against a measurement the node does not have: rejected.

Run through ``bash scripts/demo.sh`` (installs everything first) or, in a prepared environment,
``python scripts/demo.py [--keep DIR]``.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

from starlock.attestation.document import HASH_ALG_IDS
from starlock.attestation.measured_boot import replay, run_synthetic_boot
from starlock.attestation.qemu import QemuVtpmIssuer
from starlock.attestation.swtpm import Swtpm

SHA256 = HASH_ALG_IDS["SHA256"]


def _verify_cmd() -> list[str]:
    script = Path(sys.executable).with_name("starlock-verify")
    if script.exists():
        return [str(script)]
    return [sys.executable, "-m", "starlock.attestation.cli"]


def _banner(text: str) -> None:
    print(f"\n=== {text} ===", flush=True)


def run(workdir: Path) -> int:
    with Swtpm(workdir / "tpm-state") as tpm:
        _banner(f"software TPM started ({tpm.tcti})")
        log_path = workdir / "binary_bios_measurements"
        events = run_synthetic_boot(tpm.tcti, log_path)
        print(f"synthetic measured boot: {len(events)} events extended, event log at {log_path}")

        golden = replay(events, SHA256, sorted({e.pcr for e in events}))
        measurements = {str(i): {"expected": v.hex(), "warnOnly": False} for i, v in golden.items()}
        # PCR 15 holds the cluster ID once a node is initialised: expected zero, warn only (as upstream).
        measurements["15"] = {"expected": "00" * 32, "warnOnly": True}
        config_path = workdir / "attestation-config.json"
        config_path.write_text(json.dumps({"measurements": measurements}, indent=2))
        print(f"expected measurements for PCRs {sorted(golden)} written to {config_path}")

        nonce = os.urandom(32)
        user_data = hashlib.sha256(b"starlock demo: the key this node would present over aTLS").digest()
        document = QemuVtpmIssuer(tpm.tcti, event_log_path=log_path).issue(user_data, nonce)
        doc_path = workdir / "attestation-document.json"
        doc_path.write_bytes(document)
        print(f"qemu-vtpm attestation document ({len(document)} bytes) for nonce {nonce.hex()[:16]}... at {doc_path}")

    base = [*_verify_cmd(), "document", str(doc_path), "--variant", "qemu-vtpm", "--nonce", nonce.hex()]
    _banner("starlock-verify: the document against the expected measurements")
    accepted = subprocess.run([*base, "--config", str(config_path)], check=False)  # noqa: S603

    tampered = json.loads(config_path.read_text())
    tampered["measurements"]["4"]["expected"] = "ab" * 32
    tampered_path = workdir / "attestation-config-other-bootloader.json"
    tampered_path.write_text(json.dumps(tampered, indent=2))
    _banner("starlock-verify: the same document, expecting another bootloader in PCR 4")
    rejected = subprocess.run([*base, "--config", str(tampered_path)], check=False)  # noqa: S603

    ok = accepted.returncode == 0 and rejected.returncode == 1
    _banner("demo " + ("finished: accepted, then rejected as expected" if ok else "FAILED"))
    return 0 if ok else 1


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--keep", type=Path, help="keep the files (TPM state, log, document, configs) in DIR")
    args = parser.parse_args()
    if args.keep:
        args.keep.mkdir(parents=True, exist_ok=True)
        return run(args.keep)
    with tempfile.TemporaryDirectory(prefix="starlock-demo-") as tmp:
        return run(Path(tmp))


if __name__ == "__main__":
    sys.exit(main())
