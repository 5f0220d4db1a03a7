"""HTTP APIs: OAuth2 client credentials (``httpx.Auth``), a resilient REST client, paginators.

One module per concept: ``auth`` (tokens), ``client`` (what each response means, logging),
``retry`` (backoff and the waits a server suggests), ``budget`` (the process-wide request
budget), ``breaker`` (circuit breaker), ``pagination`` (paginators), ``redaction``
(masking secrets), ``errors`` (typed errors), ``stats`` (counters, latency percentiles)
and ``resource`` (the Dagster resource).

Import each name from its module (``from integration_patterns.resources.http.client import
RestClient``): this package re-exports nothing, so the code location, which loads
``http.resource`` only, does not import httpx (and with it rich and pygments, for httpx's
command line) until a client is made.
"""
