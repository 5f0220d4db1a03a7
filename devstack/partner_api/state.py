"""The simulator's configuration, its deterministic records, and what it remembers."""

import base64
import binascii
import json
import random
import threading
import time
from collections import Counter, deque
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from typing import Any

API_VERSION = "2.4.0"
EPOCH = datetime(2026, 1, 1, tzinfo=UTC)
FAULT_KINDS = ("rate_limit", "rate_limit_date", "server_error", "revoke", "slow", "drop")
SCRIPTABLE = (*FAULT_KINDS, "403")
MALFORMED_KINDS = ("missing_id", "bad_value", "bad_timestamp", "missing_metrics")


@dataclass
class SimulatorConfig:
    """Everything a test may change; ``POST /admin/config`` takes any subset as JSON."""

    clients: dict[str, str] = field(default_factory=lambda: {"partner-demo": "partner-demo-pw"})
    scopes: list[str] = field(default_factory=lambda: ["records:read"])
    token_ttl: float = 3600.0
    total_records: int = 250
    max_page_size: int = 1000
    #: fault kind -> probability per data request (their sum must stay <= 1)
    faults: dict[str, float] = field(default_factory=dict)
    malformed_rate: float = 0.0
    retry_after_seconds: int = 1
    slow_seconds: float = 2.0
    #: server limit: at most ``rate_limit`` data requests in any ``rate_window`` seconds
    rate_limit: int = 0
    rate_window: float = 60.0
    #: arrival jitter forgiven when judging a violation (the client cannot beat the network)
    rate_tolerance: float = 0.05
    #: next data requests get these faults, in order, before any random draw
    script: list[str] = field(default_factory=list)
    #: every data request gets this fault (e.g. "403"); None turns it off
    always: str | None = None
    #: after this many data pages have been served, revoke every live token once
    revoke_after_pages: int | None = None
    seed: int = 7

    def update(self, patch: dict[str, Any]) -> None:
        """Apply a JSON patch, refusing unknown keys and fault kinds."""
        for key, value in patch.items():
            if not hasattr(self, key):
                raise ValueError(f"unknown setting {key!r}")
            setattr(self, key, value)
        unknown = set(self.faults) - set(FAULT_KINDS)
        if unknown:
            raise ValueError(f"unknown fault kinds {sorted(unknown)}; known: {FAULT_KINDS}")
        if sum(self.faults.values()) > 1:
            raise ValueError("fault probabilities sum above 1")
        bad = [s for s in [*self.script, self.always] if s is not None and s not in SCRIPTABLE]
        if bad:
            raise ValueError(f"unknown scripted faults {bad}; known: {SCRIPTABLE}")


def record(index: int, malformed_rate: float) -> dict[str, Any]:
    """The partner's record number ``index``: deterministic, so tests know the full set."""
    item: dict[str, Any] = {
        "external_id": f"P{index:06d}",
        "display_name": f"Partner {index:04d}",
        "metrics": {"value": round((index * 7919) % 10000 / 100, 2), "unit": "EUR"},
        "created_at": created_at(index).isoformat().replace("+00:00", "Z"),
        "api_version": API_VERSION,
    }
    # A multiplicative hash spreads malformed items evenly instead of clustering them.
    if (index * 2654435761) % 1000 < malformed_rate * 1000:
        kind = MALFORMED_KINDS[index % len(MALFORMED_KINDS)]
        if kind == "missing_id":
            del item["external_id"]
        elif kind == "bad_value":
            item["metrics"]["value"] = "n/a"
        elif kind == "bad_timestamp":
            item["created_at"] = "yesterday-ish"
        else:
            del item["metrics"]
    return item


def created_at(index: int) -> datetime:
    """Record ``index`` was created ``index`` minutes after the epoch of the data set."""
    return EPOCH + timedelta(minutes=index)


def encode_cursor(offset: int, since: str | None) -> str:
    """An opaque cursor, as partners hand out."""
    raw = json.dumps({"o": offset, "s": since}).encode()
    return base64.urlsafe_b64encode(raw).decode().rstrip("=")


def decode_cursor(cursor: str) -> tuple[int, str | None]:
    """Undo :func:`encode_cursor`; ValueError for anything we did not issue."""
    try:
        raw = base64.urlsafe_b64decode(cursor + "=" * (-len(cursor) % 4))
        data = json.loads(raw)
        return int(data["o"]), data["s"]
    except (binascii.Error, ValueError, KeyError, TypeError) as exc:
        raise ValueError("invalid cursor") from exc


@dataclass
class Token:
    """One issued access token."""

    client_id: str
    scopes: list[str]
    expires_at: float
    uses: int = 0
    revoked: bool = False


class SimulatorState:
    """Config, tokens and statistics, guarded by one lock.

    Handlers run on one event loop, but admin and data calls interleave at every ``await``.
    """

    def __init__(self, config: SimulatorConfig) -> None:
        self.config = config
        self.lock = threading.Lock()
        self.reset()

    def reset(self) -> None:
        """Forget tokens and statistics; restart the fault generator from the seed."""
        self.rng = random.Random(self.config.seed)
        self.tokens: dict[str, Token] = {}
        self.window: deque[float] = deque()
        self.token_requests = 0
        self.data_requests = 0
        self.pages_served = 0
        self.revoked_after_pages = False
        self.faults = Counter[str]()
        self.statuses = Counter[str]()
        self.violations: list[dict[str, Any]] = []
        self.per_minute = Counter[str]()
        self.max_in_window = 0
        self.arrivals: deque[dict[str, Any]] = deque(maxlen=5000)

    def stats(self) -> dict[str, Any]:
        """What tests assert on (tokens included: this is a dev tool, never deployed)."""
        return {
            "token_requests": self.token_requests,
            "tokens_issued": len(self.tokens),
            "issued_tokens": list(self.tokens),
            "data_requests": self.data_requests,
            "pages_served": self.pages_served,
            "faults": dict(self.faults),
            "statuses": dict(self.statuses),
            "violations": self.violations,
            "requests_per_minute": dict(self.per_minute),
            "max_requests_in_window": self.max_in_window,
            "arrivals": list(self.arrivals),
        }

    def count_request(self, now: float) -> dict[str, Any] | None:
        """Count one data request in the sliding window; return a violation if it broke it."""
        cfg = self.config
        self.per_minute[time.strftime("%H:%M", time.gmtime(time.time()))] += 1
        horizon = now - cfg.rate_window
        while self.window and self.window[0] <= horizon:
            self.window.popleft()
        self.window.append(now)
        self.max_in_window = max(self.max_in_window, len(self.window))
        if not cfg.rate_limit:
            return None
        strict = sum(1 for t in self.window if t > horizon + cfg.rate_tolerance)
        if strict > cfg.rate_limit:
            violation = {"at": time.time(), "in_window": strict, "limit": cfg.rate_limit}
            self.violations.append(violation)
            return violation
        return None

    def rate_headers(self, now: float) -> dict[str, str]:
        """X-RateLimit-* as many partners send them; Reset is seconds until a slot frees."""
        cfg = self.config
        if not cfg.rate_limit:
            return {}
        remaining = max(0, cfg.rate_limit - len(self.window))
        reset = self.window[0] + cfg.rate_window - now if self.window else 0.0
        return {
            "X-RateLimit-Limit": str(cfg.rate_limit),
            "X-RateLimit-Remaining": str(remaining),
            "X-RateLimit-Reset": f"{max(0.0, reset):.3f}",
        }

    def draw_fault(self) -> str | None:
        """The fault for this data request: scripted first, then the seeded draw."""
        cfg = self.config
        if cfg.always:
            return cfg.always
        if cfg.script:
            return cfg.script.pop(0)
        roll, edge = self.rng.random(), 0.0
        for kind in FAULT_KINDS:
            edge += cfg.faults.get(kind, 0.0)
            if roll < edge:
                return kind
        return None
