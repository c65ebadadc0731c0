#!/usr/bin/env bash
# The local demo: a confidential cluster on this machine. A real Kubernetes control plane, N nodes
# (default 3) each with its own software TPM, measured boot and starlock-bootstrapper, the key,
# join and verification services; `starlock init`, attested joins, `starlock verify`, kubectl,
# and two refusals. Options: --nodes N, --keep DIR (keep files and logs).
# `bash scripts/demo.sh --single-tpm` runs the previous demo: one software TPM attests itself.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
if [ "${1:-}" = "--single-tpm" ]; then
    shift
    .venv/bin/python -m pip install -q -e "libs/attestation[tpm]"
    exec .venv/bin/python scripts/demo.py "$@"
fi
bash scripts/build-kube.sh
.venv/bin/python -m pip install -q \
    -e "libs/attestation[tpm]" -e libs/joinproto -e libs/atls -e libs/kms -e libs/nodelock \
    -e tools/kubecluster -e services/joinservice -e services/bootstrapper -e services/verificationservice \
    -e services/cli -e tools/demo
exec .venv/bin/python -m starlock.demo "$@"
