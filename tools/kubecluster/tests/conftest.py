"""Tests of the local control plane run against the real binaries (built once, cached)."""

from __future__ import annotations

import secrets
import string
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from kubernetes import client, config

from starlock.kubecluster import ControlPlane

pytest_plugins = ["starlock.kubecluster.pytest_plugin"]

_ALPHABET = string.ascii_lowercase + string.digits


@pytest.fixture(scope="session")
def admin_api(kube_control_plane: ControlPlane) -> client.ApiClient:
    """The official Python client with kubeadm's admin.conf."""
    return config.new_client_from_config(config_file=str(kube_control_plane.admin_kubeconfig))


def random_token() -> tuple[str, str]:
    """A kubeadm-shaped bootstrap token: 6 + 16 characters of [a-z0-9]."""
    return (
        "".join(secrets.choice(_ALPHABET) for _ in range(6)),
        "".join(secrets.choice(_ALPHABET) for _ in range(16)),
    )


@pytest.fixture
def make_token(admin_api: client.ApiClient) -> Iterator[Callable[..., tuple[str, str]]]:
    """Create bootstrap token Secrets (kube-system/bootstrap-token-<id>) as kubeadm would."""
    core = client.CoreV1Api(admin_api)
    made: list[str] = []

    def make(*, expires_in: timedelta = timedelta(minutes=15), signing: bool = True, **extra: str) -> tuple[str, str]:
        token_id, token_secret = random_token()
        data = {
            "token-id": token_id,
            "token-secret": token_secret,
            "description": "starlock test token",
            "expiration": (datetime.now(UTC) + expires_in).strftime("%Y-%m-%dT%H:%M:%SZ"),
            "usage-bootstrap-authentication": "true",
            "usage-bootstrap-signing": "true" if signing else "false",
            "auth-extra-groups": "system:bootstrappers:kubeadm:default-node-token",
            **extra,
        }
        body = client.V1Secret(
            metadata=client.V1ObjectMeta(name=f"bootstrap-token-{token_id}", namespace="kube-system"),
            type="bootstrap.kubernetes.io/token",
            string_data=data,
        )
        core.create_namespaced_secret("kube-system", body)
        made.append(token_id)
        return token_id, token_secret

    yield make
    for token_id in made:
        try:
            core.delete_namespaced_secret(f"bootstrap-token-{token_id}", "kube-system")
        except client.ApiException as exc:
            if exc.status != 404:
                raise


def token_client(plane: ControlPlane, token: str) -> client.ApiClient:
    """An API client that authenticates with a bearer token only, verifying the server's CA."""
    configuration = client.Configuration()
    configuration.host = plane.server
    configuration.ssl_ca_cert = str(plane.ca_cert)
    configuration.api_key = {"authorization": token}
    configuration.api_key_prefix = {"authorization": "Bearer"}
    return client.ApiClient(configuration)


def who_am_i(api: client.ApiClient) -> Any:
    """SelfSubjectReview: the user the API server authenticated this client as."""
    review = client.AuthenticationV1Api(api).create_self_subject_review(client.V1SelfSubjectReview())
    return review.status.user_info
