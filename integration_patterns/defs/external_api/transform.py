"""Partner records -> the internal schema (id, name, value, timestamp, source), or quarantine.

Validation is strict and explicit: an item that does not carry an id, a name, a finite
numeric value and an ISO 8601 timestamp is never guessed into shape; it is set aside with
the reason, so nothing the partner sent is lost and nothing wrong is loaded.
"""

import hashlib
import json
import math
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any


@dataclass(frozen=True)
class PartnerBatch:
    """What one fetch returned: the raw items and where the fetch started."""

    source: str
    since: str | None
    api_versions: list[str]
    items: list[Any] = field(default_factory=list)
    pages: int = 0


@dataclass(frozen=True)
class PartnerRecord:
    """One record in the internal schema."""

    id: str
    name: str
    value: float
    timestamp: datetime
    api_version: str | None


@dataclass(frozen=True)
class Quarantined:
    """An item that failed validation, the reason, and the payload exactly as received."""

    external_id: str | None
    reason: str
    payload: Any

    @property
    def payload_hash(self) -> str:
        """A stable key, so a malformed item fetched twice is quarantined once."""
        canonical = json.dumps(self.payload, sort_keys=True, default=str)
        return hashlib.sha256(canonical.encode()).hexdigest()

    @property
    def timestamp(self) -> datetime | None:
        """The item's created_at when it parses, so the high-water mark can move past it."""
        if isinstance(self.payload, dict):
            return parse_timestamp(self.payload.get("created_at"))
        return None


def parse_timestamp(value: Any) -> datetime | None:
    """An aware UTC datetime from ISO 8601 text, or None."""
    if not isinstance(value, str):
        return None
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        return None
    return parsed.astimezone(UTC) if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def to_internal(item: Any) -> PartnerRecord | Quarantined:
    """Validate one partner item; return the record or the reason it was quarantined."""
    if not isinstance(item, dict):
        return Quarantined(None, f"not an object: {type(item).__name__}", item)
    external_id = item.get("external_id")
    if not isinstance(external_id, str) or not external_id.strip():
        return Quarantined(None, "missing external_id", item)
    name = item.get("display_name")
    if not isinstance(name, str) or not name.strip():
        return Quarantined(external_id, "missing display_name", item)
    metrics = item.get("metrics")
    if not isinstance(metrics, dict):
        return Quarantined(external_id, "missing metrics", item)
    value = metrics.get("value")
    if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
        return Quarantined(external_id, f"metrics.value is not a number: {value!r:.40}", item)
    timestamp = parse_timestamp(item.get("created_at"))
    if timestamp is None:
        raw = item.get("created_at")
        return Quarantined(external_id, f"created_at is not ISO 8601: {raw!r:.40}", item)
    version = item.get("api_version")
    return PartnerRecord(
        external_id, name, float(value), timestamp, version if isinstance(version, str) else None
    )


def split(items: list[Any]) -> tuple[list[PartnerRecord], list[Quarantined], int]:
    """Valid records (one per id, the last one wins), quarantined items, duplicates dropped."""
    records: dict[str, PartnerRecord] = {}
    quarantined: list[Quarantined] = []
    duplicates = 0
    for item in items:
        result = to_internal(item)
        if isinstance(result, Quarantined):
            quarantined.append(result)
            continue
        duplicates += result.id in records
        records[result.id] = result
    return list(records.values()), quarantined, duplicates
