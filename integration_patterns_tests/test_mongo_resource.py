"""MongoResource against the real MongoDB-wire server: writes, the $group/$max pipeline, faults."""

import datetime as dt
import time

import pytest

from integration_patterns.resources.health import ServiceUnavailableError
from integration_patterns_tests.conftest import mongo_from_env


def test_insert_then_group_and_max(mongo, unique):
    collection = f"events_{unique}"
    base = dt.datetime(2026, 11, 1, tzinfo=dt.UTC)
    docs = [
        {"user_id": "1", "timestamp": base + dt.timedelta(hours=1)},
        {"user_id": "1", "timestamp": base + dt.timedelta(hours=5)},
        {"user_id": "2", "timestamp": base + dt.timedelta(hours=2)},
        {"user_id": "2", "timestamp": base - dt.timedelta(days=3)},  # before the window
    ]
    mongo.db()[collection].insert_many(docs)
    try:
        rows = mongo.aggregate(
            collection,
            [
                {"$match": {"timestamp": {"$gte": base}}},
                {"$group": {"_id": "$user_id", "n": {"$sum": 1}, "last": {"$max": "$timestamp"}}},
                {"$sort": {"n": -1, "_id": 1}},
            ],
        )
    finally:
        mongo.db()[collection].drop()
    assert [(r["_id"], r["n"]) for r in rows] == [("1", 2), ("2", 1)]
    last = rows[0]["last"].replace(tzinfo=dt.UTC)
    assert last == base + dt.timedelta(hours=5)


def test_pool_settings_are_what_the_client_uses(mongo):
    options = mongo.client().options.pool_options
    settings = mongo.pool_settings()
    assert options.max_pool_size == settings["maxPoolSize"]
    assert options.min_pool_size == settings["minPoolSize"]


def test_closed_port_fails_within_the_selection_timeout(free_port):
    resource = mongo_from_env(port=free_port, server_selection_timeout_ms=1000)
    started = time.monotonic()
    with pytest.raises(ServiceUnavailableError, match=rf"MongoDB at 127\.0\.0\.1:{free_port}"):
        resource.aggregate("anything", [{"$match": {}}])
    assert time.monotonic() - started < 5
    assert not resource.health().ok
    resource.close()
