#!/usr/bin/env bash
# Run every test: install the prerequisites, then every tox env (package tests, integration,
# lint, type). Tests start the swtpm instances and servers they need themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
exec .venv/bin/tox "$@"
