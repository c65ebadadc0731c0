#!/usr/bin/env bash
# Run every test: install the prerequisites, build the Kubernetes binaries (cached), then every
# tox env (package tests, integration, lint, type). Tests start the swtpm instances, OpenBao
# servers and the Kubernetes control plane they need themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# the real Kubernetes control plane the tests start (cached: nothing to do when already built)
bash scripts/build-kube.sh
exec .venv/bin/tox "$@"
