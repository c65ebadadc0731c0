"""Metadata providers: upstream's QEMU metadata HTTP API (a real HTTP server) and the local file."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from starlock.bootstrapper.metadata import (
    InstanceMetadata,
    LocalMetadata,
    MetadataError,
    QemuMetadata,
    control_plane_endpoints,
    open_metadata,
)
from starlock.bootstrapper.nodestate import Role

SELF = {"Name": "worker-1", "ProviderID": "qemu:///worker-1", "Role": "Worker", "VPCIP": "10.42.0.12"}
PEERS = [
    {"Name": "cp-0", "ProviderID": "qemu:///cp-0", "Role": "ControlPlane", "VPCIP": "10.42.0.10"},
    SELF,
    {"Name": "cp-1", "ProviderID": "qemu:///cp-1", "Role": "ControlPlane", "VPCIP": "10.42.0.11"},
]
HASH = b"$2a$10$abcdefghijklmnopqrstuu0123456789012345678901234567890"


@pytest.fixture
def api() -> Iterator[tuple[str, dict[str, tuple[int, bytes]]]]:
    """A real HTTP server answering like hack/qemu-metadata-api; tests edit ``routes``."""
    routes: dict[str, tuple[int, bytes]] = {
        "/self": (200, json.dumps(SELF).encode()),
        "/peers": (200, json.dumps(PEERS).encode()),
        "/endpoint": (200, json.dumps("10.42.0.100").encode()),
        "/initsecrethash": (200, HASH),
    }

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            status, body = routes.get(self.path, (404, b"not found"))
            self.send_response(status)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, *_: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"http://127.0.0.1:{server.server_address[1]}", routes
    server.shutdown()
    server.server_close()


def test_qemu_provider_reads_upstream_json(api: tuple[str, dict[str, tuple[int, bytes]]]) -> None:
    url, _ = api
    meta = QemuMetadata(url, timeout=5)
    me = meta.self()
    assert me == InstanceMetadata("worker-1", "qemu:///worker-1", Role.WORKER, "10.42.0.12")
    assert [p.name for p in meta.list()] == ["cp-0", "worker-1", "cp-1"]
    assert meta.load_balancer_host() == "10.42.0.100"
    assert meta.init_secret_hash() == HASH
    # the load balancer first, then every control plane's VPC IP, each on the join service port
    assert control_plane_endpoints(meta) == ["10.42.0.100:30090", "10.42.0.10:30090", "10.42.0.11:30090"]
    assert control_plane_endpoints(meta, own_ip="10.42.0.10", port=9) == ["10.42.0.100:9", "10.42.0.11:9"]


@pytest.mark.parametrize(
    ("path", "answer", "call", "message"),
    [
        ("/self", (200, b"{not json"), "self", "not JSON"),
        ("/self", (200, b"[]"), "self", "expected a JSON object"),
        ("/self", (200, json.dumps({**SELF, "VPCIP": 7}).encode()), "self", "VPCIP is not a string"),
        ("/self", (200, json.dumps({**SELF, "Role": None}).encode()), "self", "Role"),
        ("/self", (200, json.dumps({**SELF, "AliasIPRanges": [1]}).encode()), "self", "AliasIPRanges"),
        ("/self", (500, b"boom"), "self", "HTTP 500"),
        ("/self", (200, b" " * (64 * 1024 + 1)), "self", "larger than"),
        ("/peers", (200, b"{}"), "list", "expected a JSON list"),
        ("/endpoint", (200, b"42"), "load_balancer_host", "endpoint is not a string"),
    ],
)
def test_qemu_provider_refuses_malformed_answers(
    api: tuple[str, dict[str, tuple[int, bytes]]], path: str, answer: tuple[int, bytes], call: str, message: str
) -> None:
    url, routes = api
    routes[path] = answer
    with pytest.raises(MetadataError, match=message):
        getattr(QemuMetadata(url, timeout=5), call)()


def test_unreachable_metadata_is_a_metadata_error() -> None:
    import socket

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    with pytest.raises(MetadataError, match="ConnectionRefusedError"):
        QemuMetadata(f"http://127.0.0.1:{port}", timeout=2).self()


def test_failed_load_balancer_lookup_is_skipped_not_dialled(api: tuple[str, dict[str, tuple[int, bytes]]]) -> None:
    url, routes = api
    routes["/endpoint"] = (500, b"")
    # upstream appended "" (an empty host) when the lookup failed; Starlock leaves it out
    assert control_plane_endpoints(QemuMetadata(url, timeout=5)) == ["10.42.0.10:30090", "10.42.0.11:30090"]


@pytest.mark.parametrize(
    ("endpoint", "expected"),
    [("10.0.0.1", "10.0.0.1"), ("10.0.0.1:6443", "10.0.0.1"), ("[fd00::1]:6443", "fd00::1"), ("fd00::1", "fd00::1")],
)
def test_load_balancer_host_forms(tmp_path: Path, endpoint: str, expected: str) -> None:
    path = tmp_path / "meta.json"
    path.write_text(json.dumps({"self": SELF, "peers": [], "endpoint": endpoint}))
    meta = LocalMetadata(path)
    assert meta.load_balancer_host() == expected
    wanted = f"[{expected}]:30090" if ":" in expected else f"{expected}:30090"
    assert control_plane_endpoints(meta) == [wanted]


def test_local_provider_is_reread_on_every_call(tmp_path: Path) -> None:
    path = tmp_path / "meta.json"
    path.write_text(json.dumps({"self": {**SELF, "Role": "ControlPlane"}, "initSecretHash": HASH.decode()}))
    meta = open_metadata(f"local:{path}")
    assert meta.self().role is Role.CONTROL_PLANE
    assert meta.list() == [] and meta.init_secret_hash() == HASH
    path.write_text(json.dumps({"self": SELF, "peers": PEERS}))
    assert meta.self().role is Role.WORKER and len(meta.list()) == 3
    path.write_text("[1]")
    with pytest.raises(MetadataError, match="expected a JSON object"):
        meta.self()
    path.unlink()
    with pytest.raises(MetadataError, match="No such file"):
        meta.self()


@pytest.mark.parametrize("spec", ["", "local:", "aws", "qemu:ftp://x", "qemu:http://"])
def test_unknown_metadata_specs_are_refused(spec: str) -> None:
    with pytest.raises(MetadataError):
        open_metadata(spec)
