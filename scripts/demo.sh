#!/usr/bin/env bash
# The local demo: start a software TPM, boot it (synthetic measured boot), issue a qemu-vtpm
# attestation document from it and verify that document with starlock-verify.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
.venv/bin/python -m pip install -q -e "libs/attestation[tpm]"
exec .venv/bin/python scripts/demo.py "$@"
