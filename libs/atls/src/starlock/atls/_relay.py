"""Accept loops that put aTLS in front of a plain socket (front end) or behind one (bridge).

A :class:`Relay` accepts on a listener (``_acceptor``) and runs ``handle(sock, ticket, budget)``
in a thread per admitted connection. A front end (``limits`` given) admits a connection to a
handshake only once it sent a well-formed ClientHello, within separate budgets for handshakes in
progress (global and per source) and for established connections (see ``_admission``); a bridge
(local clients, ``limits=None``) runs at most ``max_connections`` at once. :meth:`Relay.stop`
stops accepting, ends the splices and waits for the threads.
"""

from __future__ import annotations

import contextlib
import logging
import socket
import threading
from collections.abc import Callable

from starlock.atls._acceptor import Acceptor
from starlock.atls._admission import AdmissionLimits, Budget, Ticket
from starlock.atls._handshake import AtlsConnection, ClientConfig, ServerConfig
from starlock.atls._io import splice
from starlock.atls._log import V2, V4, LogLimiter
from starlock.atls._wire import PeerAttestation
from starlock.atls.errors import AtlsError

__all__ = ["DEFAULT_IDLE_TIMEOUT", "DEFAULT_MAX_CONNECTIONS", "Relay", "bridge_handler", "front_end_handler"]

_log = logging.getLogger("starlock.atls")
DEFAULT_MAX_CONNECTIONS = 256
#: Seconds without a byte in either direction after which an established connection is closed.
DEFAULT_IDLE_TIMEOUT = 300.0

Handler = Callable[[socket.socket, Ticket, Budget], None]


class Relay:
    def __init__(
        self,
        listener: socket.socket,
        handle: Handler,
        *,
        name: str,
        max_connections: int = DEFAULT_MAX_CONNECTIONS,
        limits: AdmissionLimits | None = None,
        stop_event: threading.Event | None = None,
    ) -> None:
        self.listener = listener
        self.name = name
        self.stop_event = stop_event or threading.Event()
        self._handle = handle
        self.budget = Budget(max_connections=max_connections, limits=limits, on_release=self._on_release)
        self.acceptor = Acceptor(listener, self.budget, self._spawn, name=name, limits=limits, stop=self.stop_event)
        self._threads: set[threading.Thread] = set()
        self._lock = threading.Lock()
        self._acceptor_thread = threading.Thread(target=self.acceptor.run, name=f"{name}-accept", daemon=True)

    def start(self) -> Relay:
        self._acceptor_thread.start()
        return self

    def _on_release(self) -> None:
        self.acceptor.wake()  # a handshake or connection slot is free: admit who waits for one

    def _spawn(self, sock: socket.socket, ticket: Ticket) -> None:
        ticket.abort = lambda: _shutdown(sock)
        thread = threading.Thread(target=self._run, args=(sock, ticket), name=f"{self.name}-conn", daemon=True)
        with self._lock:
            self._threads.add(thread)
        thread.start()

    def _run(self, sock: socket.socket, ticket: Ticket) -> None:
        try:
            self._handle(sock, ticket, self.budget)
        except Exception:  # a bug in a handler: keep its traceback
            _log.exception("%s: connection from %s failed", self.name, ticket.remote)
        finally:
            sock.close()
            self.budget.release(ticket)
            with self._lock:
                self._threads.discard(threading.current_thread())

    @property
    def active_connections(self) -> int:
        with self._lock:
            return len(self._threads)

    def stop(self, timeout: float | None = 5.0) -> None:
        """Stop accepting, end every splice and wait up to ``timeout`` seconds for the threads."""
        self.stop_event.set()
        self.budget.stop_all()
        self.acceptor.wake()
        if self._acceptor_thread.is_alive():
            self._acceptor_thread.join(timeout)
        self.listener.close()
        with self._lock:
            threads = list(self._threads)
        for thread in threads:
            thread.join(timeout)


_FULL = "refused connection from %s after its handshake: %d connections open, none idle long enough to close"
_ABORTED = "aborted the handshake of %s: it took longest while all %s handshake slots were taken and others waited"


def _shutdown(sock: socket.socket) -> None:
    """Wake whoever waits on ``sock`` with EOF (thread-safe, unlike close); its owner closes it."""
    with contextlib.suppress(OSError):
        sock.shutdown(socket.SHUT_RDWR)


def front_end_handler(
    config: ServerConfig,
    connect_backend: Callable[[AtlsConnection, str], socket.socket],
    release: Callable[[AtlsConnection, str], None] | None,
    *,
    name: str,
    idle_timeout: float | None,
) -> Handler:
    """aTLS server handshake on each admitted socket, then splice to the backend.

    Every failed connection is logged at WARNING, at most 50 lines per 10 s (then a count).
    """
    return _FrontEnd(config, connect_backend, release, name, idle_timeout)


class _FrontEnd:
    def __init__(
        self,
        config: ServerConfig,
        connect_backend: Callable[[AtlsConnection, str], socket.socket],
        release: Callable[[AtlsConnection, str], None] | None,
        name: str,
        idle_timeout: float | None,
    ) -> None:
        self.config, self.connect_backend, self.release = config, connect_backend, release
        self.name, self.idle_timeout = name, idle_timeout
        self.failures = LogLimiter(_log, burst=50, interval=10.0)

    def _failed(self, message: str, *args: object) -> None:
        self.failures.log(logging.WARNING, "%s: " + message, self.name, *args)

    def _aborted(self, ticket: Ticket, budget: Budget) -> None:
        if budget.stopped:
            _log.log(V4, "%s: aborted the handshake of %s: shutting down", self.name, ticket.remote)
        else:
            self._failed(_ABORTED, ticket.remote, budget.limits and budget.limits.max_handshakes)

    def _attest(self, sock: socket.socket, ticket: Ticket, budget: Budget) -> AtlsConnection | None:
        """The handshake, then a place in the established budget; None (logged) if either fails."""
        try:
            conn = self.config.accept(sock)
        except (AtlsError, OSError) as exc:
            if ticket.aborted:
                self._aborted(ticket, budget)
            elif isinstance(exc, AtlsError):
                self._failed("rejected connection from %s: %s", ticket.remote, exc)
            else:
                self._failed("connection from %s failed in the handshake: %s", ticket.remote, exc)
            return None
        admitted, evicted = budget.established(ticket)
        if evicted is not None:
            _log.log(
                V2, "%s: closed idle connection from %s to make room for %s", self.name, evicted.remote, ticket.remote
            )
        if admitted:
            return conn
        if ticket.aborted:
            self._aborted(ticket, budget)
        else:
            self._failed(_FULL, ticket.remote, budget.max_connections)
        conn.close()
        return None

    def __call__(self, sock: socket.socket, ticket: Ticket, budget: Budget) -> None:
        remote = ticket.remote
        if sock.family in (socket.AF_INET, socket.AF_INET6):
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)  # HTTP/2 frames go out at once
        conn = self._attest(sock, ticket, budget)
        if conn is None:
            return
        peer = conn.peer
        if _log.isEnabledFor(V2):
            attested = "peer not attested" if peer is None else f"peer attested as {peer.variant.value}"
            _log.log(V2, "%s: accepted connection from %s (%s, %s)", self.name, remote, conn.tls_version, attested)
        try:
            backend = self.connect_backend(conn, remote)
        except OSError as exc:
            self._failed("cannot reach the backend for %s: %s", remote, exc)
            conn.close()
            if self.release is not None:
                self.release(conn, remote)
            return
        try:
            to_backend, to_peer = splice(
                conn.ssl, conn.sock, backend, idle_timeout=self.idle_timeout, stop=ticket.stop, touch=ticket.touch
            )
            _log.log(V4, "%s: connection from %s closed (%d bytes in, %d out)", self.name, remote, to_backend, to_peer)
        finally:
            backend.close()
            conn.close()
            if self.release is not None:
                self.release(conn, remote)


class BridgeErrors:
    """A bridge's last dials: why the last failed (``last``), what the last server proved (``last_attestation``)."""

    def __init__(self) -> None:
        self.last: AtlsError | None = None
        self.last_attestation: PeerAttestation | None = None


def bridge_handler(
    config: ClientConfig,
    target: str,
    errors: BridgeErrors,
    *,
    name: str,
    idle_timeout: float | None,
) -> Handler:
    """For each local connection, dial ``target`` with a fresh aTLS handshake and splice."""
    failures = LogLimiter(_log, burst=50, interval=10.0)

    def handle(local: socket.socket, ticket: Ticket, budget: Budget) -> None:
        try:
            conn = config.connect(target)
        except AtlsError as exc:
            errors.last = exc
            failures.log(logging.WARNING, "%s: aTLS connection to %s failed: %s", name, target, exc)
            return
        errors.last_attestation = conn.peer
        budget.established(ticket)  # a bridge reserved the slot when it accepted the local connection
        if _log.isEnabledFor(V4):
            _log.log(
                V4,
                "%s: connected to %s (%s)",
                name,
                target,
                "server not attested" if conn.peer is None else f"server attested as {conn.peer.variant.value}",
            )
        try:
            splice(conn.ssl, conn.sock, local, idle_timeout=idle_timeout, stop=ticket.stop, touch=ticket.touch)
        finally:
            conn.close()

    return handle
