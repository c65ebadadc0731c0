"""Bootstrap tokens authenticate against the real API server and expire as in a kubeadm cluster."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import timedelta

import pytest
from conftest import token_client, who_am_i
from kubernetes import client

from starlock.kubecluster import ControlPlane


def test_bootstrap_token_authenticates(
    kube_control_plane: ControlPlane, make_token: Callable[..., tuple[str, str]]
) -> None:
    token_id, token_secret = make_token()
    user = who_am_i(token_client(kube_control_plane, f"{token_id}.{token_secret}"))
    assert user.username == f"system:bootstrap:{token_id}"
    assert "system:bootstrappers" in user.groups
    assert "system:bootstrappers:kubeadm:default-node-token" in user.groups


@pytest.mark.parametrize("mangle", ["wrong-secret", "truncated", "unknown-id"])
def test_wrong_token_is_refused(
    kube_control_plane: ControlPlane, make_token: Callable[..., tuple[str, str]], mangle: str
) -> None:
    token_id, token_secret = make_token()
    token = {
        "wrong-secret": f"{token_id}.{token_secret[:-1]}{'a' if token_secret[-1] != 'a' else 'b'}",
        "truncated": f"{token_id}.{token_secret[:15]}",
        "unknown-id": f"zzzzzz.{token_secret}",
    }[mangle]
    with pytest.raises(client.ApiException) as caught:
        who_am_i(token_client(kube_control_plane, token))
    assert caught.value.status == 401


def test_expired_token_is_refused_and_cleaned_up(
    kube_control_plane: ControlPlane, make_token: Callable[..., tuple[str, str]], admin_api: client.ApiClient
) -> None:
    token_id, token_secret = make_token(expires_in=timedelta(seconds=-5))
    # The API server's authenticator refuses an expired token ...
    with pytest.raises(client.ApiException) as caught:
        who_am_i(token_client(kube_control_plane, f"{token_id}.{token_secret}"))
    assert caught.value.status == 401
    # ... and the controller manager's token cleaner deletes its Secret.
    core = client.CoreV1Api(admin_api)
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        try:
            core.read_namespaced_secret(f"bootstrap-token-{token_id}", "kube-system")
        except client.ApiException as exc:
            assert exc.status == 404
            return
        time.sleep(0.5)
    pytest.fail("the token cleaner did not delete the expired bootstrap token Secret within 60 s")


def test_token_without_authentication_usage_is_refused(
    kube_control_plane: ControlPlane, make_token: Callable[..., tuple[str, str]]
) -> None:
    token_id, token_secret = make_token(**{"usage-bootstrap-authentication": "false"})
    with pytest.raises(client.ApiException) as caught:
        who_am_i(token_client(kube_control_plane, f"{token_id}.{token_secret}"))
    assert caught.value.status == 401
