"""Admission: separate budgets per phase and per source, deadlines for connections that show
nothing, no attestation before a well-formed ClientHello, and a calm accept loop on EMFILE."""

from __future__ import annotations

import base64
import errno
import logging
import socket
import threading
import time
from collections.abc import Iterator

import pytest
from atls_helpers import Pair, client_hello

from starlock.atls import AdmissionLimits, ClientConfig, ServerConfig
from starlock.atls._admission import Budget, source_key
from starlock.atls._log import LogLimiter
from starlock.atls._relay import Relay
from starlock.atls.tunnel import Tunnel, start_tunnel_server
from starlock.attestation.variant import Variant


class _Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


# --- bookkeeping -----------------------------------------------------------------------------


def test_handshake_budgets_global_and_per_source() -> None:
    budget = Budget(max_connections=10, limits=AdmissionLimits(max_handshakes=3, max_handshakes_per_source=2))
    a1, a2 = budget.start("a:1", "a"), budget.start("a:2", "a")
    assert a1 is not None and a2 is not None
    assert budget.start("a:3", "a") is None  # per source
    b1 = budget.start("b:1", "b")
    assert b1 is not None
    assert budget.start("c:1", "c") is None  # global
    budget.release(a1)
    assert budget.handshakes_from("a") == 1
    assert budget.start("c:1", "c") is not None


def test_established_budget_is_separate_and_reclaims_the_longest_idle() -> None:
    clock = _Clock()
    limits = AdmissionLimits(max_handshakes=2, reclaim_idle_after=5.0)
    budget = Budget(max_connections=2, limits=limits, clock=clock)
    first, second = budget.start("a:1", "a"), budget.start("b:1", "b")
    assert first is not None and second is not None
    assert budget.established(first) == (True, None) and budget.established(second) == (True, None)
    assert budget.handshakes == 0 and budget.established_count == 2
    clock.now += 4
    assert budget.start("c:1", "c") is None  # full, nobody idle for 5 s
    second.touch(clock.now)
    clock.now += 2  # first idle 6 s, second 2 s
    third = budget.start("c:1", "c")
    assert third is not None
    admitted, victim = budget.established(third)
    assert admitted and victim is first and first.stop.is_set() and not second.stop.is_set()
    budget.release(first)  # its thread ends later: the slot already went to the third
    assert budget.established_count == 2


def test_the_longest_running_handshake_is_aborted_for_a_waiting_client() -> None:
    clock = _Clock()
    budget = Budget(max_connections=10, limits=AdmissionLimits(reclaim_handshake_after=3.0), clock=clock)
    aborted: list[str] = []
    first, second = budget.start("a:1", "a"), budget.start("b:1", "b")
    assert first is not None and second is not None
    first.abort, second.abort = (lambda: aborted.append("first")), (lambda: aborted.append("second"))
    first.started -= 1  # started a second before the second one
    clock.now += 1.9
    assert budget.preempt() is None  # the longest has run 2.9 s
    clock.now += 0.2
    assert budget.preempt() is first and aborted == ["first"] and budget.aborting == 1
    assert budget.preempt() is None  # the second has run 2.1 s
    budget.release(first)
    assert budget.aborting == 0


def test_a_handshake_aborted_as_it_finishes_gets_no_slot() -> None:
    clock = _Clock()
    budget = Budget(max_connections=10, limits=AdmissionLimits(reclaim_handshake_after=1.0), clock=clock)
    ticket = budget.start("a:1", "a")
    assert ticket is not None
    ticket.abort = lambda: None
    clock.now += 2
    assert budget.preempt() is ticket
    assert budget.established(ticket) == (False, None)  # its socket was shut down under it
    assert budget.established_count == 0 and budget.handshakes == 0


def test_no_reclaiming_when_disabled() -> None:
    clock = _Clock()
    budget = Budget(max_connections=1, limits=AdmissionLimits(reclaim_idle_after=None), clock=clock)
    first = budget.start("a:1", "a")
    assert first is not None and budget.established(first)[0]
    clock.now += 10_000
    assert budget.start("b:1", "b") is None


def test_bridge_budget_counts_everything_together() -> None:
    budget = Budget(max_connections=2, limits=None)
    first, second = budget.start("local", "local"), budget.start("local", "local")
    assert first is not None and second is not None
    assert budget.start("local", "local") is None
    budget.established(first)
    assert budget.start("local", "local") is None


@pytest.mark.parametrize(
    ("address", "key"),
    [
        (("192.0.2.7", 4000), "192.0.2.7"),
        (("2001:db8:1:2:3:4:5:6", 4000, 0, 0), "2001:db8:1:2::/64"),
        (("::ffff:192.0.2.7", 4000, 0, 0), "192.0.2.7"),
        (("fe80::1%eth0", 4000, 0, 2), "fe80::/64"),
        ("", "local"),
    ],
)
def test_source_key(address: object, key: str) -> None:
    assert source_key(address) == key


def test_limits_are_checked() -> None:
    with pytest.raises(ValueError, match="max_handshakes must be positive"):
        AdmissionLimits(max_handshakes=0)
    with pytest.raises(ValueError, match="first_byte_timeout"):
        AdmissionLimits(first_byte_timeout=-1)


def test_log_limiter(caplog: pytest.LogCaptureFixture) -> None:
    clock = _Clock()
    limiter = LogLimiter(logging.getLogger("starlock.atls.test"), burst=2, interval=10.0, clock=clock)
    caplog.set_level(logging.INFO, logger="starlock.atls.test")
    written = [limiter.log(logging.WARNING, "line %d", i) for i in range(5)]
    assert written == [True, True, False, False, False]
    clock.now += 10
    assert limiter.log(logging.WARNING, "line %d", 5)
    assert [r.getMessage() for r in caplog.records] == [
        "line 0",
        "line 1",
        "line 5 (3 similar messages suppressed before this one)",
    ]


# --- a front end -----------------------------------------------------------------------------


class CountingIssuer:
    """The dummy document, counting how often the server attested."""

    def __init__(self, inner: Pair) -> None:
        self.inner = inner.issuer
        self.calls = 0

    @property
    def variant(self) -> Variant:
        return self.inner.variant

    def issue(self, user_data: bytes, nonce: bytes) -> bytes:
        self.calls += 1
        return self.inner.issue(user_data, nonce)


@pytest.fixture
def sink_port() -> Iterator[int]:
    """A plain TCP service that reads and discards."""
    listener = socket.create_server(("127.0.0.1", 0))
    listener.settimeout(0.2)
    stop = threading.Event()

    def run() -> None:
        while not stop.is_set():
            try:
                conn, _ = listener.accept()
            except TimeoutError:
                continue
            threading.Thread(target=lambda c=conn: (c.recv(1), c.close()), daemon=True).start()

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    yield listener.getsockname()[1]
    stop.set()
    thread.join()
    listener.close()


def _closed_within(sock: socket.socket, seconds: float) -> bool:
    sock.settimeout(seconds)
    try:
        return sock.recv(1) == b""
    except ConnectionResetError:
        return True
    except TimeoutError:
        return False


def test_no_attestation_before_a_well_formed_client_hello(sink_port: int, dummy_pair: Pair) -> None:
    issuer = CountingIssuer(dummy_pair)
    limits = AdmissionLimits(first_byte_timeout=0.5, admission_timeout=1.0)
    tunnel = start_tunnel_server("127.0.0.1:0", f"127.0.0.1:{sink_port}", ServerConfig(issuer), limits=limits)
    try:
        assert issuer.calls == 1  # the check at start
        hello = client_hello(base64.b64encode(b"\x05" * 32))
        for first_bytes in (b"", b"\x16", hello[:60], hello[:-1], b"GET / HTTP/1.1\r\n\r\n", client_hello(None)):
            with socket.create_connection(("127.0.0.1", tunnel.port)) as sock:
                sock.sendall(first_bytes)
                assert _closed_within(sock, 5)
        assert issuer.calls == 1
        assert _handshakes(tunnel) == 0
        with ClientConfig(validators=[dummy_pair.validator]).connect(f"127.0.0.1:{tunnel.port}") as conn:
            assert conn.peer is not None
        assert issuer.calls == 2
    finally:
        tunnel.stop()


def _handshakes(tunnel: Tunnel) -> int:
    return tunnel._relay.budget.handshakes


# --- EMFILE ----------------------------------------------------------------------------------


class _ExhaustedListener(socket.socket):
    """A listening socket with a pending connection whose accept fails as when out of descriptors."""

    def __init__(self) -> None:
        super().__init__(socket.AF_INET, socket.SOCK_STREAM)
        self.calls = 0

    def accept(self) -> tuple[socket.socket, object]:
        self.calls += 1
        raise OSError(errno.EMFILE, "Too many open files")


def test_emfile_backs_off_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    """Security review: on EMFILE the accept loop logged a traceback and retried at once (43,000
    tracebacks in 5 s). It now backs off (10 ms doubling to 1 s) and logs once per 10 s."""
    caplog.set_level(logging.DEBUG, logger="starlock.atls")
    listener = _ExhaustedListener()
    listener.bind(("127.0.0.1", 0))
    listener.listen(8)
    pending = socket.create_connection(listener.getsockname())  # keeps the listener readable
    relay = Relay(listener, lambda *_args: None, name="emfile-test").start()
    try:
        time.sleep(2.5)
    finally:
        relay.stop()
        pending.close()
    lines = [r for r in caplog.records if "accept failed" in r.getMessage()]
    assert len(lines) == 1, [r.getMessage() for r in lines]
    assert lines[0].levelno == logging.WARNING and lines[0].exc_info is None
    assert "out of file descriptors" in lines[0].getMessage()
    # 10 + 20 + ... + 640 ms, then once a second: about 9 attempts in 2.5 s, not thousands
    assert 3 <= listener.calls <= 20, listener.calls
