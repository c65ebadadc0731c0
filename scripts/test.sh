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
# Python 3.12 and 3.13 for the libs-py312/libs-py313 envs: the newest 3.12.x/3.13.x that pyenv has
# installed (as on the CI machines; its shims do not reach them otherwise), else python3.12 and
# python3.13 from PATH. STARLOCK_PYTHON312/STARLOCK_PYTHON313 set by hand win.
for minor in 12 13; do
    var="STARLOCK_PYTHON3$minor"
    if [ -z "${!var:-}" ] && command -v pyenv >/dev/null 2>&1; then
        found="$(pyenv versions --bare | grep -E "^3\.$minor\.[0-9]+$" | sort -V | tail -n 1)"
        if [ -n "$found" ] && [ -x "$(pyenv root)/versions/$found/bin/python3.$minor" ]; then
            export "$var=$(pyenv root)/versions/$found/bin/python3.$minor"
        fi
    fi
done
# Under CI a missing Python 3.12/3.13 fails the run; elsewhere those two envs are skipped (tox
# says so in its summary).
if [ "${CI:-}" = "true" ]; then skip_missing=false; else skip_missing=true; fi
exec .venv/bin/tox --skip-missing-interpreters "$skip_missing" "$@"
