"""A partner-API simulator: OAuth2 client credentials, cursor-paginated records, faults.

Dev tooling, not product code: the tests, the demo and the benchmark start it as a real
HTTP server (uvicorn on 127.0.0.1) so the REST client is exercised over real sockets, never
through transport mocks. Run it with
``python -m devstack.partner_api --port 8765``.

What a partner does to us is configurable, at start (``--config '{"faults": ...}'``) and
while running (``POST /admin/config``): 429 with ``Retry-After`` in seconds or as an
HTTP-date, 500/502/503, a token revoked in the middle of pagination (401), responses slower
than the client's timeout, dropped connections and malformed records. Faults are drawn from
a seeded generator so a run is reproducible. The simulator also enforces its own sliding
window rate limit, sends ``X-RateLimit-*`` headers, and records every request that broke
the limit as a *violation*, which is what tests assert the client never causes.

``state`` holds the configuration, the records and what the simulator remembers, ``app``
the Starlette app serving them, ``process`` the simulator as a subprocess on a free port
(for tests and benchmarks), ``__main__`` the command line.
"""
