"""The HTTP endpoint: ``GET <any path>?nonce=<base64url>`` → ``{"data":"<base64 document>"}``.

HTTP/1.1 with keep-alive on a threading server. Bounded: the request line (:data:`MAX_REQUEST_LINE`
bytes), the request head (:data:`MAX_HEAD`), concurrent connections (``max_connections``; more are
closed at once), every socket operation and the whole head, including the idle wait for the next
request on a kept-alive connection (``request_timeout`` seconds each). Only GET without a body is
served; every error is a JSON ``{"error": "..."}`` (upstream: a text/plain line).
"""

from __future__ import annotations

import contextlib
import http.client
import io
import json
import logging
import socket
import threading
import time
from http.server import BaseHTTPRequestHandler
from typing import Any

from starlock.verificationservice._net import BoundHTTPServer
from starlock.verificationservice.core import (
    BadRequest,
    IssuerUnavailable,
    ShuttingDown,
    VerificationServiceError,
    http_body,
    nonce_from_query,
)
from starlock.verificationservice.server import Attester

__all__ = ["MAX_HEAD", "MAX_REQUEST_LINE", "HttpEndpoint"]

_log = logging.getLogger("starlock.verificationservice")

MAX_REQUEST_LINE = 4096
#: Request line plus headers; a bigger head is answered 431 and the connection closed.
MAX_HEAD = 16 * 1024
_STATUS: tuple[tuple[type[VerificationServiceError], int], ...] = (
    (BadRequest, 400),
    (ShuttingDown, 503),
    (IssuerUnavailable, 503),
    (VerificationServiceError, 500),
)


class _BoundedReader:
    """The connection's reader, limited to ``budget`` bytes per request head (reset per request)."""

    def __init__(self, inner: io.BufferedIOBase, budget: int) -> None:
        self._inner = inner
        self._budget = budget
        self.remaining = budget

    def reset(self) -> None:
        self.remaining = self._budget

    def readline(self, size: int = -1) -> bytes:
        limit = self.remaining + 1 if size < 0 else min(size, self.remaining + 1)
        line = self._inner.readline(limit)
        self.remaining -= len(line)
        if self.remaining < 0:
            # http.server answers LineTooLong from parse_request with 431 and closes
            raise http.client.LineTooLong(f"request head larger than {self._budget} bytes")
        return line

    def close(self) -> None:
        self._inner.close()


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "starlock-verificationservice"
    server: _Server

    def setup(self) -> None:
        super().setup()
        self.connection.settimeout(self.server.request_timeout)  # every read and write
        self.rfile = _BoundedReader(self.rfile, MAX_HEAD)  # type: ignore[assignment]  # file-like subset

    def handle_one_request(self) -> None:
        # BaseHTTPRequestHandler's, with a 4 KiB request line (not 64 KiB) and GET as the only method
        reader: _BoundedReader = self.rfile  # type: ignore[assignment]  # set in setup()
        reader.reset()
        self.server.head_started(self.connection)
        try:
            try:
                self.raw_requestline = reader.readline(MAX_REQUEST_LINE + 1)
            except http.client.LineTooLong:
                self.raw_requestline = b"x" * (MAX_REQUEST_LINE + 1)
            if len(self.raw_requestline) > MAX_REQUEST_LINE:
                self.requestline, self.request_version, self.command = "", "", ""
                self.send_error(414, f"request line longer than {MAX_REQUEST_LINE} bytes")
                return
            if not self.raw_requestline:
                self.close_connection = True
                return
            parsed = self.parse_request()
            self.server.head_done(self.connection)
            if not parsed:
                return
            if self.request_version == "HTTP/0.9":  # a bare "GET /path" line: no headers either way
                self.send_error(400, "HTTP/0.9 requests are not served")
            elif self.command != "GET":
                self.close_connection = True  # a body may follow that is never read
                self._json(405, {"error": f"method {self.command[:16]} not allowed; use GET"}, allow="GET")
            elif (
                self.headers.get("Content-Length", "0").strip() not in ("", "0") or "Transfer-Encoding" in self.headers
            ):
                self.close_connection = True
                self._json(400, {"error": "a GET request has no body"})
            else:
                self._get()
            self.wfile.flush()
        except (TimeoutError, ConnectionError):
            self.close_connection = True

    def _get(self) -> None:
        query = self.path.partition("?")[2].partition("#")[0]
        try:
            document = self.server.attester.handle("http", self._remote(), lambda: nonce_from_query(query))
        except VerificationServiceError as exc:
            code = next(status for kind, status in _STATUS if isinstance(exc, kind))
            self._json(code, {"error": str(exc)})
            return
        self._send(200, http_body(document))

    def _remote(self) -> str:
        host, port = self.client_address[:2]
        if self.server.behind_atls:
            return f"atls-tunnel ({host}:{port})"
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"

    def _json(self, code: int, doc: dict[str, str], **headers: str) -> None:
        self._send(code, json.dumps(doc, separators=(",", ":")).encode(), **headers)

    def _send(self, code: int, body: bytes, **headers: str) -> None:
        self.send_response(code)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(body)))
        self.send_header("Cache-Control", "no-store")
        for name, value in headers.items():
            self.send_header(name.title(), value)
        if self.close_connection:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(body)

    def send_error(self, code: int, message: str | None = None, explain: str | None = None) -> None:
        # parse_request's errors (bad request line, 431, 505, ...) as JSON, and the connection closed
        self.close_connection = True
        if self.request_version == "HTTP/0.9":  # not yet parsed, or an HTTP/0.9 line: answer with a head
            self.request_version = "HTTP/1.0"
        self._json(code, {"error": (message or http.client.responses.get(code, "error"))[:200]})

    def version_string(self) -> str:
        return self.server_version  # no Python version in the Server header

    def log_message(self, *_args: Any) -> None:
        pass  # requests are logged by the Attester, as JSON


class _Server(BoundHTTPServer):
    def __init__(
        self,
        address: tuple[str, int],
        attester: Attester,
        *,
        behind_atls: bool,
        max_connections: int,
        request_timeout: float,
    ) -> None:
        self.attester = attester
        self.behind_atls = behind_atls
        self.request_timeout = request_timeout
        self._slots = threading.BoundedSemaphore(max_connections)
        self._open: set[socket.socket] = set()
        self._heads: dict[socket.socket, float] = {}  # connections reading a request head, since
        self._open_lock = threading.Lock()
        self._stopped = threading.Event()
        super().__init__(address, _Handler)
        threading.Thread(target=self._reap, name="verify-http-reaper", daemon=True).start()

    def head_started(self, sock: socket.socket) -> None:
        with self._open_lock:
            self._heads[sock] = time.monotonic()

    def head_done(self, sock: socket.socket) -> None:
        with self._open_lock:
            self._heads.pop(sock, None)

    def _reap(self) -> None:
        """End connections whose request head (or the wait for the next one) takes longer than the timeout.

        The socket timeout bounds each read; this bounds the whole head, so a client sending a byte
        every few seconds cannot hold a connection slot for long.
        """
        while not self._stopped.wait(0.5):
            now = time.monotonic()
            with self._open_lock:
                late = [sock for sock, since in self._heads.items() if now - since > self.request_timeout]
            for sock in late:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)

    def server_close(self) -> None:
        self._stopped.set()
        super().server_close()

    def close_connections(self) -> None:
        with self._open_lock:
            open_now = list(self._open)
        for sock in open_now:
            with contextlib.suppress(OSError):
                sock.shutdown(socket.SHUT_RDWR)  # idle keep-alive readers wake up and end

    def process_request(self, request: Any, client_address: Any) -> None:
        if not self._slots.acquire(blocking=False):
            _log.warning("HTTP connection refused: connection limit reached")
            self.shutdown_request(request)
            return
        with self._open_lock:
            self._open.add(request)
        try:
            super().process_request(request, client_address)
        except BaseException:
            self._forget(request)
            raise

    def process_request_thread(self, request: Any, client_address: Any) -> None:
        try:
            super().process_request_thread(request, client_address)
        finally:
            self._forget(request)

    def _forget(self, request: socket.socket) -> None:
        with self._open_lock:
            self._open.discard(request)
            self._heads.pop(request, None)
        self._slots.release()


class HttpEndpoint:
    """The HTTP endpoint on ``address``; ``port`` is the bound port. ``stop()`` closes the listener."""

    def __init__(
        self,
        address: tuple[str, int],
        attester: Attester,
        *,
        behind_atls: bool = False,
        max_connections: int = 256,
        request_timeout: float = 10.0,
    ) -> None:
        self._http = _Server(
            address,
            attester,
            behind_atls=behind_atls,
            max_connections=max_connections,
            request_timeout=request_timeout,
        )
        self.port = int(self._http.server_address[1])
        self._thread = threading.Thread(target=self._http.serve_forever, name="verify-http", daemon=True)

    def start(self) -> HttpEndpoint:
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop accepting and end open connections (call after draining the requests in flight)."""
        self._http.shutdown()
        self._http.server_close()
        self._http.close_connections()
