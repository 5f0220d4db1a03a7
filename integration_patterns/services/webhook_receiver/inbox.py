"""The receiver's view of the inbox: the contract lives in ``integration_patterns.inbox``.

Kept as a name the receiver's modules import; the schema, the insert and the status values
have one home shared with the Dagster side.
"""

from integration_patterns.inbox import (
    INBOX_TABLE,
    InboxRow,
    ensure_inbox,
    inbox_table,
    insert_rows,
    insert_rows_async,
)

__all__ = [
    "INBOX_TABLE",
    "InboxRow",
    "ensure_inbox",
    "inbox_table",
    "insert_rows",
    "insert_rows_async",
]
