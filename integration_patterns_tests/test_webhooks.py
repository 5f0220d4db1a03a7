"""The webhook pattern end to end: receiver over HTTP, inbox in PostgreSQL, sensor, processors.

What must hold: nothing answered 202 is ever lost (even if the receiver is killed), nothing
is stored twice, nothing unverified is stored at all, and every stored event starts exactly
one run, routed by its type, whose processor upserts idempotently. Each test module gets
private schemas (dropped afterwards), so other engineers' data never interferes.
"""

from __future__ import annotations

import asyncio
import json
import os
import random
import signal
import socket
import time
import uuid
from collections import Counter
from collections.abc import Iterator

import dagster as dg
import httpx
import psycopg
import pytest
import schemathesis
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st
from psycopg import sql

from integration_patterns.defs.webhooks.processors import (
    webhook_orders,
    webhook_orders_job,
    webhook_payments,
    webhook_payments_job,
    webhook_unknown_events,
    webhook_unknown_job,
    webhook_users,
    webhook_users_job,
)
from integration_patterns.defs.webhooks.routing import webhook_inbox_router
from integration_patterns.defs.webhooks.store import WebhookStore
from integration_patterns.devstack.webhook_fixtures import (
    encode,
    new_standard_secret,
    receiver_env,
    running_receiver,
    sample_event,
    sign_hmac,
    signed_delivery,
)
from integration_patterns.resources.postgres import PostgresResource
from integration_patterns_tests.conftest import postgres_from_env

SECRETS = {
    "stripe": ("stripe", "whsec_" + uuid.uuid4().hex),
    "gh": ("github", uuid.uuid4().hex),
    "std": ("standard", new_standard_secret()),
    "shop": ("hmac", uuid.uuid4().hex),
}
SOURCES = {name: (scheme, [secret]) for name, (scheme, secret) in SECRETS.items()}
ROUTED = {
    "order.created": "webhook_orders_job",
    "payment.received": "webhook_payments_job",
    "user.updated": "webhook_users_job",
}


@pytest.fixture(scope="module")
def pg() -> Iterator[PostgresResource]:
    resource = postgres_from_env()
    yield resource
    resource.close()


@pytest.fixture(scope="module")
def new_schema(pg) -> Iterator:
    """Makes private schema names; drops every one of them at the end of the module."""
    made: list[str] = []

    def make() -> str:
        made.append(f"wh_test_{uuid.uuid4().hex[:10]}")
        return made[-1]

    yield make
    with pg.get_connection() as conn:
        for schema in made:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))


@pytest.fixture(scope="module")
def receiver(new_schema) -> Iterator[tuple[str, str]]:
    """(url, schema) of a receiver subprocess shared by the HTTP contract tests."""
    schema = new_schema()
    with running_receiver(receiver_env(SOURCES, schema=schema)) as proc:
        yield proc.url, schema


@pytest.fixture
def client(receiver) -> Iterator[httpx.Client]:
    with httpx.Client(base_url=receiver[0], timeout=30) as http:
        yield http


def deliver(client: httpx.Client, source: str, payload: dict, **kwargs) -> httpx.Response:
    scheme, secrets = SOURCES[source]
    body, headers = signed_delivery(scheme, secrets, payload, **kwargs)
    return client.post(f"/webhooks/{source}", content=body, headers=headers)


def inbox_keys(pg: PostgresResource, schema: str) -> list[tuple[str, str]]:
    return [
        tuple(r) for r in pg.fetch_all(f'SELECT source, delivery_id FROM "{schema}".webhook_inbox')
    ]


def tick(pg: PostgresResource, store: WebhookStore, cursor: str | None):
    resources = {"postgres": pg, "webhook_store": store}
    with dg.build_sensor_context(cursor=cursor, resources=resources) as context:
        return webhook_inbox_router(context)


def drain(
    pg: PostgresResource, store: WebhookStore, cursor: str | None, want: int, timeout: float = 30
) -> tuple[list[dg.RunRequest], str | None]:
    """Tick until ``want`` requests came out, then twice more to show nothing else comes.

    Another session's open write transaction may hold rows back briefly, hence the loop.
    """
    requests: list[dg.RunRequest] = []
    deadline = time.monotonic() + timeout
    while len(requests) < want and time.monotonic() < deadline:
        result = tick(pg, store, cursor)
        if isinstance(result, dg.SensorResult):
            assert len(result.run_requests or []) <= store.max_runs_per_tick
            requests += result.run_requests or []
            cursor = result.cursor
        else:
            time.sleep(0.2)
    for _ in range(2):
        assert isinstance(tick(pg, store, cursor), dg.SkipReason)
    return requests, cursor


# --- HTTP contract -------------------------------------------------------------------------


def test_unknown_source_is_404(client):
    assert client.post("/webhooks/nobody", content=b"{}").status_code == 404


def test_duplicate_answers_200_and_adds_nothing(client, receiver, pg):
    payload = sample_event("order.created", 1)
    first, second = deliver(client, "std", payload), deliver(client, "std", payload)
    assert (first.status_code, second.status_code) == (202, 200)
    assert first.json() == {"delivery_id": payload["id"], "status": "accepted"}
    assert inbox_keys(pg, receiver[1]).count(("std", payload["id"])) == 1


def test_hmac_replay_with_a_new_unsigned_id_is_a_duplicate(client, receiver, pg):
    # The plain scheme signs only the body: a captured request re-sent with another
    # X-Webhook-Id header must not become a new event.
    payload = sample_event("payment.received", 7)
    scheme, secrets = SOURCES["shop"]
    body, headers = signed_delivery(scheme, secrets, payload)
    first = client.post("/webhooks/shop", content=body, headers=headers)
    replay = client.post(
        "/webhooks/shop", content=body, headers=headers | {"X-Webhook-Id": "attacker-new-id"}
    )
    assert (first.status_code, replay.status_code) == (202, 200)
    assert first.json()["delivery_id"] == payload["id"]
    keys = inbox_keys(pg, receiver[1])
    assert keys.count(("shop", payload["id"])) == 1 and ("shop", "attacker-new-id") not in keys


BAD_BODIES = [
    # (signed body, why it is refused)
    (b'{"id": "x1", "type": ', "truncated JSON"),
    (b'[{"id": "x2"}]', "not an object"),
    (b'{"id": "x3", "n": NaN}', "NaN is not JSON"),
    (b'{"id": "x4", "note": "nul \\u0000 byte"}', "jsonb cannot store NUL"),
    (b'{"id": "x5", "s": "\xff"}', "not UTF-8"),
    (b'{"type": "order.created"}', "no delivery id"),
]


@pytest.mark.parametrize(("body", "why"), BAD_BODIES)
def test_signed_but_unusable_body_is_400(client, receiver, pg, body, why):
    secret = SECRETS["shop"][1]
    response = client.post("/webhooks/shop", content=body, headers=sign_hmac(body, secret))
    assert response.status_code == 400, why
    assert not [k for k in inbox_keys(pg, receiver[1]) if k[1] in {"x1", "x2", "x3", "x4", "x5"}]


def test_body_cap_is_413_and_cap_itself_is_accepted(client):
    cap = 1024 * 1024
    payload = sample_event("order.created")
    base = encode(payload)
    exact = base[:-1] + b',"pad":"' + b"x" * (cap - len(base) - 9) + b'"}'
    assert len(exact) == cap
    secret = SECRETS["shop"][1]
    assert (
        client.post("/webhooks/shop", content=exact, headers=sign_hmac(exact, secret)).status_code
        == 202
    )
    over = exact + b" "
    assert (
        client.post("/webhooks/shop", content=over, headers=sign_hmac(over, secret)).status_code
        == 413
    )


def test_body_cap_enforced_while_streaming(receiver):
    # Chunked upload with no Content-Length: refused once the cap is crossed, not after
    # reading all 8 MiB (the answer arrives while most of the body is still unsent).
    host, port = receiver[0].removeprefix("http://").split(":")
    with socket.create_connection((host, int(port)), timeout=10) as sock:
        sock.sendall(
            b"POST /webhooks/shop HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n"
            b"Content-Type: application/json\r\n\r\n"
        )
        chunk = b"x" * 65536
        sent = 0
        response = b""
        sock.settimeout(0.05)
        while sent < 8 * 1024 * 1024 and not response:
            try:
                sock.sendall(b"%x\r\n%s\r\n" % (len(chunk), chunk))
                sent += len(chunk)
            except OSError:
                break
            try:
                response = sock.recv(4096)
            except TimeoutError:
                pass
        sock.settimeout(10)
        response = response or sock.recv(4096)
    assert response.startswith(b"HTTP/1.1 413"), response[:60]
    assert sent < 4 * 1024 * 1024


def test_healthz_and_openapi(client):
    assert client.get("/healthz").json() == {"status": "ok", "postgres": True}
    spec = client.get("/openapi.json").json()
    operation = spec["paths"]["/webhooks/{source}"]["post"]
    assert {"202", "200", "401", "413"} <= set(operation["responses"])
    assert operation["parameters"][0]["schema"]["enum"] == sorted(SOURCES)


# --- 10,000 deliveries and the sensor ------------------------------------------------------


def build_mix(total: int = 10_000, seed: int = 4) -> tuple[list, set[tuple[str, str]]]:
    """Deliveries: 10% duplicates, 5% bad signatures, 2% stale, 1% malformed, rest valid."""
    rng = random.Random(seed)
    counts = {"dup": total // 10, "badsig": total // 20, "stale": total // 50, "bad": total // 100}
    counts["valid"] = total - sum(counts.values())
    types = [*ROUTED, "invoice.voided"]
    names = list(SOURCES)
    deliveries, valid, unique = [], [], set()
    now = int(time.time())
    for i in range(counts["valid"]):
        source = names[i % 4]
        payload = sample_event(rng.choice(types), i, delivery_id=f"mix-{i}")
        delivery = (source, *signed_delivery(SOURCES[source][0], SOURCES[source][1], payload))
        valid.append(delivery)
        unique.add((source, payload["id"]))
    deliveries += valid + [rng.choice(valid) for _ in range(counts["dup"])]
    for i in range(counts["badsig"]):
        source = names[i % 4]
        wrong = [new_standard_secret()] if source == "std" else ["wrong"]
        payload = sample_event("order.created", i, delivery_id=f"badsig-{i}")
        deliveries.append((source, *signed_delivery(SOURCES[source][0], wrong, payload)))
    for i in range(counts["stale"]):
        source = ("stripe", "std")[i % 2]
        payload = sample_event("order.created", i, delivery_id=f"stale-{i}")
        body, headers = signed_delivery(*SOURCES[source], payload, timestamp=now - 900)
        deliveries.append((source, body, headers))
    for i in range(counts["bad"]):
        body = b'{"id": "malformed-%d", "type": "order.created", ' % i
        deliveries.append(("shop", body, sign_hmac(body, SOURCES["shop"][1][0])))
    rng.shuffle(deliveries)
    return deliveries, unique


async def post_raw(
    reader: asyncio.StreamReader, writer: asyncio.StreamWriter, path: str, body: bytes, headers
) -> tuple[int, bytes]:
    """One HTTP/1.1 keep-alive request; far cheaper on the shared CPUs than a full client."""
    head = "".join(f"{k}: {v}\r\n" for k, v in headers.items())
    writer.write(
        f"POST {path} HTTP/1.1\r\nHost: t\r\nContent-Length: {len(body)}\r\n{head}\r\n".encode()
        + body
    )
    status_line, *lines = (await reader.readuntil(b"\r\n\r\n")).decode().split("\r\n")
    length = next(int(x.split(":")[1]) for x in lines if x.lower().startswith("content-length"))
    return int(status_line.split()[1]), await reader.readexactly(length)


async def send_all(url: str, deliveries: list, concurrency: int = 8) -> list[tuple[int, str]]:
    """POST every delivery over ``concurrency`` connections; (status, delivery_id or '')."""
    host, port = url.removeprefix("http://").split(":")
    queue = iter(deliveries)
    results: list[tuple[int, str]] = []

    async def worker() -> None:
        reader, writer = await asyncio.open_connection(host, int(port))
        try:
            for source, body, headers in queue:
                status, answer = await post_raw(
                    reader, writer, f"/webhooks/{source}", body, headers
                )
                results.append((status, json.loads(answer).get("delivery_id", "")))
        finally:
            writer.close()

    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return results


def test_ten_thousand_deliveries_one_run_each(new_schema, pg):
    schema = new_schema()
    deliveries, unique = build_mix()
    with running_receiver(receiver_env(SOURCES, schema=schema)) as proc:
        statuses = Counter(status for status, _ in asyncio.run(send_all(proc.url, deliveries)))
    assert statuses == {202: 8200, 200: 1000, 401: 700, 400: 100}
    assert sorted(inbox_keys(pg, schema)) == sorted(unique)

    store = WebhookStore(schema_name=schema, max_runs_per_tick=1000)
    requests, _ = drain(pg, store, None, want=len(unique))
    keys = [r.run_key for r in requests]
    assert len(keys) == len(set(keys)) == len(unique)
    assert set(keys) == {f"{source}:{delivery_id}" for source, delivery_id in unique}
    for request in requests:
        ((asset, op_config),) = request.run_config["ops"].items()
        event = op_config["config"]
        assert request.job_name == ROUTED.get(event["event_type"], "webhook_unknown_job")
        assert request.run_key == f"{event['source']}:{event['delivery_id']}"
        assert event["payload"]["id"] == event["delivery_id"]


def test_late_commit_is_not_skipped(receiver, pg, client):
    # A row whose transaction started earlier but commits later must still be routed.
    url, schema = receiver
    store = WebhookStore(schema_name=schema, max_runs_per_tick=500)
    existing = len(inbox_keys(pg, schema))
    _, cursor = drain(pg, store, None, want=existing)
    late = psycopg.connect(**pg._connect_kwargs())
    try:
        late.execute(
            sql.SQL(
                "INSERT INTO {}.webhook_inbox (source, delivery_id, event_type, payload) "
                "VALUES ('shop', 'late-1', 'order.created', %s)"
            ).format(sql.Identifier(schema)),
            (json.dumps(sample_event("order.created", 99, delivery_id="late-1")),),
        )
        early = sample_event("order.created", 98)
        assert deliver(client, "shop", early).status_code == 202
        held = tick(pg, store, cursor)
        assert isinstance(held, dg.SkipReason)  # the committed row waits behind the open one
        assert "1 webhook event(s) held back" in (held.skip_message or "")
        late.commit()
    finally:
        late.close()
    requests, _ = drain(pg, store, cursor, want=2)
    routed = sorted(r.run_key or "" for r in requests)
    assert routed == sorted(["shop:late-1", f"shop:{early['id']}"])


def test_receiver_killed_under_load_loses_no_acknowledged_delivery(new_schema, pg):
    schema = new_schema()
    acked: list[str] = []

    async def load(url: str, stop: asyncio.Event) -> None:
        async with httpx.AsyncClient(base_url=url, timeout=5) as http:

            async def worker(w: int) -> None:
                n = 0
                while not stop.is_set():
                    payload = sample_event("order.created", n, delivery_id=f"kill-{w}-{n}")
                    n += 1
                    body, headers = signed_delivery("hmac", SOURCES["shop"][1], payload)
                    try:
                        response = await http.post("/webhooks/shop", content=body, headers=headers)
                    except httpx.TransportError:
                        return
                    if response.status_code == 202:
                        acked.append(payload["id"])

            await asyncio.gather(*(worker(w) for w in range(8)))

    with running_receiver(receiver_env(SOURCES, schema=schema)) as proc:

        async def scenario() -> None:
            stop = asyncio.Event()
            senders = asyncio.create_task(load(proc.url, stop))
            # Kill mid-load, once a good number of deliveries were acknowledged, however
            # fast or slow the machine is.
            deadline = time.monotonic() + 30
            while len(acked) < 200 and time.monotonic() < deadline:
                await asyncio.sleep(0.02)
            os.kill(proc.process.pid, signal.SIGKILL)
            await asyncio.wait_for(senders, timeout=20)
            stop.set()

        asyncio.run(scenario())
        assert proc.process.wait(timeout=10) == -signal.SIGKILL
    stored = {delivery_id for source, delivery_id in inbox_keys(pg, schema) if source == "shop"}
    assert len(acked) > 100
    assert set(acked) <= stored


# --- processors ----------------------------------------------------------------------------


@pytest.fixture(scope="module")
def processing(new_schema, pg):
    """Definitions for the webhook jobs, pointed at a private schema."""
    schema = new_schema()
    store = WebhookStore(schema_name=schema)
    defs = dg.Definitions(
        assets=[webhook_orders, webhook_payments, webhook_users, webhook_unknown_events],
        jobs=[webhook_orders_job, webhook_payments_job, webhook_users_job, webhook_unknown_job],
        resources={"postgres": pg, "webhook_store": store},
    )
    return defs, store


def run_event(defs: dg.Definitions, inbox_id: int, source: str, payload: dict, **kw):
    from integration_patterns.defs.webhooks.routing import ROUTES, UNKNOWN_ROUTE

    job, asset = ROUTES.get(payload.get("type", ""), UNKNOWN_ROUTE)
    event = {
        "inbox_id": inbox_id,
        "source": source,
        "delivery_id": payload["id"],
        "event_type": payload.get("type", ""),
        "payload": payload,
    }
    return defs.resolve_job_def(job).execute_in_process(
        run_config={"ops": {asset: {"config": event}}}, **kw
    )


def action_of(result) -> str:
    (event,) = result.get_asset_materialization_events()
    return event.step_materialization_data.materialization.metadata["action"].value


def test_order_upsert_is_idempotent_and_order_safe(processing, pg):
    defs, store = processing
    created = sample_event("order.created", 501)
    paid = {**sample_event("order.created", 501), "data": {**created["data"], "status": "paid"}}
    assert action_of(run_event(defs, 10, "stripe", created)) == "inserted"
    assert action_of(run_event(defs, 10, "stripe", created)) == "updated"  # same event again
    assert action_of(run_event(defs, 20, "stripe", paid)) == "updated"
    assert action_of(run_event(defs, 10, "stripe", created)) == "skipped (older)"
    rows = pg.fetch_all(
        f'SELECT order_id, status, amount FROM "{store.schema_name}".webhook_orders '
        "WHERE order_id = 'ord-501'"
    )
    assert [(r[0], r[1], float(r[2])) for r in rows] == [("ord-501", "paid", 61.0)]


def test_payment_and_user_upserts(processing, pg):
    defs, store = processing
    assert run_event(defs, 30, "std", sample_event("payment.received", 7)).success
    assert run_event(defs, 31, "gh", sample_event("user.updated", 7)).success
    schema = store.schema_name
    assert pg.fetch_all(f'SELECT order_id FROM "{schema}".webhook_payments') == [("ord-7",)]
    assert pg.fetch_all(f'SELECT user_id, email FROM "{schema}".webhook_users') == [
        ("usr-7", "user7@example.com")
    ]


def test_unknown_event_archived_and_flagged(processing, pg):
    defs, store = processing
    payload = sample_event("invoice.voided", 3)
    result = run_event(defs, 40, "shop", payload)
    assert result.success
    (check,) = result.get_asset_check_evaluations()
    assert not check.passed and check.severity == dg.AssetCheckSeverity.WARN
    archived = pg.fetch_all(
        f'SELECT event_type, payload FROM "{store.schema_name}".webhook_unknown_events'
    )
    assert archived == [("invoice.voided", payload)]


def test_malformed_event_fails_its_run_with_a_clear_error(processing):
    defs, _ = processing
    payload = {"id": "evt-bad", "type": "order.created", "data": {"customer_id": "c"}}
    result = run_event(defs, 50, "shop", payload, raise_on_error=False)
    assert not result.success
    (failure,) = [e for e in result.all_events if e.event_type_value == "STEP_FAILURE"]
    error = failure.step_failure_data.error
    cause = error.cause if error else None
    assert cause is not None
    assert cause.cls_name == "MalformedEventError"
    assert "has no order_id or id" in cause.message


# --- fuzzing -------------------------------------------------------------------------------


# The schemathesis pytest plugin (from_fixture/parametrize) reads ``node._nodeid``, which
# pytest 9 removed, so the strategies are driven through hypothesis directly.


@pytest.mark.parametrize(
    "mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE]
)
def test_fuzzed_requests_never_get_5xx(receiver, mode):
    schema = schemathesis.openapi.from_url(receiver[0] + "/openapi.json")
    statuses: Counter[int] = Counter()
    operations = {(op.ok().path, op.ok().method.upper()) for op in schema.get_all_operations()}
    assert ("/webhooks/{source}", "POST") in operations
    if mode == schemathesis.GenerationMode.NEGATIVE:
        operations = {("/webhooks/{source}", "POST")}  # the GETs take no input to break
    for path, method in sorted(operations):

        @given(case=schema[path][method].as_strategy(mode))
        @settings(
            max_examples=40,
            deadline=None,
            database=None,
            suppress_health_check=list(HealthCheck),
        )
        def fuzz(case) -> None:
            response = case.call(timeout=10)
            statuses[response.status_code] += 1
            assert response.status_code < 500, (case.method, case.path, response.text)

        fuzz()
    assert statuses[401] + statuses[400] + statuses[404] > 0  # requests reached the verifiers


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False) | st.text(),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(), inner, max_size=4),
    max_leaves=20,
)


def test_fuzzed_signed_bodies_are_stored_or_refused_never_5xx(client, receiver, pg):
    # Properly signed bodies reach JSON parsing and PostgreSQL: odd text (NUL, lone
    # surrogates, huge numbers) must come back as 400 or be stored, never as a 5xx.
    secret = SECRETS["shop"][1]
    accepted: list[str] = []
    statuses: dict[str, int] = {}

    @given(
        payload=st.dictionaries(st.text(max_size=10), JSON_VALUES, max_size=5),
        delivery_id=st.text(max_size=30),
    )
    @example(payload={"nul": "a\x00b"}, delivery_id=f"nul-{uuid.uuid4().hex}")
    @example(payload={"lone": "\ud800"}, delivery_id=f"surrogate-{uuid.uuid4().hex}")
    @example(payload={"big": 10**4000}, delivery_id=f"big-{uuid.uuid4().hex}")
    @settings(
        max_examples=80, deadline=None, database=None, suppress_health_check=list(HealthCheck)
    )
    def fuzz(payload: dict, delivery_id: str) -> None:
        body = json.dumps({**payload, "id": delivery_id}).encode()
        response = client.post("/webhooks/shop", content=body, headers=sign_hmac(body, secret))
        assert response.status_code in (200, 202, 400), response.text
        if response.status_code == 202:
            accepted.append(response.json()["delivery_id"])
        statuses[delivery_id.split("-")[0]] = response.status_code

    fuzz()
    # jsonb refuses NUL and lone surrogates; PostgreSQL numeric takes 4000 digits.
    assert (statuses["nul"], statuses["surrogate"], statuses["big"]) == (400, 400, 202)
    stored = {delivery_id for source, delivery_id in inbox_keys(pg, receiver[1])}
    assert accepted and set(accepted) <= stored
