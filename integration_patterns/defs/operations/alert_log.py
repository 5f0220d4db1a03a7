"""The alert log in PostgreSQL: which alerts are firing, when each was last sent.

Deduplication has to hold across sensor ticks, processes and the several sensors that
alert, so it lives in one table and each decision is one atomic statement: an alert is
claimed for sending only if it is new, its fingerprint changed, or it was last sent more
than ``repeat_after_s`` ago. A delivery that fails is released, so the next tick retries.
"""

from typing import TYPE_CHECKING

from integration_patterns.defs.operations.alert import Alert
from integration_patterns.resources.postgres import ensure_ddl

if TYPE_CHECKING:  # psycopg is imported by the functions that use it, not at load
    import psycopg


_DDL = """
CREATE SCHEMA IF NOT EXISTS {schema};
CREATE TABLE IF NOT EXISTS {table} (
    key         text PRIMARY KEY,
    fingerprint text        NOT NULL,
    title       text        NOT NULL,
    first_seen  timestamptz NOT NULL DEFAULT now(),
    last_sent   timestamptz NOT NULL DEFAULT now(),
    sent_count  integer     NOT NULL DEFAULT 1
);
"""

_CLAIM = """
INSERT INTO {table} AS log (key, fingerprint, title) VALUES (%(key)s, %(fp)s, %(title)s)
ON CONFLICT (key) DO UPDATE
SET fingerprint = EXCLUDED.fingerprint, title = EXCLUDED.title, last_sent = now(),
    sent_count = log.sent_count + 1
WHERE log.fingerprint <> EXCLUDED.fingerprint
   OR log.last_sent < now() - make_interval(secs => %(repeat)s)
RETURNING key
"""


class AlertLog:
    """Claims, releases and resolves alerts in ``schema.table``."""

    def __init__(self, schema: str, table: str) -> None:
        from psycopg import sql

        self.schema = schema
        self.table = sql.Identifier(schema, table)

    def ensure(self, conn: "psycopg.Connection") -> None:
        """Create the table once (idempotent, safe under concurrency)."""
        from psycopg import sql

        ddl = sql.SQL(_DDL).format(schema=sql.Identifier(self.schema), table=self.table)
        ensure_ddl(conn, f"alert_log:{self.schema}", [ddl])

    def claim(self, conn: "psycopg.Connection", alert: Alert, repeat_after_s: float) -> bool:
        """Whether this alert should be sent now (and record that it is)."""
        from psycopg import sql

        row = conn.execute(
            sql.SQL(_CLAIM).format(table=self.table),
            {
                "key": alert.key,
                "fp": alert.fingerprint,
                "title": alert.title,
                "repeat": repeat_after_s,
            },
        ).fetchone()
        return row is not None

    def release(self, conn: "psycopg.Connection", key: str) -> None:
        """The alert was not delivered anywhere: forget the claim so it is sent again."""
        from psycopg import sql

        conn.execute(
            sql.SQL(
                "UPDATE {} SET last_sent = '-infinity', fingerprint = '' WHERE key = %s"
            ).format(self.table),
            (key,),
        )

    def resolve(self, conn: "psycopg.Connection", prefix: str, firing: set[str]) -> list[Alert]:
        """Forget alerts under ``prefix`` that no longer fire; return them as resolved."""
        from psycopg import sql

        rows = conn.execute(
            sql.SQL(
                "DELETE FROM {} WHERE starts_with(key, %s) AND NOT (key = ANY(%s)) "
                "RETURNING key, title"
            ).format(self.table),
            (prefix, list(firing)),
        ).fetchall()
        return [
            Alert(key=key, title=f"Resolved: {title}", severity="resolved") for key, title in rows
        ]
