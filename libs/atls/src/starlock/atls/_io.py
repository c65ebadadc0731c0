"""Blocking-style I/O over non-blocking pyOpenSSL connections: waits, deadlines, the splice loop."""

from __future__ import annotations

import contextlib
import errno
import select
import socket
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from OpenSSL import SSL

__all__ = ["BUFFER_SIZE", "retry", "splice", "wait"]

T = TypeVar("T")
BUFFER_SIZE = 64 * 1024
_TLS_CHUNK = 16 * 1024
_POLL_SLICE = 0.25  # seconds between checks of the stop event


def wait(sock: socket.socket, want_write: bool, deadline: float | None) -> None:
    """Block until ``sock`` is readable (or writable); TimeoutError after ``deadline`` (monotonic)."""
    poller = select.poll()
    poller.register(sock, select.POLLOUT if want_write else select.POLLIN)
    while True:
        remaining = None if deadline is None else deadline - time.monotonic()
        if remaining is not None and remaining <= 0:
            raise TimeoutError("timed out")
        if poller.poll(None if remaining is None else max(1, int(remaining * 1000))):
            return


def retry(sock: socket.socket, deadline: float | None, operation: Callable[[], T]) -> T:
    """Run a pyOpenSSL operation on a non-blocking socket until it stops wanting I/O."""
    while True:
        try:
            return operation()
        except SSL.WantReadError:
            wait(sock, False, deadline)
        except SSL.WantWriteError:
            wait(sock, True, deadline)


class _Closed(Exception):
    """One side failed: the splice ends."""


class _Splice:
    """State of one splice; each step moves what it can without blocking."""

    def __init__(self, tls: SSL.Connection, tls_sock: socket.socket, plain: socket.socket) -> None:
        self.tls, self.tls_sock, self.plain = tls, tls_sock, plain
        self.to_plain = bytearray()
        self.to_tls = bytearray()
        self.pending_tls = b""  # a TLS write that wanted I/O must be retried with the same bytes
        self.tls_open = self.plain_open = True  # reading sides
        self.plain_shut = self.tls_shut = False  # writing sides closed
        self.tls_wants_write = False
        self.tls_buffered = False  # OpenSSL holds decrypted bytes that poll cannot see
        self.moved_plain = self.moved_tls = 0

    def tls_to_plain(self, readable: bool) -> bool:
        progressed = False
        if (readable or self.tls_buffered) and self.tls_open and len(self.to_plain) < BUFFER_SIZE:
            try:
                self.to_plain += self.tls.recv(BUFFER_SIZE)
                progressed = True
                self.tls_buffered = self.tls.pending() > 0
            except SSL.WantReadError:
                self.tls_buffered = False
            except SSL.WantWriteError:
                self.tls_wants_write = True
            except SSL.ZeroReturnError:
                self.tls_open = False
                self.tls_buffered = False
                progressed = True
            except SSL.Error as exc:
                raise _Closed from exc
        if self.to_plain:
            try:
                sent = self.plain.send(self.to_plain)
            except BlockingIOError:
                sent = 0
            except OSError as exc:
                raise _Closed from exc
            del self.to_plain[:sent]
            self.moved_plain += sent
            progressed = progressed or sent > 0
        if not self.tls_open and not self.to_plain and not self.plain_shut:
            _shutdown_write(self.plain)
            self.plain_shut = True
        return progressed

    def plain_to_tls(self, readable: bool) -> bool:
        progressed = False
        if readable and self.plain_open and len(self.to_tls) < BUFFER_SIZE:
            try:
                data = self.plain.recv(BUFFER_SIZE)
            except BlockingIOError:
                data = None
            except OSError as exc:
                raise _Closed from exc
            if data is not None:
                progressed = True
                if data:
                    self.to_tls += data
                else:
                    self.plain_open = False
        while self.to_tls or self.pending_tls:
            if not self.pending_tls:
                self.pending_tls = bytes(self.to_tls[:_TLS_CHUNK])
                del self.to_tls[: len(self.pending_tls)]
            try:
                sent = self.tls.send(self.pending_tls)
            except (SSL.WantWriteError, SSL.WantReadError):
                self.tls_wants_write = True
                break
            except SSL.Error as exc:
                raise _Closed from exc
            self.moved_tls += sent
            self.pending_tls = self.pending_tls[sent:]
            self.tls_wants_write = False
            progressed = True
        if not self.plain_open and not self.to_tls and not self.pending_tls and not self.tls_shut:
            self._close_notify()
        return progressed

    def _close_notify(self) -> None:
        try:
            self.tls.shutdown()  # close_notify (queued if the socket is full)
        except (SSL.WantWriteError, SSL.WantReadError):
            pass
        except SSL.Error as exc:  # the peer is already gone (EPIPE, reset): nothing left to tell it
            raise _Closed from exc
        self.tls_shut = True

    @property
    def finished(self) -> bool:
        return self.tls_shut and self.plain_shut

    def wait(self, poller: select.poll, timeout: float) -> tuple[bool, bool]:
        """Wait up to ``timeout`` seconds; which sides (TLS, plain) are worth reading now."""
        tls_events = select.POLLOUT if self.tls_wants_write else 0
        if self.tls_open and len(self.to_plain) < BUFFER_SIZE:
            tls_events |= select.POLLIN
        plain_events = select.POLLOUT if self.to_plain else 0
        if self.plain_open and len(self.to_tls) < BUFFER_SIZE:
            plain_events |= select.POLLIN
        _register(poller, self.tls_sock, tls_events)
        _register(poller, self.plain, plain_events)
        events = poller.poll(int(timeout * 1000))
        tls_in = plain_in = False
        for fd, ev in events:
            if ev & (select.POLLERR | select.POLLNVAL):
                raise _Closed
            if ev & (select.POLLIN | select.POLLHUP):
                if fd == self.tls_sock.fileno():
                    tls_in = True
                else:
                    plain_in = True
        return tls_in, plain_in


def splice(
    tls: SSL.Connection,
    tls_sock: socket.socket,
    plain: socket.socket,
    *,
    idle_timeout: float | None = None,
    stop: threading.Event | None = None,
    touch: Callable[[float], None] | None = None,
) -> tuple[int, int]:
    """Copy bytes both ways between an established TLS connection and a plain socket.

    Half-closes are passed on (close_notify → ``shutdown(SHUT_WR)`` and EOF → close_notify); the
    loop ends when both directions are finished, either side fails, no byte moved for
    ``idle_timeout`` seconds or ``stop`` is set; ``touch(now)`` is told whenever bytes moved.
    Returns (bytes to plain, bytes to TLS).
    """
    plain.setblocking(False)
    tls_sock.setblocking(False)
    state = _Splice(tls, tls_sock, plain)
    poller = select.poll()
    last = time.monotonic()
    tls_in = plain_in = True  # try both once before the first wait
    try:
        while not state.finished:
            progressed = state.tls_to_plain(tls_in)
            progressed = state.plain_to_tls(plain_in) or progressed
            if progressed:
                last = time.monotonic()
                if touch is not None:
                    touch(last)
            elif _should_end(stop, idle_timeout, last):
                break
            # one poll per wake-up: it returns at once when a side is ready; only bytes already
            # decrypted inside OpenSSL are invisible to it (then just look, timeout 0)
            readable_now = state.tls_buffered and len(state.to_plain) < BUFFER_SIZE
            tls_in, plain_in = state.wait(poller, 0 if readable_now else _POLL_SLICE)
    except _Closed:
        pass
    return state.moved_plain, state.moved_tls


def _should_end(stop: threading.Event | None, idle_timeout: float | None, last: float) -> bool:
    if stop is not None and stop.is_set():
        return True
    return idle_timeout is not None and time.monotonic() - last > idle_timeout


def _register(poller: select.poll, sock: socket.socket, events: int) -> None:
    # poll reports POLLHUP whatever the mask: a socket we want nothing from is left out entirely.
    if events == 0:
        with contextlib.suppress(KeyError):
            poller.unregister(sock)
        return
    try:
        poller.modify(sock, events)
    except FileNotFoundError:
        poller.register(sock, events)


def _shutdown_write(sock: socket.socket) -> None:
    try:
        sock.shutdown(socket.SHUT_WR)
    except OSError as exc:
        if exc.errno != errno.ENOTCONN:
            raise
