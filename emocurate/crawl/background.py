"""Run a crawl on an asyncio event loop in a background thread: bounded look-ahead over the jobs, every result written
to the state shards from that thread, results handed to the (synchronous) consumer one row at a time.

It does not fetch (fetch.Fetcher does) or order results for the dataset (sources/urls.py does).
"""

from __future__ import annotations

import asyncio
import dataclasses
import queue
import threading
import time
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from typing import Callable

from emocurate.crawl.fetch import CrawlConfig, CrawlProgress, Fetcher, FetchResult, make_session
from emocurate.crawl.state import ShardWriter
from emocurate.crawl.netguard import AddressGuard


class BackgroundCrawl:
    """Runs the fetches of `jobs` [(row, key, url)] on an event loop in a thread; `result(row)` waits for one result.

    Every result is persisted through `writer` from the crawl thread (so a slow consumer cannot lose finished work);
    at most `cfg.window` results wait for the consumer, which releases a slot per `result()` call.
    """

    def __init__(self, jobs: list[tuple[int, str, str]], cfg: CrawlConfig, writer: ShardWriter,
                 progress: CrawlProgress, seen_sha: set[str]):  # fmt: skip
        self.jobs, self.cfg, self.writer, self.progress = jobs, cfg, writer, progress
        self.seen_sha = seen_sha  # ok bodies seen, to count duplicates live (same total as in input order)
        self.repeats = Counter(url for _, _, url in jobs)
        self.shared: dict[str, asyncio.Future[FetchResult]] = {}
        self.lock = threading.Lock()
        self.results: queue.Queue[tuple[int, FetchResult]] = queue.Queue()
        self.ready: dict[int, FetchResult] = {}
        self.thread = threading.Thread(target=self._thread_main, name="emocurate-crawl", daemon=True)
        self.error: BaseException | None = None
        self.loop: asyncio.AbstractEventLoop | None = None
        self.main_task: asyncio.Task | None = None
        self.window: asyncio.Semaphore | None = None

    def start(self) -> BackgroundCrawl:
        if self.jobs:
            self.thread.start()
        return self

    def snapshot(self) -> CrawlProgress:
        with self.lock:
            return CrawlProgress(**{**self.progress.__dict__, "failures": dict(self.progress.failures)})

    def result(self, row: int, tick: Callable[[], None] | None = None) -> FetchResult:
        """Block until the result for `row` is in; calls `tick` about every 0.25 s while waiting."""
        while row not in self.ready:
            try:
                got_row, got = self.results.get(timeout=0.25)
                self.ready[got_row] = got
            except queue.Empty:
                if not self.thread.is_alive() and self.results.empty():
                    raise RuntimeError(f"the crawl thread stopped before row {row} was fetched") from self.error
                if tick:
                    tick()
        if self.loop is not None and not self.loop.is_closed():
            try:
                self.loop.call_soon_threadsafe(self.window.release)
            except RuntimeError:  # the loop closed in between: nothing left to release
                pass
        return self.ready.pop(row)

    def close(self) -> None:
        """Stop fetching (results already finished are still written) and wait for the thread."""
        while self.thread.is_alive() and self.main_task is None:  # closed right after start: let the loop come up
            time.sleep(0.005)
        if self.thread.is_alive() and self.loop is not None and self.main_task is not None:
            try:
                self.loop.call_soon_threadsafe(self.main_task.cancel)
            except RuntimeError:
                pass
        if self.thread.ident is not None:
            self.thread.join()
        self.writer.flush()

    def _thread_main(self) -> None:
        try:
            asyncio.run(self._main())
        except BaseException as err:  # surfaced to the consumer by result()
            self.error = err

    async def _main(self) -> None:
        self.loop = asyncio.get_running_loop()
        self.main_task = asyncio.current_task()
        self.window = asyncio.Semaphore(self.cfg.window)
        write_pool = ThreadPoolExecutor(1, thread_name_prefix="emocurate-shards")
        decode_pool = ThreadPoolExecutor(self.cfg.decode_workers, thread_name_prefix="emocurate-decode")
        tasks: set[asyncio.Task] = set()  # fetches in flight (finished ones drop out: the job list may be huge)
        crashed: list[BaseException] = []

        def finished(task: asyncio.Task) -> None:
            tasks.discard(task)
            if not task.cancelled() and task.exception() is not None:
                crashed.append(task.exception())

        flusher = None
        try:
            async with make_session(self.cfg) as session:
                fetcher = Fetcher(self.cfg, session, AddressGuard(self.cfg.allow_hosts), decode_pool)
                flusher = asyncio.create_task(self._flush_every(write_pool))
                for row, key, url in self.jobs:
                    await self.window.acquire()
                    if crashed:
                        break
                    task = asyncio.create_task(self._one(fetcher, row, key, url, write_pool))
                    tasks.add(task)
                    task.add_done_callback(finished)
                if tasks:
                    await asyncio.wait(set(tasks), return_when=asyncio.FIRST_EXCEPTION)
                if crashed:  # a bug in the crawl itself (fetch errors are results): stop and surface it
                    raise crashed[0]
        finally:
            for task in [*tasks, flusher]:
                if task is not None:
                    task.cancel()
            await asyncio.gather(*tasks, *([flusher] if flusher else []), return_exceptions=True)
            write_pool.submit(self.writer.flush).result()
            write_pool.shutdown()
            decode_pool.shutdown(wait=True, cancel_futures=True)

    async def _fetch_shared(self, fetcher: Fetcher, url: str) -> FetchResult:
        """A URL listed several times is fetched once per run; each row gets its own copy of the result."""
        if self.repeats.get(url, 1) == 1 and url not in self.shared:
            return await fetcher.fetch(url)
        if url not in self.shared:
            self.shared[url] = asyncio.ensure_future(fetcher.fetch(url))
        future = self.shared[url]
        self.repeats[url] -= 1
        if self.repeats[url] == 0:  # the last row of this URL has its future: forget it (and its body)
            del self.shared[url]
        return dataclasses.replace(await asyncio.shield(future))

    async def _one(self, fetcher: Fetcher, row: int, key: str, url: str, write_pool: ThreadPoolExecutor) -> None:
        result = await self._fetch_shared(fetcher, url)
        pending = self.writer.add(
            {
                "key": key, "row": row, "url": url, "status": result.status, "error": result.error,
                "http_status": result.http_status, "attempts": result.attempts, "sha256": result.sha256,
                "body": result.data, "final_url": result.final_url, "retryable": result.retryable,
                "fetched_at": time.time(),
            }
        )  # fmt: skip
        with self.lock:
            status = result.status
            if status == "ok":
                status = "duplicate" if result.sha256 in self.seen_sha else "ok"
                self.seen_sha.add(result.sha256)
            self.progress.add(status, len(result.data or b""))
        self.results.put((row, result))
        if pending >= self.cfg.shard_rows:
            write_pool.submit(self.writer.flush)

    async def _flush_every(self, write_pool: ThreadPoolExecutor) -> None:
        while True:
            await asyncio.sleep(min(1.0, self.cfg.flush_seconds))
            if time.monotonic() - self.writer.last_flush >= self.cfg.flush_seconds:
                write_pool.submit(self.writer.flush)
