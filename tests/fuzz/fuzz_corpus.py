"""Where the fuzz seeds come from: the real vectors, read in place at run time.

The vectors folder is found like ``libs/attestation/tests`` finds it (``$STARLOCK_VECTORS`` or
``shared/vectors`` beside the repository). Nothing here copies a vector into the repository: the
runner writes the seeds into a temporary corpus folder that is removed after the run.
"""

from __future__ import annotations

import base64
import json
import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

__all__ = ["REPO_ROOT", "Vectors", "find_vectors", "missing_vectors_message"]

REPO_ROOT = Path(__file__).resolve().parents[2]


def find_vectors() -> Path | None:
    env = os.environ.get("STARLOCK_VECTORS")
    candidates = [Path(env)] if env else []
    candidates.append(REPO_ROOT.parent / "shared" / "vectors")
    for cand in candidates:
        if (cand / "MANIFEST.md").is_file():
            return cand
    return None


def missing_vectors_message() -> str:
    return (
        "fuzz seeds need the vectors: set STARLOCK_VECTORS or place shared/vectors beside the "
        "repository (see libs/attestation/README.md, 'Tests')"
    )


AWS_DOC = "aws-nitrotpm/constellation-aws-attdoc-2023-06/attdoc-aws.txt"
GCE_PB = "gcp-vtpm/gotpmtools-gce-cos85-nonce9009/gce-cos-85-nonce9009.pb"
AZ_EVIDENCE = "azure-snp/trustee-az-snp-vtpm-2025-milan/evidence-v0.json"


class Vectors:
    """Typed access to the vector files the seeds are cut from (each read once)."""

    def __init__(self, root: Path) -> None:
        self.root = root
        self._cache: dict[str, bytes] = {}

    def read(self, rel: str) -> bytes:
        if rel not in self._cache:
            self._cache[rel] = (self.root / rel).read_bytes()
        return self._cache[rel]

    def hex(self, rel: str) -> bytes:
        return bytes.fromhex(self.read(rel).decode().strip())

    def aws_doc(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.read(AWS_DOC))
        return doc

    def az_evidence(self) -> dict[str, Any]:
        doc: dict[str, Any] = json.loads(self.read(AZ_EVIDENCE))
        return doc

    # --- per format -------------------------------------------------------------------------

    def snp_reports(self) -> list[bytes]:
        return [
            self.read("snp/gosevguest-milan-vcek/attestation.bin"),
            self.read("snp/trustee-milan-vcek/test-report.bin"),
            self.read("azure-snp/constellation-azure-snp-2023/attestation.bin")[:0x4A0],
            self.hex("aws-snp/constellation-aws-2023-06-extreport/report_valid.hex"),
            base64.b64decode(self.read("aws-snp/constellation-aws-vlek-2025-05/report.txt")),
            self.read("aws-nitrotpm/constellation-aws-attdoc-2023-06/DERIVED_sevSnpAttestation_report.bin"),
        ]

    def cert_tables(self) -> list[bytes]:
        return [self.hex("aws-snp/constellation-aws-2023-06-extreport/certs_valid.hex")]

    def hcl_reports(self) -> list[bytes]:
        return [bytes(self.az_evidence()["report"])]

    def runtime_data(self) -> list[bytes]:
        return [self.read("azure-snp/constellation-azure-snp-2023/runtimedata.bin")]

    def _aws_quotes(self) -> Iterator[dict[str, Any]]:
        yield from self.aws_doc()["Attestation"]["quotes"]

    def tpms_attest(self) -> list[bytes]:
        seeds = [base64.b64decode(q["quote"]) for q in self._aws_quotes()]
        seeds.append(bytes(self.az_evidence()["quote"]["message"]))
        return seeds

    def tpmt_signatures(self) -> list[bytes]:
        return [base64.b64decode(q["rawSig"]) for q in self._aws_quotes()]

    def tpmt_publics(self) -> list[bytes]:
        return [base64.b64decode(self.aws_doc()["Attestation"]["akPub"])]

    def event_logs(self) -> list[bytes]:
        folder = self.root / "gcp-vtpm" / "gotpmtools-gce-eventlogs"
        logs = [p.read_bytes() for p in sorted(folder.glob("*.bin"))]
        logs.append(base64.b64decode(self.aws_doc()["Attestation"]["eventLog"]))
        return logs

    def documents_json(self) -> list[bytes]:
        return [self.read(AWS_DOC)]

    def documents_pb(self) -> list[bytes]:
        return [self.read(GCE_PB)]
