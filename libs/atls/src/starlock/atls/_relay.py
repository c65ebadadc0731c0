"""Accept loops that put aTLS in front of a plain socket (front end) or behind one (bridge).

A :class:`Relay` accepts on a listener and runs ``handle(sock, remote)`` in a thread per
connection, at most ``max_connections`` at once (more are closed at once, with a log line);
:meth:`Relay.stop` stops accepting, ends the splices and waits for the threads.
"""

from __future__ import annotations

import logging
import socket
import threading
from collections.abc import Callable

from starlock.atls._handshake import AtlsConnection, ClientConfig, ServerConfig
from starlock.atls._io import splice
from starlock.atls._log import V2, V4
from starlock.atls.errors import AtlsError

__all__ = ["DEFAULT_MAX_CONNECTIONS", "Relay", "bridge_handler", "front_end_handler"]

_log = logging.getLogger("starlock.atls")
DEFAULT_MAX_CONNECTIONS = 256
_ACCEPT_SLICE = 0.25

Handler = Callable[[socket.socket, str], None]


def describe_address(address: object) -> str:
    if isinstance(address, tuple) and len(address) >= 2:
        host, port = address[0], address[1]
        return f"[{host}]:{port}" if ":" in str(host) else f"{host}:{port}"
    return str(address) or "local"


class Relay:
    def __init__(
        self,
        listener: socket.socket,
        handle: Handler,
        *,
        name: str,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.listener = listener
        self.name = name
        self.stop_event = stop_event or threading.Event()
        self._handle = handle
        self._slots = threading.BoundedSemaphore(max_connections)
        self._max = max_connections
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._acceptor = threading.Thread(target=self._accept_loop, name=f"{name}-accept", daemon=True)

    def start(self) -> Relay:
        self.listener.settimeout(_ACCEPT_SLICE)
        self._acceptor.start()
        return self

    def _accept_loop(self) -> None:
        while not self.stop_event.is_set():
            try:
                sock, address = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                if self.stop_event.is_set():
                    return
                _log.exception("%s: accept failed", self.name)
                continue
            remote = describe_address(address)
            if not self._slots.acquire(blocking=False):
                _log.log(
                    V2, "%s: refused connection from %s: %d connections already open", self.name, remote, self._max
                )
                sock.close()
                continue
            thread = threading.Thread(target=self._run, args=(sock, remote), name=f"{self.name}-conn", daemon=True)
            with self._lock:
                self._threads.add(thread)
            thread.start()

    def _run(self, sock: socket.socket, remote: str) -> None:
        try:
            self._handle(sock, remote)
        except Exception:
            _log.exception("%s: connection from %s failed", self.name, remote)
        finally:
            sock.close()
            self._slots.release()
            with self._lock:
                self._threads.discard(threading.current_thread())

    @property
    def active_connections(self) -> int:
        with self._lock:
            return len(self._threads)

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop accepting, end every splice and wait up to ``timeout`` seconds for the threads."""
        self.stop_event.set()
        if self._acceptor.is_alive():
            self._acceptor.join(timeout)
        self.listener.close()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)


def front_end_handler(
    config: ServerConfig,
    connect_backend: Callable[[AtlsConnection, str], socket.socket],
    release: Callable[[AtlsConnection, str], None] | None,
    stop: threading.Event,
    *,
    name: str,
    idle_timeout: float | None,
) -> Handler:
    """aTLS server handshake on each accepted socket, then splice to the backend."""

    def handle(sock: socket.socket, remote: str) -> None:
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # HTTP/2 frames go out at once
        try:
            conn = config.accept(sock)
        except AtlsError as exc:
            _log.log(V2, "%s: rejected connection from %s: %s", name, remote, exc)
            return
        except OSError as exc:
            _log.log(V2, "%s: connection from %s failed during the handshake: %s", name, remote, exc)
            return
        peer = conn.peer
        if _log.isEnabledFor(V2):
            _log.log(
                V2,
                "%s: accepted connection from %s (%s, %s)",
                name,
                remote,
                conn.tls_version,
                "peer not attested" if peer is None else f"peer attested as {peer.variant.value}",
            )
        try:
            backend = connect_backend(conn, remote)
        except OSError as exc:
            _log.log(V2, "%s: cannot reach the backend for %s: %s", name, remote, exc)
            conn.close()
            if release is not None:
                release(conn, remote)
            return
        try:
            to_backend, to_peer = splice(conn.ssl, conn.sock, backend, idle_timeout=idle_timeout, stop=stop)
            _log.log(V4, "%s: connection from %s closed (%d bytes in, %d out)", name, remote, to_backend, to_peer)
        finally:
            backend.close()
            conn.close()
            if release is not None:
                release(conn, remote)

    return handle


class BridgeErrors:
    """The last dial failure of a bridge, for callers that want the reason behind UNAVAILABLE."""

    def __init__(self) -> None:
        self.last: AtlsError | None = None


def bridge_handler(
    config: ClientConfig,
    target: str,
    stop: threading.Event,
    errors: BridgeErrors,
    *,
    name: str,
    idle_timeout: float | None,
) -> Handler:
    """For each local connection, dial ``target`` with a fresh aTLS handshake and splice."""

    def handle(local: socket.socket, _remote: str) -> None:
        try:
            conn = config.connect(target)
        except AtlsError as exc:
            errors.last = exc
            _log.log(V2, "%s: aTLS connection to %s failed: %s", name, target, exc)
            return
        if _log.isEnabledFor(V4):
            _log.log(
                V4,
                "%s: connected to %s (%s)",
                name,
                target,
                "server not attested" if conn.peer is None else f"server attested as {conn.peer.variant.value}",
            )
        try:
            splice(conn.ssl, conn.sock, local, idle_timeout=idle_timeout, stop=stop)
        finally:
            conn.close()

    return handle
