"""REST gateway: a JWT-authenticated API over the Dagster GraphQL API.

It lists the code location's jobs, launches them and returns their results; serve it with
``python -m integration_patterns.services.gateway``. ``app.py`` builds the app from
``routes/`` (one module per resource), ``dependencies.py`` (the caller, the shared state),
``auth.py``, ``ratelimit.py`` and ``idempotency.py``; ``dagster_api/`` is its client of the
Dagster webserver.
"""
