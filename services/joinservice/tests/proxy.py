"""A real TCP or Unix-socket forwarder for fault tests: stop it to make a dependency unreachable,
start it again on the same address to bring it back; ``delay`` slows every forwarded chunk."""

from __future__ import annotations

import contextlib
import socket
import threading
import time


class Forwarder:
    def __init__(self, target: str | tuple[str, int], listen: str | tuple[str, int], delay: float = 0.0) -> None:
        self.target = target
        self.listen = listen
        self.delay = delay
        self._server: socket.socket | None = None
        self._conns: list[socket.socket] = []
        self._lock = threading.Lock()

    def _family(self, address: object) -> int:
        return socket.AF_UNIX if isinstance(address, str) else socket.AF_INET

    def start(self) -> Forwarder:
        server = socket.socket(self._family(self.listen), socket.SOCK_STREAM)
        server.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        server.bind(self.listen)
        server.listen(64)
        if not isinstance(self.listen, str):
            self.listen = server.getsockname()
        self._server = server
        threading.Thread(target=self._accept, args=(server,), daemon=True).start()
        return self

    def _accept(self, server: socket.socket) -> None:
        while True:
            try:
                client, _ = server.accept()
            except OSError:
                return
            try:
                upstream = socket.socket(self._family(self.target), socket.SOCK_STREAM)
                upstream.connect(self.target)
            except OSError:
                client.close()
                continue
            with self._lock:
                self._conns += [client, upstream]
            for a, b in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pipe, args=(a, b), daemon=True).start()

    def _pipe(self, src: socket.socket, dst: socket.socket) -> None:
        try:
            while chunk := src.recv(65536):
                if self.delay:
                    time.sleep(self.delay)
                dst.sendall(chunk)
        except OSError:
            pass
        finally:
            with contextlib.suppress(OSError):
                dst.shutdown(socket.SHUT_WR)

    def stop(self) -> None:
        if self._server is not None:
            with contextlib.suppress(OSError):
                self._server.shutdown(socket.SHUT_RDWR)  # wakes the thread blocked in accept()
            self._server.close()
            self._server = None
        with self._lock:
            conns, self._conns = self._conns, []
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)
            conn.close()
        if isinstance(self.listen, str):
            with contextlib.suppress(FileNotFoundError):
                import os

                os.unlink(self.listen)
