"""The partner API resource and its wiring from the environment (secrets via ``dg.EnvVar``)."""

from collections.abc import Mapping
from typing import ClassVar

import dagster as dg
from pydantic import Field

from integration_patterns.resources.env import EnvConfigured
from integration_patterns.resources.http.resource import RestApiResource


class PartnerApiResource(EnvConfigured, RestApiResource):
    """The partner's REST API: the generic OAuth2 REST resource plus this pattern's fields."""

    scope: str = Field(default="records:read", description="Space-separated scopes to request.")
    source_name: str = Field(
        default="partner_api", description="Source label written with every record."
    )

    env_vars: ClassVar[Mapping[str, str]] = {
        "base_url": "PARTNER_API_BASE_URL",
        "client_id": "PARTNER_API_CLIENT_ID",
        "client_secret": "PARTNER_API_CLIENT_SECRET",
        "rate_limit_per_minute": "PARTNER_API_RATE_LIMIT_PER_MINUTE",
    }


@dg.definitions
def external_api_resources() -> dg.Definitions:
    """The ``partner_api`` resource used by the partner-record assets."""
    return dg.Definitions(resources={"partner_api": PartnerApiResource.from_env_vars()})
