#!/usr/bin/env bash
# Run every test: install the prerequisites, build the Kubernetes binaries (cached), then every
# tox env (package tests, the libraries on Python 3.12 and 3.13 too, differential checks, fuzzing,
# packaging, the demo's flow, lint, type). Tests start the swtpm instances, OpenBao servers and
# the Kubernetes control plane they need themselves.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/setup.sh
# the real Kubernetes control plane the tests start (cached: nothing to do when already built)
bash scripts/build-kube.sh
# Python 3.12 and 3.13 for the libs-py312/libs-py313 envs: with pyenv (as on the CI machines),
# make the newest installed 3.12.x and 3.13.x visible beside the default interpreter.
if command -v pyenv >/dev/null 2>&1; then
    extra="$(pyenv versions --bare | grep -E '^3\.1[23]\.[0-9]+$' | sort -V | awk -F. '{v[$1"."$2]=$0} END {for (k in v) print v[k]}' | sort -V | paste -sd: -)"
    PYENV_VERSION="$(pyenv version-name)${extra:+:$extra}"
    export PYENV_VERSION
fi
# Under CI a missing Python 3.12/3.13 fails the run; elsewhere those two envs are skipped (tox
# says so in its summary).
if [ "${CI:-}" = "true" ]; then skip_missing=false; else skip_missing=true; fi
exec .venv/bin/tox --skip-missing-interpreters "$skip_missing" "$@"
