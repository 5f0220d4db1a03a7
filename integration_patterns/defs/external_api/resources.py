"""Wires the partner API resource from the environment (secrets only through ``dg.EnvVar``)."""

import dagster as dg

from integration_patterns.resources.http import PartnerApiResource


@dg.definitions
def external_api_resources() -> dg.Definitions:
    """The ``partner_api`` resource used by the partner-record assets."""
    return dg.Definitions(
        resources={
            "partner_api": PartnerApiResource(
                base_url=dg.EnvVar("PARTNER_API_BASE_URL"),
                client_id=dg.EnvVar("PARTNER_API_CLIENT_ID"),
                client_secret=dg.EnvVar("PARTNER_API_CLIENT_SECRET"),
                rate_limit_per_minute=dg.EnvVar.int("PARTNER_API_RATE_LIMIT_PER_MINUTE"),
            )
        }
    )
