"""Joining the two sources: id normalisation, the engagement score, and the data checks.

MongoDB stores user ids as strings (sometimes padded, sometimes not ids at all) where
PostgreSQL has integers. Ids are normalised once, here, and every event that cannot be
attributed to a known customer is counted rather than dropped silently.
"""

import re
from typing import TYPE_CHECKING, Any, cast

from integration_patterns.defs.enrichment.queries import CUSTOMER_COLUMNS

if TYPE_CHECKING:  # pandas is imported by the steps that use it, not by loading the location
    import pandas as pd

ENRICHED_COLUMNS = [*CUSTOMER_COLUMNS, "event_count", "last_event_at", "engagement_score"]
SCORE_MAX = 100
_DIGITS = re.compile(r"^\d{1,18}$")  # fits a PostgreSQL bigint


def total(values: Any) -> int:
    """The sum of a Series or mask as a plain int (counts for metadata)."""
    import numpy as np

    return int(np.asarray(values).sum())


def normalise_user_id(raw: Any) -> int | None:
    """The integer customer id behind a MongoDB user id, or None when there is none.

    Accepts ints and decimal strings with surrounding spaces or leading zeros ("0042" -> 42);
    rejects None, booleans, empty or non-numeric strings ("guest-7").
    """
    if isinstance(raw, bool) or raw is None:
        return None
    if isinstance(raw, int):
        return raw if raw > 0 else None
    if isinstance(raw, str):
        text = raw.strip()
        if _DIGITS.match(text):
            value = int(text)
            return value if value > 0 else None
    return None


def normalise_events(raw: "pd.DataFrame") -> "tuple[pd.DataFrame, dict[str, int]]":
    """Merge the raw per-user rows onto integer ids (" 0042" and "42" are one user)."""
    ids = raw["raw_user_id"].map(normalise_user_id)
    valid = ids.notna()
    invalid_events = total(raw.loc[~valid, "event_count"])
    frame = raw.loc[valid, ["event_count", "last_event_at"]].assign(
        customer_id=ids[valid].astype("int64")
    )
    merged = (
        frame.groupby("customer_id", sort=True)
        .agg(event_count=("event_count", "sum"), last_event_at=("last_event_at", "max"))
        .reset_index()
    )
    return merged, {
        "raw_user_ids": len(raw),
        "invalid_user_id_events": invalid_events,
        "merged_user_ids": total(valid) - len(merged),
    }


def engagement_score(order_count: "pd.Series", event_count: "pd.Series") -> "pd.Series":
    """``min(100, orders * 10 + events * 2)``, vectorised."""
    return (order_count * 10 + event_count * 2).clip(upper=SCORE_MAX).astype("int64")


def enrich(
    customers: "pd.DataFrame", events: "pd.DataFrame"
) -> "tuple[pd.DataFrame, dict[str, int]]":
    """One row per customer with events joined on the normalised id and the score.

    Customers without events get zero events; events of unknown customers are counted.
    """
    merged, counts = normalise_events(events)
    joined = customers.merge(merged, on="customer_id", how="left", validate="one_to_one")
    joined["event_count"] = joined["event_count"].fillna(0).astype("int64")
    joined["engagement_score"] = engagement_score(
        cast("pd.Series", joined["order_count"]), cast("pd.Series", joined["event_count"])
    )
    unknown = ~merged["customer_id"].isin(customers["customer_id"])
    counts |= {
        "customers_without_events": total(joined["event_count"] == 0),
        "unknown_users": total(unknown),
        "unknown_user_events": total(merged.loc[unknown, "event_count"]),
    }
    ordered = joined.sort_values(
        ["engagement_score", "total_spent", "customer_id"], ascending=[False, False, True]
    )
    return cast("pd.DataFrame", ordered[ENRICHED_COLUMNS]).reset_index(drop=True), counts


def scores_out_of_range(frame: "pd.DataFrame") -> int:
    """Rows whose score is missing or outside 0..100."""
    score = frame["engagement_score"]
    return total(score.isna() | (score < 0) | (score > SCORE_MAX))


def duplicate_or_missing_ids(frame: "pd.DataFrame") -> int:
    """Rows that break "one row per customer": a NULL id or an id seen before."""
    ids = frame["customer_id"]
    return total(ids.isna()) + total(ids.dropna().duplicated())


def top(frame: "pd.DataFrame", n: int = 10) -> "pd.DataFrame":
    """The n most engaged customers, for previews and the demo."""
    columns = ["customer_id", "name", "order_count", "total_spent", "event_count"]
    return cast("pd.DataFrame", frame.head(n)[[*columns, "engagement_score"]])
