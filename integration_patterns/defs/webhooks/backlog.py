"""Backlog per route: pending count, oldest pending age and failed counts, from the inbox.

Pending events carry no route yet (the routing sensor does not write to the inbox), so they
are grouped by what routing reads (source, type, action) and mapped through the routing
table; failed and unrouted events carry the route their processor recorded. The same
figures feed the asset checks (runnable from the UI) and the routing sensor, which reports
them as observations and check results without launching a run.
"""

from dataclasses import dataclass
from typing import TYPE_CHECKING

import dagster as dg

from integration_patterns.defs.webhooks.store import WebhookStore
from integration_patterns.inbox import FAILED, PENDING, UNROUTED

if TYPE_CHECKING:  # psycopg is imported by the functions that use it, not at load
    import psycopg


STUCK_AFTER_SECONDS = 300.0

_PENDING = """
SELECT source, event_type, payload->>'action', count(*),
       extract(epoch FROM now() - min(received_at))::float8
FROM {inbox} WHERE status = %s
GROUP BY 1, 2, 3
"""
_OUTCOMES = """
SELECT route, status, count(*) FROM {inbox} WHERE status IN (%s, %s) GROUP BY 1, 2
"""


@dataclass
class RouteBacklog:
    """One route's figures."""

    pending: int = 0
    oldest_pending_seconds: float = 0.0
    failed: int = 0
    unrouted: int = 0

    def metadata(self) -> dict[str, float | int]:
        """As asset metadata."""
        return {
            "pending": self.pending,
            "oldest_pending_seconds": round(self.oldest_pending_seconds, 1),
            "failed": self.failed,
            "unrouted": self.unrouted,
        }


def backlog(conn: "psycopg.Connection", store: WebhookStore) -> dict[str, RouteBacklog]:
    """Figures for every route that has pending, failed or unrouted events."""
    from psycopg import sql

    routes: dict[str, RouteBacklog] = {}
    pending = conn.execute(sql.SQL(_PENDING).format(inbox=store.inbox), (PENDING,)).fetchall()
    for source, event_type, action, count, age in pending:
        entry = routes.setdefault(store.route(source, event_type, action), RouteBacklog())
        entry.pending += count
        entry.oldest_pending_seconds = max(entry.oldest_pending_seconds, age or 0.0)
    outcomes = conn.execute(
        sql.SQL(_OUTCOMES).format(inbox=store.inbox), (FAILED, UNROUTED)
    ).fetchall()
    for route, status, count in outcomes:
        entry = routes.setdefault(route or "(none)", RouteBacklog())
        if status == FAILED:
            entry.failed += count
        else:
            entry.unrouted += count
    return routes


def _evaluations(figures: RouteBacklog) -> list[dict]:
    facts = figures.metadata()
    return [
        {
            "check_name": "backlog_flowing",
            "passed": figures.oldest_pending_seconds <= STUCK_AFTER_SECONDS,
            "severity": dg.AssetCheckSeverity.ERROR,
            "description": f"{figures.pending} pending, oldest waiting "
            f"{figures.oldest_pending_seconds:.0f}s (limit {STUCK_AFTER_SECONDS:.0f}s).",
            "metadata": facts,
        },
        {
            "check_name": "no_failed_events",
            "passed": figures.failed == 0,
            "severity": dg.AssetCheckSeverity.WARN,
            "description": f"{figures.failed} failed event(s): fix and replay them with "
            "webhook_replay_job.",
            "metadata": facts,
        },
    ]


def check_results(asset_key: dg.AssetKey, figures: RouteBacklog) -> list[dg.AssetCheckResult]:
    """``backlog_flowing`` (oldest pending within limits) and ``no_failed_events``."""
    return [dg.AssetCheckResult(asset_key=asset_key, **e) for e in _evaluations(figures)]


def check_evaluations(
    asset_key: dg.AssetKey, figures: RouteBacklog
) -> list[dg.AssetCheckEvaluation]:
    """The same checks as evaluations a sensor can report without a run."""
    return [dg.AssetCheckEvaluation(asset_key=asset_key, **e) for e in _evaluations(figures)]
