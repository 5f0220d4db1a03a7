"""Every signature scheme, verified by the real receiver over HTTP.

A receiver that accepts a forged, replayed or re-serialised delivery lets anyone start runs;
one that refuses a rotated secret drops real events during a key roll. Each case below signs
a body the way that provider does and checks the receiver's answer and, for accepted ones,
that the event is in the inbox exactly as sent.
"""

import json
import re
import time
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime
from urllib.parse import urlencode

import httpx
import hypothesis
import pytest
import standardwebhooks.webhooks
import stripe
import svix.webhooks
from hypothesis import strategies as st
from psycopg import sql

from devstack.raw_http import raw_request
from devstack.webhook_fixtures import (
    encode,
    new_standard_secret,
    receiver_env,
    running_receiver,
    sample_event,
    sign_github,
    sign_hmac,
    sign_standard,
    sign_stripe,
    signed_delivery,
)
from integration_patterns.services.webhook_receiver.config import (
    ReceiverSettingsError,
    settings_from_env,
)
from integration_patterns.services.webhook_receiver.inbox import (
    InboxRow,
    ensure_inbox,
    insert_rows,
)
from integration_patterns_tests.conftest import postgres_from_env

OLD, NEW = "old", "new"


@pytest.fixture(scope="module")
def secrets() -> dict[str, dict[str, str]]:
    """Per source, an old (still accepted) and a new secret."""
    return {
        "stripe": {OLD: "whsec_stripe_old_" + uuid.uuid4().hex, NEW: "whsec_stripe_new_x"},
        "gh": {OLD: uuid.uuid4().hex, NEW: uuid.uuid4().hex},
        "std": {OLD: new_standard_secret(), NEW: new_standard_secret()},
        "shop": {OLD: uuid.uuid4().hex, NEW: uuid.uuid4().hex},
    }


SCHEMES = {"stripe": "stripe", "gh": "github", "std": "standard", "shop": "hmac"}
# Extra plain-HMAC sources for the secret-list cases: one secret holding a comma, and a
# rotation whose secrets hold commas, quotes, brackets and a backslash.
COMMA_SECRET = "part-a,part-b-" + uuid.uuid4().hex
ROTATED_SECRETS = ['new,with "quotes" [and] \\ back-' + uuid.uuid4().hex, "old-" + uuid.uuid4().hex]


@pytest.fixture(scope="module")
def receiver(secrets) -> Iterator[tuple[httpx.Client, str]]:
    """A receiver subprocess on a free port writing to a private schema (dropped after)."""
    schema = f"wh_sig_{uuid.uuid4().hex[:8]}"
    sources = {name: (SCHEMES[name], [s[NEW], s[OLD]]) for name, s in secrets.items()}
    sources |= {"comma": ("hmac", [COMMA_SECRET]), "rotated": ("hmac", ROTATED_SECRETS)}
    postgres = postgres_from_env()
    try:
        with running_receiver(receiver_env(sources, schema=schema)) as proc:
            with httpx.Client(base_url=proc.url, timeout=10) as client:
                yield client, schema
    finally:
        with postgres.get_connection() as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        postgres.close()


def stored(schema: str, source: str, delivery_id: str) -> list[tuple]:
    postgres = postgres_from_env()
    try:
        return postgres.fetch_all(
            f'SELECT event_type, payload FROM "{schema}".webhook_inbox '
            "WHERE source = %s AND delivery_id = %s",
            (source, delivery_id),
        )
    finally:
        postgres.close()


def post(client: httpx.Client, source: str, body: bytes, headers: dict[str, str]):
    return client.post(f"/webhooks/{source}", content=body, headers=headers)


SOURCES = list(SCHEMES)


@pytest.mark.parametrize("source", SOURCES)
def test_valid_signature_is_stored_as_sent(receiver, secrets, source):
    client, schema = receiver
    payload = sample_event("order.created", 7)
    body, headers = signed_delivery(SCHEMES[source], [secrets[source][NEW]], payload)
    response = post(client, source, body, headers)
    assert response.status_code == 202, response.text
    assert response.json()["delivery_id"] == payload["id"]
    assert stored(schema, source, payload["id"]) == [("order.created", payload)]


@pytest.mark.parametrize("source", SOURCES)
def test_rotated_secret_still_accepted(receiver, secrets, source):
    # The sender still signs with the previous secret: it must be accepted during the roll.
    client, schema = receiver
    payload = sample_event("user.updated", 3)
    body, headers = signed_delivery(SCHEMES[source], [secrets[source][OLD]], payload)
    assert post(client, source, body, headers).status_code == 202
    assert len(stored(schema, source, payload["id"])) == 1


@pytest.mark.parametrize("source", SOURCES)
def test_wrong_secret_refused_without_hint(receiver, source):
    client, schema = receiver
    payload = sample_event("order.created", 1)
    wrong = new_standard_secret() if source == "std" else "not-the-secret"
    body, headers = signed_delivery(SCHEMES[source], [wrong], payload)
    response = post(client, source, body, headers)
    assert response.status_code == 401
    assert response.json() == {"detail": "signature verification failed"}
    assert stored(schema, source, payload["id"]) == []


@pytest.mark.parametrize("source", SOURCES)
def test_reserialised_body_refused(receiver, secrets, source):
    # Signed compact JSON, sent pretty-printed: same data, different bytes.
    client, schema = receiver
    payload = sample_event("order.created", 2)
    _, headers = signed_delivery(SCHEMES[source], [secrets[source][NEW]], payload)
    assert post(client, source, json.dumps(payload, indent=2).encode(), headers).status_code == 401
    assert stored(schema, source, payload["id"]) == []


MISSING = {
    # source: signature header dropped
    "stripe": "Stripe-Signature",
    "gh": "X-Hub-Signature-256",
    "std": "webhook-signature",
    "shop": "X-Webhook-Signature",
}


@pytest.mark.parametrize("source", SOURCES)
def test_missing_signature_header_refused(receiver, secrets, source):
    client, _ = receiver
    body, headers = signed_delivery(
        SCHEMES[source], [secrets[source][NEW]], sample_event("order.created")
    )
    del headers[MISSING[source]]
    assert post(client, source, body, headers).status_code == 401


TIMESTAMPS = [
    # (source, seconds from now, expected status)
    ("stripe", -301, 401),  # older than Stripe's 300 s tolerance
    ("stripe", -250, 202),  # inside it
    ("stripe", 3600, 202),  # Stripe (like stripe-python) only refuses old timestamps
    ("std", -301, 401),  # Standard Webhooks: too old
    ("std", 301, 401),  # ... and too new
    ("std", -250, 202),
    ("std", 250, 202),
]


@pytest.mark.parametrize(("source", "offset", "expected"), TIMESTAMPS)
def test_replay_window(receiver, secrets, source, offset, expected):
    client, schema = receiver
    payload = sample_event("payment.received", 4)
    body, headers = signed_delivery(
        SCHEMES[source],
        [secrets[source][NEW]],
        payload,
        timestamp=int(time.time()) + offset,
    )
    assert post(client, source, body, headers).status_code == expected
    assert len(stored(schema, source, payload["id"])) == (1 if expected == 202 else 0)


def test_stripe_ignores_non_v1_schemes(receiver, secrets):
    # A valid-looking v0 must not stand in for v1 (downgrade), but may sit beside one.
    client, _ = receiver
    body = encode(sample_event("order.created"))
    t = int(time.time())
    good = sign_stripe(body, [secrets["stripe"][NEW]], timestamp=t)
    v1 = good["Stripe-Signature"].split(",")[1].removeprefix("v1=")
    only_v0 = {"Stripe-Signature": f"t={t},v0={v1}"}
    assert post(client, "stripe", body, only_v0).status_code == 401
    mixed = {"Stripe-Signature": f"t={t},v1={'0' * 64},v0=abc,v1={v1}"}
    assert post(client, "stripe", body, mixed).status_code == 202


def test_standard_accepts_any_listed_signature(receiver, secrets):
    client, _ = receiver
    payload = sample_event("order.created")
    body = encode(payload)
    headers = sign_standard(
        body, [new_standard_secret(), secrets["std"][NEW]], msg_id=str(payload["id"])
    )
    assert " " in headers["webhook-signature"]
    assert post(client, "std", body, headers).status_code == 202


def test_github_takes_delivery_and_event_from_headers(receiver, secrets):
    client, schema = receiver
    body = encode({"action": "opened", "issue": {"number": 1}})
    delivery = str(uuid.uuid4())
    headers = sign_github(body, secrets["gh"][NEW], delivery_id=delivery, event="issues")
    assert post(client, "gh", body, headers).status_code == 202
    assert stored(schema, "gh", delivery)[0][0] == "issues"
    del headers["X-GitHub-Delivery"]
    assert post(client, "gh", body, headers).status_code == 400


def test_hmac_falls_back_to_payload_id(receiver, secrets):
    client, schema = receiver
    payload = sample_event("order.created")
    body = encode(payload)
    assert post(client, "shop", body, sign_hmac(body, secrets["shop"][NEW])).status_code == 202
    assert len(stored(schema, "shop", payload["id"])) == 1
    no_id = encode({"type": "order.created"})
    assert post(client, "shop", no_id, sign_hmac(no_id, secrets["shop"][NEW])).status_code == 400


CONFIG_ERRORS = [
    # (environment, message fragment)
    ({"WEBHOOK_SOURCES": "a:stripe"}, "WEBHOOK_SECRET_A is not set"),
    ({"WEBHOOK_SOURCES": "a:soap", "WEBHOOK_SECRET_A": "x"}, "scheme 'soap'"),
    ({"WEBHOOK_SOURCES": "a:standard", "WEBHOOK_SECRET_A": "plain"}, "whsec_"),
    ({"WEBHOOK_SOURCES": "a:standard", "WEBHOOK_SECRET_A": "whsec_c2hvcnQ="}, "24 bytes"),
    (
        {"WEBHOOK_SOURCES": "a:hmac", "WEBHOOK_SECRET_A": "x", "WEBHOOK_MAX_BODY_BYTES": "-1"},
        "must be positive",
    ),
]


@pytest.mark.parametrize(("env", "fragment"), CONFIG_ERRORS)
def test_bad_configuration_is_named(env, fragment):
    with pytest.raises(ReceiverSettingsError, match=fragment):
        settings_from_env(env)


def test_secrets_never_in_settings_repr():
    settings = settings_from_env(
        {"WEBHOOK_SOURCES": "my-shop:hmac", "WEBHOOK_SECRET_MY_SHOP": "s3cr3t-value,older"}
    )
    # One variable, one secret: the comma is part of it (it used to split it in two).
    assert settings.sources["my-shop"].keys == (b"s3cr3t-value,older",)
    assert "s3cr3t" not in repr(settings)


# --- senders' own libraries ----------------------------------------------------------------


def test_svix_and_standardwebhooks_libraries_sign_what_we_accept(receiver, secrets):
    # The svix client signs with svix-* header names, the reference library with webhook-*:
    # the same scheme, both families accepted (svix-* used to be refused).
    client, schema = receiver
    secret = secrets["std"][NEW]
    for family, sign in (
        ("svix", svix.webhooks.Webhook(secret).sign),
        ("webhook", standardwebhooks.webhooks.Webhook(secret).sign),
    ):
        payload = sample_event("order.created")
        body = encode(payload)
        now = datetime.now(tz=UTC)
        headers = {
            f"{family}-id": payload["id"],
            f"{family}-timestamp": str(int(now.timestamp())),
            f"{family}-signature": sign(payload["id"], now, body.decode()),
        }
        assert post(client, "std", body, headers).status_code == 202, family
        assert len(stored(schema, "std", payload["id"])) == 1


def test_svix_headers_are_verified_not_trusted(receiver, secrets):
    client, _ = receiver
    payload = sample_event("order.created")
    body = encode(payload)
    now = datetime.now(tz=UTC)
    good = svix.webhooks.Webhook(secrets["std"][NEW]).sign(payload["id"], now, body.decode())
    base = {"svix-id": payload["id"], "svix-timestamp": str(int(now.timestamp()))}
    # signed by someone else
    forged = svix.webhooks.Webhook(new_standard_secret()).sign(payload["id"], now, body.decode())
    assert post(client, "std", body, {**base, "svix-signature": forged}).status_code == 401
    # families are not mixed: an id from one and a signature from the other is refused
    mixed = {"webhook-id": payload["id"], "svix-timestamp": base["svix-timestamp"]}
    assert post(client, "std", body, {**mixed, "svix-signature": good}).status_code == 401
    # another id than the one signed
    replayed = {**base, "svix-id": "msg_other", "svix-signature": good}
    assert post(client, "std", body, replayed).status_code == 401


def test_stripe_library_signature_is_accepted(receiver, secrets):
    client, schema = receiver
    payload = sample_event("payment.received")
    body = encode(payload)
    header = stripe.WebhookSignature.generate_signature_header(
        body.decode(), secrets["stripe"][NEW]
    )
    response = post(client, "stripe", body, {"Stripe-Signature": header})
    assert response.status_code == 202, response.text
    assert len(stored(schema, "stripe", payload["id"])) == 1


# --- whitespace around header values -------------------------------------------------------

PADDING = [" ", "\t", "  \t ", " \t"]


def _padded_headers(scheme: str, secret: str, pad: str) -> tuple[str, bytes, list]:
    """A valid delivery whose every header value carries ``pad`` around it (and inside lists)."""
    payload = sample_event("order.created")
    body, headers = signed_delivery(scheme, [secret], payload)
    if scheme == "stripe":
        t, v1 = headers["Stripe-Signature"].split(",")
        headers["Stripe-Signature"] = f"{t},{pad}{v1}"  # after the comma, as some senders do
    if scheme == "standard":
        headers["webhook-signature"] = f"v1,{'A' * 44}{pad}{headers['webhook-signature']}"
    return payload["id"], body, [(k, f"{pad}{v}{pad}") for k, v in headers.items()]


@pytest.mark.parametrize("pad", PADDING, ids=["space", "tab", "mixed", "space-tab"])
@pytest.mark.parametrize("source", SOURCES)
def test_whitespace_around_header_values_keeps_a_signature_valid(receiver, secrets, source, pad):
    # OWS around a field value is not part of it (RFC 9110 5.5) but the server passes
    # trailing whitespace through; httpx refuses to send it, hence the raw socket.
    client, schema = receiver
    delivery_id, body, headers = _padded_headers(SCHEMES[source], secrets[source][NEW], pad)
    response = raw_request(str(client.base_url), "POST", f"/webhooks/{source}", headers, body)
    assert response.status == 202, response.body
    assert len(stored(schema, source, delivery_id)) == 1


# --- upper-case hex ------------------------------------------------------------------------


@pytest.mark.parametrize("source", ["shop", "gh", "stripe"])
def test_upper_case_hex_signatures_are_accepted(receiver, secrets, source):
    client, schema = receiver
    payload = sample_event("order.created")
    body, headers = signed_delivery(SCHEMES[source], [secrets[source][NEW]], payload)
    name = {"shop": "X-Webhook-Signature", "gh": "X-Hub-Signature-256"}.get(
        source, "Stripe-Signature"
    )
    value = headers[name]
    # Only the hex digits change case; "sha256=", "t=" and "v1=" stay as they are.
    headers[name] = re.sub(r"[0-9a-f]{64}", lambda m: m.group(0).upper(), value)
    assert headers[name] != value
    assert post(client, source, body, headers).status_code == 202
    assert len(stored(schema, source, payload["id"])) == 1
    # A wrong digest stays wrong in any case.
    payload = sample_event("order.created")
    body, headers = signed_delivery(SCHEMES[source], ["wrong-secret"], payload)
    headers[name] = re.sub(r"[0-9a-f]{64}", lambda m: m.group(0).upper(), headers[name])
    assert post(client, source, body, headers).status_code == 401


# --- secrets lists -------------------------------------------------------------------------


def test_a_comma_inside_a_secret_is_part_of_it(receiver):
    # WEBHOOK_SECRET_COMMA holds one secret with a comma; a fragment must not verify.
    client, schema = receiver
    for secret, expected in (
        (COMMA_SECRET, 202),
        *((part, 401) for part in COMMA_SECRET.split(",")),
    ):
        payload = sample_event("order.created")
        body = encode(payload)
        assert post(client, "comma", body, sign_hmac(body, secret)).status_code == expected
        assert len(stored(schema, "comma", payload["id"])) == (expected == 202)


def test_a_json_list_rotates_secrets_holding_any_character(receiver):
    client, _schema = receiver
    for secret in ROTATED_SECRETS:
        payload = sample_event("order.created")
        body = encode(payload)
        assert post(client, "rotated", body, sign_hmac(body, secret)).status_code == 202
    fragment = ROTATED_SECRETS[0].split(",")[0]
    body = encode(sample_event("order.created"))
    assert post(client, "rotated", body, sign_hmac(body, fragment)).status_code == 401


_secret_text = st.text(
    st.characters(codec="utf-8", exclude_categories=("Cs", "Cc", "Zs", "Zl", "Zp")),
    min_size=1,
    max_size=40,
)


@hypothesis.given(secrets_list=st.lists(_secret_text, min_size=1, max_size=4))
@hypothesis.settings(max_examples=200, deadline=None, database=None)
def test_any_secrets_survive_the_environment_unsplit(secrets_list):
    # Commas, quotes, brackets, backslashes, non-ASCII: what the sender has is what we key.
    env = receiver_env({"s": ("hmac", secrets_list)}, schema="unused")
    settings = settings_from_env(env)
    assert settings.sources["s"].keys == tuple(s.encode() for s in secrets_list)


SECRET_LIST_ERRORS = [
    # (WEBHOOK_SECRETS_A value, message fragment)
    ("a,b", "JSON array"),  # the old comma form in the list variable
    ('"one"', "JSON array"),  # a JSON string, not a list
    ("[]", "JSON array"),  # empty
    ('["ok", ""]', "JSON array"),  # an empty member
    ('["ok", 3]', "JSON array"),  # not a string
]


@pytest.mark.parametrize(("value", "fragment"), SECRET_LIST_ERRORS)
def test_malformed_secret_lists_are_named_without_their_value(value, fragment):
    with pytest.raises(ReceiverSettingsError, match=fragment) as refused:
        settings_from_env({"WEBHOOK_SOURCES": "a:hmac", "WEBHOOK_SECRETS_A": value})
    assert "WEBHOOK_SECRETS_A" in str(refused.value) and value not in str(refused.value)


def test_both_secret_forms_at_once_are_refused():
    env = {"WEBHOOK_SOURCES": "a:hmac", "WEBHOOK_SECRET_A": "x", "WEBHOOK_SECRETS_A": '["y"]'}
    with pytest.raises(ReceiverSettingsError, match="not both"):
        settings_from_env(env)


# --- GitHub: only the body is signed ---------------------------------------------------------

_REPO = {"id": 1296269, "full_name": "octocat/Hello-World"}
_SENDER = {"login": "octocat", "id": 1}


def github_push(n: int) -> dict:
    return {
        "ref": "refs/heads/main",
        "before": f"{n:040x}",
        "after": f"{n + 1:040x}",
        "commits": [{"id": f"{n + 1:040x}", "message": f"change {n} {uuid.uuid4()}"}],
        "pusher": {"name": "octocat"},
        "repository": _REPO,
        "sender": _SENDER,
    }


def github_issue(action: str = "opened") -> dict:
    number = int(uuid.uuid4().int % 10_000)
    issue = {"number": number, "title": "Found a bug", "state": "open"}
    return {"action": action, "issue": issue, "repository": _REPO, "sender": _SENDER}


def github_pull_request() -> dict:
    number = int(uuid.uuid4().int % 10_000)
    pull = {"number": number, "state": "open", "title": "Fix", "merged": False}
    return {
        "action": "opened",
        "number": number,
        "pull_request": pull,
        "repository": _REPO,
        "sender": _SENDER,
    }


def github_issue_comment() -> dict:
    return {**github_issue("created"), "comment": {"id": 5, "body": "Me too"}}


def send_github(client, secret: str, body: bytes, event: str, delivery: str | None = None):
    delivery = delivery or str(uuid.uuid4())
    headers = sign_github(body, secret, delivery_id=delivery, event=event)
    return delivery, post(client, "gh", body, headers)


def gh_rows(schema: str) -> int:
    postgres = postgres_from_env()
    try:
        return postgres.fetch_all(
            f'SELECT count(*) FROM "{schema}".webhook_inbox WHERE source = %s', ("gh",)
        )[0][0]
    finally:
        postgres.close()


def test_github_replay_under_a_new_delivery_id_is_a_duplicate(receiver, secrets):
    client, schema = receiver
    secret = secrets["gh"][NEW]
    body = encode(github_push(1))
    first, response = send_github(client, secret, body, "push")
    assert response.status_code == 202
    before = gh_rows(schema)
    # The same signed body, captured and replayed with fresh (unsigned) delivery ids.
    for _ in range(3):
        delivery, replay = send_github(client, secret, body, "push")
        assert replay.status_code == 200 and replay.json()["status"] == "duplicate"
        assert stored(schema, "gh", delivery) == []
    assert gh_rows(schema) == before
    # Another event (another body) still gets in; so does the first id's own redelivery
    # being answered as a duplicate rather than an error.
    assert send_github(client, secret, encode(github_push(2)), "push")[1].status_code == 202
    assert send_github(client, secret, body, "push", delivery=first)[1].status_code == 200


MISLABELLED = [
    # (body, unsigned X-GitHub-Event a replayer chose)
    (github_push, "issues"),
    (github_push, "pull_request"),
    (github_issue, "push"),
    (github_issue, "pull_request"),
    (github_pull_request, "issues"),
    (github_issue_comment, "issues"),  # shares "issue" with the issues event
    (github_pull_request, "ping"),
]


@pytest.mark.parametrize(
    ("make_body", "event"), MISLABELLED, ids=[f"{m.__name__}-as-{e}" for m, e in MISLABELLED]
)
def test_an_unsigned_event_header_cannot_relabel_a_payload(receiver, secrets, make_body, event):
    client, schema = receiver
    body = make_body(3) if make_body is github_push else make_body()
    delivery, response = send_github(client, secrets["gh"][NEW], encode(body), event)
    assert response.status_code == 400
    assert "does not match the payload" in response.json()["detail"]
    assert stored(schema, "gh", delivery) == []


@pytest.mark.parametrize(
    ("make_body", "event"),
    [
        (lambda: github_push(4), "push"),
        (github_issue, "issues"),
        (github_pull_request, "pull_request"),
        (github_issue_comment, "issue_comment"),
        (lambda: {"zen": "Keep it simple.", "hook_id": 42, "hook": {}}, "ping"),
        (lambda: {"action": "started", "starred_at": str(uuid.uuid4())}, "star"),  # unchecked
    ],
    ids=["push", "issues", "pull_request", "issue_comment", "ping", "star"],
)
def test_correctly_labelled_github_events_are_stored(receiver, secrets, make_body, event):
    client, schema = receiver
    delivery, response = send_github(client, secrets["gh"][NEW], encode(make_body()), event)
    assert response.status_code == 202, response.text
    assert stored(schema, "gh", delivery)[0][0] == event


def test_github_form_encoded_delivery_is_accepted(receiver, secrets):
    # GitHub's "application/x-www-form-urlencoded" option: payload=<JSON>, signed as sent.
    client, schema = receiver
    payload = github_issue()
    body = urlencode({"payload": json.dumps(payload)}).encode()
    delivery = str(uuid.uuid4())
    headers = sign_github(body, secrets["gh"][NEW], delivery_id=delivery, event="issues")
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    assert post(client, "gh", body, headers).status_code == 202
    assert stored(schema, "gh", delivery) == [("issues", payload)]
    # Replayed under another id, it is the same body: a duplicate.
    headers["X-GitHub-Delivery"] = str(uuid.uuid4())
    assert post(client, "gh", body, headers).status_code == 200


@pytest.mark.parametrize(
    ("body", "status", "fragment"),
    [
        (b"payload=1&payload=2", 400, "exactly one"),  # two fields
        (b"other=%7B%7D", 400, "exactly one"),  # no payload field
        (b"payload=%5B1%5D", 400, "JSON object"),  # JSON, not an object
        (b"payload=%FF", 400, "UTF-8 JSON"),  # not UTF-8
    ],
)
def test_malformed_github_forms_are_400(receiver, secrets, body, status, fragment):
    client, _ = receiver
    headers = sign_github(body, secrets["gh"][NEW], delivery_id=str(uuid.uuid4()), event="x")
    headers["Content-Type"] = "application/x-www-form-urlencoded; charset=utf-8"
    response = post(client, "gh", body, headers)
    assert response.status_code == status and fragment in response.json()["detail"]


def test_form_encoded_bodies_from_other_schemes_are_415(receiver, secrets):
    client, _ = receiver
    body = urlencode({"payload": json.dumps(sample_event("order.created"))}).encode()
    headers = sign_hmac(body, secrets["shop"][NEW])
    headers["Content-Type"] = "application/x-www-form-urlencoded"
    response = post(client, "shop", body, headers)
    assert response.status_code == 415
    assert "GitHub only" in response.json()["detail"]


# --- the same delivery id with another body ------------------------------------------------


def test_same_id_other_body_keeps_the_first_and_is_counted(receiver, secrets):
    client, schema = receiver

    def conflicts() -> int:
        return client.get("/stats").json()["conflicting_redeliveries"]

    first = sample_event("order.created", 1)
    msg_id = first["id"]
    second = {**first, "data": {**first["data"], "amount": 999}}
    for payload, status in ((first, 202), (first, 200)):
        body, headers = signed_delivery("standard", [secrets["std"][NEW]], payload)
        assert post(client, "std", body, headers).status_code == status
    before = conflicts()  # a plain redelivery (same body) is not a conflict
    body, headers = signed_delivery("standard", [secrets["std"][NEW]], second)
    response = post(client, "std", body, headers)
    assert response.status_code == 200 and response.json()["status"] == "duplicate"
    assert conflicts() == before + 1
    assert stored(schema, "std", msg_id) == [("order.created", first)]  # first write wins
    # Same JSON, other bytes (key order, spacing): not a conflict.
    body = json.dumps(dict(reversed(list(first.items()))), indent=1).encode()
    headers = sign_standard(body, [secrets["std"][NEW]], msg_id=msg_id)
    assert post(client, "std", body, headers).status_code == 200
    assert conflicts() == before + 1


# --- migrating an inbox created before body_digest ----------------------------------------

_FIRST_RELEASE_DDL = """
CREATE SCHEMA {schema};
CREATE TABLE {schema}.webhook_inbox (
    id          bigserial PRIMARY KEY,
    source      text        NOT NULL,
    delivery_id text        NOT NULL,
    event_type  text,
    payload     jsonb       NOT NULL,
    headers     jsonb       NOT NULL DEFAULT '{{}}'::jsonb,
    received_at timestamptz NOT NULL DEFAULT now(),
    txid        bigint      NOT NULL DEFAULT (pg_current_xact_id()::text::bigint),
    CONSTRAINT webhook_inbox_delivery UNIQUE (source, delivery_id)
);
INSERT INTO {schema}.webhook_inbox (source, delivery_id, payload) VALUES ('gh', 'old', '{{}}');
"""


def test_an_existing_inbox_gains_body_digest_idempotently():
    schema = f"wh_migrate_{uuid.uuid4().hex[:8]}"
    postgres = postgres_from_env()
    try:
        with postgres.get_connection() as conn:
            conn.execute(_FIRST_RELEASE_DDL.format(schema=schema))
        for _ in range(2):  # a second start changes nothing
            with postgres.get_connection() as conn:
                ensure_inbox(conn, schema)
        row = InboxRow("gh", "new", "push", "{}", {}, "ab" * 32)
        replay = InboxRow("gh", "newer", "push", "{}", {}, "ab" * 32)
        with postgres.get_connection() as conn:
            conn.autocommit = True
            assert insert_rows(conn, schema, [row, replay]) == {("gh", "new")}
        ids = postgres.fetch_all(
            f'SELECT delivery_id, body_digest FROM "{schema}".webhook_inbox ORDER BY id'
        )
        assert ids == [("old", None), ("new", "ab" * 32)]
    finally:
        with postgres.get_connection() as conn:
            conn.execute(sql.SQL("DROP SCHEMA IF EXISTS {} CASCADE").format(sql.Identifier(schema)))
        postgres.close()
