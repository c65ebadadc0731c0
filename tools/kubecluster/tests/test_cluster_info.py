"""kube-public/cluster-info is signed by the bootstrap signer with each new signing token."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from collections.abc import Callable

import pytest
import yaml
from kubernetes import client

from starlock.kubecluster import ControlPlane


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _detached_jws_valid(jws: str, payload: str, token_id: str, token_secret: str) -> bool:
    """What `kubeadm join` discovery checks: HS256 over header.payload keyed with the token secret."""
    header_b64, empty, signature_b64 = jws.split(".")
    if empty:
        return False
    header = json.loads(base64.urlsafe_b64decode(header_b64 + "=" * (-len(header_b64) % 4)))
    if header != {"alg": "HS256", "kid": token_id}:
        return False
    signing_input = f"{header_b64}.{_b64url(payload.encode())}".encode()
    expected = hmac.new(token_secret.encode(), signing_input, hashlib.sha256).digest()
    return hmac.compare_digest(_b64url(expected), signature_b64)


def _wait_for_signature(core: client.CoreV1Api, token_id: str, timeout: float = 60) -> dict[str, str]:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        data = core.read_namespaced_config_map("cluster-info", "kube-public").data or {}
        if f"jws-kubeconfig-{token_id}" in data:
            return dict(data)
        time.sleep(0.5)
    pytest.fail(f"cluster-info was not signed for token {token_id} within {timeout:.0f} s")


def test_cluster_info_signed_for_new_token(
    kube_control_plane: ControlPlane, make_token: Callable[..., tuple[str, str]], admin_api: client.ApiClient
) -> None:
    token_id, token_secret = make_token()
    data = _wait_for_signature(client.CoreV1Api(admin_api), token_id)
    jws, kubeconfig = data[f"jws-kubeconfig-{token_id}"], data["kubeconfig"]
    assert _detached_jws_valid(jws, kubeconfig, token_id, token_secret)
    # the check above can fail: another secret, or a changed kubeconfig, does not verify
    assert not _detached_jws_valid(jws, kubeconfig, token_id, "0" * 16)
    assert not _detached_jws_valid(jws, kubeconfig + " ", token_id, token_secret)
    # the published kubeconfig names this API server and carries the PKI's CA
    cluster = yaml.safe_load(kubeconfig)["clusters"][0]["cluster"]
    assert cluster["server"] == kube_control_plane.server
    assert base64.b64decode(cluster["certificate-authority-data"]) == kube_control_plane.ca_cert.read_bytes()


def test_token_without_signing_usage_gets_no_signature(
    kube_control_plane: ControlPlane, make_token: Callable[..., tuple[str, str]], admin_api: client.ApiClient
) -> None:
    core = client.CoreV1Api(admin_api)
    unsigned_id, _ = make_token(signing=False)
    signed_id, _ = make_token()
    data = _wait_for_signature(core, signed_id)
    assert f"jws-kubeconfig-{unsigned_id}" not in data
