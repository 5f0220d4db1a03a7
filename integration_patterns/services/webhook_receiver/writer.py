"""Group commit for the inbox, on the event loop: concurrent deliveries share one transaction.

Each request hands its row to the writer and awaits the outcome. A few writer tasks ("lanes")
each take whatever rows are waiting (one when traffic is light, up to ``max_batch`` under
load), insert them with one statement on an autocommit connection (one transaction, one
round trip), and only after it returns -- committed -- tell each request whether its row
was new or a duplicate. Nothing is acknowledged before it is durable, but a busy receiver
pays one commit (one WAL flush) per batch instead of one per delivery.

The database is reached with psycopg's asynchronous connections from a
``psycopg_pool.AsyncConnectionPool`` on the same event loop as the requests. The first
design used writer threads: every round trip from a thread had to win the GIL back from the
busy event loop, and handing each batch's outcomes back across threads cost as much again
(ingress measured 0.42 of a bare 202 endpoint). A connection that fails is discarded by the
pool, which opens a new one.

If a batch fails because the database refuses one row's data (e.g. a NUL-character escape
that jsonb cannot store), the rows are retried one by one so only that delivery is refused.
"""

import asyncio
import logging
from dataclasses import dataclass

import psycopg
from psycopg_pool import AsyncConnectionPool

from integration_patterns.inbox import InboxRow, insert_rows_async
from integration_patterns.resources.postgres import PostgresResource

log = logging.getLogger(__name__)


class RowRejectedError(ValueError):
    """PostgreSQL refused this delivery's data; the sender should not retry it as is."""


class StorageUnavailableError(RuntimeError):
    """The inbox could not be written; the sender should retry later."""


@dataclass
class _Pending:
    row: InboxRow
    done: asyncio.Future[bool]


class InboxWriter:
    """Batches inbox inserts from many concurrent requests onto a few asynchronous lanes."""

    def __init__(
        self, postgres: PostgresResource, schema: str, *, workers: int = 2, max_batch: int = 256
    ) -> None:
        self._postgres = postgres
        self._schema = schema
        self._workers = workers
        self._max_batch = max_batch
        self._queue: asyncio.Queue[_Pending | None] = asyncio.Queue()
        self._lanes: list[asyncio.Task[None]] = []
        self._pool: AsyncConnectionPool[psycopg.AsyncConnection] | None = None

    async def start(self) -> None:
        """Open the connections and start the lanes on the running loop."""
        pool: AsyncConnectionPool[psycopg.AsyncConnection] = AsyncConnectionPool(
            kwargs={**self._postgres.connect_kwargs(), "autocommit": True},
            min_size=self._workers,
            max_size=self._workers,
            timeout=self._postgres.acquire_timeout,
            name="webhook_inbox_writer",
            open=False,
        )
        await pool.open(wait=True, timeout=self._postgres.connect_timeout)
        self._pool = pool
        self._lanes = [
            asyncio.create_task(self._run(), name=f"inbox-writer-{n}") for n in range(self._workers)
        ]

    async def stop(self) -> None:
        """Finish queued rows, then stop the lanes and close the connections."""
        for _ in self._lanes:
            self._queue.put_nowait(None)
        await asyncio.gather(*self._lanes, return_exceptions=True)
        self._lanes = []
        if self._pool is not None:
            await self._pool.close()
            self._pool = None

    async def store(self, row: InboxRow) -> bool:
        """Make ``row`` durable; True if it was new, False if its key was already stored.

        Raises:
            RowRejectedError: the database refused the row's data.
            StorageUnavailableError: the database could not be reached or failed.
        """
        done: asyncio.Future[bool] = asyncio.get_running_loop().create_future()
        self._queue.put_nowait(_Pending(row, done))
        return await done

    async def _run(self) -> None:
        # Each lane keeps the connection it took from the pool while it works: a checkout
        # per batch cost more than the insert when measured.
        assert self._pool is not None
        conn: psycopg.AsyncConnection | None = None
        try:
            while True:
                first = await self._queue.get()
                if first is None:
                    return
                batch, stop = [first], False
                while len(batch) < self._max_batch and not self._queue.empty():
                    item = self._queue.get_nowait()
                    if item is None:
                        stop = True
                        break
                    batch.append(item)
                outcomes: list[bool | Exception]
                try:
                    if conn is None or conn.closed:
                        conn = await self._pool.getconn()
                    outcomes = await self._write(conn, [p.row for p in batch])
                except Exception as exc:  # every waiting request must still get an answer
                    log.warning(
                        "inbox write failed for %d rows: %s", len(batch), type(exc).__name__
                    )
                    conn = await self._give_back(conn)
                    outcomes = [StorageUnavailableError("inbox unavailable") for _ in batch]
                for pending, outcome in zip(batch, outcomes, strict=True):
                    if pending.done.done():  # the request went away meanwhile
                        continue
                    if isinstance(outcome, Exception):
                        pending.done.set_exception(outcome)
                    else:
                        pending.done.set_result(outcome)
                if stop:
                    return
        finally:
            await self._give_back(conn)

    async def _give_back(self, conn: psycopg.AsyncConnection | None) -> None:
        """Return the connection; the pool checks it and replaces it if broken."""
        if conn is not None and self._pool is not None:
            try:
                await self._pool.putconn(conn)
            except Exception:
                log.debug("connection dropped")

    async def _write(
        self, conn: psycopg.AsyncConnection, rows: list[InboxRow]
    ) -> list[bool | Exception]:
        try:
            new = await insert_rows_async(conn, self._schema, rows)
            return self._outcomes(rows, new)
        except psycopg.DataError:
            if len(rows) == 1:
                return [RowRejectedError("payload cannot be stored as jsonb")]
        return [await self._write_one(conn, row) for row in rows]

    async def _write_one(self, conn: psycopg.AsyncConnection, row: InboxRow) -> bool | Exception:
        try:
            return bool(await insert_rows_async(conn, self._schema, [row]))
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
