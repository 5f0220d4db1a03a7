"""Deterministic sample data for the customer enrichment: the two upstream systems it reads.

PostgreSQL holds ``customers`` and ``orders`` (the shop's database), MongoDB holds
``user_events`` (the product's click stream). The same seed, volume and end date always give
the same rows, so the demo, the tests and the benchmarks can assert exact figures. The data
carries the mess the pipeline has to survive: duplicate and NULL customer ids, customers
without orders or events, orders and events for unknown customers, user ids stored as
(sometimes padded or non-numeric) strings in MongoDB where PostgreSQL has integers.

Usage: ``python -m devstack.sample_data --preset small``
(connection settings from the same environment variables as the code location).
"""

import argparse
import datetime as dt
import random
import sys
import time
from collections.abc import Iterator
from dataclasses import asdict, dataclass
from decimal import Decimal

from psycopg import sql

from integration_patterns.resources.mongo import MongoResource
from integration_patterns.resources.postgres import PostgresResource

DEFAULT_SCHEMA = "enrichment"
DEFAULT_COLLECTION = "user_events"
DEFAULT_SEED = 7
HISTORY_DAYS = 90  # orders and events spread over this many days before the end date

_FIRST = ["Ada", "Alan", "Grace", "Edsger", "Barbara", "Donald", "Frances", "Ken", "Radia", "Tim"]
_LAST = ["Lovelace", "Turing", "Hopper", "Dijkstra", "Liskov", "Knuth", "Allen", "Thompson"]
_EVENT_TYPES = ["page_view", "search", "add_to_cart", "checkout", "login"]


@dataclass(frozen=True)
class Volume:
    """How many rows of each kind to generate."""

    customers: int
    orders: int
    events: int


PRESETS: dict[str, Volume] = {
    "small": Volume(customers=200, orders=1_500, events=3_000),
    "medium": Volume(customers=10_000, orders=100_000, events=100_000),
    "large": Volume(customers=100_000, orders=1_000_000, events=1_000_000),
}


@dataclass(frozen=True)
class SeedReport:
    """What was written, including the deliberate mess, so tests can assert on it."""

    customers_rows: int
    duplicate_customer_rows: int
    null_customer_ids: int
    orders_rows: int
    orders_unknown_customer: int
    orders_null_customer: int
    events_docs: int
    events_unknown_user: int
    events_padded_id: int
    events_invalid_id: int
    seconds: float


def source_ddl(schema: str) -> list[sql.Composed]:
    """The upstream tables, created idempotently; ids are nullable because the source is."""
    s = sql.Identifier(schema)
    return [
        sql.SQL("CREATE SCHEMA IF NOT EXISTS {}").format(s),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.customers ("
            " row_id bigserial PRIMARY KEY, customer_id bigint, name text NOT NULL,"
            " email text, signed_up_at timestamptz NOT NULL)"
        ).format(s),
        sql.SQL(
            "CREATE TABLE IF NOT EXISTS {}.orders ("
            " order_id bigserial PRIMARY KEY, customer_id bigint,"
            " amount numeric(12, 2) NOT NULL, ordered_at timestamptz NOT NULL)"
        ).format(s),
        sql.SQL("CREATE INDEX IF NOT EXISTS orders_ordered_at ON {}.orders (ordered_at)").format(s),
    ]


def _moment(rng: random.Random, end: dt.datetime) -> dt.datetime:
    # Whole milliseconds: BSON dates hold milliseconds, so both stores see the same instant.
    offset_ms = rng.randrange(HISTORY_DAYS * 86_400_000)
    return end - dt.timedelta(milliseconds=offset_ms + 1)


def _customers(rng: random.Random, volume: Volume, end: dt.datetime) -> Iterator[tuple]:
    for cid in range(1, volume.customers + 1):
        first, last = rng.choice(_FIRST), rng.choice(_LAST)
        yield cid, f"{first} {last}", f"{first}.{last}{cid}@example.com".lower(), _moment(rng, end)


def _customer_mess(rng: random.Random, volume: Volume, end: dt.datetime) -> tuple[list, list]:
    """Re-imported rows for ~1% of ids (the later row wins) and ~0.5% rows without an id."""
    duplicates = [
        (cid, f"Renamed {cid}", f"new{cid}@example.com", _moment(rng, end))
        for cid in rng.sample(range(1, volume.customers + 1), max(1, volume.customers // 100))
    ]
    nulls = [
        (None, f"Orphan {i}", None, _moment(rng, end))
        for i in range(max(1, volume.customers // 200))
    ]
    return duplicates, nulls


def _orders(rng: random.Random, volume: Volume, end: dt.datetime, tally: dict) -> Iterator[tuple]:
    buyers = max(1, volume.customers * 4 // 5)  # the last fifth of customers never order
    for _ in range(volume.orders):
        roll = rng.random()
        if roll < 0.005:
            cid = volume.customers + rng.randint(1, 1_000)
            tally["unknown"] += 1
        elif roll < 0.006:
            cid = None
            tally["null"] += 1
        else:
            cid = rng.randint(1, buyers)
        amount = Decimal(rng.randrange(500, 50_000)) / 100
        yield cid, amount, _moment(rng, end)


def _events(rng: random.Random, volume: Volume, end: dt.datetime, tally: dict) -> Iterator[dict]:
    active = max(1, volume.customers * 7 // 10)  # the last 30% of customers never show up
    for _ in range(volume.events):
        roll = rng.random()
        doc: dict = {"event_type": rng.choice(_EVENT_TYPES), "timestamp": _moment(rng, end)}
        if roll < 0.02:
            doc["user_id"] = str(volume.customers + rng.randint(1, 1_000))
            tally["unknown"] += 1
        elif roll < 0.025:
            doc["user_id"] = f" 00{rng.randint(1, active)} "  # padded: still the same user
            tally["padded"] += 1
        elif roll < 0.027:
            invalid = rng.choice([None, "anonymous", f"guest-{rng.randint(1, 99)}", "<missing>"])
            if invalid != "<missing>":  # a missing field groups like null in $group
                doc["user_id"] = invalid
            tally["invalid"] += 1
        else:
            doc["user_id"] = str(rng.randint(1, active))
        yield doc


def seed_postgres(
    postgres: PostgresResource,
    *,
    volume: Volume,
    schema: str = DEFAULT_SCHEMA,
    seed: int = DEFAULT_SEED,
    end: dt.datetime,
) -> dict[str, int]:
    """Replace the customers and orders in ``schema`` with generated rows (binary COPY)."""
    rng = random.Random(f"{seed}:postgres")
    tally = {"unknown": 0, "null": 0}
    s = sql.Identifier(schema)
    with postgres.get_connection() as conn:
        for statement in source_ddl(schema):
            conn.execute(statement)
        conn.execute(sql.SQL("TRUNCATE {0}.customers, {0}.orders RESTART IDENTITY").format(s))
        duplicates, nulls = _customer_mess(rng, volume, end)
        with conn.cursor().copy(
            sql.SQL(
                "COPY {}.customers (customer_id, name, email, signed_up_at) "
                "FROM STDIN (FORMAT BINARY)"
            ).format(s)
        ) as copy:
            copy.set_types(["int8", "text", "text", "timestamptz"])
            for row in _customers(rng, volume, end):
                copy.write_row(row)
            for row in [*duplicates, *nulls]:
                copy.write_row(row)
        with conn.cursor().copy(
            sql.SQL(
                "COPY {}.orders (customer_id, amount, ordered_at) FROM STDIN (FORMAT BINARY)"
            ).format(s)
        ) as copy:
            copy.set_types(["int8", "numeric", "timestamptz"])
            for row in _orders(rng, volume, end, tally):
                copy.write_row(row)
        conn.execute(sql.SQL("ANALYZE {}.customers").format(s))
        conn.execute(sql.SQL("ANALYZE {}.orders").format(s))
    return {
        "customers_rows": volume.customers + len(duplicates) + len(nulls),
        "duplicate_customer_rows": len(duplicates),
        "null_customer_ids": len(nulls),
        "orders_rows": volume.orders,
        "orders_unknown_customer": tally["unknown"],
        "orders_null_customer": tally["null"],
    }


def seed_mongo(
    mongo: MongoResource,
    *,
    volume: Volume,
    collection: str = DEFAULT_COLLECTION,
    seed: int = DEFAULT_SEED,
    end: dt.datetime,
    batch_size: int = 10_000,
) -> dict[str, int]:
    """Replace the events in ``collection`` with generated documents (timestamps BSON dates)."""
    rng = random.Random(f"{seed}:mongo")
    tally = {"unknown": 0, "padded": 0, "invalid": 0}
    target = mongo.db()[collection]
    target.drop()
    batch: list[dict] = []
    for doc in _events(rng, volume, end, tally):
        batch.append(doc)
        if len(batch) >= batch_size:
            target.insert_many(batch, ordered=False)
            batch = []
    if batch:
        target.insert_many(batch, ordered=False)
    return {
        "events_docs": volume.events,
        "events_unknown_user": tally["unknown"],
        "events_padded_id": tally["padded"],
        "events_invalid_id": tally["invalid"],
    }


def seed(
    postgres: PostgresResource,
    mongo: MongoResource,
    *,
    volume: Volume,
    schema: str = DEFAULT_SCHEMA,
    collection: str = DEFAULT_COLLECTION,
    seed: int = DEFAULT_SEED,
    end: dt.datetime,
) -> SeedReport:
    """Seed both stores; ``end`` is the (exclusive) newest moment any order or event has."""
    if end.tzinfo is None:
        raise ValueError("end must be timezone-aware (UTC), got a naive datetime")
    started = time.perf_counter()
    pg = seed_postgres(postgres, volume=volume, schema=schema, seed=seed, end=end)
    mg = seed_mongo(mongo, volume=volume, collection=collection, seed=seed, end=end)
    return SeedReport(**pg, **mg, seconds=round(time.perf_counter() - started, 2))


def default_end() -> dt.datetime:
    """Midnight UTC today: yesterday's partition then sees a full day of recent activity."""
    today = dt.datetime.now(dt.UTC).date()
    return dt.datetime.combine(today, dt.time(), tzinfo=dt.UTC)


def resources_from_env() -> tuple[PostgresResource, MongoResource]:
    """Resources for dev tooling run from a shell, where the environment is the config."""
    return PostgresResource.from_env(), MongoResource.from_env()


def main(argv: list[str] | None = None) -> int:
    """Command line: seed a preset (or explicit volumes) into the local services."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--preset", choices=sorted(PRESETS), default="small")
    parser.add_argument("--customers", type=int, help="override the preset's customer count")
    parser.add_argument("--orders", type=int, help="override the preset's order count")
    parser.add_argument("--events", type=int, help="override the preset's event count")
    parser.add_argument("--seed", type=int, default=DEFAULT_SEED)
    parser.add_argument("--schema", default=DEFAULT_SCHEMA)
    parser.add_argument("--collection", default=DEFAULT_COLLECTION)
    parser.add_argument(
        "--end-date", type=dt.date.fromisoformat, help="exclusive end (UTC); default today"
    )
    args = parser.parse_args(argv)
    base = PRESETS[args.preset]
    volume = Volume(
        customers=args.customers or base.customers,
        orders=args.orders or base.orders,
        events=args.events or base.events,
    )
    end = (
        dt.datetime.combine(args.end_date, dt.time(), tzinfo=dt.UTC)
        if args.end_date
        else default_end()
    )
    postgres, mongo = resources_from_env()
    try:
        report = seed(
            postgres,
            mongo,
            volume=volume,
            schema=args.schema,
            collection=args.collection,
            seed=args.seed,
            end=end,
        )
    finally:
        postgres.close()
        mongo.close()
    lines = [f"seeded {args.preset} ({volume}) ending {end.isoformat()}:"]
    lines += [f"  {key}: {value}" for key, value in asdict(report).items()]
    sys.stdout.write("\n".join(lines) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
