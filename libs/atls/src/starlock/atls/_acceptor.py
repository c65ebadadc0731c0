"""The accept loop: a waiting room for connections that have shown nothing, and a calm reaction to EMFILE.

One thread polls the listener and every *waiting* connection (see ``_admission``). A waiting
connection is peeked at (never read) until :func:`~starlock.atls._hello.scan_client_hello` finds a
complete, well-formed ClientHello with a valid nonce; ``SO_RCVLOWAT`` is raised to the bytes still
missing, so a client dribbling its hello wakes the loop only when enough has arrived. Then it waits
for a handshake slot (newest first, skipping sources at their limit; a handshake stalled for
``reclaim_handshake_after`` is aborted to make room) and is handed to a handler thread with its
:class:`~starlock.atls._admission.Ticket`. Silent, incomplete, malformed and surplus connections
are closed here, counted, and summarised at most once per interval.

When ``accept`` fails for lack of resources (EMFILE, ENFILE, ENOBUFS, ENOMEM) the listener is left
alone for a delay that doubles from 10 ms up to 1 s, and the failure is logged once per interval.
"""

from __future__ import annotations

import collections
import contextlib
import errno
import logging
import os
import select
import socket
import threading
import time
from collections.abc import Callable

from starlock.atls._admission import AdmissionLimits, Budget, Ticket, source_key
from starlock.atls._connection import describe_address
from starlock.atls._hello import MAX_PEEK, scan_client_hello
from starlock.atls._log import V2, V4, LogLimiter
from starlock.atls.errors import HandshakeError, NonceError

__all__ = ["BACKOFF_CAP", "BACKOFF_START", "LOG_INTERVAL", "Acceptor"]

_log = logging.getLogger("starlock.atls")

BACKOFF_START = 0.01
BACKOFF_CAP = 1.0
LOG_INTERVAL = 10.0
_ACCEPT_BATCH = 64
_SLICE = 0.25
_EXPIRE_EVERY = 0.05
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})
#: accept(2) errors that concern one connection only (Linux passes pending network errors on).
_CONNECTION_ERRNOS = frozenset(
    {errno.ECONNABORTED, errno.EPROTO, errno.EPERM, errno.ENETDOWN, errno.ENOPROTOOPT, errno.EHOSTDOWN,
     errno.ENONET, errno.EHOSTUNREACH, errno.EOPNOTSUPP, errno.ENETUNREACH, errno.EINTR}
)  # fmt: skip
_GONE = select.POLLERR | select.POLLHUP | select.POLLNVAL | getattr(select, "POLLRDHUP", 0)
_WATCH = select.POLLIN | getattr(select, "POLLRDHUP", 0)

Spawn = Callable[[socket.socket, Ticket], None]


class _Waiting:
    __slots__ = ("accepted", "got_bytes", "lowat", "ready", "remote", "sock", "source")

    def __init__(self, sock: socket.socket, remote: str, source: str, accepted: float) -> None:
        self.sock, self.remote, self.source, self.accepted = sock, remote, source, accepted
        self.got_bytes = self.ready = False
        self.lowat = 1


class Acceptor:
    """Runs in its own thread (:meth:`run`) until ``stop`` is set; :meth:`wake` interrupts its poll."""

    def __init__(
        self,
        listener: socket.socket,
        budget: Budget,
        spawn: Spawn,
        *,
        name: str,
        limits: AdmissionLimits | None,
        stop: threading.Event,
    ) -> None:
        self.listener, self.budget, self.name, self.limits, self.stop = listener, budget, name, limits, stop
        self._spawn = spawn
        self._pipe_lock = threading.Lock()
        self._wake_r = self._wake_w = -1  # the self-pipe exists while run() runs
        self._poller = select.poll()
        self._waiting: dict[int, _Waiting] = {}  # in accept order
        self._by_source: dict[str, dict[int, _Waiting]] = {}
        self._ready: dict[int, _Waiting] = {}  # complete hello, waiting for a slot; in accept order
        self._delay = BACKOFF_START
        self._resume_at = 0.0
        self._listening = False
        self._last_expire = 0.0
        self._promote_due = False  # a slot was freed or a hello completed since the last look
        self._dropped: collections.Counter[str] = collections.Counter()
        self._summary_at = time.monotonic() + LOG_INTERVAL
        self._accept_errors = LogLimiter(_log, burst=1, interval=LOG_INTERVAL)
        self.refusals = LogLimiter(_log, burst=20, interval=LOG_INTERVAL)

    def wake(self) -> None:
        with self._pipe_lock:  # never write to a descriptor number that was closed (and maybe reused)
            if self._wake_w >= 0:
                with contextlib.suppress(BlockingIOError, OSError):
                    os.write(self._wake_w, b"\0")

    @property
    def waiting(self) -> int:
        return len(self._waiting)

    # --- the loop --------------------------------------------------------------------------

    def run(self) -> None:
        with self._pipe_lock:
            self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_r, False)
        os.set_blocking(self._wake_w, False)
        self.listener.setblocking(False)
        self._poller.register(self._wake_r, select.POLLIN)
        self._listen(True)
        try:
            while not self.stop.is_set():
                now = time.monotonic()
                if not self._listening and now >= self._resume_at:
                    self._listen(True)
                for fd, events in self._poller.poll(self._timeout(now)):
                    if fd == self._wake_r:
                        with contextlib.suppress(BlockingIOError):
                            os.read(self._wake_r, 4096)
                        self._promote_due = True
                    elif fd == self.listener.fileno():
                        self._accept_batch()
                    else:
                        self._on_event(fd, events)
                now = time.monotonic()
                if now - self._last_expire >= _EXPIRE_EVERY:
                    self._last_expire = now
                    self._expire(now)
                    self._promote_due = True  # an idle connection may have become reclaimable
                if self._promote_due and self._ready:
                    self._promote()
                self._promote_due = False
                self._summarise(now)
        finally:
            for waiting in list(self._waiting.values()):
                self._drop(waiting, None)
            with self._pipe_lock:
                os.close(self._wake_r)
                os.close(self._wake_w)
                self._wake_r = self._wake_w = -1

    def _timeout(self, now: float) -> int:
        timeout = _SLICE
        if self._waiting:
            timeout = min(timeout, _EXPIRE_EVERY)
        if not self._listening:
            timeout = min(timeout, max(0.0, self._resume_at - now))
        return max(1, int(timeout * 1000))

    def _listen(self, on: bool) -> None:
        if on and not self._listening:
            self._poller.register(self.listener, select.POLLIN)
        elif not on and self._listening:
            self._poller.unregister(self.listener)
        self._listening = on

    # --- accepting ---------------------------------------------------------------------------

    def _accept_batch(self) -> None:
        for _ in range(_ACCEPT_BATCH):
            try:
                sock, address = self.listener.accept()
            except BlockingIOError:
                return
            except OSError as exc:
                if self.stop.is_set():
                    return
                if exc.errno in _CONNECTION_ERRNOS:
                    continue
                self._back_off(exc)
                return
            self._delay = BACKOFF_START
            self._admit(sock, address)

    def _back_off(self, exc: OSError) -> None:
        """Leave the listener alone for a while: retrying at once would only spin (and log) at full speed."""
        delay, self._delay = self._delay, min(self._delay * 2, BACKOFF_CAP)
        self._resume_at = time.monotonic() + delay
        self._listen(False)
        what = "out of file descriptors or memory" if exc.errno in _RESOURCE_ERRNOS else "unexpected error"
        self._accept_errors.log(
            logging.WARNING,
            "%s: accept failed (%s: %s); backing off, next attempt in %.2f s (at most every %.0f s)",
            self.name,
            what,
            exc.strerror or exc,
            delay,
            BACKOFF_CAP,
        )

    def _admit(self, sock: socket.socket, address: object) -> None:
        remote, source = describe_address(address), source_key(address)
        if self.limits is None:  # a local bridge: straight to a handler while connections are left
            sock.setblocking(True)
            ticket = self.budget.start(remote, source)
            if ticket is None:
                self.refusals.log(
                    V2, "%s: refused connection: %d connections already open", self.name, self.budget.max_connections
                )
                sock.close()
                return
            self._spawn(sock, ticket)
            return
        if len(self._waiting) >= self.limits.max_waiting:
            self._evict_waiting()
        sock.setblocking(False)
        waiting = _Waiting(sock, remote, source, time.monotonic())
        fd = sock.fileno()
        self._waiting[fd] = waiting
        self._by_source.setdefault(source, {})[fd] = waiting
        self._poller.register(fd, _WATCH)

    def _evict_waiting(self) -> None:
        """The waiting room is full: the oldest connection of the source holding the most places goes."""
        crowded = max(self._by_source.values(), key=len)
        self._drop(next(iter(crowded.values())), "waiting room full")

    # --- screening the ClientHello -------------------------------------------------------------

    def _on_event(self, fd: int, events: int) -> None:
        waiting = self._waiting.get(fd)
        if waiting is None:
            with contextlib.suppress(KeyError):
                self._poller.unregister(fd)
            return
        if events & _GONE:
            self._drop(waiting, "closed by the peer" if waiting.got_bytes else None)
            return
        try:
            data = waiting.sock.recv(MAX_PEEK, socket.MSG_PEEK)
        except BlockingIOError:
            return
        except OSError:
            self._drop(waiting, None)
            return
        if not data:
            self._drop(waiting, "closed by the peer" if waiting.got_bytes else None)
            return
        waiting.got_bytes = True
        self._screen(fd, waiting, data)

    def _screen(self, fd: int, waiting: _Waiting, data: bytes) -> None:
        try:
            found = scan_client_hello(data)
        except NonceError as exc:
            self._refuse(waiting, "bad nonce", exc)
            return
        except HandshakeError as exc:
            self._refuse(waiting, "malformed hello", exc)
            return
        if isinstance(found, int):
            self._set_lowat(waiting, found)  # poll wakes us again when that much has arrived
            return
        self._set_lowat(waiting, 1)  # OpenSSL reads record by record from here on
        self._poller.unregister(fd)
        waiting.ready = True
        self._ready[fd] = waiting
        self._promote_due = True

    @staticmethod
    def _set_lowat(waiting: _Waiting, size: int) -> None:
        if waiting.lowat != size:
            with contextlib.suppress(OSError):  # without it, poll wakes up early: only costs a peek
                waiting.sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVLOWAT, size)
            waiting.lowat = size

    def _refuse(self, waiting: _Waiting, reason: str, exc: Exception) -> None:
        self.refusals.log(logging.WARNING, "%s: refused connection from %s: %s", self.name, waiting.remote, exc)
        self._drop(waiting, reason)

    def _promote(self) -> None:
        """Hand ready connections to handler threads while handshake slots are free, newest first."""
        limits = self.limits
        for fd, waiting in reversed(list(self._ready.items())):
            if limits is not None and self.budget.handshakes >= limits.max_handshakes:
                if self.budget.aborting < len(self._ready):  # make room: its release wakes us again
                    victim = self.budget.preempt()
                    if victim is not None:
                        _log.log(V4, "%s: aborted the stalled handshake of %s for a waiting client", self.name,
                                 victim.remote)  # fmt: skip
                return
            ticket = self.budget.start(waiting.remote, waiting.source)
            if ticket is None:
                continue  # its source is at its limit, or no established slot: others may go first
            self._forget(fd, waiting)
            waiting.sock.setblocking(True)
            self._spawn(waiting.sock, ticket)

    # --- deadlines and bookkeeping -------------------------------------------------------------

    def _expire(self, now: float) -> None:
        limits = self.limits
        if limits is None:
            return
        for waiting in list(self._waiting.values()):
            age = now - waiting.accepted
            if waiting.ready:
                if age > limits.admission_timeout:
                    self._drop(waiting, "no handshake slot in time")
            elif not waiting.got_bytes:
                if age > limits.first_byte_timeout:
                    self._drop(waiting, "sent nothing")
            elif age > limits.admission_timeout:
                self._drop(waiting, "incomplete hello")

    def _forget(self, fd: int, waiting: _Waiting) -> None:
        self._waiting.pop(fd, None)
        self._ready.pop(fd, None)
        same = self._by_source.get(waiting.source)
        if same is not None:
            same.pop(fd, None)
            if not same:
                del self._by_source[waiting.source]

    def _drop(self, waiting: _Waiting, reason: str | None) -> None:
        """Close a waiting connection; ``reason`` None: it left on its own (not counted as dropped)."""
        fd = waiting.sock.fileno()
        if fd >= 0:
            with contextlib.suppress(KeyError, ValueError):
                self._poller.unregister(fd)
            self._forget(fd, waiting)
        waiting.sock.close()
        if reason is not None:
            self._dropped[reason] += 1
            _log.log(V4, "%s: closed connection from %s before its handshake: %s", self.name, waiting.remote, reason)

    def _summarise(self, now: float) -> None:
        if now < self._summary_at:
            return
        self._summary_at = now + LOG_INTERVAL
        if self._dropped:
            total = sum(self._dropped.values())
            detail = ", ".join(f"{reason} {count}" for reason, count in self._dropped.most_common())
            _log.warning(
                "%s: closed %d connections before their handshake in the last %.0f s (%s); %d waiting",
                self.name,
                total,
                LOG_INTERVAL,
                detail,
                len(self._waiting),
            )
            self._dropped.clear()
