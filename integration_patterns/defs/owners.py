"""Who answers for each asset: the team named in the UI's owner field and in alerts.

One home for the owner strings, so a team's rename is one edit. Dagster takes owners as
``team:<name>`` or an e-mail address.
"""

INTEGRATIONS = ["team:integrations"]
"""The five patterns' assets and the external systems they read and write."""

PLATFORM = ["team:platform"]
"""The code location's own health probes."""
