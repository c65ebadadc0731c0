#!/usr/bin/env bash
# Create the objects the base (deploy/kubernetes/base) expects but never carries, because they
# hold secrets or cluster-specific values. Run by the operator once per cluster, after init:
#
#   bash deploy/kubernetes/cluster-objects.sh \
#       --master-secret-json constellation-mastersecret.json \
#       --attestation-config attestation-config.json --measurement-salt <64 hex digits>
#
#   Secret    kube-system/constellation-mastersecret       mastersecret, salt (raw; immutable; spec §3.6)
#   ConfigMap kube-system/join-config                      attestationConfig, binaryData measurementSalt (§2.10)
#   Secret    kube-system/key-service-tls                  the key service's mTLS server certificate
#   Secret    kube-system/join-service-key-service-client  the join service's client certificate
#
# The two TLS Secrets come from a fresh CA (EC P-256, 10 years) made here in a private temporary
# directory; its key is removed at the end (rerun the script with --only-tls to re-issue both).
# Existing objects are left alone, except join-config, which is updated (as the CLI's
# ApplyJoinConfig does; the previous attestationConfig is kept as attestationConfig_backup).
# Environment: KUBECTL (default kubectl; its KUBECONFIG/context is used). Needs openssl.
set -euo pipefail

KUBECTL="${KUBECTL:-kubectl}"
NS=kube-system
MASTER_JSON="" ATTESTATION="" SALT_HEX="" ONLY_TLS=false
while [ $# -gt 0 ]; do
    case "$1" in
        --master-secret-json) MASTER_JSON="$2"; shift 2 ;;
        --attestation-config) ATTESTATION="$2"; shift 2 ;;
        --measurement-salt) SALT_HEX="$2"; shift 2 ;;
        --only-tls) ONLY_TLS=true; shift ;;
        -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
        *) echo "cluster-objects: unknown argument $1 (see --help)" >&2; exit 2 ;;
    esac
done
die() { echo "cluster-objects: error: $*" >&2; exit 1; }
command -v openssl >/dev/null || die "openssl not found: install the Debian package 'openssl'"
if ! $ONLY_TLS; then
    [ -r "$MASTER_JSON" ] || die "--master-secret-json FILE is required (the CLI's constellation-mastersecret.json)"
    [ -r "$ATTESTATION" ] || die "--attestation-config FILE is required (the variant's attestation config JSON)"
    [[ "$SALT_HEX" =~ ^[0-9a-fA-F]{64}$ ]] || die "--measurement-salt must be 64 hex digits (32 bytes)"
fi

WORK="$(mktemp -d)"
chmod 700 "$WORK"
trap 'rm -rf "$WORK"' EXIT
umask 077
exists() { "$KUBECTL" -n "$NS" get "$1" "$2" >/dev/null 2>&1; }
apply() { "$KUBECTL" apply --server-side --field-manager=starlock-operator -f "$1" >/dev/null; }

if ! $ONLY_TLS; then
    if exists secret constellation-mastersecret; then
        echo "cluster-objects: secret/constellation-mastersecret exists: kept"
    else
        json="$(tr -d ' \n\t' <"$MASTER_JSON")"
        key="$(sed -n 's/.*"key":"\([A-Za-z0-9+\/=]*\)".*/\1/p' <<<"$json")"
        salt="$(sed -n 's/.*"salt":"\([A-Za-z0-9+\/=]*\)".*/\1/p' <<<"$json")"
        [ -n "$key" ] && [ -n "$salt" ] || die "$MASTER_JSON has no base64 \"key\" and \"salt\""
        cat >"$WORK/mastersecret.yaml" <<YAML
apiVersion: v1
kind: Secret
metadata: {name: constellation-mastersecret, namespace: $NS, labels: {app.kubernetes.io/part-of: starlock}}
type: Opaque
immutable: true
data: {mastersecret: "$key", salt: "$salt"}
YAML
        apply "$WORK/mastersecret.yaml"
        echo "cluster-objects: secret/constellation-mastersecret created"
    fi
    printf '%b' "$(sed 's/../\\x&/g' <<<"$SALT_HEX")" >"$WORK/measurementSalt"
    backup=()
    if exists configmap join-config; then
        "$KUBECTL" -n "$NS" get configmap join-config -o 'jsonpath={.data.attestationConfig}' >"$WORK/backup"
        backup=(--from-file=attestationConfig_backup="$WORK/backup")
    fi
    "$KUBECTL" -n "$NS" create configmap join-config --dry-run=client -o yaml \
        --from-file=attestationConfig="$ATTESTATION" --from-file=measurementSalt="$WORK/measurementSalt" \
        "${backup[@]}" >"$WORK/join-config.yaml"
    "$KUBECTL" -n "$NS" label --local -f "$WORK/join-config.yaml" app.kubernetes.io/part-of=starlock -o yaml \
        >"$WORK/join-config.labelled.yaml"
    "$KUBECTL" apply --server-side --force-conflicts --field-manager=starlock-operator \
        -f "$WORK/join-config.labelled.yaml" >/dev/null
    echo "cluster-objects: configmap/join-config written"
fi

if exists secret key-service-tls && exists secret join-service-key-service-client && ! $ONLY_TLS; then
    echo "cluster-objects: the key service's TLS Secrets exist: kept"
else
    cd "$WORK"
    ec=(-newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes)
    openssl req -x509 "${ec[@]}" -keyout ca.key -out ca.crt -days 3650 -subj "/CN=starlock key service CA" \
        -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" 2>/dev/null
    issue() {  # issue NAME CN EXTENSIONS
        openssl req "${ec[@]}" -keyout "$1.key" -out "$1.csr" -subj "/CN=$2" 2>/dev/null
        printf '%s\n' "$3" >"$1.ext"
        openssl x509 -req -in "$1.csr" -CA ca.crt -CAkey ca.key -CAcreateserial -days 3650 -out "$1.crt" \
            -extfile "$1.ext" 2>/dev/null
    }
    issue server key-service "subjectAltName=DNS:key-service,DNS:key-service.$NS,DNS:key-service.$NS.svc,DNS:key-service.$NS.svc.cluster.local
extendedKeyUsage=serverAuth
keyUsage=critical,digitalSignature"
    issue client join-service "extendedKeyUsage=clientAuth
keyUsage=critical,digitalSignature"
    for pair in key-service-tls:server join-service-key-service-client:client; do
        name="${pair%%:*}" who="${pair##*:}"
        "$KUBECTL" -n "$NS" create secret generic "$name" --dry-run=client -o yaml \
            --from-file=tls.crt="$who.crt" --from-file=tls.key="$who.key" --from-file=ca.crt=ca.crt >"$name.yaml"
        "$KUBECTL" delete -f "$name.yaml" --ignore-not-found >/dev/null
        apply "$name.yaml"
        echo "cluster-objects: secret/$name created"
    done
    cd - >/dev/null
fi
