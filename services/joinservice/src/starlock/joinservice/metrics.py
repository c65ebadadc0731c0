"""Prometheus metrics and the health endpoints (``/metrics``, ``/healthz``, ``/readyz``).

Every label value is a fixed word (outcome, method, check name): no node name, no token, no key.
"""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, Counter, Histogram, generate_latest

__all__ = ["HealthServer", "Metrics"]


class Metrics:
    def __init__(self) -> None:
        self.registry = CollectorRegistry()
        self.tickets = Counter(
            "starlock_joinservice_tickets",
            "Tickets by method and outcome",
            ["method", "outcome"],
            registry=self.registry,
        )
        self.duration = Histogram(
            "starlock_joinservice_ticket_duration_seconds",
            "Time to issue a ticket (handler only; the aTLS handshake is before it)",
            ["method"],
            buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2, 5, 10),
            registry=self.registry,
        )
        self.attestation_failures = Counter(
            "starlock_joinservice_attestation_failures",
            "Client attestations refused, by the check that failed",
            ["check"],
            registry=self.registry,
        )
        self.config_reloads = Counter(
            "starlock_joinservice_config_reloads",
            "Attestation config reloads by result",
            ["result"],
            registry=self.registry,
        )
        self.kds_fetches = Counter(
            "starlock_joinservice_kds_fetches",
            "AMD KDS certificate fetches by result",
            ["result"],
            registry=self.registry,
        )

    def render(self) -> bytes:
        return generate_latest(self.registry)


class HealthServer:
    """Plain HTTP on ``listen`` for metrics and probes; nothing secret is served here."""

    def __init__(self, listen: str, metrics: Metrics, ready: threading.Event, live: threading.Event) -> None:
        host, _, port = listen.rpartition(":")
        outer = self

        class Handler(BaseHTTPRequestHandler):
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
        self._http = ThreadingHTTPServer((host.strip("[]") or "0.0.0.0", int(port)), Handler)  # noqa: S104
        self._http.daemon_threads = True
        self.port = int(self._http.server_address[1])
        self._thread = threading.Thread(target=self._http.serve_forever, name="health", daemon=True)

    def start(self) -> HealthServer:
        self._thread.start()
        return self

    def stop(self) -> None:
        self._http.shutdown()
        self._http.server_close()
