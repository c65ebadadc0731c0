#!/usr/bin/env bash
# Install what Starlock needs on a fresh Debian machine (run as root): the software TPM
# (swtpm), the TSS libraries tpm2-pytss builds against, cryptsetup (the bootstrapper's LUKS2
# state disk), systemd's systemd-analyze (its unit check), buildah and debootstrap (the
# services image), Python tooling, and tox in .venv.
set -euo pipefail
cd "$(dirname "$0")/.."

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
    python3 python3-venv python3-dev gcc pkg-config git ca-certificates \
    swtpm swtpm-tools libtss2-dev openssl cryptsetup-bin systemd buildah debootstrap dpkg-dev util-linux >/dev/null

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
.venv/bin/python -m pip install -q --upgrade pip
.venv/bin/python -m pip install -q "tox>=4.11"
echo "setup: $(swtpm --version 2>/dev/null | head -n1 | cut -d, -f1); $(.venv/bin/python --version); tox $(.venv/bin/tox --version | awk '{print $1}')"
