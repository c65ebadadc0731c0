"""Operating the join service: faults of its dependencies, load, draining, logs and metrics."""

from __future__ import annotations

import io
import json
import logging
import signal
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import grpc
import pytest
from conftest import Background, Cluster, ConfigDir, KeyService
from join_helpers import join_request, join_stub
from kubernetes import client
from proxy import Forwarder

from starlock.joinservice._log import configure_logging
from starlock.joinservice.cli import JoinService


def _metric(service: JoinService, name: str, **labels: str) -> float:
    value = service.metrics.registry.get_sample_value(name, labels)
    return float(value or 0.0)


def test_key_service_down_and_back(start_joinservice: Callable[..., JoinService], keyservice: KeyService) -> None:
    service = start_joinservice()
    with join_stub(service.port) as stub:
        stub.IssueJoinTicket(join_request("ks-before"), timeout=30)
        keyservice.stop()
        try:
            started = time.monotonic()
            with pytest.raises(grpc.RpcError) as caught:
                stub.IssueJoinTicket(join_request("ks-down"), timeout=5)
            assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
            assert "key service" in caught.value.details()
            assert time.monotonic() - started < 5
        finally:
            keyservice.start()
        back = time.monotonic()
        while True:  # back within a second or two: the client reconnects with a short backoff
            try:
                reply = stub.IssueJoinTicket(join_request("ks-after"), timeout=30)
                break
            except grpc.RpcError as exc:
                assert exc.code() == grpc.StatusCode.UNAVAILABLE
                assert time.monotonic() - back < 5, "the join service did not reconnect to the key service"
                time.sleep(0.1)
    assert len(reply.state_disk_key) == 32
    assert _metric(service, "starlock_joinservice_tickets_total", method="join", outcome="unavailable") >= 1


def test_api_server_down_and_back(start_joinservice: Callable[..., JoinService], cluster: Cluster) -> None:
    host, port = cluster.plane.server.removeprefix("https://").split(":")
    proxy = Forwarder((host, int(port)), ("127.0.0.1", 0)).start()
    doc = json.loads(cluster.service_kubeconfig.read_text())
    doc["clusters"][0]["cluster"]["server"] = f"https://127.0.0.1:{proxy.listen[1]}"  # type: ignore[index]
    kubeconfig = cluster.service_kubeconfig.with_name("via-proxy.kubeconfig")
    kubeconfig.write_text(json.dumps(doc))
    service = start_joinservice(kubeconfig=kubeconfig)
    with join_stub(service.port) as stub:
        stub.IssueJoinTicket(join_request("api-before"), timeout=30)
        proxy.stop()
        with pytest.raises(grpc.RpcError) as caught:
            stub.IssueJoinTicket(join_request("api-down"), timeout=30)
        assert caught.value.code() == grpc.StatusCode.UNAVAILABLE
        assert "API server" in caught.value.details()
        proxy.start()
        reply = stub.IssueJoinTicket(join_request("api-after"), timeout=30)
    proxy.stop()
    assert reply.token


def test_fifty_concurrent_joins(start_joinservice: Callable[..., JoinService], cluster: Cluster) -> None:
    service = start_joinservice()

    def join(i: int) -> str:
        with join_stub(service.port) as stub:
            return str(stub.IssueJoinTicket(join_request(f"load-{i}"), timeout=120).token)

    with ThreadPoolExecutor(max_workers=50) as pool:
        tokens = list(pool.map(join, range(50)))
    assert len(set(tokens)) == 50
    names = {
        item["metadata"]["name"]
        for item in client.CustomObjectsApi(cluster.admin).list_cluster_custom_object(
            "update.edgeless.systems", "v1alpha1", "joiningnodes"
        )["items"]
    }
    assert {f"load-{i}" for i in range(50)} <= names
    assert _metric(service, "starlock_joinservice_tickets_total", method="join", outcome="ok") == 50


def test_drain_lets_in_flight_tickets_finish_and_refuses_new_ones(
    start_joinservice: Callable[..., JoinService], keyservice: KeyService
) -> None:
    slow_socket = Path(tempfile.mkdtemp(prefix="sljs-slow-", dir="/tmp")) / "ks.sock"
    slow = Forwarder(str(keyservice.socket_path), str(slow_socket), delay=0.4).start()
    service = start_joinservice(key_endpoint=f"unix:{slow_socket}")
    try:
        with join_stub(service.port) as stub:
            in_flight = Background(lambda: stub.IssueJoinTicket(join_request("drain-1"), timeout=30))
            time.sleep(0.5)  # the ticket is waiting on the (slow) key service
            stopping = Background(lambda: service.stop(grace=20))
            time.sleep(0.2)
            with pytest.raises(grpc.RpcError) as refused:
                stub.IssueJoinTicket(join_request("drain-2"), timeout=10)
            assert refused.value.code() == grpc.StatusCode.UNAVAILABLE
            assert in_flight.result().token  # the one in flight finished
            stopping.result()
    finally:
        slow.stop()


def test_logs_and_metrics_hold_no_secrets(
    start_joinservice: Callable[..., JoinService], keyservice: KeyService, cluster: Cluster
) -> None:
    stream = io.StringIO()
    configure_logging(6, stream)
    try:
        service = start_joinservice("-v", "6")
        with join_stub(service.port) as stub:
            reply = stub.IssueJoinTicket(join_request("quiet-1", control_plane=False), timeout=30)
            with pytest.raises(grpc.RpcError):
                stub.IssueJoinTicket(join_request("quiet-2", disk_uuid="bad"), timeout=30)
    finally:
        logging.getLogger("starlock").handlers.clear()
    text = stream.getvalue() + service.metrics.render().decode()
    import base64

    for secret in (reply.state_disk_key, reply.measurement_secret, keyservice.master_secret, reply.measurement_salt):
        assert secret.hex() not in text
        assert base64.b64encode(secret).decode() not in text
    assert reply.token not in text and reply.token.split(".")[1] not in text
    assert "PRIVATE KEY" not in text
    audit = [json.loads(line) for line in stream.getvalue().splitlines() if '"starlock.joinservice.audit"' in line]
    assert [a["outcome"] for a in audit] == ["ok", "invalid_argument"]
    assert audit[0]["node"] == "quiet-1" and audit[0]["role"] == "worker" and audit[0]["variant"] == "dummy"
    assert audit[0]["peer"].startswith("127.0.0.1:") and audit[0]["duration_ms"] > 0


def test_health_and_metrics_endpoints(start_joinservice: Callable[..., JoinService]) -> None:
    service = start_joinservice("--metrics-listen", "127.0.0.1:0")
    assert service.health is not None
    base = f"http://127.0.0.1:{service.health.port}"
    assert urllib.request.urlopen(base + "/readyz", timeout=5).status == 200
    assert urllib.request.urlopen(base + "/healthz", timeout=5).status == 200
    with join_stub(service.port) as stub:
        stub.IssueJoinTicket(join_request("metrics-1"), timeout=30)
    body = urllib.request.urlopen(base + "/metrics", timeout=5).read().decode()
    assert 'starlock_joinservice_tickets_total{method="join",outcome="ok"} 1.0' in body
    assert "starlock_joinservice_ticket_duration_seconds_bucket" in body
    service.stop(grace=1)
    with pytest.raises(OSError):
        urllib.request.urlopen(base + "/readyz", timeout=2)


def test_process_starts_serves_and_stops_on_sigterm(
    cluster: Cluster, keyservice: KeyService, config_dir: ConfigDir
) -> None:
    args = [
        sys.executable, "-m", "starlock.joinservice", "--attestation-variant", "dummy", "--insecure-dummy",
        "--key-service-endpoint", keyservice.endpoint, "--config-dir", str(config_dir.path),
        "--kubernetes-dir", str(cluster.plane.root), "--kubeconfig", str(cluster.service_kubeconfig),
        "--listen", "127.0.0.1:0", "--api-server-endpoint", "192.0.2.10:6443", "-v", "2",
    ]  # fmt: skip
    proc = subprocess.Popen(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert line.startswith("listening on port "), proc.stderr.read() if proc.stderr else ""
        port = int(line.split()[-1])
        with join_stub(port) as stub:
            assert stub.IssueJoinTicket(join_request("proc-1"), timeout=30).token
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(30) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
    # a fatal start-up error: one JSON line, exit 1
    bad = subprocess.run(
        [*args[:3], "--attestation-variant", "no-such-variant", *args[5:]],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert bad.returncode == 1
    lines = [json.loads(x) for x in bad.stderr.splitlines() if x.startswith("{")]
    assert lines and lines[-1]["msg"] == "cannot start the join service"
    assert "no-such-variant" in lines[-1]["error"]
    assert "Traceback" not in bad.stderr


def test_readiness_waits_for_the_key_service(
    start_joinservice: Callable[..., JoinService], keyservice: KeyService
) -> None:
    keyservice.stop()
    try:
        service = start_joinservice("--metrics-listen", "127.0.0.1:0", wait_ready=False)
        assert service.health is not None
        time.sleep(1.0)
        assert not service.ready.is_set()
        with pytest.raises(urllib.error.HTTPError) as caught:
            urllib.request.urlopen(f"http://127.0.0.1:{service.health.port}/readyz", timeout=5)
        assert caught.value.code == 503
    finally:
        keyservice.start()
    assert service.ready.wait(30)
