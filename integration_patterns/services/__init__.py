"""Long-running ASGI services that sit outside Dagster and feed it (webhook receiver, gateway)."""
