"""The webhook receiver: verify the raw body's signature, store it durably, then answer 202.

``python -m integration_patterns.services.webhook_receiver --port 8090`` serves it with
uvicorn; ``config.py`` lists the environment variables it reads.
"""
