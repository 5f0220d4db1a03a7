"""Webhooks: the receiver's inbox -> a routing sensor -> one run per event -> upserted entities."""
