"""Group commit for the inbox: concurrent deliveries share one transaction.

Each request hands its row to the writer and waits. A few writer threads each take whatever
rows are waiting (one when traffic is light, up to ``max_batch`` under load), insert them
with one statement on an autocommit connection (one transaction, one round trip), and only
after it returns -- committed -- tell each request whether its row was new or a duplicate.
Nothing is acknowledged before it is durable, but a busy receiver pays one commit (one WAL
flush) per batch instead of one per delivery.

Each thread keeps the connection it checked out of the ``PostgresResource`` pool for as long
as it works, instead of checking one out per batch: every checkout costs a liveness round
trip, and each round trip from a worker thread must win the GIL back from the busy event
loop (up to a 5 ms switch interval), which dominated latency when measured. A connection
that fails is handed back to the pool, which replaces it.

If a batch fails because the database refuses one row's data (e.g. a NUL-character escape
that jsonb cannot store), the rows are retried one by one so only that delivery is refused.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import queue
import threading
from dataclasses import dataclass

import psycopg

from integration_patterns.resources.postgres import PostgresResource
from integration_patterns.services.webhook_receiver.inbox import InboxRow, insert_rows

log = logging.getLogger(__name__)


class RowRejectedError(ValueError):
    """PostgreSQL refused this delivery's data; the sender should not retry it as is."""


class StorageUnavailableError(RuntimeError):
    """The inbox could not be written; the sender should retry later."""


@dataclass
class _Pending:
    row: InboxRow
    done: asyncio.Future[bool]


def _resolve(batch: list[_Pending], outcomes: list[bool | Exception]) -> None:
    """On the event loop: answer every request of a written batch."""
    for pending, outcome in zip(batch, outcomes, strict=True):
        if pending.done.done():  # the request went away meanwhile
            continue
        if isinstance(outcome, Exception):
            pending.done.set_exception(outcome)
        else:
            pending.done.set_result(outcome)


class InboxWriter:
    """Batches inbox inserts from many concurrent requests onto a few writer threads.

    Requests put rows on a thread-safe queue; each writer thread takes what is waiting,
    writes it and hands the outcomes back to the event loop in one callback per batch.
    """

    def __init__(
        self, postgres: PostgresResource, schema: str, *, workers: int = 2, max_batch: int = 256
    ) -> None:
        self._postgres = postgres
        self._schema = schema
        self._workers = workers
        self._max_batch = max_batch
        self._queue: queue.SimpleQueue[_Pending | None] = queue.SimpleQueue()
        self._threads: list[threading.Thread] = []
        self._loop: asyncio.AbstractEventLoop | None = None

    async def start(self) -> None:
        """Start the writer threads; outcomes are delivered to the running loop."""
        self._loop = asyncio.get_running_loop()
        self._threads = [
            threading.Thread(
                target=self._run, args=(_Lane(self._postgres),), name=f"inbox-writer-{n}"
            )
            for n in range(self._workers)
        ]
        for thread in self._threads:
            thread.start()

    async def stop(self) -> None:
        """Finish queued rows, then stop the threads and return their connections."""
        for _ in self._threads:
            self._queue.put(None)
        for thread in self._threads:
            await asyncio.to_thread(thread.join)
        self._threads = []

    async def store(self, row: InboxRow) -> bool:
        """Make ``row`` durable; True if it was new, False if its key was already stored.

        Raises:
            RowRejectedError: the database refused the row's data.
            StorageUnavailableError: the database could not be reached or failed.
        """
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.put(_Pending(row, done))
        return await done

    def _run(self, lane: _Lane) -> None:
        assert self._loop is not None
        try:
            while True:
                first = self._queue.get()
                if first is None:
                    return
                batch, stop = [first], False
                while len(batch) < self._max_batch:
                    try:
                        item = self._queue.get_nowait()
                    except queue.Empty:
                        break
                    if item is None:
                        stop = True
                        break
                    batch.append(item)
                outcomes: list[bool | Exception]
                try:
                    outcomes = self._write(lane, [p.row for p in batch])
                except Exception as exc:  # every waiting request must still get an answer
                    log.warning(
                        "inbox write failed for %d rows: %s", len(batch), type(exc).__name__
                    )
                    lane.release()
                    outcomes = [StorageUnavailableError("inbox unavailable") for _ in batch]
                self._loop.call_soon_threadsafe(_resolve, batch, outcomes)
                if stop:
                    return
        finally:
            lane.release()

    def _write(self, lane: _Lane, rows: list[InboxRow]) -> list[bool | Exception]:
        try:
            new = insert_rows(lane.connection(), self._schema, rows)
            return self._outcomes(rows, new)
        except psycopg.DataError:
            if len(rows) == 1:
                return [RowRejectedError("payload cannot be stored as jsonb")]
        return [self._write_one(lane, row) for row in rows]

    def _write_one(self, lane: _Lane, row: InboxRow) -> bool | Exception:
        try:
            return bool(insert_rows(lane.connection(), self._schema, [row]))
        except psycopg.DataError:
            return RowRejectedError("payload cannot be stored as jsonb")

    @staticmethod
    def _outcomes(rows: list[InboxRow], new: set[tuple[str, str]]) -> list[bool | Exception]:
        # A key repeated inside one batch was inserted once: the first request owns it.
        outcomes: list[bool | Exception] = []
        for row in rows:
            outcomes.append(row.key in new)
            new.discard(row.key)
        return outcomes


class _Lane:
    """One worker's autocommit connection, held from the pool while it keeps working."""

    def __init__(self, postgres: PostgresResource) -> None:
        self._postgres = postgres
        self._conn: psycopg.Connection | None = None

    def connection(self) -> psycopg.Connection:
        if self._conn is None or self._conn.closed:
            conn = self._postgres.pool.getconn(timeout=self._postgres.acquire_timeout)
            conn.autocommit = True
            self._conn = conn
        return self._conn

    def release(self) -> None:
        """Give the connection back (the pool checks it and replaces it if broken)."""
        conn, self._conn = self._conn, None
        if conn is None:
            return
        with contextlib.suppress(psycopg.Error):
            conn.autocommit = False
        with contextlib.suppress(Exception):
            self._postgres.pool.putconn(conn)
