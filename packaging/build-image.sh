#!/usr/bin/env bash
# Build the Starlock services image (packaging/Containerfile) with buildah and export it as an
# OCI archive. Run as root from anywhere in the repository:
#
#   bash packaging/build-image.sh [--output DIR] [--tag NAME:TAG]
#
# 1. A Debian root filesystem (debootstrap --variant=minbase, with python3-venv and the tpm2-tss
#    runtime libraries), cached as a tar under $STARLOCK_ROOTFS_CACHE (default
#    /var/cache/starlock/rootfs) and imported once into the local container storage as
#    localhost/starlock-rootfs:<suite>-<key>. A second build reuses it; the key hashes the suite,
#    the package list, the architecture and the mirror, so a changed list makes a new tree.
# 2. The wheels of this repository (the image's Starlock distributions), the tpm2-pytss wheel (no
#    binary wheel on PyPI: built here against this machine's libtss2-dev, which must be the root
#    filesystem's tpm2-tss version, without FAPI; cached under $STARLOCK_WHEEL_CACHE) and the
#    wheels of the other dependencies (pip download, binary wheels only) in a fresh build context.
# 3. buildah bud --isolation chroot, no registry (the base is local); then buildah push to
#    oci-archive:<output>/starlock-services-<version>.oci.tar.
#
# Environment: PYTHON (default python3: needs the `build` module and pip; its major.minor must be
# the root filesystem's, 3.11 for bookworm), STARLOCK_ROOTFS_CACHE, STARLOCK_WHEEL_CACHE (default
# /var/cache/starlock/wheels), STARLOCK_DEBIAN_MIRROR (default: the first Debian archive in
# /etc/apt/sources.list*), STARLOCK_DEBIAN_SUITE (default bookworm), SOURCE_DATE_EPOCH (the
# image's creation time; default now). Also needs gcc, pkg-config and libtss2-dev (Debian
# packages of the same names) when the tpm2-pytss wheel is not cached.
# Prints the timings and sizes and writes them to <output>/build-info.json.
set -euo pipefail

ROOT="$(cd "$(dirname "$0")/.." && pwd)"
PACKAGING="$ROOT/packaging"
OUTPUT="$ROOT/.cache/image"
TAG=""
while [ $# -gt 0 ]; do
    case "$1" in
        --output) OUTPUT="$2"; shift 2 ;;
        --tag) TAG="$2"; shift 2 ;;
        -h|--help) sed -n '2,27p' "$0"; exit 0 ;;
        *) echo "build-image: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done

die() { echo "build-image: error: $*" >&2; exit 1; }
need() {  # need COMMAND DEBIAN-PACKAGE
    command -v "$1" >/dev/null 2>&1 || die "$1 not found: install the Debian package '$2' (apt-get install $2)"
}
need buildah buildah
need debootstrap debootstrap
need tar tar
need dpkg-query dpkg
[ "$(id -u)" -eq 0 ] || die "run as root (debootstrap and buildah's chroot isolation need it)"

PYTHON="${PYTHON:-python3}"
"$PYTHON" -c 'import build' 2>/dev/null || die "$PYTHON has no 'build' module: $PYTHON -m pip install build"

SUITE="${STARLOCK_DEBIAN_SUITE:-bookworm}"
VARIANT=minbase
# tpm2-pytss (the verification service's TPM access) links libtss2-esys, -mu, -rc and -tctildr;
# libtss2-tctildr dlopens the TCTI named in --tcti: device (/dev/tpmrm0) and swtpm (the tests)
TSS2_PACKAGES=libtss2-esys-3.0.2-0,libtss2-mu0,libtss2-rc0,libtss2-tctildr0,libtss2-tcti-device0,libtss2-tcti-swtpm0
INCLUDE="python3-venv,$TSS2_PACKAGES"
ARCH="$(dpkg --print-architecture 2>/dev/null || echo amd64)"
mirror_from_apt() {
    # first "URIs:" (deb822) or "deb URI" line naming a Debian archive other than security
    cat /etc/apt/sources.list /etc/apt/sources.list.d/*.list /etc/apt/sources.list.d/*.sources 2>/dev/null \
        | sed -n -e 's/^URIs:[[:space:]]*\([^[:space:]]*\).*/\1/p' -e 's/^deb[[:space:]]\+\(\[[^]]*\][[:space:]]\+\)\?\([^[:space:]]*\).*/\2/p' \
        | grep -E '/debian/?$' | grep -v security | head -n1
}
MIRROR="${STARLOCK_DEBIAN_MIRROR:-$(mirror_from_apt || true)}"
MIRROR="${MIRROR:-http://deb.debian.org/debian}"

CACHE="${STARLOCK_ROOTFS_CACHE:-/var/cache/starlock/rootfs}"
KEY="$(printf '%s\n' "$SUITE" "$VARIANT" "$INCLUDE" "$ARCH" "$MIRROR" | sha256sum | cut -c1-12)"
ROOTFS_DIR="$CACHE/$SUITE-$VARIANT-$KEY"
BASE="localhost/starlock-rootfs:$SUITE-$KEY"
VERSION="$(tr -d '[:space:]' <"$PACKAGING/VERSION")"
TAG="${TAG:-localhost/starlock-services:$VERSION}"
mkdir -p "$CACHE" "$OUTPUT"
OUTPUT="$(cd "$OUTPUT" && pwd)"

now() { date +%s.%N; }
since() { awk -v a="$1" -v b="$(now)" 'BEGIN { printf "%.1f", b - a }'; }
T0="$(now)"

# --- 1. the root filesystem (cached) -----------------------------------------------------------
ROOTFS_CACHED=true
exec 9>"$CACHE/.lock"
flock 9
if [ ! -f "$ROOTFS_DIR/rootfs.tar" ]; then
    ROOTFS_CACHED=false
    echo "build-image: debootstrap $SUITE ($VARIANT, +$INCLUDE) from $MIRROR into $ROOTFS_DIR (a few minutes, once)"
    rm -rf "$ROOTFS_DIR.tmp"
    mkdir -p "$ROOTFS_DIR.tmp"
    nice -n 10 debootstrap --variant="$VARIANT" --include="$INCLUDE" --arch="$ARCH" "$SUITE" \
        "$ROOTFS_DIR.tmp/rootfs" "$MIRROR" >"$ROOTFS_DIR.tmp/debootstrap.log" 2>&1 \
        || die "debootstrap failed; see $ROOTFS_DIR.tmp/debootstrap.log"
    chroot "$ROOTFS_DIR.tmp/rootfs" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])' \
        >"$ROOTFS_DIR.tmp/python-version"
    chroot "$ROOTFS_DIR.tmp/rootfs" dpkg-query -W -f '${Version}\n' libtss2-esys-3.0.2-0 \
        >"$ROOTFS_DIR.tmp/tss2-version"
    rm -rf "$ROOTFS_DIR.tmp/rootfs/var/cache/apt/archives/"*.deb "$ROOTFS_DIR.tmp/rootfs/var/lib/apt/lists/"*
    tar -C "$ROOTFS_DIR.tmp/rootfs" --exclude='./dev/*' --exclude='./proc/*' --exclude='./sys/*' \
        -cf "$ROOTFS_DIR.tmp/rootfs.tar" .
    rm -rf "$ROOTFS_DIR.tmp/rootfs" "$ROOTFS_DIR"
    mv "$ROOTFS_DIR.tmp" "$ROOTFS_DIR"
fi
if ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
    echo "build-image: importing the root filesystem as $BASE"
    ctr="$(buildah from scratch)"
    buildah add --quiet "$ctr" "$ROOTFS_DIR/rootfs.tar" / >/dev/null
    buildah commit --quiet --rm "$ctr" "$BASE" >/dev/null
fi
flock -u 9
T_ROOTFS="$(since "$T0")"
ROOTFS_PY="$(cat "$ROOTFS_DIR/python-version")"
HOST_PY="$("$PYTHON" -c 'import sys; print("%d.%d" % sys.version_info[:2])')"
[ "$ROOTFS_PY" = "$HOST_PY" ] \
    || die "$PYTHON is Python $HOST_PY but the image's Python is $ROOTFS_PY: run with PYTHON=python$ROOTFS_PY"
ROOTFS_TSS2="$(cat "$ROOTFS_DIR/tss2-version")"
HOST_TSS2="$(dpkg-query -W -f '${db:Status-Status} ${Version}' libtss2-dev 2>/dev/null || true)"
[ "${HOST_TSS2%% *}" = installed ] \
    || die "libtss2-dev not installed: install the Debian package 'libtss2-dev' (apt-get install libtss2-dev)"
HOST_TSS2="${HOST_TSS2#* }"
# tpm2-pytss's bindings are generated from the headers it is built with: same upstream version
[ "${HOST_TSS2%-*}" = "${ROOTFS_TSS2%-*}" ] \
    || die "libtss2-dev here is $HOST_TSS2 but the image's tpm2-tss is $ROOTFS_TSS2: build on a $SUITE machine"

# --- 2. the build context: this repository's wheels and their dependencies' wheels -------------
T1="$(now)"
CTX="$(mktemp -d "${TMPDIR:-/tmp}/starlock-image.XXXXXX")"
trap 'rm -rf "$CTX"' EXIT
mkdir "$CTX/wheels"
ISOLATION=()
"$PYTHON" -c 'import hatchling' 2>/dev/null && ISOLATION=(--no-isolation)
# what the image runs, and the Starlock distributions they depend on
for dist in libs/joinproto libs/attestation libs/atls libs/kms services/joinservice services/verificationservice; do
    nice -n 10 "$PYTHON" -m build --wheel "${ISOLATION[@]}" --outdir "$CTX/wheels" "$ROOT/$dist" \
        >"$CTX/build.log" 2>&1 || { cat "$CTX/build.log" >&2; die "building the wheel of $dist failed"; }
done
for name in starlock_joinservice starlock_kms starlock_verificationservice; do
    whl="$(ls "$CTX/wheels/$name"-*.whl)"
    ver="$(basename "$whl" | cut -d- -f2)"
    echo "${name//_/-}==$ver"
done >"$CTX/wheels/requirements.txt"

# tpm2-pytss: sdist only on PyPI. Built with $PYTHON (the image's Python version) against this
# machine's tpm2-tss headers (checked above to be the image's version), with FAPI hidden from
# pkg-config: the bindings then link only libtss2-esys/-mu/-rc/-tctildr, not libtss2-fapi and its
# libcurl, LDAP, Kerberos and GnuTLS, which nothing here uses. pip's own wheel cache is not used
# (its key ignores pkg-config, and the Debian package's build wants FAPI); ours keys the version,
# the Python ABI and the tpm2-tss version.
TPM2_SPEC="$("$PYTHON" - "$ROOT/libs/attestation/pyproject.toml" <<'PY'
import sys, tomllib
extra = tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]["tpm"]
print(next(r for r in extra if r.lower().startswith("tpm2-pytss"))[len("tpm2-pytss"):].strip())
PY
)"
TPM2_VERSION="$("$PYTHON" -m pip index versions tpm2-pytss 2>/dev/null | sed -n 's/^tpm2-pytss (\(.*\))$/\1/p')"
[ -n "$TPM2_VERSION" ] || die "cannot find the latest tpm2-pytss version on the package index"
PY_ABI="$("$PYTHON" -c 'import sysconfig; print(sysconfig.get_config_var("SOABI"))')"
WHEEL_CACHE="${STARLOCK_WHEEL_CACHE:-/var/cache/starlock/wheels}"
TPM2_DIR="$WHEEL_CACHE/tpm2-pytss-$TPM2_VERSION-$(printf '%s\n' "$TPM2_VERSION" "$PY_ABI" "$HOST_TSS2" no-fapi "$ARCH" \
    | sha256sum | cut -c1-12)"
T_TPM2="$(now)"
TPM2_BUILT=false
mkdir -p "$WHEEL_CACHE"
exec 8>"$WHEEL_CACHE/.lock"
flock 8
if ! ls "$TPM2_DIR"/tpm2_pytss-*.whl >/dev/null 2>&1; then
    TPM2_BUILT=true
    need gcc gcc
    need pkg-config pkg-config
    echo "build-image: building tpm2-pytss $TPM2_VERSION against libtss2 $HOST_TSS2 (once; about 2 minutes)"
    mkdir -p "$CTX/pkgconfig"
    IFS=: read -ra pc_dirs <<<"$(pkg-config --variable pc_path pkg-config)"
    for d in "${pc_dirs[@]}"; do
        for pc in "$d"/*.pc; do
            case "$(basename "$pc")" in tss2-fapi.pc|tss2-policy.pc) continue ;; esac
            if [ -e "$pc" ] && [ ! -e "$CTX/pkgconfig/$(basename "$pc")" ]; then ln -s "$pc" "$CTX/pkgconfig/"; fi
        done
    done
    rm -rf "$TPM2_DIR.tmp"
    PKG_CONFIG_LIBDIR="$CTX/pkgconfig" nice -n 10 "$PYTHON" -m pip wheel --quiet --disable-pip-version-check \
        --no-deps --no-cache-dir --no-binary tpm2-pytss --wheel-dir "$TPM2_DIR.tmp" \
        "tpm2-pytss${TPM2_SPEC:+$TPM2_SPEC,}==$TPM2_VERSION" >"$CTX/tpm2.log" 2>&1 \
        || { tail -n 40 "$CTX/tpm2.log" >&2; die "building the tpm2-pytss wheel failed"; }
    rm -rf "$TPM2_DIR"
    mv "$TPM2_DIR.tmp" "$TPM2_DIR"
fi
cp "$TPM2_DIR"/tpm2_pytss-*.whl "$CTX/wheels/"
flock -u 8
T_TPM2="$(since "$T_TPM2")"
(cd "$CTX/wheels" && sha256sum starlock_*.whl tpm2_pytss-*.whl) >"$CTX/starlock.sha256"
nice -n 10 "$PYTHON" -m pip download --quiet --disable-pip-version-check --only-binary=:all: \
    --dest "$CTX/wheels" --find-links "$CTX/wheels" --requirement "$CTX/wheels/requirements.txt" \
    || die "pip download of the dependencies failed"
# the Starlock and tpm2-pytss wheels must be the ones just built (never a same-named download)
(cd "$CTX/wheels" && sha256sum --quiet -c "$CTX/starlock.sha256") || die "a Starlock or tpm2-pytss wheel was replaced"
[ "$(ls "$CTX/wheels"/tpm2_pytss-*.whl | wc -l)" -eq 1 ] || die "pip download added another tpm2-pytss wheel"
cp "$PACKAGING/collect_runtime.py" "$CTX/"
# same content, same time stamps: buildah's layer cache then reuses the build stage when nothing changed
find "$CTX" -exec touch -h -d @0 {} +
DISTS="$(cd "$CTX/wheels" && ls starlock_*.whl | cut -d- -f1,2 | tr '_' '-' | sed 's/-\([0-9]\)/==\1/' | tr '\n' ' ')"
BUILT="$(cd "$CTX/wheels" && ls tpm2_pytss-*.whl | cut -d- -f1,2 | tr '_' '-' | sed 's/-\([0-9]\)/==\1/')"
T_WHEELS="$(since "$T1")"

# --- 3. the image --------------------------------------------------------------------------------
T2="$(now)"
SOURCE="$(sed -n 's/^Homepage = "\(.*\)"/\1/p' "$ROOT/libs/kms/pyproject.toml")"
LICENSES="$(sed -n 's/^license = "\(.*\)"/\1/p' "$ROOT/libs/kms/pyproject.toml")"
REVISION="$(git -C "$ROOT" rev-parse HEAD 2>/dev/null || echo unknown)"
CREATED="$(date -u -d "@${SOURCE_DATE_EPOCH:-$(date +%s)}" +%Y-%m-%dT%H:%M:%SZ)"
nice -n 10 buildah bud --quiet --isolation chroot --pull=never --layers --format oci \
    --file "$PACKAGING/Containerfile" \
    --build-arg "BASE=$BASE" --build-arg "VERSION=$VERSION" --build-arg "REVISION=$REVISION" \
    --build-arg "CREATED=$CREATED" --build-arg "SOURCE=$SOURCE" --build-arg "LICENSES=$LICENSES" \
    --label "dev.starlock.distributions=${DISTS% }" \
    --label "dev.starlock.built-from-source=$BUILT" --label "dev.starlock.tpm2-tss=$ROOTFS_TSS2" \
    --tag "$TAG" "$CTX" >"$CTX/bud.log" 2>&1 || { tail -n 40 "$CTX/bud.log" >&2; die "buildah bud failed"; }
T_BUILD="$(since "$T2")"
T3="$(now)"
ARCHIVE="$OUTPUT/starlock-services-$VERSION.oci.tar"
rm -f "$ARCHIVE"
buildah push --quiet "$TAG" "oci-archive:$ARCHIVE:$TAG" >/dev/null
T_EXPORT="$(since "$T3")"
ctr="$(buildah from --pull=never "$TAG")"
IMAGE_BYTES="$(du -sb "$(buildah mount "$ctr")" | cut -f1)"
buildah umount "$ctr" >/dev/null
buildah rm "$ctr" >/dev/null
ARCHIVE_BYTES="$(stat -c %s "$ARCHIVE")"
T_TOTAL="$(since "$T0")"

cat >"$OUTPUT/build-info.json" <<JSON
{"tag": "$TAG", "version": "$VERSION", "archive": "$ARCHIVE", "archive_bytes": $ARCHIVE_BYTES,
 "image_bytes": $IMAGE_BYTES, "base": "$BASE", "rootfs_cached": $ROOTFS_CACHED,
 "tpm2_pytss_built": $TPM2_BUILT,
 "seconds": {"rootfs": $T_ROOTFS, "wheels": $T_WHEELS, "tpm2_pytss": $T_TPM2, "build": $T_BUILD, "export": $T_EXPORT,
             "total": $T_TOTAL}}
JSON
echo "build-image: $TAG -> $ARCHIVE"
echo "build-image: image $((IMAGE_BYTES / 1048576)) MiB unpacked, archive $((ARCHIVE_BYTES / 1048576)) MiB;" \
    "rootfs ${T_ROOTFS}s (cached: $ROOTFS_CACHED), wheels ${T_WHEELS}s (tpm2-pytss ${T_TPM2}s, built: $TPM2_BUILT), build ${T_BUILD}s," \
    "export ${T_EXPORT}s, total ${T_TOTAL}s"
