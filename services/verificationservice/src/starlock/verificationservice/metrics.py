"""Prometheus metrics and the health endpoints (``/metrics``, ``/healthz``, ``/readyz``).

Served as plain HTTP on their own listener (``--health-listen``, loopback by default), never on
the attestation ports. Every label value is a fixed word (endpoint, outcome): no nonce, no peer.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

from starlock.verificationservice._net import BoundHTTPServer

__all__ = ["OUTCOMES", "HealthServer", "Metrics"]

#: The outcome label values (one per gRPC status / HTTP status class the service answers with).
OUTCOMES = ("ok", "invalid_argument", "unavailable", "internal", "shutting_down")


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.requests = Counter(
            "starlock_verificationservice_requests",
            "Attestation requests by endpoint (grpc, http) and outcome",
            ["endpoint", "outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "starlock_verificationservice_request_duration_seconds",
            "Time to answer an attestation request (handler only; an aTLS handshake is before it)",
            ["endpoint"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
            registry=self.registry,
        )
        for endpoint in ("grpc", "http"):  # every series exists from the start (rate() needs a zero)
            self.duration.labels(endpoint)
            for outcome in OUTCOMES:
                self.requests.labels(endpoint, outcome)

    def observe(self, endpoint: str, outcome: str, seconds: float) -> None:
        self.requests.labels(endpoint, outcome).inc()
        self.duration.labels(endpoint).observe(seconds)

    def render(self) -> bytes:
        return generate_latest(self.registry)


class HealthServer:
    """Plain HTTP on ``address`` for metrics and probes; nothing secret is served here.

    ``/healthz``: 200 while the process serves (503 once stopping); ``/readyz``: 200 once both
    endpoints listen and the issuer attested once, 503 before and while draining.
    """

    def __init__(
        self, address: tuple[str, int], metrics: Metrics, ready: threading.Event, live: threading.Event
    ) -> None:
        outer = self

        class Handler(BaseHTTPRequestHandler):
            timeout = 10

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                if path == "/metrics":
                    self._send(200, outer.metrics.render(), CONTENT_TYPE_LATEST)
                elif path == "/healthz":
                    ok = outer.live.is_set()
                    self._send(200 if ok else 503, b"ok\n" if ok else b"stopping\n")
                elif path == "/readyz":
                    ok = outer.ready.is_set()
                    self._send(200 if ok else 503, b"ok\n" if ok else b"not ready\n")
                else:
                    self._send(404, b"not found\n")

            def _send(self, code: int, body: bytes, ctype: str = "text/plain; charset=utf-8") -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *_args: Any) -> None:
                pass

        self.metrics = metrics
        self.ready = ready
        self.live = live
        self._http = BoundHTTPServer(address, Handler)
        self.port = int(self._http.server_address[1])
        self._thread = threading.Thread(target=self._http.serve_forever, name="health", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
