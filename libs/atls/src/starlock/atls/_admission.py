"""Who gets a thread, a TLS state and an attestation: separate budgets per phase, per source.

A connection to an aTLS front end goes through three phases:

1. *waiting*: accepted, but no complete, well-formed ClientHello yet (or no free handshake slot).
   It costs a file descriptor and a poll entry, no thread; see ``_acceptor``. At most
   ``max_waiting``; it must send its first byte within ``first_byte_timeout`` and be admitted to a
   handshake within ``admission_timeout`` of being accepted.
2. *handshake*: a thread runs the aTLS handshake (attestation included), bounded by the server
   config's ``handshake_timeout``. At most ``max_handshakes`` at once, ``max_handshakes_per_source``
   from one source (an IPv4 address, an IPv6 /64). When all are taken and complete ClientHellos
   wait, the handshake running longest (at least ``reclaim_handshake_after``) is aborted for them,
   and the newest waiting hello goes first (under overload, old queued hellos are the likeliest
   to come from a flood and the likeliest to have been given up on).
3. *established*: spliced to the backend. At most ``max_connections``; one that moved no byte for
   ``idle_timeout`` is closed, and when all slots are taken the one idle longest (at least
   ``reclaim_idle_after``) is closed to make room for a new one.

:class:`Budget` keeps the counts (pure bookkeeping, thread-safe, clock injected).
"""

from __future__ import annotations

import ipaddress
import threading
import time
from collections.abc import Callable
from typing import Any

import attrs

__all__ = ["AdmissionLimits", "Budget", "Ticket", "source_key"]


def _positive(_instance: object, attribute: attrs.Attribute[Any], value: float | None) -> None:
    if value is not None and not (isinstance(value, int | float) and value > 0):
        raise ValueError(f"{attribute.name} must be positive (or None where allowed), got {value!r}")


@attrs.frozen
class AdmissionLimits:
    """Limits on connections that have not yet proved anything (see the module docstring).

    ``max_handshakes_per_source=None`` disables the per-source limit (e.g. behind a proxy that
    hides client addresses); ``reclaim_handshake_after=None`` / ``reclaim_idle_after=None`` never
    abort a handshake / close an idle connection early.
    """

    max_handshakes: int = attrs.field(default=64, validator=_positive)
    max_handshakes_per_source: int | None = attrs.field(default=8, validator=_positive)
    max_waiting: int = attrs.field(default=1024, validator=_positive)
    first_byte_timeout: float = attrs.field(default=3.0, validator=_positive)
    admission_timeout: float = attrs.field(default=10.0, validator=_positive)
    reclaim_handshake_after: float | None = attrs.field(default=3.0, validator=_positive)
    reclaim_idle_after: float | None = attrs.field(default=10.0, validator=_positive)


def source_key(address: object) -> str:
    """The per-source key of a peer address: the IPv4 address, the IPv6 /64, or ``local``."""
    if not (isinstance(address, tuple) and address and isinstance(address[0], str)):
        return "local"
    host = address[0].split("%", 1)[0]
    try:
        ip = ipaddress.ip_address(host)
    except ValueError:
        return host or "local"
    if isinstance(ip, ipaddress.IPv6Address):
        if ip.ipv4_mapped is not None:
            return str(ip.ipv4_mapped)
        return str(ipaddress.IPv6Network((ip, 64), strict=False))
    return str(ip)


class Ticket:
    """One connection's place in the budget; ``stop`` is set to end it (relay stop or eviction)."""

    __slots__ = ("abort", "aborted", "last_active", "phase", "remote", "source", "started", "stop")

    def __init__(self, remote: str, source: str, now: float, phase: str) -> None:
        self.remote = remote
        self.source = source
        self.stop = threading.Event()
        self.started = self.last_active = now
        self.phase = phase  # "handshake", "established" or "done"
        self.abort: Callable[[], None] | None = None  # ends a handshake in progress (set by the relay)
        self.aborted = False

    def touch(self, now: float) -> None:
        """Bytes moved at ``now`` (monotonic): the connection is not idle."""
        self.last_active = now


class Budget:
    """Counts of handshakes (global, per source) and established connections; picks eviction victims."""

    def __init__(
        self,
        *,
        max_connections: int,
        limits: AdmissionLimits | None,
        clock: Callable[[], float] = time.monotonic,
        on_release: Callable[[], None] | None = None,
    ) -> None:
        self.max_connections = max_connections
        self.limits = limits
        self._clock = clock
        self._on_release = on_release
        self._lock = threading.Lock()
        self._handshakes: dict[Ticket, None] = {}
        self._per_source: dict[str, int] = {}
        self._established: dict[Ticket, None] = {}
        self.stopped = False

    @property
    def handshakes(self) -> int:
        return len(self._handshakes)

    @property
    def established_count(self) -> int:
        return len(self._established)

    def handshakes_from(self, source: str) -> int:
        with self._lock:
            return self._per_source.get(source, 0)

    def _victim(self, now: float) -> Ticket | None:
        """The established connection idle longest, if it has been idle long enough to be reclaimed."""
        reclaim = None if self.limits is None else self.limits.reclaim_idle_after
        if reclaim is None or not self._established:
            return None
        oldest = min(self._established, key=lambda t: t.last_active)
        return oldest if now - oldest.last_active >= reclaim else None

    def _room(self, now: float) -> bool:
        if self.limits is None:  # no separate handshake budget (a local bridge): both count together
            return len(self._established) + len(self._handshakes) < self.max_connections
        return len(self._established) < self.max_connections or self._victim(now) is not None

    @property
    def aborting(self) -> int:
        """Handshakes told to abort whose threads have not ended yet."""
        with self._lock:
            return sum(1 for t in self._handshakes if t.aborted)

    def preempt(self) -> Ticket | None:
        """Abort the handshake running longest, if for at least ``reclaim_handshake_after``; the victim."""
        reclaim = None if self.limits is None else self.limits.reclaim_handshake_after
        if reclaim is None:
            return None
        now = self._clock()
        with self._lock:
            running = [t for t in self._handshakes if not t.aborted and t.abort is not None]
            if not running:
                return None
            victim = min(running, key=lambda t: t.started)
            if now - victim.started < reclaim:
                return None
            victim.aborted = True  # under the lock: established() now refuses it
            if victim.abort is not None:
                victim.abort()  # a shutdown(2): quick, and the handshake thread sees EOF
        return victim

    def start(self, remote: str, source: str) -> Ticket | None:
        """A handshake ticket if the handshake budgets (and, eventually, an established slot) allow it."""
        now = self._clock()
        with self._lock:
            if self.stopped or not self._room(now):
                return None
            limits = self.limits
            if limits is not None:
                if len(self._handshakes) >= limits.max_handshakes:
                    return None
                per_source = limits.max_handshakes_per_source
                if per_source is not None and self._per_source.get(source, 0) >= per_source:
                    return None
            ticket = Ticket(remote, source, now, "handshake")
            self._handshakes[ticket] = None
            self._per_source[source] = self._per_source.get(source, 0) + 1
            return ticket

    def _end_handshake(self, ticket: Ticket) -> None:
        self._handshakes.pop(ticket, None)
        count = self._per_source.get(ticket.source, 0) - 1
        if count > 0:
            self._per_source[ticket.source] = count
        else:
            self._per_source.pop(ticket.source, None)

    def established(self, ticket: Ticket) -> tuple[bool, Ticket | None]:
        """Move a finished handshake to the established budget: (admitted, connection closed for it).

        When every slot is taken, the connection idle longest (at least ``reclaim_idle_after``) is
        told to stop and its slot goes to ``ticket``; without one, ``ticket`` is refused.
        """
        now = self._clock()
        with self._lock:
            self._end_handshake(ticket)
            victim = None
            if ticket.aborted:  # preempted just as its handshake finished: its socket is shut down
                admitted = False
            elif len(self._established) >= self.max_connections:
                victim = self._victim(now)
                if victim is None or self.stopped:
                    ticket.phase = "done"
                    admitted = False
                else:
                    self._established.pop(victim)
                    victim.stop.set()
                    admitted = True
            else:
                admitted = not self.stopped
            if admitted:
                ticket.phase = "established"
                ticket.last_active = now
                self._established[ticket] = None
            else:
                ticket.phase = "done"
        self._notify()
        return admitted, victim

    def release(self, ticket: Ticket) -> None:
        """The connection is gone: free whatever it held."""
        with self._lock:
            if ticket.phase == "handshake":
                self._end_handshake(ticket)
            elif ticket.phase == "established":
                self._established.pop(ticket, None)
            ticket.phase = "done"
        self._notify()

    def stop_all(self) -> None:
        """Refuse new tickets, end the splices and abort the handshakes in progress."""
        with self._lock:
            self.stopped = True
            handshakes, established = list(self._handshakes), list(self._established)
            for ticket in handshakes:
                ticket.aborted = True
                if ticket.abort is not None:
                    ticket.abort()
        for ticket in [*handshakes, *established]:
            ticket.stop.set()

    def _notify(self) -> None:
        if self._on_release is not None:
            self._on_release()
