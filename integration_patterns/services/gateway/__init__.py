"""REST gateway: a JWT-authenticated API over the Dagster GraphQL API.

It lists the code location's jobs, launches them and returns their results; serve it with
``python -m integration_patterns.services.gateway``.
"""
