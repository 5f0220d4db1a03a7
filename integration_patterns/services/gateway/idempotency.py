"""Idempotent launches: the same ``Idempotency-Key`` (per token subject) gives the same run.

The key is remembered as a run tag, written by Dagster together with the run itself, so
there is no second store that could disagree with the runs (a crash between "launched" and
"remembered" cannot happen). A repeat looks the tag up (``runsOrError`` filtered by tag) and
answers with the same run; a repeat with a different job or body is refused with 422.
Repeats racing in one process are serialised per key; replicas racing on one key could both
launch (route by key, or see the issue note for the PostgreSQL-table alternative).
"""

import asyncio
import hashlib
import json
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from integration_patterns.services.gateway.dagster_api.client import DagsterClient
from integration_patterns.services.gateway.http_errors import GatewayError, dagster_call
from integration_patterns.services.gateway.models import LaunchRequest

IDEMPOTENCY_TAG = "gateway/idempotency_key"
REQUEST_TAG = "gateway/request_sha256"


class KeyedLocks:
    """One asyncio lock per key, dropped when nobody holds or waits for it."""

    def __init__(self) -> None:
        self._locks: dict[str, tuple[asyncio.Lock, int]] = {}

    @asynccontextmanager
    async def hold(self, key: str) -> AsyncIterator[None]:
        """Hold the lock for ``key``."""
        lock, users = self._locks.get(key, (asyncio.Lock(), 0))
        self._locks[key] = (lock, users + 1)
        try:
            async with lock:
                yield
        finally:
            lock, users = self._locks[key]
            if users <= 1:
                del self._locks[key]
            else:
                self._locks[key] = (lock, users - 1)


def _sha256(*parts: str) -> str:
    return hashlib.sha256("\x1f".join(parts).encode()).hexdigest()


def _request_fingerprint(job: str, body: LaunchRequest) -> str:
    return _sha256(job, json.dumps(body.model_dump(), sort_keys=True, separators=(",", ":")))


async def launch_once(
    dagster: DagsterClient,
    locks: KeyedLocks,
    *,
    subject: str,
    key: str,
    job: str,
    request: LaunchRequest,
    tags: dict[str, str],
) -> tuple[str, bool]:
    """Launch ``job`` once per ``subject`` and ``key``: the run id, True if an earlier one."""
    key_hash = _sha256(subject, key)
    fingerprint = _request_fingerprint(job, request)
    async with locks.hold(key_hash):
        existing = await dagster_call(dagster.find_run_by_tag, IDEMPOTENCY_TAG, key_hash)
        if existing is not None:
            if existing.tags.get(REQUEST_TAG) != fingerprint:
                raise GatewayError(422, "Idempotency-Key was already used with a different request")
            return existing.run_id, True
        tags = {**tags, IDEMPOTENCY_TAG: key_hash, REQUEST_TAG: fingerprint}
        run_id = await dagster_call(dagster.launch, job, run_config=request.run_config, tags=tags)
        return run_id, False
