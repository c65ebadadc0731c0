#!/usr/bin/env bash
# Build the Debian package starlock-bootstrapper for the node OS image. Run as root from anywhere
# in the repository:
#
#   bash packaging/deb/build-deb.sh [--output DIR]        # default .cache/deb
#
# The package holds
#   /opt/starlock/                                    a Python virtual environment (the OS's
#                                                     /usr/bin/python3.11) with starlock-bootstrapper
#                                                     and the Starlock libraries it uses, built from
#                                                     this working tree's wheels
#   /usr/lib/systemd/system/starlock-bootstrapper.service
#   /usr/share/starlock-bootstrapper/constellation.env.example
# and declares what it needs from the OS in Depends (python3.11, cryptsetup-bin, systemd,
# ca-certificates, the libtss2 libraries its extension modules link plus the device TCTI that
# tpm2-tss loads at run time; the library list is computed by dpkg-shlibdeps).
#
# 1. The same cached debootstrap root filesystem as packaging/build-image.sh (bookworm minbase
#    with python3-venv, under $STARLOCK_ROOTFS_CACHE), extracted into a temporary directory.
# 2. The wheels of libs/{joinproto,attestation,atls,kms,nodelock} and services/{joinservice,bootstrapper}
#    (the bootstrapper signs the first node's kubelet certificate with the join service's profile); the
#    dependencies' wheels (binary where PyPI has one; tpm2-pytss is built here against this
#    machine's libtss2-dev, which must be the target suite's: pip caches the wheel).
# 3. In a chroot of that tree: python3.11 -m venv /opt/starlock, pip install --no-index from those
#    wheels only, pip and setuptools removed. The tree's /opt/starlock becomes the package's.
# 4. dpkg-deb --build (zstd, which dpkg reads since 1.21.18: bookworm's; DEB_COMPRESSION=xz|gzip) -> <output>/starlock-bootstrapper_<version>_<arch>.deb,
#    and <output>/deb-info.json with sizes and timings.
#
# Environment: PYTHON (default python3; needs `build` and pip, and the rootfs's major.minor),
# STARLOCK_ROOTFS_CACHE, STARLOCK_DEBIAN_MIRROR, STARLOCK_DEBIAN_SUITE (as build-image.sh),
# SOURCE_DATE_EPOCH (file times in the package; default: the time of the build).
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/../.." && pwd)"
OUTPUT="$ROOT/.cache/deb"
while [ $# -gt 0 ]; do
    case "$1" in
        --output) OUTPUT="$2"; shift 2 ;;
        -h|--help) sed -n '2,32p' "$0"; exit 0 ;;
        *) echo "build-deb: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

die() { echo "build-deb: error: $*" >&2; exit 1; }
need() {  # need COMMAND DEBIAN-PACKAGE
    command -v "$1" >/dev/null 2>&1 || die "$1 not found: install the Debian package '$2' (apt-get install $2)"
}
need dpkg-deb dpkg
need dpkg-shlibdeps dpkg-dev
need debootstrap debootstrap
need chroot coreutils
need tar tar
need pkg-config pkg-config
[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap and chroot need it)"
pkg-config --exists tss2-esys || die "libtss2 headers not found (tpm2-pytss is built here): install the Debian package 'libtss2-dev'"

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import build' 2>/dev/null || die "$PYTHON has no 'build' module: $PYTHON -m pip install build"

# --- 1. the root filesystem: the cache of build-image.sh (same key, same lock) ----------------------
SUITE="${STARLOCK_DEBIAN_SUITE:-bookworm}"
VARIANT=minbase
INCLUDE=python3-venv
ARCH="$(dpkg --print-architecture)"
mirror_from_apt() {
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | sed -n -e 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' -e 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\).*/\2/p' \
        | grep -E '/debian/?$' | grep -v security | head -n1
}
MIRROR="${STARLOCK_DEBIAN_MIRROR:-$(mirror_from_apt || true)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"
CACHE="${STARLOCK_ROOTFS_CACHE:-/var/cache/starlock/rootfs}"
KEY="$(printf '%s\n' "$SUITE" "$VARIANT" "$INCLUDE" "$ARCH" "$MIRROR" | sha256sum | cut -c1-12)"
ROOTFS_DIR="$CACHE/$SUITE-$VARIANT-$KEY"
mkdir -p "$CACHE" "$OUTPUT"
OUTPUT="$(cd "$OUTPUT" && pwd)"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
T0="$(now)"

exec 9>"$CACHE/.lock"
flock 9
if [ ! -f "$ROOTFS_DIR/rootfs.tar" ]; then
    echo "build-deb: debootstrap $SUITE ($VARIANT, +$INCLUDE) from $MIRROR into $ROOTFS_DIR (a few minutes, once)"
    rm -rf "$ROOTFS_DIR.tmp"
    mkdir -p "$ROOTFS_DIR.tmp"
    nice -n 10 debootstrap --variant="$VARIANT" --include="$INCLUDE" --arch="$ARCH" "$SUITE" \
        "$ROOTFS_DIR.tmp/rootfs" "$MIRROR" >"$ROOTFS_DIR.tmp/debootstrap.log" 2>&1 \
        || die "debootstrap failed; see $ROOTFS_DIR.tmp/debootstrap.log"
    chroot "$ROOTFS_DIR.tmp/rootfs" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' \
        >"$ROOTFS_DIR.tmp/python-version"
    rm -rf "$ROOTFS_DIR.tmp/rootfs/var/cache/apt/archives/"*.deb "$ROOTFS_DIR.tmp/rootfs/var/lib/apt/lists/"*
    tar -C "$ROOTFS_DIR.tmp/rootfs" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        -cf "$ROOTFS_DIR.tmp/rootfs.tar" .
    rm -rf "$ROOTFS_DIR.tmp/rootfs" "$ROOTFS_DIR"
    mv "$ROOTFS_DIR.tmp" "$ROOTFS_DIR"
fi
flock -u 9
PY="$(cat "$ROOTFS_DIR/python-version")"
HOST_PY="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[ "$PY" = "$HOST_PY" ] || die "$PYTHON is Python $HOST_PY but $SUITE's is $PY: run with PYTHON=python$PY"

WORK="$(mktemp -d "${TMPDIR:-/tmp}/starlock-deb.XXXXXX")"
trap 'rm -rf "$WORK"' EXIT
mkdir "$WORK/root"
tar -C "$WORK/root" -xf "$ROOTFS_DIR/rootfs.tar"
for node in "null c 1 3" "zero c 1 5" "random c 1 8" "urandom c 1 9"; do
    set -- $node
    mknod -m 666 "$WORK/root/dev/$1" "$2" "$3" "$4"
done
T_ROOTFS="$(since "$T0")"

# --- 2. the wheels -------------------------------------------------------------------------------------
T1="$(now)"
W="$WORK/root/tmp/wheels"
mkdir -p "$W"
ISOLATION=()
"$PYTHON" -c 'import hatchling' 2>/dev/null && ISOLATION=(--no-isolation)
for dist in libs/joinproto libs/attestation libs/atls libs/kms libs/nodelock services/joinservice services/bootstrapper; do
    nice -n 10 "$PYTHON" -m build --wheel "${ISOLATION[@]}" --outdir "$W" "$ROOT/$dist" >"$WORK/build.log" 2>&1 \
        || { cat "$WORK/build.log" >&2; die "building the wheel of $dist failed"; }
done
version_of() { basename "$(ls "$W/$1"-*.whl)" | cut -d- -f2; }
VERSION="$(version_of starlock_bootstrapper)"
printf '%s\n' "starlock-bootstrapper==$VERSION" "starlock-attestation[tpm]==$(version_of starlock_attestation)" \
    >"$W/requirements.txt"
(cd "$W" && sha256sum starlock_*.whl) >"$WORK/starlock.sha256"
nice -n 10 "$PYTHON" -m pip wheel --quiet --disable-pip-version-check --prefer-binary --wheel-dir "$W" \
    --find-links "$W" --requirement "$W/requirements.txt" >"$WORK/pip.log" 2>&1 \
    || { tail -n 30 "$WORK/pip.log" >&2; die "pip wheel of the dependencies failed"; }
(cd "$W" && sha256sum --quiet -c "$WORK/starlock.sha256") || die "a Starlock wheel was replaced by a download"
T_WHEELS="$(since "$T1")"

# --- 3. the virtual environment, made by the target's own Python --------------------------------------
T2="$(now)"
nice -n 10 chroot "$WORK/root" /bin/sh -ec "
    /usr/bin/python$PY -m venv /opt/starlock
    /opt/starlock/bin/pip install --quiet --no-index --no-cache-dir --disable-pip-version-check \
        --find-links /tmp/wheels --requirement /tmp/wheels/requirements.txt
    /opt/starlock/bin/pip uninstall --yes --quiet pip setuptools
    /opt/starlock/bin/starlock-bootstrapper --help >/dev/null
" >"$WORK/venv.log" 2>&1 || { tail -n 30 "$WORK/venv.log" >&2; die "creating the virtual environment failed"; }
PKG="$WORK/pkg"
mkdir -p "$PKG/DEBIAN" "$PKG/opt" "$PKG/usr/lib/systemd/system" "$PKG/usr/share/starlock-bootstrapper" \
    "$PKG/usr/share/doc/starlock-bootstrapper"
cp -a "$WORK/root/opt/starlock" "$PKG/opt/starlock"
find "$PKG/opt/starlock" -name '*.pyc' -path '*/bin/*' -delete
install -m 0644 "$ROOT/services/bootstrapper/systemd/starlock-bootstrapper.service" "$PKG/usr/lib/systemd/system/"
install -m 0644 "$ROOT/services/bootstrapper/systemd/constellation.env.example" "$PKG/usr/share/starlock-bootstrapper/"
DISTS="$(cd "$W" && ls starlock_*.whl | cut -d- -f1,2 | tr '_' '-' | sed 's/-\([0-9]\)/ \1/' | paste -sd, | sed 's/,/, /g')"
cat >"$PKG/usr/share/doc/starlock-bootstrapper/copyright" <<TXT
Format: https://www.debian.org/doc/packaging-manuals/copyright-format/1.0/
Upstream-Name: starlock
Source: $(sed -n 's/^Homepage = "\(.*\)"/\1/p' "$ROOT/libs/kms/pyproject.toml")
Comment: /opt/starlock holds $DISTS and their Python dependencies, each with its licence in its
 dist-info directory.

Files: *
License: $(sed -n 's/^license = "\(.*\)"/\1/p' "$ROOT/libs/kms/pyproject.toml")
TXT

# Depends: the shared libraries of every extension module (libraries a wheel bundles in its own
# *.libs directory are inside the package), the TCTI tpm2-tss dlopens for /dev/tpmrm0, and the
# programs the bootstrapper runs.
mkdir -p "$WORK/shlibs/debian"
printf 'Source: starlock\n\nPackage: starlock-bootstrapper\nArchitecture: any\n' >"$WORK/shlibs/debian/control"
mapfile -t ELF < <(find "$PKG/opt/starlock" -name '*.so*' -type f)
PRIVATE=()
while IFS= read -r d; do PRIVATE+=("-l$d"); done < <(find "$PKG/opt/starlock" -type d -name '*.libs')
SHLIBS="$(cd "$WORK/shlibs" && dpkg-shlibdeps -O --ignore-missing-info "${PRIVATE[@]}" "${ELF[@]}" 2>"$WORK/shlibdeps.log")" \
    || { cat "$WORK/shlibdeps.log" >&2; die "dpkg-shlibdeps failed"; }
SHLIBS="${SHLIBS#shlibs:Depends=}"
case "$SHLIBS" in *libtss2-esys*) ;; *) die "dpkg-shlibdeps found no libtss2-esys dependency: $SHLIBS" ;; esac
DEPENDS="python$PY, $SHLIBS, libtss2-tcti-device0, cryptsetup-bin, systemd, ca-certificates"
INSTALLED_KB="$(du -sk --exclude=DEBIAN "$PKG" | cut -f1)"
cat >"$PKG/DEBIAN/control" <<CONTROL
Package: starlock-bootstrapper
Version: $VERSION
Architecture: $ARCH
Maintainer: The Starlock developers <starlock@invalid>
Section: admin
Priority: optional
Installed-Size: $INSTALLED_KB
Depends: $DEPENDS
Homepage: $(sed -n 's/^Homepage = "\(.*\)"/\1/p' "$ROOT/libs/kms/pyproject.toml")
Description: Starlock node bootstrapper (initialize or join this node, once)
 Runs once at boot on every node of a Starlock (Constellation v2 compatible)
 confidential Kubernetes cluster: attests the node, then either serves the
 operator's Init or joins the cluster with a ticket from the join service,
 and marks the TPM (PCR 15) so the node is never bootstrapped twice.
 .
 Self-contained Python environment in /opt/starlock ($DISTS);
 systemd unit starlock-bootstrapper.service (not enabled by the package:
 the OS image enables it).
CONTROL
(cd "$PKG" && find . -type f ! -path './DEBIAN/*' -printf '%P\0' | sort -z | xargs -0 md5sum) >"$PKG/DEBIAN/md5sums"
T_VENV="$(since "$T2")"

# --- 4. the package ---------------------------------------------------------------------------------------
T3="$(now)"
EPOCH="${SOURCE_DATE_EPOCH:-$(date +%s)}"
find "$PKG" -exec touch -h -d "@$EPOCH" {} +
DEB="$OUTPUT/starlock-bootstrapper_${VERSION}_${ARCH}.deb"
rm -f "$DEB"
nice -n 10 dpkg-deb --root-owner-group -Z"${DEB_COMPRESSION:-zstd}" --build "$PKG" "$DEB" >/dev/null
T_DEB="$(since "$T3")"
DEB_BYTES="$(stat -c %s "$DEB")"
T_TOTAL="$(since "$T0")"
cat >"$OUTPUT/deb-info.json" <<JSON
{"deb": "$DEB", "version": "$VERSION", "deb_bytes": $DEB_BYTES, "installed_kib": $INSTALLED_KB,
 "depends": "$DEPENDS", "rootfs_tar": "$ROOTFS_DIR/rootfs.tar", "suite": "$SUITE", "mirror": "$MIRROR",
 "seconds": {"rootfs": $T_ROOTFS, "wheels": $T_WHEELS, "venv": $T_VENV, "deb": $T_DEB, "total": $T_TOTAL}}
JSON
echo "build-deb: $DEB ($((DEB_BYTES / 1048576)) MiB, installed $((INSTALLED_KB / 1024)) MiB)"
echo "build-deb: Depends: $DEPENDS"
echo "build-deb: rootfs ${T_ROOTFS}s, wheels ${T_WHEELS}s, venv ${T_VENV}s, dpkg-deb ${T_DEB}s, total ${T_TOTAL}s"
