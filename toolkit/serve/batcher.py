"""A small asyncio micro-batcher: concurrent requests gathered into one model call.

Each request :meth:`MicroBatcher.submit`\\ s a list of items (texts or pairs). A worker task takes the
oldest waiting request, then keeps gathering requests for up to ``max_wait_ms`` milliseconds or
until ``max_batch`` items are gathered, runs **one** call of ``run`` on all gathered items in the
given executor (a single-thread executor per model: the event loop stays free and one model is never
run by two threads at once), and answers each request with its own slice of the results.

* A request larger than ``max_batch`` is run alone (never split: one request, one call).
* A request whose caller gave up (timeout, disconnect: its future is cancelled) before its batch
  starts is dropped from the batch.
* When the call fails for a batch of several requests, each request is run again alone, so only
  the request that causes the failure gets the error; the others get their results.
* :meth:`MicroBatcher.close` stops taking requests and answers every request already queued
  before it returns (graceful shutdown).

``max_batch=1`` turns batching off: one request = one model call.

Example:
    >>> import asyncio
    >>> from concurrent.futures import ThreadPoolExecutor
    >>> async def demo():
    ...     batcher = MicroBatcher(lambda xs: [x.upper() for x in xs], ThreadPoolExecutor(1), max_batch=8)
    ...     batcher.start()
    ...     out = await asyncio.gather(batcher.submit(["a", "b"]), batcher.submit(["c"]))
    ...     await batcher.close()
    ...     return out
    >>> asyncio.run(demo())
    [['A', 'B'], ['C']]
"""
from __future__ import annotations

import asyncio
import logging
import time
from concurrent.futures import Executor
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

from ..errors import InputError, ToolkitError

logger = logging.getLogger(__name__)


class BatcherClosedError(ToolkitError, RuntimeError):
    """The batcher is shutting down and takes no new requests; retry on another instance."""


@dataclass
class _Request:
    items: list[Any]
    future: asyncio.Future
    queued: float = field(default_factory=time.perf_counter)


class MicroBatcher:
    """Gathers concurrent :meth:`submit` calls into single calls of ``run`` (see the module docstring).

    Args:
        run: ``list[item] -> list[result]`` of the same length (e.g. a pipeline over a list of texts).
        executor: where ``run`` is called (give a ``ThreadPoolExecutor(1)`` per model).
        max_batch: items per call at most (a larger request is run alone).
        max_wait_ms: how long the first request of a batch waits for others.
        on_batch: called after each call with ``(n_items, n_requests, seconds)`` (metrics).
    """

    def __init__(
        self, run: Callable[[list[Any]], Sequence[Any]], executor: Executor, max_batch: int = 32, max_wait_ms: float = 5.0,
        on_batch: Callable[[int, int, float], None] | None = None,
    ) -> None:
        if max_batch < 1 or max_wait_ms < 0:
            raise InputError(f"max_batch must be at least 1 and max_wait_ms at least 0, got {max_batch} and {max_wait_ms}")
        self.run, self.executor = run, executor
        self.max_batch, self.max_wait = int(max_batch), max_wait_ms / 1000
        self.on_batch = on_batch
        self._queue: asyncio.Queue[_Request | None] = asyncio.Queue()
        self._worker: asyncio.Task | None = None
        self._closed = False
        self._carry: _Request | None = None  # the request that did not fit the last batch

    def start(self) -> None:
        """Start the worker task (call from the running event loop)."""
        if self._worker is None:
            self._worker = asyncio.get_running_loop().create_task(self._work())

    @property
    def waiting(self) -> int:
        """Requests queued and not yet taken into a batch."""
        return self._queue.qsize()

    async def submit(self, items: Sequence[Any]) -> list[Any]:
        """The results of ``items`` (in order), computed in a batch with other waiting requests."""
        if self._closed:
            raise BatcherClosedError("the server is shutting down and takes no new requests; retry in a moment")
        future = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Request(list(items), future))
        return await future

    async def close(self) -> None:
        """Take no new requests; answer the queued ones, then stop the worker."""
        self._closed = True
        if self._worker is not None:
            self._queue.put_nowait(None)
            await self._worker
            self._worker = None

    async def _gather(self, first: _Request) -> tuple[list[_Request], bool]:
        """``first`` and the requests that arrive within ``max_wait`` (up to ``max_batch`` items);
        ``True`` when the closing sentinel was met."""
        batch, size = [first], len(first.items)
        deadline = asyncio.get_running_loop().time() + self.max_wait
        while size < self.max_batch:
            try:
                nxt = self._queue.get_nowait()
            except asyncio.QueueEmpty:
                left = deadline - asyncio.get_running_loop().time()
                if left <= 0:
                    break
                try:
                    nxt = await asyncio.wait_for(self._queue.get(), left)
                except asyncio.TimeoutError:
                    break
            if nxt is None:
                return batch, True
            if size + len(nxt.items) > self.max_batch:  # would overflow: it starts the next batch
                self._carry = nxt
                break
            batch.append(nxt)
            size += len(nxt.items)
        return batch, False

    async def _work(self) -> None:
        stop = False
        while True:
            if self._carry is not None:
                first, self._carry = self._carry, None
            else:
                if stop and self._queue.empty():
                    return  # closed, and every queued request answered
                first = await self._queue.get()
                if first is None:
                    stop = True
                    continue
            batch, met_stop = await self._gather(first)
            stop = stop or met_stop
            await self._run_batch([r for r in batch if not r.future.done()])

    async def _run_batch(self, batch: list[_Request]) -> None:
        if not batch:
            return
        loop = asyncio.get_running_loop()
        items = [x for r in batch for x in r.items]
        start = time.perf_counter()
        try:
            results = await loop.run_in_executor(self.executor, self.run, items)
            if len(results) != len(items):
                raise RuntimeError(f"the model call returned {len(results)} results for {len(items)} inputs")
        except Exception as err:  # noqa: BLE001 - answered to the requests, never kills the worker
            if len(batch) > 1:
                logger.warning("a batch of %d requests failed (%s); running them one by one", len(batch), err)
                for r in batch:
                    await self._run_batch([r])
                return
            logger.exception("model call failed")
            if not batch[0].future.done():
                batch[0].future.set_exception(err)
            return
        if self.on_batch is not None:
            self.on_batch(len(items), len(batch), time.perf_counter() - start)
        i = 0
        for r in batch:
            if not r.future.done():
                r.future.set_result(list(results[i : i + len(r.items)]))
            i += len(r.items)


__all__ = ["BatcherClosedError", "MicroBatcher"]
