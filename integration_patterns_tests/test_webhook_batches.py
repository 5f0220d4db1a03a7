"""Webhook events in batches: the routing sensor, set-based processors, outcomes, replay.

Events are written to a private inbox with the receiver's own insert (the HTTP path has its
tests in ``test_webhooks.py``); the sensor is evaluated as the daemon would, and jobs run
in process against the real PostgreSQL. ``test_webhook_daemon.py`` runs it all under a real
``dagster-daemon``.
"""

import json
import secrets
import threading
import time
import tracemalloc
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import dagster as dg
import psycopg
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from psycopg import sql

from devstack.webhook_fixtures import sample_event
from integration_patterns.defs.webhooks import batches
from integration_patterns.defs.webhooks.assets import BATCH_JOB, ROUTE_ASSETS, ROUTE_CHECKS
from integration_patterns.defs.webhooks.batches import apply_batch, batch_ids
from integration_patterns.defs.webhooks.processors import PROCESSORS, MalformedEventError
from integration_patterns.defs.webhooks.replay import webhook_replay_job
from integration_patterns.defs.webhooks.routing import RouterCursor, webhook_inbox_router
from integration_patterns.defs.webhooks.store import WebhookStore
from integration_patterns.inbox import InboxRow, ensure_inbox, insert_rows
from integration_patterns.resources.postgres import PostgresResource
from integration_patterns_tests.conftest import postgres_from_env

FIXTURES = Path(__file__).parent / "fixtures" / "webhooks"


def fixture(name: str) -> dict[str, Any]:
    return json.loads((FIXTURES / f"{name}.json").read_text())


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresResource]:
    resource = postgres_from_env()
    yield resource
    resource.close()


@pytest.fixture
def store(pg) -> Iterator[WebhookStore]:
    """A private schema with the inbox and entity tables; dropped after the test."""
    webhook_store = WebhookStore(
        schema_name=f"whb_{uuid.uuid4().hex[:10]}", max_events_per_run=1000, max_wait_seconds=0
    )
    with pg.get_connection() as conn:
        webhook_store.ensure_tables(conn)
    yield webhook_store
    with pg.get_connection() as conn:
        conn.execute(
            sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(
                sql.Identifier(webhook_store.schema_name)
            )
        )


def tuned(store: WebhookStore, **changes: Any) -> WebhookStore:
    """The same store with other batch limits."""
    fields = {
        "schema_name": store.schema_name,
        "max_events_per_run": store.max_events_per_run,
        "max_wait_seconds": store.max_wait_seconds,
        "max_batch_bytes": store.max_batch_bytes,
        "max_routes_per_run": store.max_routes_per_run,
    }
    return WebhookStore(**(fields | changes))


def add(
    pg: PostgresResource,
    store: WebhookStore,
    events: list[tuple[str, str | None, dict[str, Any]]],
) -> list[int]:
    """Insert (source, event type, payload) rows as the receiver does; their inbox ids."""
    rows = [
        InboxRow(source, payload.get("id") or f"d-{uuid.uuid4().hex}", kind, json.dumps(payload))
        for source, kind, payload in events
    ]
    with pg.get_connection() as conn:
        conn.autocommit = True
        try:
            insert_rows(conn, store.schema_name, rows)
            found = conn.execute(
                sql.SQL("SELECT delivery_id, id FROM {} WHERE delivery_id = ANY(%s)").format(
                    store.inbox
                ),
                ([r.delivery_id for r in rows],),
            ).fetchall()
        finally:
            conn.autocommit = False
    ids = dict(found)
    return [ids[r.delivery_id] for r in rows]


def tick(pg, store, cursor: str | None):
    with dg.build_sensor_context(
        cursor=cursor, resources={"postgres": pg, "webhook_store": store}
    ) as context:
        return webhook_inbox_router(context)


def drain(pg, store, want: int, cursor: str | None = None, timeout: float = 30.0):
    """Tick until ``want`` events were requested; the requests and the final cursor.

    Another session's open write transaction may hold rows back briefly, hence the loop.
    """
    requests: list[dg.RunRequest] = []
    deadline = time.monotonic() + timeout
    while (
        sum(len(events_of(pg, store, r)) for r in requests) < want and time.monotonic() < deadline
    ):
        result = tick(pg, store, cursor)
        if isinstance(result, dg.SensorResult):
            requests += result.run_requests or []
            cursor = result.cursor
        else:
            time.sleep(0.1)
    return requests, cursor


def batches_of(pg, store, request: dg.RunRequest) -> dict[str, list[int]]:
    """The pending events the request's run would apply, per route: its ids in its id range."""
    batches = {}
    with pg.get_connection() as conn:
        for route in request.tags["webhook/routes"].split(","):
            config = request.run_config["ops"][ROUTE_ASSETS[route].key.path[-1]]["config"]
            batches[route] = batch_ids(conn, store, route, config["first_id"], config["last_id"])
    return batches


def events_of(pg, store, request: dg.RunRequest) -> list[int]:
    """Every event the request's run would apply."""
    return sorted(i for ids in batches_of(pg, store, request).values() for i in ids)


def defs_for(pg, store) -> dg.Definitions:
    return dg.Definitions(
        assets=list(ROUTE_ASSETS.values()),
        jobs=[BATCH_JOB, webhook_replay_job],
        asset_checks=ROUTE_CHECKS,
        resources={"postgres": pg, "webhook_store": store},
    )


def run_batch(pg, store, route: str, ids: list[int], **kwargs) -> dg.ExecuteInProcessResult:
    asset = ROUTE_ASSETS[route].key.path[-1]
    job = defs_for(pg, store).resolve_job_def(BATCH_JOB.name)
    subset = job.get_subset(asset_selection={ROUTE_ASSETS[route].key}, asset_check_selection=set())
    return subset.execute_in_process(
        run_config={"ops": {asset: {"config": {"first_id": min(ids), "last_id": max(ids)}}}},
        **kwargs,
    )


def run_requested(pg, store, request: dg.RunRequest) -> dg.ExecuteInProcessResult:
    """The run a sensor requested, executed in process with the request's own selection."""
    job = defs_for(pg, store).resolve_job_def(request.job_name or "")
    subset = job.get_subset(
        asset_selection=set(request.asset_selection or []),
        asset_check_selection=set(request.asset_check_keys or []),
    )
    return subset.execute_in_process(run_config=request.run_config, tags=request.tags)


def outcomes(pg, store, ids: list[int]) -> dict[int, tuple]:
    rows = pg.fetch_all(
        sql.SQL(
            "SELECT id, status, reason, route, run_id, processed_at IS NOT NULL FROM {} "
            "WHERE id = ANY(%s)"
        )
        .format(store.inbox)
        .as_string(None),
        (ids,),
    )
    return {r[0]: tuple(r[1:]) for r in rows}


def table(pg, store, name: str, columns: str, order: str = "1") -> list[tuple]:
    query = sql.SQL("SELECT {} FROM {} ORDER BY {}").format(
        sql.SQL(columns), store.table(name), sql.SQL(order)
    )
    return [tuple(r) for r in pg.fetch_all(query.as_string(None))]


# --- routing sensor --------------------------------------------------------------------------


def test_sensor_emits_due_batches_in_shared_runs_naming_id_ranges_only(pg, store):
    store = tuned(store, **{"max_events_per_run": 4})
    events = (
        [("shop", "order.created", sample_event("order.created", n)) for n in range(10)]
        + [("shop", "payment.received", sample_event("payment.received", n)) for n in range(7)]
        + [("github", "pull_request", fixture("github_pull_request_opened")) for _ in range(5)]
        + [("shop", "invoice.voided", sample_event("invoice.voided", n)) for n in range(3)]
    )
    for _, _, payload in events[17:22]:
        payload["id"] = f"gh-{uuid.uuid4().hex}"
    ids = add(pg, store, events)
    first = tick(pg, store, None)
    assert isinstance(first, dg.SensorResult)
    requests = first.run_requests or []
    # One run per round: the k-th batch of every route shares the k-th run.
    assert [{r: len(ids) for r, ids in batches_of(pg, store, q).items()} for q in requests] == [
        {"orders": 4, "payments": 4, "github_pull_requests": 4, "unknown": 3},
        {"orders": 4, "payments": 3, "github_pull_requests": 1},
        {"orders": 2},
    ]
    for request in requests:
        batches = batches_of(pg, store, request)
        assert request.job_name == "webhook_batch_job"
        assert request.asset_selection == [ROUTE_ASSETS[r].key for r in sorted(batches)]
        assert request.asset_check_keys == []  # backlog checks are not a step of batch runs
        assert request.run_key == "+".join(
            f"{r}:{min(ids)}-{max(ids)}:{len(ids)}" for r, ids in sorted(batches.items())
        )
        assert int(request.tags["webhook/events"]) == len(events_of(pg, store, request))
        # The run config names id ranges only: no payload field, no customer data.
        assert {k for op in request.run_config["ops"].values() for k in op["config"]} == {
            "first_id",
            "last_id",
        }
        assert "example.com" not in json.dumps(request.run_config) + json.dumps(request.tags)
    emitted = [i for r in requests for i in events_of(pg, store, r)]
    assert sorted(emitted) == sorted(ids)  # every event once, no event twice
    # The same tick evaluated again (cursor not yet stored) names the same batches.
    again = tick(pg, store, None)
    assert [r.run_key for r in again.run_requests] == [r.run_key for r in requests]
    assert isinstance(tick(pg, store, first.cursor), dg.SkipReason)
    # WEBHOOK_MAX_ROUTES_PER_RUN=2: the same batches, at most two routes in a run.
    paired = tick(pg, tuned(store, max_routes_per_run=2), None).run_requests
    assert [sorted(batches_of(pg, store, r)) for r in paired] == [
        ["orders", "payments"],
        ["github_pull_requests", "unknown"],
        ["orders", "payments"],
        ["github_pull_requests"],
        ["orders"],
    ]
    assert sorted(i for r in paired for i in events_of(pg, store, r)) == sorted(ids)


def test_small_batch_waits_without_holding_back_other_routes(pg, store):
    patient = tuned(store, **{"max_events_per_run": 3, "max_wait_seconds": 3600})
    orders = add(
        pg, store, [("shop", "order.created", sample_event("order.created", n)) for n in range(2)]
    )
    payments = add(
        pg,
        store,
        [("shop", "payment.received", sample_event("payment.received", n)) for n in range(3)],
    )
    first = tick(pg, patient, None)
    # A full batch goes at once.
    assert [batches_of(pg, store, r) for r in first.run_requests] == [{"payments": payments}]
    cursor = RouterCursor.parse(first.cursor)
    assert cursor.mark < (0, min(orders)) or cursor.mark[1] < min(orders)  # orders still ahead
    second = tick(pg, patient, first.cursor)
    assert isinstance(second, dg.SkipReason) or not second.run_requests  # nothing twice
    more = add(pg, store, [("shop", "payment.received", sample_event("payment.received", 9))])
    third = tick(pg, patient, first.cursor)
    assert isinstance(third, dg.SkipReason) or not third.run_requests  # 1 payment waits too
    # Once the wait is over (here: a store that waits 0 s) the held events go, each once.
    hurried = tuned(patient, **{"max_wait_seconds": 0})
    final = tick(pg, hurried, first.cursor)
    assert [batches_of(pg, store, r) for r in final.run_requests] == [
        {"orders": orders, "payments": more}
    ]
    assert isinstance(tick(pg, hurried, final.cursor), dg.SkipReason)


def test_a_route_whose_last_run_has_not_started_accumulates_its_events(pg, store):
    orders = add(pg, store, [("shop", "order.created", sample_event("order.created", 1))])
    payments = add(pg, store, [("shop", "payment.received", sample_event("payment.received", 1))])
    with dg.DagsterInstance.ephemeral() as instance:
        queued = dg.DagsterRun(
            job_name="webhook_batch_job",
            run_id=str(uuid.uuid4()),
            status=dg.DagsterRunStatus.NOT_STARTED,
            tags={"dagster/sensor_name": "webhook_inbox_router", "webhook/routes": "orders"},
        )
        instance.add_run(queued)
        resources = {"postgres": pg, "webhook_store": store}
        with dg.build_sensor_context(instance=instance, resources=resources) as context:
            first = webhook_inbox_router(context)
        # Orders wait for their run to start.
        assert [batches_of(pg, store, r) for r in first.run_requests] == [{"payments": payments}]
        instance.handle_run_event(  # the queued run starts: orders may go
            queued.run_id,
            dg.DagsterEvent(
                event_type_value=dg.DagsterEventType.RUN_START.value, job_name=queued.job_name
            ),
        )
        with dg.build_sensor_context(
            instance=instance, resources=resources, cursor=first.cursor
        ) as context:
            second = webhook_inbox_router(context)
        assert [batches_of(pg, store, r) for r in second.run_requests] == [{"orders": orders}]


def padded_order(n: int, pad_bytes: int) -> dict[str, Any]:
    """An order event carrying ``pad_bytes`` of incompressible text its processor ignores."""
    return sample_event("order.created", n) | {"padding": secrets.token_hex(pad_bytes // 2)}


def test_a_batch_is_cut_at_max_batch_bytes_and_a_huge_event_goes_alone(pg, store):
    capped = tuned(store, max_events_per_run=100, max_batch_bytes=250_000)
    sizes = [100_000, 100_000, 100_000, 300_000, 100_000, 100_000, 100_000]
    ids = add(
        pg, store, [("shop", "order.created", padded_order(n, b)) for n, b in enumerate(sizes)]
    )
    requests, _ = drain(pg, capped, want=len(ids))
    # Two 100 kB events fit under 250 kB, a third would not; 300 kB is over the cap alone.
    batches = [batches_of(pg, store, r)["orders"] for r in requests]
    assert batches == [ids[0:2], ids[2:3], ids[3:4], ids[4:6], ids[6:7]]


def test_a_large_batch_is_applied_in_chunks_of_bounded_memory(pg, store):
    # 48 events of 512 kB: 24 MiB of payload in one batch (one run), read chunk by chunk.
    ids = add(
        pg, store, [("shop", "order.created", padded_order(n, 512 * 1024)) for n in range(48)]
    )
    with pg.get_connection() as conn:
        tracemalloc.start()
        try:
            result = apply_batch(conn, store, "orders", ids, "run-memory")
            _, peak = tracemalloc.get_traced_memory()
        finally:
            tracemalloc.stop()
    assert (result.claimed, result.processed, result.failed) == (48, 48, 0)
    assert len(table(pg, store, "webhook_orders", "order_id")) == 48
    assert peak < 12 * 2**20, f"peak {peak / 2**20:.1f} MiB for a 24 MiB batch"


def test_late_commit_is_not_skipped(pg, store):
    cursor = tick(pg, store, None).cursor  # the first tick reports backlog and sets it
    late = psycopg.connect(**pg.connect_kwargs())
    try:
        late.execute(
            sql.SQL(
                "INSERT INTO {} (source, delivery_id, event_type, payload) "
                "VALUES ('shop', 'late-1', 'order.created', %s)"
            ).format(store.inbox),
            (json.dumps(sample_event("order.created", 99, delivery_id="late-1")),),
        )
        (early,) = add(pg, store, [("shop", "order.created", sample_event("order.created", 98))])
        held = tick(pg, store, cursor)
        assert isinstance(held, dg.SkipReason)  # the committed row waits behind the open one
        assert "1 webhook event(s) held back" in (held.skip_message or "")
        late.commit()
    finally:
        late.close()
    requests, _ = drain(pg, store, 2, cursor)
    (late_id,) = [
        r[0]
        for r in pg.fetch_all(
            sql.SQL("SELECT id FROM {} WHERE delivery_id = 'late-1'")
            .format(store.inbox)
            .as_string(None)
        )
    ]
    assert sorted(i for r in requests for i in events_of(pg, store, r)) == sorted([early, late_id])


# --- processors --------------------------------------------------------------------------------


def test_a_batch_run_applies_only_its_routes_pending_events_in_its_id_range(pg, store):
    first, payment, second, later = add(
        pg,
        store,
        [
            ("shop", "order.created", sample_event("order.created", 1)),
            ("shop", "payment.received", sample_event("payment.received", 2)),
            ("shop", "order.created", sample_event("order.created", 3)),
            ("shop", "order.created", sample_event("order.created", 4)),
        ],
    )
    result = run_batch(pg, store, "orders", [first, second])
    assert result.success
    state = outcomes(pg, store, [first, payment, second, later])
    assert [state[i][0] for i in (first, payment, second, later)] == [
        "processed",
        "pending",  # another route's event inside the range is left to its own route
        "processed",
        "pending",  # past the range
    ]
    (materialization,) = result.get_asset_materialization_events()
    assert materialization.materialization.metadata["events_requested"].value == 2
    assert result.get_asset_check_evaluations() == []  # one step: the route's, no checks
    # The same range again: nothing of it is pending any more, nothing changes.
    again = run_batch(pg, store, "orders", [first, second])
    (repeat,) = again.get_asset_materialization_events()
    assert repeat.materialization.metadata["events_requested"].value == 0
    assert outcomes(pg, store, [first, second]) == {k: state[k] for k in (first, second)}


def test_batch_records_each_outcome_and_a_malformed_event_fails_alone(pg, store):
    newer = sample_event("order.created", 1)
    newer["data"]["status"] = "paid"
    ids = add(
        pg,
        store,
        [
            ("shop", "order.created", sample_event("order.created", 1)),  # older state of ord-1
            ("shop", "order.created", fixture("spec_order_created")),
            ("shop", "order.created", {"id": "bad-1", "data": {"customer_id": "c"}}),
            ("shop", "order.created", {"id": "bad-2", "data": {"order": {"id": "o", "items": 7}}}),
            ("shop", "order.created", {"id": "bad-3", "data": {"order_id": "o3", "amount": "ten"}}),
            ("shop", "order.created", newer),
        ],
    )
    # The newer event comes first in the run config: the inbox order decides, not the list's.
    result = run_batch(pg, store, "orders", [ids[5], *ids[:5]])
    assert result.success
    state = outcomes(pg, store, ids)
    run_id = result.run_id
    assert [state[i][0] for i in ids] == [
        "processed",
        "processed",
        "failed",
        "failed",
        "failed",
        "processed",
    ]
    assert state[ids[2]][1] == "orders: payload has no order order_id or id"
    assert state[ids[3]][1] == "orders: order items is not a list"
    assert state[ids[4]][1] == "orders: order total is not a number"
    assert all(s[2] == "orders" and s[3] == run_id and s[4] for s in state.values())
    rows = table(pg, store, "webhook_orders", "order_id, customer_id, amount::text, status, items")
    assert rows == [
        ("ord-1", "cus-1", "11.00", "paid", None),
        (
            "ord-spec-1",
            "cus-42",
            "129.50",
            "created",
            fixture("spec_order_created")["data"]["order"]["items"],
        ),
    ]
    (materialization,) = result.get_asset_materialization_events()
    metadata = materialization.step_materialization_data.materialization.metadata
    assert (metadata["processed"].value, metadata["failed"].value) == (3, 3)
    assert metadata["superseded"].value == 1
    # The same batch again: nothing left to claim, nothing changes.
    before = table(pg, store, "webhook_orders", "order_id, updated_at, last_inbox_id")
    again = run_batch(pg, store, "orders", ids)
    (m,) = again.get_asset_materialization_events()
    assert m.step_materialization_data.materialization.metadata["events_claimed"].value == 0
    assert table(pg, store, "webhook_orders", "order_id, updated_at, last_inbox_id") == before
    assert outcomes(pg, store, ids) == state


def test_an_older_event_in_a_later_batch_never_overwrites(pg, store):
    older, newer = sample_event("user.updated", 3), sample_event("user.updated", 3)
    newer["data"]["email"] = "new@example.com"
    ids = add(pg, store, [("shop", "user.updated", older), ("shop", "user.updated", newer)])
    assert run_batch(pg, store, "users", [ids[1]]).success
    assert run_batch(pg, store, "users", [ids[0]]).success
    assert table(pg, store, "webhook_users", "user_id, email") == [("usr-3", "new@example.com")]
    assert [outcomes(pg, store, ids)[i][0] for i in ids] == ["processed", "processed"]


PROVIDER_EVENTS = [
    # (source, event type as the receiver stores it, fixture, expected route)
    ("stripe", "customer.created", "stripe_customer_created", "users"),
    ("stripe", "customer.updated", "stripe_customer_updated", "users"),
    ("stripe", "payment_intent.succeeded", "stripe_payment_intent_succeeded", "payments"),
    ("stripe", "charge.refunded", "stripe_charge_refunded", "payments"),
    ("stripe", "invoice.paid", "stripe_invoice_paid", "payments"),
    ("github", "push", "github_push", "github_pushes"),
    ("github", "pull_request", "github_pull_request_opened", "github_pull_requests"),
    ("github", "pull_request", "github_pull_request_closed", "github_pull_requests"),
    ("github", "issues", "github_issues_opened", "github_issues"),
    ("shop", "order.created", "spec_order_created", "orders"),
]


def test_real_provider_events_are_routed_and_applied(pg, store):
    events = []
    for source, kind, name, _ in PROVIDER_EVENTS:
        payload = fixture(name)
        payload.setdefault("id", f"{name}-{uuid.uuid4().hex[:6]}")  # GitHub: header id
        events.append((source, kind, payload))
    ids = add(pg, store, events)
    requests, _ = drain(pg, store, len(ids))
    routes = {
        i: route for r in requests for route, ids in batches_of(pg, store, r).items() for i in ids
    }
    assert [routes[i] for i in ids] == [expected for *_, expected in PROVIDER_EVENTS]
    for request in requests:
        assert run_requested(pg, store, request).success
    assert {s[0] for s in outcomes(pg, store, ids).values()} == {"processed"}
    assert table(pg, store, "webhook_users", "user_id, email, name") == [
        ("cus_QhQ8ZbYd1tWbL2", "jenny.rosen@example.org", "Jenny Rosen")
    ]
    assert table(
        pg, store, "webhook_payments", "payment_id, order_id, amount::text, currency, status"
    ) == [
        ("in_1PqR0bLkdIwHu7ixOpAsDfGh", None, "15.00", "usd", "paid"),
        ("pi_3PqQ2sLkdIwHu7ix0nVJ8bQe", "ord-9001", "29.99", "eur", "refunded"),
    ]
    assert table(pg, store, "webhook_github_pushes", "repository, ref, head_sha, commit_count") == [
        ("octocat/Hello-World", "refs/heads/main", "0d1a26e67d8f5eaf1f6ba5c57fc3c7d91ac0fd1c", 1)
    ]
    assert table(pg, store, "webhook_github_pull_requests", "number, action, state, merged") == [
        (1347, "closed", "closed", True)
    ]
    assert table(pg, store, "webhook_github_issues", "number, state, title") == [
        (1348, "open", "Found a bug")
    ]


def test_unsigned_header_cannot_send_an_event_to_a_mismatched_processor(pg, store):
    # GitHub signs the body only: X-GitHub-Event could say anything. A processor applies
    # only payloads of its own shape; the others fail alone, with the reason.
    issue = fixture("github_issues_opened") | {"id": "forged-1"}
    customer = fixture("stripe_customer_created") | {"id": "forged-2"}
    push = fixture("github_push") | {"id": "forged-3"}
    ids = add(
        pg,
        store,
        [
            ("github", "pull_request", issue | {"action": "opened"}),
            ("stripe", "payment_intent.succeeded", customer),
            ("github", "issues", push),
        ],
    )
    requests, _ = drain(pg, store, 3)
    for request in requests:
        assert run_requested(pg, store, request).success
    state = outcomes(pg, store, ids)
    assert [state[i][:2] for i in ids] == [
        ("failed", "github_pull_requests: payload has no pull_request object"),
        (
            "failed",
            "payments: data.object is a 'customer', "
            "expected one of payment_intent, charge, invoice",
        ),
        ("failed", "github_issues: payload has no issue object"),
    ]
    for name in ("webhook_github_pull_requests", "webhook_payments", "webhook_github_issues"):
        assert table(pg, store, name, "1") == []


# Text jsonb can store (no NUL, no lone surrogates): anything else never reaches the inbox.
TEXT = st.text(st.characters(blacklist_characters="\x00", blacklist_categories=("Cs",)), max_size=8)
JSON = st.recursive(
    st.none()
    | st.booleans()
    | st.integers()
    | st.floats(allow_nan=False, allow_infinity=False)
    | TEXT,
    lambda inner: st.lists(inner, max_size=3) | st.dictionaries(TEXT, inner, max_size=3),
    max_leaves=12,
)
# Payloads near the shapes processors read, so parsing gets past the first check.
SHAPED = st.fixed_dictionaries(
    {},
    optional={
        "data": JSON
        | st.fixed_dictionaries(
            {},
            optional={
                "object": JSON,
                "order": JSON,
                "order_id": JSON,
                "amount": JSON,
                "total": JSON,
                "items": JSON,
                "id": JSON,
            },
        ),
        "pull_request": JSON
        | st.fixed_dictionaries({"number": JSON}, optional={"head": JSON, "user": JSON}),
        "issue": JSON,
        "repository": JSON | st.fixed_dictionaries({"full_name": JSON}),
        "ref": JSON,
        "after": JSON,
        "commits": JSON,
        "action": JSON,
    },
)


@given(payload=SHAPED)
@settings(max_examples=300, deadline=None, database=None)
def test_parsers_only_ever_refuse_with_a_reason(payload):
    for processor in PROCESSORS.values():
        try:
            row = processor.parse("x", payload)
        except MalformedEventError as exc:
            assert str(exc)
        else:
            assert set(row) == set(processor.columns)
            assert all(row[k] is not None for k in processor.key)


def test_fuzzed_batches_never_fail_their_run(pg, store):
    seen: dict[str, int] = {}

    @given(payloads=st.lists(SHAPED, min_size=1, max_size=15))
    @settings(
        max_examples=12, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def fuzz(payloads: list[dict]) -> None:
        events = [("shop", "x", p | {"id": f"f-{uuid.uuid4().hex}"}) for p in payloads]
        events.append(("shop", "x", sample_event("order.created", len(seen))))  # one valid
        ids = add(pg, store, events)
        with pg.get_connection() as conn:
            for route in [*PROCESSORS, "unknown"]:
                conn.execute(sql.SQL("UPDATE {} SET status = 'pending'").format(store.inbox))
                conn.commit()
                result = apply_batch(conn, store, route, ids, "fuzz-run")
                assert result.claimed == len(ids)
                assert result.processed + result.failed + result.unrouted == len(ids)
                seen[route] = seen.get(route, 0) + result.processed

    fuzz()
    assert seen["orders"] >= 12  # the valid neighbour of every fuzzed batch was applied


# --- replay, backlog, failures -------------------------------------------------------------------


def test_replay_applies_fixed_failed_events_exactly_once(pg, store):
    broken = [
        {"id": f"rp-{n}", "type": "order.created", "data": {"customer_id": f"c{n}"}}
        for n in range(3)
    ]
    ids = add(pg, store, [("shop", "order.created", p) for p in broken])
    assert run_batch(pg, store, "orders", ids).success
    assert {s[0] for s in outcomes(pg, store, ids).values()} == {"failed"}
    # The fix: the sender's data is corrected in the inbox (or a processor learns a shape).
    with pg.get_connection() as conn:
        conn.execute(
            sql.SQL(
                "UPDATE {} SET payload = "
                "jsonb_set(payload, '{{data,order_id}}', to_jsonb('o-' || id)) WHERE id = ANY(%s)"
            ).format(store.inbox),
            (ids,),
        )
    defs = defs_for(pg, store)
    replay = defs.resolve_job_def("webhook_replay_job")
    config = {
        "ops": {"replay_webhook_events": {"config": {"source": "shop", "statuses": ["failed"]}}}
    }
    first = replay.execute_in_process(run_config=config)
    assert first.success
    state = outcomes(pg, store, ids)
    assert {s[0] for s in state.values()} == {"processed"}
    assert {s[3] for s in state.values()} == {first.run_id}
    assert len(table(pg, store, "webhook_orders", "order_id")) == 3
    before = table(pg, store, "webhook_orders", "order_id, updated_at")
    second = replay.execute_in_process(run_config=config)
    assert second.output_for_node("replay_webhook_events") == 0  # nothing failed any more
    by_ids = {"inbox_ids": ids, "statuses": ["processed"]}
    third = replay.execute_in_process(
        run_config={"ops": {"replay_webhook_events": {"config": by_ids}}}
    )
    assert third.output_for_node("replay_webhook_events") == 3
    assert [r[0] for r in table(pg, store, "webhook_orders", "order_id, updated_at")] == [
        r[0] for r in before
    ]


def test_replay_config_is_validated(pg, store):
    replay = defs_for(pg, store).resolve_job_def("webhook_replay_job")
    with pytest.raises(dg.DagsterInvalidConfigError, match="statuses"):
        replay.execute_in_process(
            run_config={"ops": {"replay_webhook_events": {"config": {"statuses": ["done"]}}}}
        )
    bad_time = {"ops": {"replay_webhook_events": {"config": {"received_after": "yesterday"}}}}
    result = replay.execute_in_process(run_config=bad_time, raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    assert "isoformat" in str(failure.step_failure_data.error)


def test_backlog_is_reported_per_route(pg, store):
    ids = add(
        pg, store, [("shop", "order.created", sample_event("order.created", n)) for n in range(4)]
    )
    bad = add(pg, store, [("shop", "payment.received", {"id": "nopay", "data": {}})])
    assert run_batch(pg, store, "payments", bad).success
    with pg.get_connection() as conn:
        conn.execute(
            sql.SQL("UPDATE {} SET received_at = now() - interval '1 hour' WHERE id = %s").format(
                store.inbox
            ),
            (ids[0],),
        )
    result = tick(pg, tuned(store, **{"max_events_per_run": 100, "max_wait_seconds": 7200}), None)
    assert isinstance(result, dg.SensorResult) and not result.run_requests
    observed = {
        e.asset_key.path[-1]: e.metadata
        for e in result.asset_events
        if isinstance(e, dg.AssetObservation)
    }
    assert observed["webhook_orders"]["pending"].value == 4
    assert observed["webhook_orders"]["oldest_pending_seconds"].value >= 3600
    assert observed["webhook_payments"]["failed"].value == 1
    checks = {
        (e.asset_key.path[-1], e.check_name): e.passed
        for e in result.asset_events
        if isinstance(e, dg.AssetCheckEvaluation)
    }
    assert checks[("webhook_orders", "backlog_flowing")] is False
    assert checks[("webhook_payments", "no_failed_events")] is False
    assert checks[("webhook_users", "backlog_flowing")] is True
    # The same checks run on their own (from the UI, or a schedule), without a batch.
    checks_job = dg.define_asset_job("wh_checks", selection=dg.AssetSelection.checks(*ROUTE_CHECKS))
    defs = dg.Definitions(
        assets=list(ROUTE_ASSETS.values()),
        asset_checks=ROUTE_CHECKS,
        jobs=[checks_job],
        resources={"postgres": pg, "webhook_store": store},
    )
    run = defs.resolve_job_def("wh_checks").execute_in_process()
    evaluated = {
        (e.asset_key.path[-1], e.check_name): e.passed for e in run.get_asset_check_evaluations()
    }
    assert evaluated == checks


def test_database_connection_lost_mid_batch_is_retried_and_completes(pg, store, monkeypatch):
    # Chunks of 10 events, each committed on its own: the connection is lost in the third.
    monkeypatch.setattr(batches, "CHUNK_EVENTS", 10)
    ids = add(
        pg, store, [("shop", "order.created", sample_event("order.created", n)) for n in range(40)]
    )
    app = f"wh_retry_{uuid.uuid4().hex[:8]}"
    runner = postgres_from_env(application_name=app)
    blocker = psycopg.connect(**pg.connect_kwargs())
    outcome: dict[str, Any] = {}
    try:
        # Hold a lock the batch's upsert needs, so the run is caught mid-transaction.
        blocker.execute(
            sql.SQL(
                "INSERT INTO {} (order_id, source, delivery_id, last_inbox_id) "
                "VALUES ('ord-27', 'x', 'x', 0)"
            ).format(store.table("webhook_orders"))
        )
        thread = threading.Thread(
            target=lambda: outcome.setdefault(
                "result", run_batch(runner, store, "orders", ids, raise_on_error=False)
            )
        )
        blocker.commit()
        blocker.execute(
            sql.SQL("SELECT 1 FROM {} WHERE order_id = 'ord-27' FOR UPDATE").format(
                store.table("webhook_orders")
            )
        )
        thread.start()
        deadline = time.monotonic() + 30
        killed = 0
        while not killed and time.monotonic() < deadline:
            time.sleep(0.2)
            killed = len(
                pg.fetch_all(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE application_name = %s AND wait_event_type = 'Lock'",
                    (app,),
                )
            )
        assert killed == 1
        state = outcomes(pg, store, ids)
        assert {state[i][0] for i in ids[:20]} == {"processed"}  # committed chunks stay
        assert {state[i][0] for i in ids[20:]} == {"pending"}  # the lost chunk rolled back
        blocker.rollback()
        thread.join(timeout=60)
    finally:
        blocker.close()
        runner.close()
    result = outcome["result"]
    assert result.success
    retried = [e for e in result.all_events if e.event_type_value == "STEP_UP_FOR_RETRY"]
    assert len(retried) == 1
    state = outcomes(pg, store, ids)
    assert {s[0] for s in state.values()} == {"processed"}
    assert len(table(pg, store, "webhook_orders", "order_id")) == 40


def test_an_inbox_of_the_first_design_is_migrated_in_place(pg):
    schema = f"whm_{uuid.uuid4().hex[:10]}"
    with pg.get_connection() as conn:
        conn.execute(sql.SQL("CREATE SCHEMA {}").format(sql.Identifier(schema)))
        conn.execute(
            sql.SQL(
                "CREATE TABLE {}.webhook_inbox (id bigserial PRIMARY KEY, source text NOT NULL, "
                "delivery_id text NOT NULL, event_type text, payload jsonb NOT NULL, "
                "headers jsonb NOT NULL DEFAULT '{{}}', received_at timestamptz NOT NULL "
                "DEFAULT now(), txid bigint NOT NULL DEFAULT (pg_current_xact_id()::text::bigint), "
                "CONSTRAINT webhook_inbox_delivery UNIQUE (source, delivery_id))"
            ).format(sql.Identifier(schema))
        )
        conn.execute(
            sql.SQL(
                "INSERT INTO {}.webhook_inbox (source, delivery_id, payload) "
                "VALUES ('s', 'old', '{{}}')"
            ).format(sql.Identifier(schema))
        )
    try:
        with pg.get_connection() as conn:
            ensure_inbox(conn, schema)
            ensure_inbox(conn, schema)  # idempotent
            conn.autocommit = True
            insert_rows(conn, schema, [InboxRow("s", "new", "order.created", "{}")])
            conn.autocommit = False
        rows = pg.fetch_all(
            sql.SQL(
                "SELECT delivery_id, status, reason IS NOT NULL FROM {}.webhook_inbox ORDER BY id"
            )
            .format(sql.Identifier(schema))
            .as_string(None)
        )
        assert rows == [("old", "processed", True), ("new", "pending", False)]
    finally:
        with pg.get_connection() as conn:
            conn.execute(sql.SQL("DROP SCHEMA {} CASCADE").format(sql.Identifier(schema)))
