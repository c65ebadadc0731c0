"""The key service's handler threads.

grpcio hands every accepted call to its executor (``submit``). This executor differs from
:class:`concurrent.futures.ThreadPoolExecutor` in two ways that a graceful shutdown needs:

* it records when each call was accepted (:func:`accepted_at` on the handler thread, and
  :meth:`HandlerPool.wait_accepted_before`), so a shutdown can let the calls accepted before it
  finish while it refuses later ones, including calls still queued for a thread;
* its threads are daemon threads: a handler stuck in a backend past the shutdown grace cannot
  hold up the process's exit (``ThreadPoolExecutor`` joins its threads at interpreter exit).
"""

from __future__ import annotations

import queue
import threading
import time
import weakref
from collections.abc import Callable
from concurrent import futures
from typing import Any, ParamSpec, TypeVar

__all__ = ["HandlerPool", "accepted_at"]

_P = ParamSpec("_P")
_T = TypeVar("_T")

_local = threading.local()


def accepted_at() -> float | None:
    """When the call running on this handler thread was accepted (``time.monotonic()``), else None."""
    value: float | None = getattr(_local, "accepted_at", None)
    return value


class _Task:
    __slots__ = ("accepted_at", "args", "fn", "future", "kwargs")

    def __init__(self, fn: Callable[..., Any], args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        self.future: futures.Future[Any] = futures.Future()
        self.fn = fn
        self.args = args
        self.kwargs = kwargs
        self.accepted_at = time.monotonic()


class _State:
    """What the pool and its threads share (the threads never reference the pool itself)."""

    def __init__(self) -> None:
        self.changed = threading.Condition()
        self.outstanding: set[_Task] = set()  # queued or running
        self.last_accepted = float("-inf")

    def finished(self, task: _Task) -> None:
        with self.changed:
            self.outstanding.discard(task)
            self.changed.notify_all()


def _work(tasks: queue.SimpleQueue[_Task | None], state: _State) -> None:
    while (task := tasks.get()) is not None:
        if task.future.set_running_or_notify_cancel():
            _local.accepted_at = task.accepted_at
            try:
                result = task.fn(*task.args, **task.kwargs)
            except BaseException as exc:  # handed to the future, as ThreadPoolExecutor does
                task.future.set_exception(exc)
            else:
                task.future.set_result(result)
            finally:
                _local.accepted_at = None
        state.finished(task)
        del task


def _stop_workers(tasks: queue.SimpleQueue[_Task | None], workers: list[threading.Thread]) -> None:
    for _ in workers:
        tasks.put(None)


class HandlerPool(futures.ThreadPoolExecutor):
    """Up to ``max_workers`` daemon threads, started on demand; knows when each call was accepted.

    A subclass of ``ThreadPoolExecutor`` only for its interface (grpcio's type): every public
    method is reimplemented here and the base class never starts a thread.
    """

    def __init__(self, max_workers: int, thread_name_prefix: str = "keyservice") -> None:
        if max_workers < 1:
            raise ValueError("max_workers must be at least 1")
        super().__init__(max_workers=1, thread_name_prefix=thread_name_prefix)
        self._size = max_workers
        self._prefix = thread_name_prefix
        self._tasks: queue.SimpleQueue[_Task | None] = queue.SimpleQueue()
        self._state = _State()
        self._workers: list[threading.Thread] = []
        self._closed = False
        # When the pool is garbage-collected (its server is gone), its idle threads end.
        self._finalizer = weakref.finalize(self, _stop_workers, self._tasks, self._workers)

    def submit(self, fn: Callable[_P, _T], /, *args: _P.args, **kwargs: _P.kwargs) -> futures.Future[_T]:
        task = _Task(fn, args, kwargs)
        with self._state.changed:
            if self._closed:
                raise RuntimeError("cannot schedule new calls after shutdown")
            self._state.outstanding.add(task)
            self._state.last_accepted = task.accepted_at
            if len(self._workers) < self._size and len(self._state.outstanding) > len(self._workers):
                worker = threading.Thread(
                    target=_work,
                    args=(self._tasks, self._state),
                    name=f"{self._prefix}_{len(self._workers)}",
                    daemon=True,
                )
                worker.start()
                self._workers.append(worker)
        self._tasks.put(task)
        return task.future

    def shutdown(self, wait: bool = True, *, cancel_futures: bool = False) -> None:
        with self._state.changed:
            self._closed = True
            queued = list(self._state.outstanding) if cancel_futures else []
        for task in queued:
            task.future.cancel()  # a running task is not cancelled (returns False)
        self._finalizer()
        if wait:
            for worker in list(self._workers):
                worker.join()

    def wait_accepted_before(self, moment: float, timeout: float) -> bool:
        """Wait until every call accepted before ``moment`` has finished; False on timeout."""
        with self._state.changed:
            return self._state.changed.wait_for(
                lambda: all(task.accepted_at >= moment for task in self._state.outstanding), timeout
            )

    def wait_quiet(self, period: float, timeout: float) -> bool:
        """Wait until no call was accepted for ``period`` seconds; False on timeout."""
        end = time.monotonic() + timeout
        while True:
            with self._state.changed:
                quiet_at = self._state.last_accepted + period
            now = time.monotonic()
            if now >= quiet_at:
                return True
            if now >= end:
                return False
            time.sleep(min(quiet_at, end) - now)
